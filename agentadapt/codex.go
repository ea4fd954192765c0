package agentadapt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/parachute-gateway/parachute/agent"
)

// codex runs `codex exec --json` against the OpenAI Responses API.
type codex struct{}

func (codex) defaultBinary() string { return lookPath(Codex, "codex") }

func (codex) check(req *agent.Request) error {
	if req.Model.Provider != "openai" || req.Model.Name == "" {
		return errors.New("codex needs an OpenAI model: set model.provider: openai and model.model in the gateway config")
	}
	return nil
}

// codexInstructions are added to Codex's own.
const codexInstructions = claudeSystemPrompt

// codexFeatures are Codex features turned off: each would give the model
// a tool or a way out the gateway does not decide (its shell, sub-agents,
// image tools, browser and computer use, plugins, apps, hooks). The
// operator's PARACHUTE_AGENT_TOOLS=shell turns the shell back on.
var codexFeatures = []string{"apps", "browser_use", "code_mode_host", "computer_use", "goals", "hooks",
	"image_generation", "plugins", "shell_snapshot", "skill_search", "sleep_tool", "tool_suggest", "view_image"}

// codexConfig is the whole config.toml: nothing of the user's or the
// workspace's is read (CODEX_HOME is the session's state folder, project
// docs are off, rules ignored).
func codexConfig(t *turn, mcp []string) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "model = %s\nmodel_provider = \"parachute\"\napproval_policy = \"never\"\n", q(t.req.Model.Name))
	// Codex's own sandbox (seccomp, landlock) cannot nest in ours; the
	// walls around it are the gateway's.
	b.WriteString("sandbox_mode = \"danger-full-access\"\nweb_search = \"disabled\"\nproject_doc_max_bytes = 0\n")
	b.WriteString("check_for_update_on_startup = false\n")
	fmt.Fprintf(&b, "developer_instructions = %s\n", q(codexInstructions))
	fmt.Fprintf(&b, "\n[model_providers.parachute]\nname = \"parachute\"\nbase_url = %s\nenv_key = \"OPENAI_API_KEY\"\nwire_api = \"responses\"\n", q(t.baseURL+"/v1"))
	args := make([]string, len(mcp)-1)
	for i, a := range mcp[1:] {
		args[i] = q(a)
	}
	fmt.Fprintf(&b, "\n[mcp_servers.%s]\ncommand = %s\nargs = [%s]\nenv = { PARACHUTE_SOCKET = %s }\n", MCPServerName, q(mcp[0]), strings.Join(args, ", "), q(t.socket))
	shell := slices.Contains(t.tools, "shell")
	b.WriteString("\n[features]\n")
	for _, f := range codexFeatures {
		fmt.Fprintf(&b, "%s = false\n", f)
	}
	fmt.Fprintf(&b, "shell_tool = %t\nunified_exec = %t\n", shell, shell)
	b.WriteString("\n[agents]\nenabled = false\n\n[analytics]\nenabled = false\n")
	return b.String()
}

// codexEvent is the part of an `exec --json` line the adapter reads.
type codexEvent struct {
	Type     string `json:"type"`
	ThreadID string `json:"thread_id"`
	Message  string `json:"message"`
	Item     *struct {
		Type    string `json:"type"`
		Text    string `json:"text"`
		Message string `json:"message"`
	} `json:"item"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c codex) run(ctx context.Context, t *turn) (string, error) {
	file := filepath.Join(t.state, "codex-thread")
	prev := ""
	if b, err := os.ReadFile(file); err == nil && sessionID.Match(b) {
		prev = string(b)
	}
	reply, id, err := c.once(ctx, t, prev)
	if err != nil && prev != "" && strings.Contains(strings.ToLower(err.Error()), "no rollout found") {
		reply, id, err = c.once(ctx, t, "")
	}
	if err != nil {
		return "", err
	}
	if id != "" && sessionID.MatchString(id) {
		if err := os.WriteFile(file, []byte(id), 0o600); err != nil {
			return "", fmt.Errorf("agent state: %w", err)
		}
	}
	return reply, nil
}

func (codex) once(ctx context.Context, t *turn, resume string) (reply, id string, err error) {
	home := filepath.Join(t.state, "codex")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", "", fmt.Errorf("agent state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(codexConfig(t, t.opts.MCPCommand)), 0o600); err != nil {
		return "", "", fmt.Errorf("agent state: %w", err)
	}
	args := []string{"exec"}
	if resume != "" {
		args = append(args, "resume")
	}
	args = append(args, "--json", "--skip-git-repo-check", "--ignore-rules")
	if resume != "" {
		args = append(args, resume)
	}
	args = append(args, "-") // the prompt on stdin
	env := t.env("CODEX_HOME="+home, "OPENAI_API_KEY="+PlaceholderKey, "NO_COLOR=1", "RUST_LOG=error")
	var failure string
	var replies []string
	err = t.exec(ctx, args, env, t.prompt(resume != ""), func(line []byte) {
		var ev codexEvent
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		switch {
		case ev.Type == "thread.started":
			id = ev.ThreadID
		case ev.Type == "item.completed" && ev.Item != nil && ev.Item.Type == "agent_message":
			replies = append(replies, ev.Item.Text)
			t.say(ev.Item.Text)
		case ev.Type == "turn.failed" && ev.Error != nil:
			failure = ev.Error.Message
		case ev.Type == "error" && failure == "":
			failure = ev.Message
		}
	})
	switch {
	case failure != "":
		return "", id, fmt.Errorf("codex: %s", failure)
	case len(replies) > 0:
		return strings.TrimSpace(replies[len(replies)-1]), id, nil
	case err != nil:
		return "", id, err
	}
	return "", id, errNoResult
}
