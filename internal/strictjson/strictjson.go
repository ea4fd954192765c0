// Package strictjson decodes JSON the one way every part of the gateway
// reads it, so that what a policy decides on and what a tool or upstream
// executes are the same values.
//
// Go's encoding/json is lenient where an attacker can use it: it matches
// object keys to struct fields regardless of case ({"Path": …} fills Path
// as well as {"path": …}), keeps the last of duplicate keys, ignores
// unknown keys, and replaces invalid UTF-8 and lone surrogate escapes with
// U+FFFD. A checker that reads "path" and an executor that reads "Path"
// disagree; so does a checker that sees U+FFFD and a filesystem that sees
// the raw bytes. Here every one of those is an error:
//
//   - the input is exactly one JSON value, valid UTF-8, with no lone
//     surrogate escapes (\ud800 without its pair);
//   - no object anywhere has two members with the same name;
//   - decoding into a struct, every member name must equal a field's JSON
//     name exactly (case included), at every depth; unknown names are
//     refused.
//
// Numbers are kept as json.Number when decoding into an interface value.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Errors, wrapped with the offending name or position.
var (
	ErrInvalidUTF8   = errors.New("invalid UTF-8")
	ErrSurrogate     = errors.New("lone UTF-16 surrogate escape")
	ErrDuplicateKey  = errors.New("duplicate object member")
	ErrUnknownKey    = errors.New("unknown object member")
	ErrNotObject     = errors.New("not a JSON object")
	ErrTrailingData  = errors.New("data after the JSON value")
	ErrSyntax        = errors.New("invalid JSON")
	ErrTooDeep       = fmt.Errorf("JSON nested deeper than %d levels", MaxDepth)
	errEmptyArgument = errors.New("no JSON value")
)

// MaxDepth is the deepest nesting of objects and arrays read, the same
// limit encoding/json sets itself: a value one level deeper is refused as
// ErrTooDeep before anything else is done with it.
const MaxDepth = 10000

// Validate checks raw as one strict JSON value: valid UTF-8, no lone
// surrogate escapes, no duplicate member names, nothing after the value.
func Validate(raw []byte) error {
	if !utf8.Valid(raw) {
		return ErrInvalidUTF8
	}
	if err := checkEscapes(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := walk(dec, nil); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailingData
	}
	return nil
}

// Object decodes raw as one strict JSON object. Empty input and null are
// an empty object (MCP's "no arguments").
func Object(raw []byte) (map[string]any, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return map[string]any{}, nil
	}
	if trimmed[0] != '{' {
		return nil, ErrNotObject
	}
	if err := Validate(trimmed); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	return m, nil
}

// Unmarshal decodes raw strictly into v (a non-nil pointer). Beyond
// Validate, every object member must name a field of the struct it fills
// exactly as its JSON tag (or field name) spells it.
func Unmarshal(raw []byte, v any) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return errEmptyArgument
	}
	if err := Validate(trimmed); err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("strictjson: Unmarshal needs a non-nil pointer")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if err := checkNames(generic, rv.Type().Elem(), nil); err != nil {
		return err
	}
	// Every name now matches a field exactly, so encoding/json's
	// exact-match-first rule fills the same fields the check saw.
	if err := json.Unmarshal(trimmed, v); err != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	return nil
}

// path is where a walk is, kept as segments and turned into a string
// only for an error: building it at every level made a deep value cost
// the square of its depth.
type path []string

func (p path) String() string { return strings.Join(p, "") }

func (p path) key(k string) path {
	if len(p) == 0 {
		return append(p, k)
	}
	return append(p, "."+k)
}

func (p path) index(i int) path { return append(p, "["+strconv.Itoa(i)+"]") }

// walk reads one value from dec, refusing duplicate member names and
// nesting past MaxDepth.
func walk(dec *json.Decoder, at path) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') && len(at) >= MaxDepth {
		return ErrTooDeep
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("%w: %w", ErrSyntax, err)
			}
			k, ok := kt.(string)
			if !ok {
				return ErrSyntax
			}
			if seen[k] {
				return fmt.Errorf("%w: %q%s", ErrDuplicateKey, k, where(at))
			}
			seen[k] = true
			if err := walk(dec, at.key(k)); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return fmt.Errorf("%w: %w", ErrSyntax, err)
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := walk(dec, at.index(i)); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return fmt.Errorf("%w: %w", ErrSyntax, err)
		}
	}
	return nil
}

// checkEscapes refuses \u escapes that encode a lone surrogate, which
// encoding/json would silently turn into U+FFFD.
func checkEscapes(raw []byte) error {
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !in {
			if c == '"' {
				in = true
			}
			continue
		}
		switch c {
		case '"':
			in = false
		case '\\':
			if i+1 >= len(raw) {
				return ErrSyntax
			}
			if raw[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(raw, i+2)
			if !ok {
				return ErrSyntax
			}
			i += 5
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return ErrSurrogate
			case r >= 0xD800 && r <= 0xDBFF:
				if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
					return ErrSurrogate
				}
				lo, ok := hex4(raw, i+3)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return ErrSurrogate
				}
				i += 6
			}
		}
	}
	return nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkNames walks a generically decoded value beside the Go type it will
// fill and refuses member names that are not exactly a field's name.
func checkNames(v any, t reflect.Type, at path) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Struct:
			fields := fieldsOf(t)
			for k, sub := range x {
				ft, ok := fields[k]
				if !ok {
					return fmt.Errorf("%w: %q%s", ErrUnknownKey, k, where(at))
				}
				if err := checkNames(sub, ft, at.key(k)); err != nil {
					return err
				}
			}
		case reflect.Map:
			for k, sub := range x {
				if err := checkNames(sub, t.Elem(), at.key(k)); err != nil {
					return err
				}
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, sub := range x {
				if err := checkNames(sub, t.Elem(), at.index(i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf maps the JSON names of a struct's fields (embedded structs'
// fields promoted, as encoding/json does) to their types.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					add(et)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := m[name]; !dup {
				m[name] = ft
			}
		}
	}
	add(t)
	fieldCache.Store(t, m)
	return m
}

func where(at path) string {
	if len(at) == 0 {
		return ""
	}
	return " in " + at.String()
}
