//go:build goolm

package matrix

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenStoreRefusals(t *testing.T) {
	tests := []struct {
		name string
		prep func(t *testing.T, dir string) string // returns the store path
		want string                                // "" opens
	}{
		{"new store is made 0600 in a 0700 folder", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "sub", "bot.db")
		}, ""},
		{"symbolic link to another file", func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "elsewhere.db")
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "bot.db")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "symbolic link"},
		{"dangling symbolic link (would create the target)", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bot.db")
			if err := os.Symlink(filepath.Join(dir, "nowhere.db"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "symbolic link"},
		{"readable by others", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bot.db")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, "chmod 600"},
		{"folder writable by others", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "open")
			if err := os.Mkdir(sub, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sub, 0o777); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(sub, "bot.db")
		}, "writable by others"},
		{"a folder, not a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bot.db")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, "bot.db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := tt.prep(t, dir)
			db, err := openStore(p)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				fi, err := os.Stat(p)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("store mode = %v (%v), want 0600", fi.Mode(), err)
				}
				if fi, _ := os.Stat(filepath.Dir(p)); fi.Mode().Perm() != 0o700 {
					t.Errorf("folder mode = %v, want 0700", fi.Mode())
				}
				return
			}
			if err == nil {
				db.Close()
				t.Fatalf("openStore(%s) opened; want an error about %q", p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEncryptionOptions(t *testing.T) {
	base := func(e *Encryption, r Recorder) Options {
		return Options{Name: "mx", Homeserver: "http://x", UserID: "@a:x", AccessToken: "t", Encryption: e, Recorder: r}
	}
	key := []byte(strings.Repeat("k", MinPickleKey))
	rec := recorderFunc(nil)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no store path", base(&Encryption{PickleKey: key}, rec), "store path"},
		{"short pickle key", base(&Encryption{StorePath: "/s.db", PickleKey: key[:31]}, rec), "pickle key has 31 bytes"},
		{"no pickle key", base(&Encryption{StorePath: "/s.db"}, rec), "pickle_key_env"},
		{"no recorder", base(&Encryption{StorePath: "/s.db", PickleKey: key}, nil), "Recorder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error about %s", err, tt.want)
			}
		})
	}
	if _, err := New(base(&Encryption{StorePath: "/s.db", PickleKey: key}, rec)); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

type recorderFunc func(Record) error

func (f recorderFunc) RecordMatrix(_ context.Context, r Record) error { return f(r) }
