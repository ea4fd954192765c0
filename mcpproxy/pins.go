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
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// PinsFile is the name of the pin store inside the state folder.
const PinsFile = "mcp-pins.json"

// ReasonToolChanged is the reason a call to a tool whose definition changed
// since it was approved is refused with.
const ReasonToolChanged = "tool-changed"

// ReasonToolUnapproved is the reason policy gives for refusing a tool first
// seen on a server whose other tools were already approved.
const ReasonToolUnapproved = "tool-unapproved"

// pinFile is the on-disk form: approved hashes; for tools whose definition
// changed, the hash waiting for `parachute mcp approve`; and tools that
// appeared on a server already pinned, waiting likewise (policy decides
// whether they may be called meanwhile).
type pinFile struct {
	Pins    map[string]string `json:"pins"`
	Pending map[string]string `json:"pending,omitempty"`
	New     map[string]string `json:"new,omitempty"`
}

// pinState is what the pin store says of one tool definition.
type pinState int

const (
	pinApproved pinState = iota // pinned with this hash
	pinChanged                  // pinned with another hash: blocked
	pinNew                      // never pinned, on a server that has pins
)

// pins is the pin store: the SHA-256 of each upstream tool's name,
// description and input schema as first seen (trust on first use). A tool
// whose hash differs from its pin is blocked until approved.
type pins struct {
	mu   sync.Mutex
	path string // "" keeps pins in memory only
	f    pinFile
}

func loadPins(stateDir string) (*pins, error) {
	p := &pins{f: pinFile{Pins: map[string]string{}, Pending: map[string]string{}, New: map[string]string{}}}
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
	if f.New == nil {
		f.New = map[string]string{}
	}
	p.f = f
	return nil
}

// check reports the state of the tool key with definition hash h. The
// first tools seen of a server with no pins at all are pinned now (trust on
// first use); a tool that later appears on that server is recorded as new,
// a changed one as pending.
func (p *pins) check(server, key, h string) (pinState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin, ok := p.f.Pins[key]
	switch {
	case ok && pin == h:
		return pinApproved, nil
	case ok:
		if p.f.Pending[key] != h {
			p.f.Pending[key] = h
			return pinChanged, p.save()
		}
		return pinChanged, nil
	case p.serverPinned(server):
		if p.f.New[key] != h {
			p.f.New[key] = h
			return pinNew, p.save()
		}
		return pinNew, nil
	}
	return pinApproved, nil
}

// pinFirst pins every tool of a server seen for the first time, together.
func (p *pins) pinFirst(keys, hashes []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range keys {
		p.f.Pins[k] = hashes[i]
		delete(p.f.Pending, k)
		delete(p.f.New, k)
	}
	return p.save()
}

// serverPinned reports whether any tool of server is pinned.
func (p *pins) serverPinned(server string) bool {
	prefix := server + "/"
	for k := range p.f.Pins {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
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
		for _, waiting := range []map[string]string{p.f.Pending, p.f.New} {
			for key, h := range waiting {
				if key == n || toolOf(key) == n {
					p.f.Pins[key] = h
					delete(waiting, key)
					done = append(done, key)
					matched = true
				}
			}
		}
		if !matched {
			return nil, fmt.Errorf("mcpproxy: no changed or new tool %q is waiting for approval", n)
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
	out := make([]string, 0, len(p.f.Pending)+len(p.f.New))
	for k := range p.f.Pending {
		out = append(out, k)
	}
	for k := range p.f.New {
		out = append(out, k+" (new)")
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

// toolHash is the SHA-256 of what a model is shown about a tool and of the
// server it comes from: its command line or URL, so that another program
// under the same name (any node script offering the same definitions)
// does not count as approved.
func toolHash(t *mcp.Tool, origin []string) string {
	b, _ := json.Marshal(struct {
		Name        string   `json:"name"`
		Description string   `json:"description"`
		InputSchema any      `json:"inputSchema"`
		Origin      []string `json:"origin"`
	}{t.Name, t.Description, t.InputSchema, origin})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
