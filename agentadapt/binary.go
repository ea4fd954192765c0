package agentadapt

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
)

// ImagePath is where `parachute image build --agent KIND` links the
// agent's binary in the sandbox image, and where the adapter looks first.
func ImagePath(kind string) string {
	if kind == Codex {
		return "/usr/bin/codex"
	}
	return "/usr/bin/claude"
}

// NativeBinary finds an agent's native binary in a node_modules folder
// where npm installed its package: npm puts it in the platform package
// (@anthropic-ai/claude-code-linux-x64/claude,
// @openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex).
func NativeBinary(kind, nodeModules string) (string, error) {
	arch := map[string][2]string{"amd64": {"x64", "x86_64"}, "arm64": {"arm64", "aarch64"}}[goruntime.GOARCH]
	if arch[0] == "" {
		return "", fmt.Errorf("no %s build for %s", kind, goruntime.GOARCH)
	}
	var p, pkg string
	switch kind {
	case ClaudeCode:
		pkg = "@anthropic-ai/claude-code"
		p = filepath.Join(nodeModules, "@anthropic-ai", "claude-code-linux-"+arch[0], "claude")
	case Codex:
		pkg = "@openai/codex"
		p = filepath.Join(nodeModules, "@openai", "codex-linux-"+arch[0], "vendor", arch[1]+"-unknown-linux-musl", "bin", "codex")
	default:
		return "", fmt.Errorf("unknown agent %q (want claude-code or codex)", kind)
	}
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s's native binary is not at %s: install it with npm (npm install -g %s, or bash test/deps/40-agents.sh) and give --agent-npm-root the node_modules folder", kind, p, pkg)
	}
	return p, nil
}
