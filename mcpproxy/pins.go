package mcpproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// PinsFile is the name of the pin store inside the state folder.
const PinsFile = "mcp-pins.json"

// ReasonToolChanged is the reason a call to a tool whose definition changed
// since it was approved is refused with.
const ReasonToolChanged = "tool-changed"

// pinFile is the on-disk form: approved hashes and, for tools whose
// definition changed, the hash waiting for `parachute mcp approve`.
type pinFile struct {
	Pins    map[string]string `json:"pins"`
	Pending map[string]string `json:"pending,omitempty"`
}

// pins is the pin store: the SHA-256 of each upstream tool's name,
// description and input schema as first seen (trust on first use). A tool
// whose hash differs from its pin is blocked until approved.
type pins struct {
	mu   sync.Mutex
	path string // "" keeps pins in memory only
	f    pinFile
}

func loadPins(stateDir string) (*pins, error) {
	p := &pins{f: pinFile{Pins: map[string]string{}, Pending: map[string]string{}}}
	if stateDir == "" {
		return p, nil
	}
	p.path = filepath.Join(stateDir, PinsFile)
	return p, p.reload()
}

func (p *pins) reload() error {
	if p.path == "" {
		return nil
	}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mcpproxy: pins: %w", err)
	}
	var f pinFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("mcpproxy: pins: %s: %w", p.path, err)
	}
	if f.Pins == nil {
		f.Pins = map[string]string{}
	}
	if f.Pending == nil {
		f.Pending = map[string]string{}
	}
	p.f = f
	return nil
}

// check reports whether the tool key with definition hash h is approved.
// A tool never seen is pinned now; a changed one is recorded as pending.
func (p *pins) check(key, h string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin, ok := p.f.Pins[key]
	switch {
	case !ok:
		p.f.Pins[key] = h
		delete(p.f.Pending, key)
		return true, p.save()
	case pin == h:
		return true, nil
	case p.f.Pending[key] != h:
		p.f.Pending[key] = h
		return false, p.save()
	}
	return false, nil
}

// recheck reloads the store and reports whether key is now approved for h.
func (p *pins) recheck(key, h string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reload() != nil {
		return false
	}
	return p.f.Pins[key] == h
}

func (p *pins) save() error {
	if p.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(p.f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return fmt.Errorf("mcpproxy: pins: %w", err)
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("mcpproxy: pins: %w", err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("mcpproxy: pins: %w", err)
	}
	return nil
}

// Approve moves the pending definitions of the named tools ("server/tool",
// or a bare tool name matching any server) to approved in the pin store of
// stateDir. It returns the keys approved; a name with nothing pending is an
// error.
func Approve(stateDir string, names ...string) ([]string, error) {
	p, err := loadPins(stateDir)
	if err != nil {
		return nil, err
	}
	if p.path == "" {
		return nil, errors.New("mcpproxy: no state folder given")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var done []string
	for _, n := range names {
		matched := false
		for key, h := range p.f.Pending {
			if key == n || toolOf(key) == n {
				p.f.Pins[key] = h
				delete(p.f.Pending, key)
				done = append(done, key)
				matched = true
			}
		}
		if !matched {
			return nil, fmt.Errorf("mcpproxy: no changed tool %q is waiting for approval", n)
		}
	}
	sort.Strings(done)
	return done, p.save()
}

// Pending lists the tools waiting for approval in the pin store of stateDir.
func Pending(stateDir string) ([]string, error) {
	p, err := loadPins(stateDir)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(p.f.Pending))
	for k := range p.f.Pending {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func toolOf(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}

// toolHash is the SHA-256 of what a model is shown about a tool.
func toolHash(t *mcp.Tool) string {
	b, _ := json.Marshal(struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		InputSchema any    `json:"inputSchema"`
	}{t.Name, t.Description, t.InputSchema})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
