package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/internal/beneath"
)

// Limits of the listing tools, so that a huge tree cannot exhaust memory.
const (
	maxEntries = 10000 // directory_tree and search_files visit at most this many entries
	maxResults = 1000  // search_files returns at most this many matches
	maxDepth   = 128   // directory_tree and search_files descend at most this deep (one open folder each)
)

// Definitions returns the built-in tool definitions, sorted by name.
func Definitions() []*mcp.Tool {
	tools := catalog()
	out := make([]*mcp.Tool, 0, len(tools))
	for _, t := range tools {
		out = append(out, t.def)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func schema(s string) json.RawMessage { return json.RawMessage(s) }

const (
	pathSchema     = `{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}`
	excludesSchema = `{"type":"array","items":{"type":"string"}}`
)

func catalog() map[string]tool {
	list := []tool{
		{def: &mcp.Tool{Name: "read_file", Description: "Read a text file in the workspace. head or tail return only the first or last N lines.",
			InputSchema: schema(`{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"integer"},"tail":{"type":"integer"}},"required":["path"]}`)},
			run: readFileTool},
		{def: &mcp.Tool{Name: "read_multiple_files", Description: "Read several files in the workspace at once.",
			InputSchema: schema(`{"type":"object","properties":{"paths":{"type":"array","items":{"type":"string"}}},"required":["paths"]}`)},
			run: readMultipleTool},
		{def: &mcp.Tool{Name: "write_file", Description: "Create or replace a file in the workspace.",
			InputSchema: schema(`{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]}`)},
			run: writeFileTool},
		{def: &mcp.Tool{Name: "edit_file", Description: "Replace exact text in a file. dryRun shows the result without writing.",
			InputSchema: schema(`{"type":"object","properties":{"path":{"type":"string"},"edits":{"type":"array","items":{"type":"object","properties":{"oldText":{"type":"string"},"newText":{"type":"string"}},"required":["oldText","newText"]}},"dryRun":{"type":"boolean"}},"required":["path","edits"]}`)},
			run: editFileTool},
		{def: &mcp.Tool{Name: "create_directory", Description: "Create a folder (and its parents) in the workspace.",
			InputSchema: schema(pathSchema)}, run: createDirTool},
		{def: &mcp.Tool{Name: "list_directory", Description: "List a folder: [DIR] and [FILE] entries.",
			InputSchema: schema(pathSchema)}, run: listDirTool},
		{def: &mcp.Tool{Name: "directory_tree", Description: "A folder's tree as JSON.",
			InputSchema: schema(`{"type":"object","properties":{"path":{"type":"string"},"excludePatterns":` + excludesSchema + `},"required":["path"]}`)},
			run: treeTool},
		{def: &mcp.Tool{Name: "move_file", Description: "Move or rename a file or folder; the destination must not exist.",
			InputSchema: schema(`{"type":"object","properties":{"source":{"type":"string"},"destination":{"type":"string"}},"required":["source","destination"]}`)},
			run: moveTool},
		{def: &mcp.Tool{Name: "search_files", Description: "Find files and folders whose name matches pattern (a glob, or a case-insensitive substring) beneath path.",
			InputSchema: schema(`{"type":"object","properties":{"path":{"type":"string"},"pattern":{"type":"string"},"excludePatterns":` + excludesSchema + `},"required":["path","pattern"]}`)},
			run: searchTool},
		{def: &mcp.Tool{Name: "get_file_info", Description: "Size, times, type and permissions of a file or folder (links are not followed).",
			InputSchema: schema(pathSchema)}, run: infoTool},
	}
	m := make(map[string]tool, len(list))
	for _, t := range list {
		m[t.def.Name] = t
	}
	return m
}

type pathArgs struct {
	Path string `json:"path"`
}

func (a pathArgs) check() error {
	if a.Path == "" {
		return fmt.Errorf("%w: path", errMissing)
	}
	return nil
}

// decodePath reads the arguments of a tool that takes only a path.
func decodePath(raw json.RawMessage) (string, error) {
	var a pathArgs
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	return a.Path, a.check()
}

func readFileTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		pathArgs
		Head int `json:"head"`
		Tail int `json:"tail"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if err := a.check(); err != nil {
		return "", err
	}
	if a.Head > 0 && a.Tail > 0 {
		return "", errors.New("give head or tail, not both")
	}
	b, err := s.readFile(a.Path)
	if err != nil {
		return "", err
	}
	text := string(b)
	switch {
	case a.Head > 0:
		lines := strings.SplitAfter(text, "\n")
		text = strings.Join(lines[:min(a.Head, len(lines))], "")
	case a.Tail > 0:
		lines := strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n")
		text = strings.Join(lines[max(0, len(lines)-a.Tail):], "")
	}
	return text, nil
}

func readMultipleTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		Paths []string `json:"paths"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if len(a.Paths) == 0 {
		return "", fmt.Errorf("%w: paths", errMissing)
	}
	parts := make([]string, len(a.Paths))
	var total int64
	for i, p := range a.Paths {
		b, err := s.readFile(p)
		if err == nil {
			total += int64(len(b))
			if total > s.maxRead {
				err = fmt.Errorf("%w: the files together exceed %d bytes", ErrTooLarge, s.maxRead)
			}
		}
		if err != nil {
			parts[i] = p + ": Error - " + err.Error()
			continue
		}
		parts[i] = p + ":\n" + string(b) + "\n"
	}
	return strings.Join(parts, "\n---\n"), nil
}

func writeFileTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		pathArgs
		Content *string `json:"content"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if err := a.check(); err != nil {
		return "", err
	}
	if a.Content == nil {
		return "", fmt.Errorf("%w: content", errMissing)
	}
	if err := s.writeFile(a.Path, []byte(*a.Content)); err != nil {
		return "", err
	}
	return "Successfully wrote to " + a.Path, nil
}

type edit struct {
	OldText string `json:"oldText"`
	NewText string `json:"newText"`
}

func editFileTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		pathArgs
		Edits  []edit `json:"edits"`
		DryRun bool   `json:"dryRun"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if err := a.check(); err != nil {
		return "", err
	}
	if len(a.Edits) == 0 {
		return "", fmt.Errorf("%w: edits", errMissing)
	}
	b, err := s.readFile(a.Path)
	if err != nil {
		return "", err
	}
	text := string(b)
	for i, e := range a.Edits {
		if e.OldText == "" {
			return "", fmt.Errorf("edit %d: oldText is empty", i+1)
		}
		if !strings.Contains(text, e.OldText) {
			return "", fmt.Errorf("edit %d: oldText not found in %s", i+1, a.Path)
		}
		text = strings.Replace(text, e.OldText, e.NewText, 1)
	}
	if a.DryRun {
		return text, nil
	}
	if err := s.writeFile(a.Path, []byte(text)); err != nil {
		return "", err
	}
	return fmt.Sprintf("Applied %d edit(s) to %s", len(a.Edits), a.Path), nil
}

func createDirTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	path, err := decodePath(raw)
	if err != nil {
		return "", err
	}
	if err := s.mkdirAll(path); err != nil {
		return "", err
	}
	return "Successfully created directory " + path, nil
}

func listDirTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	path, err := decodePath(raw)
	if err != nil {
		return "", err
	}
	d, err := s.openDir(path)
	if err != nil {
		return "", err
	}
	defer d.Close()
	entries, err := d.ReadDir(maxEntries)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries {
		kind := "[FILE]"
		if e.IsDir() {
			kind = "[DIR]"
		}
		fmt.Fprintf(&b, "%s %s\n", kind, e.Name)
	}
	return b.String(), nil
}

type treeEntry struct {
	Name     string       `json:"name"`
	Type     string       `json:"type"`
	Children []*treeEntry `json:"children,omitempty"`
}

func treeTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		pathArgs
		Exclude []string `json:"excludePatterns"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if err := a.check(); err != nil {
		return "", err
	}
	top, err := s.openDir(a.Path)
	if err != nil {
		return "", err
	}
	defer top.Close()
	budget := maxEntries
	var walk func(d *beneath.Dir, p string, depth int) ([]*treeEntry, error)
	walk = func(d *beneath.Dir, p string, depth int) ([]*treeEntry, error) {
		if depth > maxDepth {
			return nil, fmt.Errorf("folders nested deeper than %d; narrow the path", maxDepth)
		}
		entries, err := d.ReadDir(maxEntries)
		if err != nil {
			return nil, err
		}
		out := []*treeEntry{}
		for _, e := range entries {
			rel := path.Join(p, e.Name)
			if excluded(a.Exclude, e.Name, rel) {
				continue
			}
			if budget--; budget < 0 {
				return nil, fmt.Errorf("more than %d entries; narrow the path", maxEntries)
			}
			te := &treeEntry{Name: e.Name, Type: "file"}
			if e.IsDir() {
				te.Type = "directory"
				sub, err := d.OpenDir(e.Name)
				if err != nil {
					return nil, err
				}
				te.Children, err = walk(sub, rel, depth+1)
				sub.Close()
				if err != nil {
					return nil, err
				}
			}
			out = append(out, te)
		}
		return out, nil
	}
	tree, err := walk(top, a.Path, 0)
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(tree, "", "  ")
	return string(b), err
}

func excluded(patterns []string, name, rel string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

func moveTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if a.Source == "" || a.Destination == "" {
		return "", fmt.Errorf("%w: source and destination", errMissing)
	}
	if err := s.move(a.Source, a.Destination); err != nil {
		return "", err
	}
	return "Successfully moved " + a.Source + " to " + a.Destination, nil
}

func searchTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	var a struct {
		pathArgs
		Pattern string   `json:"pattern"`
		Exclude []string `json:"excludePatterns"`
	}
	if err := decode(raw, &a); err != nil {
		return "", err
	}
	if err := a.check(); err != nil {
		return "", err
	}
	if a.Pattern == "" {
		return "", fmt.Errorf("%w: pattern", errMissing)
	}
	comps, err := split(a.Path)
	if err != nil {
		return "", err
	}
	top, err := s.openDir(a.Path)
	if err != nil {
		return "", err
	}
	defer top.Close()
	lower := strings.ToLower(a.Pattern)
	var found []string
	seen := 0
	errFull := errors.New("enough results")
	// Depth first, names in order, a folder before what is in it: the
	// order fs.WalkDir gave.
	var walk func(d *beneath.Dir, p string, depth int) error
	walk = func(d *beneath.Dir, p string, depth int) error {
		if depth > maxDepth {
			return fmt.Errorf("folders nested deeper than %d; narrow the path", maxDepth)
		}
		entries, err := d.ReadDir(maxEntries)
		if err != nil {
			return err
		}
		for _, e := range entries {
			rel := path.Join(p, e.Name)
			if seen++; seen > maxEntries {
				return fmt.Errorf("more than %d entries; narrow the path", maxEntries)
			}
			if excluded(a.Exclude, e.Name, rel) {
				continue
			}
			glob, _ := path.Match(a.Pattern, e.Name)
			if glob || strings.Contains(strings.ToLower(e.Name), lower) {
				found = append(found, rel)
				if len(found) >= maxResults {
					return errFull
				}
			}
			if e.IsDir() {
				sub, err := d.OpenDir(e.Name)
				if err != nil {
					return err
				}
				err = walk(sub, rel, depth+1)
				sub.Close()
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(top, path.Join(append([]string{"."}, comps...)...), 0); err != nil && !errors.Is(err, errFull) {
		return "", err
	}
	if len(found) == 0 {
		return "No matches found", nil
	}
	return strings.Join(found, "\n"), nil
}

func infoTool(_ context.Context, s *Server, raw json.RawMessage) (string, error) {
	path, err := decodePath(raw)
	if err != nil {
		return "", err
	}
	st, err := s.stat(path)
	if err != nil {
		return "", err
	}
	t := beneath.TypeOf(st)
	mtime := time.Unix(st.Mtime.Sec, int64(st.Mtime.Nsec))
	return fmt.Sprintf("size: %d\nmodified: %s\nisDirectory: %t\nisFile: %t\nisSymlink: %t\npermissions: %o\nlinks: %d\n",
		st.Size, mtime.UTC().Format(time.RFC3339), t == fs.ModeDir, t == 0,
		t == fs.ModeSymlink, st.Mode&0o777, st.Nlink), nil
}
