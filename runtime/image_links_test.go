package runtime

import (
	"archive/tar"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// Links put a symlink at a fixed image path to a binary added at its
// host path (image build --agent: /usr/bin/claude); a relative path or a
// path something else holds is refused.
func TestBuildImageLinks(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	realLs, _ := filepath.EvalSymlinks("/bin/ls")
	o := BuildOptions{Binary: "/bin/ls", Out: filepath.Join(t.TempDir(), "a.tar"), Add: []string{realLs},
		Links: map[string]string{"/usr/bin/claude": realLs}}
	if _, err := BuildImage(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	entries, _ := readImage(t, o.Out)
	if e := entries["usr/bin/claude"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != realLs {
		t.Fatalf("usr/bin/claude: %+v; want a link to %s", e.hdr, realLs)
	}
	for name, links := range map[string]map[string]string{
		"relative target":  {"/usr/bin/claude": "opt/claude"},
		"relative path":    {"usr/bin/claude": "/opt/claude"},
		"over /parachute":  {"/parachute": "/opt/claude"},
		"over /etc/passwd": {"/etc/passwd": "/opt/claude"},
	} {
		t.Run(name, func(t *testing.T) {
			o := BuildOptions{Binary: "/bin/ls", Out: filepath.Join(t.TempDir(), "x.tar"), Links: links}
			if _, err := BuildImage(context.Background(), o); err == nil || !(strings.Contains(err.Error(), "absolute") || strings.Contains(err.Error(), "given twice")) {
				t.Fatalf("err %v; want a refusal", err)
			}
		})
	}
}
