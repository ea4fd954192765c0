package audit

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/parachute-gateway/parachute/engine"
)

// canonicalInput is in's document as compact JSON (object keys sorted, as
// encoding/json writes maps), or nil if it cannot be encoded. It is written
// straight from the AST value, byte for byte what json.Marshal(ast.JSON(v))
// writes (TestCanonicalMatchesMarshal, FuzzCanonical), without building
// the map[string]any and reflecting over it; a value it does not handle
// (sets, non-string keys, lazy objects) is encoded that slower way.
func canonicalInput(in engine.Input) json.RawMessage {
	if in == nil {
		return nil
	}
	v := in.Value()
	if b, ok := appendCanonical(make([]byte, 0, 512), v); ok {
		return b
	}
	return marshalCanonical(v)
}

// marshalCanonical is the reference encoding: through map[string]any.
func marshalCanonical(v ast.Value) json.RawMessage {
	x, err := ast.JSON(v)
	if err != nil {
		return nil
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil
	}
	return b
}

// astObjectType is the AST's own object type (not a lazy object over Go
// values, whose numbers encoding/json would write differently).
var astObjectType = reflect.TypeOf(ast.NewObject())

func appendCanonical(dst []byte, v ast.Value) ([]byte, bool) {
	switch v := v.(type) {
	case ast.Null:
		return append(dst, "null"...), true
	case ast.Boolean:
		if v {
			return append(dst, "true"...), true
		}
		return append(dst, "false"...), true
	case ast.Number:
		if !validNumber(string(v)) {
			return dst, false
		}
		return append(dst, v...), true
	case ast.String:
		return appendString(dst, string(v)), true
	case *ast.Array:
		dst = append(dst, '[')
		for i := range v.Len() {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendCanonical(dst, v.Elem(i).Value); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case ast.Object:
		if reflect.TypeOf(v) != astObjectType {
			return dst, false
		}
		keys := v.Keys()
		names := make([]string, len(keys))
		for i, k := range keys {
			s, ok := k.Value.(ast.String)
			if !ok {
				return dst, false
			}
			names[i] = string(s)
		}
		order := make([]int, len(keys))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(names[a], names[b]) })
		dst = append(dst, '{')
		for n, i := range order {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, names[i])
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendCanonical(dst, v.Get(keys[i]).Value); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	}
	return dst, false
}

const hexDigits = "0123456789abcdef"

// appendString writes s as encoding/json does by default: HTML-safe (<, >
// and & escaped), U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validNumber is encoding/json's check of a json.Number.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
