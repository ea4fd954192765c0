package matrix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckStorePath(t *testing.T) {
	tests := []struct {
		name string
		prep func(t *testing.T, dir string) string
		want string // "" passes
	}{
		{"not made yet", func(t *testing.T, dir string) string { return filepath.Join(dir, "new", "bot.db") }, ""},
		{"0600 file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bot.db")
			must(t, os.WriteFile(p, nil, 0o600))
			return p
		}, ""},
		{"symbolic link", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bot.db")
			must(t, os.Symlink("/etc/passwd", p))
			return p
		}, "symbolic link"},
		{"readable by others", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bot.db")
			must(t, os.WriteFile(p, nil, 0o640))
			return p
		}, "chmod 600"},
		{"folder writable by others", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "open")
			must(t, os.Mkdir(sub, 0o700))
			must(t, os.Chmod(sub, 0o777))
			return filepath.Join(sub, "bot.db")
		}, "writable by others"},
		{"folder is a link", func(t *testing.T, dir string) string {
			must(t, os.Symlink(t.TempDir(), filepath.Join(dir, "link")))
			return filepath.Join(dir, "link", "bot.db")
		}, "not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckStorePath(tt.prep(t, t.TempDir()))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("CheckStorePath = %v, want %q", err, tt.want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
