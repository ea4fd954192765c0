package mcpproxy

import (
	"encoding/json"
	"regexp"
	"sort"

	"github.com/parachute-gateway/parachute/engine"
)

// DefaultAccess classifies the tools of the built-in vault server and of
// @modelcontextprotocol/server-filesystem by name. An upstream's `tools:`
// map in the config overrides it; a tool in neither is "unknown".
var DefaultAccess = map[string]string{
	"read_file":                 engine.AccessRead,
	"read_text_file":            engine.AccessRead,
	"read_media_file":           engine.AccessRead,
	"read_multiple_files":       engine.AccessRead,
	"list_directory":            engine.AccessRead,
	"list_directory_with_sizes": engine.AccessRead,
	"directory_tree":            engine.AccessRead,
	"search_files":              engine.AccessRead,
	"get_file_info":             engine.AccessRead,
	"list_allowed_directories":  engine.AccessRead,
	"write_file":                engine.AccessWrite,
	"edit_file":                 engine.AccessWrite,
	"create_directory":          engine.AccessWrite,
	"move_file":                 engine.AccessWrite,
}

// DefaultPathArgs are argument names always treated as paths.
var DefaultPathArgs = []string{"path", "paths", "source", "destination"}

// pathLike matches property names that a schema-reading classifier treats
// as paths too: "file", "filePath", "target_dir", "directory", "folder"…
var pathLike = regexp.MustCompile(`(?i)(^|_|[a-z])(path|paths|file|filename|dir|directory|folder)$`)

// classify returns the access class of a tool: the upstream's override, the
// built-in default, else unknown. An override that is not a known class
// counts as unknown.
func classify(name string, overrides map[string]string) string {
	if a, ok := overrides[name]; ok {
		switch a {
		case engine.AccessRead, engine.AccessWrite, engine.AccessExec:
			return a
		}
		return engine.AccessUnknown
	}
	if a, ok := DefaultAccess[name]; ok {
		return a
	}
	return engine.AccessUnknown
}

// pathArgs lists the arguments of a tool that hold paths: the default names,
// the extra names given, and every property of the input schema whose name
// looks like a path and whose type is a string or an array of strings.
func pathArgs(props map[string]propSchema, extra []string) []string {
	set := map[string]bool{}
	for _, n := range DefaultPathArgs {
		set[n] = true
	}
	for _, n := range extra {
		set[n] = true
	}
	for name, prop := range props {
		if pathLike.MatchString(name) && stringish(prop) {
			set[name] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

type propSchema struct {
	Type   any         `json:"type"`
	Format string      `json:"format"`
	Items  *propSchema `json:"items"`
}

func schemaProperties(schema any) map[string]propSchema {
	var s struct {
		Properties map[string]propSchema `json:"properties"`
	}
	b, err := json.Marshal(schema)
	if err != nil {
		return nil
	}
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return s.Properties
}

func stringish(p propSchema) bool {
	if hasType(p.Type, "string") {
		return true
	}
	return hasType(p.Type, "array") && p.Items != nil && hasType(p.Items.Type, "string")
}

func hasType(t any, want string) bool {
	switch v := t.(type) {
	case string:
		return v == want
	case []any:
		for _, x := range v {
			if x == want {
				return true
			}
		}
	case nil:
		return want == "string" // untyped: could be anything, treat as a path
	}
	return false
}
