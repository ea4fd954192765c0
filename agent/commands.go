package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"unicode"
)

// helpText lists the tools-only commands.
const helpText = `Commands:
  /ls [PATH]         list a folder (default: the workspace)
  /cat PATH          show a file
  /write PATH TEXT   write TEXT to a file (replacing it)
  /find PATTERN      search the workspace for files matching PATTERN
  /help              this list
Paths are relative to the workspace.`

// noModelText answers free text when no model is configured.
const noModelText = `No AI model is configured for this gateway, so I can only run file commands.
To chat, the operator sets the model: section of the gateway config (provider, name, and the API key in the environment).

` + helpText

// toolsOnly answers one message without a model: slash commands map to one
// MCP tool call each; anything else gets the help text. The reply is what
// the user sees, including a tool's "denied: …" text.
func toolsOnly(ctx context.Context, client *http.Client, req *Request) (string, error) {
	name, rest := splitCommand(req.Text)
	var tool string
	var args map[string]any
	switch name {
	case "":
		return noModelText, nil
	case "help", "start":
		return helpText, nil
	case "ls":
		tool, args = "list_directory", map[string]any{"path": workspacePath(req.Workspace, firstWord(rest))}
	case "cat":
		p := firstWord(rest)
		if p == "" {
			return "usage: /cat PATH", nil
		}
		tool, args = "read_file", map[string]any{"path": workspacePath(req.Workspace, p)}
	case "write":
		p, text := cutWord(rest)
		if p == "" {
			return "usage: /write PATH TEXT", nil
		}
		// The text starts after the blanks following PATH, or on the next
		// line; its own newlines and indentation are kept.
		text = strings.TrimLeft(text, " \t")
		text = strings.TrimPrefix(strings.TrimPrefix(text, "\r"), "\n")
		tool, args = "write_file", map[string]any{"path": workspacePath(req.Workspace, p), "content": text}
	case "find":
		pattern := strings.TrimSpace(rest)
		if pattern == "" {
			return "usage: /find PATTERN", nil
		}
		tool, args = "search_files", map[string]any{"path": workspacePath(req.Workspace, "."), "pattern": pattern}
	default:
		return fmt.Sprintf("Unknown command /%s.\n\n%s", name, helpText), nil
	}
	tools, err := ConnectTools(ctx, client)
	if err != nil {
		return "", err
	}
	defer tools.Close()
	raw, err := json.Marshal(args)
	if err != nil {
		return "", fmt.Errorf("encoding arguments for %s: %w", tool, err)
	}
	res, err := tools.Command(ctx, tool, raw)
	if err != nil {
		return "", err
	}
	return res.Text, nil
}

// splitCommand returns the command name of "/name@bot rest" (lower case,
// without the bot suffix) and the rest; name is "" for free text.
func splitCommand(text string) (name, rest string) {
	text = strings.TrimLeftFunc(text, unicode.IsSpace)
	if !strings.HasPrefix(text, "/") {
		return "", text
	}
	word, rest := cutWord(text[1:])
	word, _, _ = strings.Cut(word, "@")
	return strings.ToLower(word), rest
}

// cutWord splits off the first whitespace-separated word; the rest is
// returned untouched, starting with the whitespace after the word.
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

func firstWord(s string) string {
	w, _ := cutWord(s)
	return w
}

// workspacePath makes p absolute under the workspace; an absolute p is
// passed as given. This is convenience, not a boundary: the gateway
// resolves and checks every path against the session's policy.
func workspacePath(workspace, p string) string {
	if p == "" {
		return workspace
	}
	if path.IsAbs(p) {
		return p
	}
	return path.Join(workspace, p)
}
