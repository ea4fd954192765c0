package strictjson

import (
	"errors"
	"testing"
)

type inner struct {
	OldText string `json:"oldText"`
}

type embedded struct {
	Path string `json:"path"`
}

type args struct {
	embedded
	Content *string `json:"content"`
	Edits   []inner `json:"edits"`
	Meta    map[string]inner
	Skip    string `json:"-"`
}

func TestUnmarshalRefuses(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"capitalised key", `{"Path":".parachute/hooks/x"}`, ErrUnknownKey},
		{"upper-case key", `{"PATH":"a"}`, ErrUnknownKey},
		{"duplicate key", `{"path":"a","path":".parachute/hooks/x"}`, ErrDuplicateKey},
		{"case variant beside the key", `{"path":"a","Path":"b"}`, ErrUnknownKey},
		{"unknown key", `{"path":"a","mode":"0777"}`, ErrUnknownKey},
		{"nested capitalised key", `{"path":"a","edits":[{"OldText":"x"}]}`, ErrUnknownKey},
		{"nested duplicate", `{"path":"a","edits":[{"oldText":"x","oldText":"y"}]}`, ErrDuplicateKey},
		{"map value's struct", `{"Meta":{"k":{"OLDTEXT":"x"}}}`, ErrUnknownKey},
		{"skipped field", `{"Skip":"x"}`, ErrUnknownKey},
		{"invalid UTF-8", "{\"path\":\"a\xff\"}", ErrInvalidUTF8},
		{"lone low surrogate", `{"path":"a\udc00"}`, ErrSurrogate},
		{"lone high surrogate", `{"path":"a\ud800"}`, ErrSurrogate},
		{"high then non-low", `{"path":"a\ud800\u0041"}`, ErrSurrogate},
		{"trailing value", `{"path":"a"}{"path":"b"}`, ErrTrailingData},
		{"trailing garbage", `{"path":"a"} x`, ErrTrailingData},
		{"syntax", `{"path":`, ErrSyntax},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var a args
			err := Unmarshal([]byte(c.in), &a)
			if !errors.Is(err, c.want) {
				t.Fatalf("Unmarshal(%s) = %v, want %v", c.in, err, c.want)
			}
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	var a args
	in := `{"path":"notes/😀.md","content":"x\ud83d\ude00\"\\","edits":[{"oldText":"a"}],"Meta":{"K":{"oldText":"b"}}}`
	if err := Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	if a.Path != "notes/😀.md" || *a.Content != "x😀\"\\" || a.Edits[0].OldText != "a" || a.Meta["K"].OldText != "b" {
		t.Fatalf("decoded %+v", a)
	}
}

func TestObject(t *testing.T) {
	for _, in := range []string{"", "null", "  "} {
		m, err := Object([]byte(in))
		if err != nil || len(m) != 0 {
			t.Fatalf("Object(%q) = %v, %v; want empty", in, m, err)
		}
	}
	if _, err := Object([]byte(`["a"]`)); !errors.Is(err, ErrNotObject) {
		t.Fatalf("array: %v", err)
	}
	if _, err := Object([]byte(`{"a":1,"a":2}`)); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("dup: %v", err)
	}
	m, err := Object([]byte(`{"Path":"x","n":12345678901234567890}`))
	if err != nil {
		t.Fatal(err)
	}
	if m["Path"] != "x" || m["n"].(interface{ String() string }).String() != "12345678901234567890" {
		t.Fatalf("Object kept %v", m)
	}
}

func FuzzUnmarshalAgreesWithValidate(f *testing.F) {
	for _, s := range []string{`{"path":"a"}`, `{"Path":"a"}`, `{"path":"a","path":"b"}`, `{"path":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a args
		if Unmarshal(raw, &a) == nil {
			// Whatever strict decoding accepts, Validate accepts, and the
			// generic decode sees the same path.
			if err := Validate(raw); err != nil {
				t.Fatalf("Unmarshal accepted what Validate refuses: %v", err)
			}
			m, err := Object(raw)
			if err == nil {
				if p, ok := m["path"]; ok && p != a.Path {
					t.Fatalf("path %q vs %q", p, a.Path)
				}
			}
		}
	})
}
