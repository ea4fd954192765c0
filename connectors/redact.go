package connectors

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces a secret in logs and errors.
const Redacted = "[REDACTED]"

// botTokenRE matches bare bot tokens of the shapes Telegram
// (123456:AA…) and Discord (three base64url parts) use, so a token the
// redactor was not told about is still hidden.
var botTokenRE = regexp.MustCompile(`\b\d{5,}:[A-Za-z0-9_-]{30,}\b|\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}\b`)

// Redactor hides secrets in strings: each secret as given, URL-escaped (a
// token in a request path or query) and any bare token shape.
type Redactor struct {
	secrets []string
}

// NewRedactor returns a Redactor for secrets; empty ones are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		r.secrets = append(r.secrets, s)
		for _, v := range []string{url.PathEscape(s), url.QueryEscape(s)} {
			if v != s {
				r.secrets = append(r.secrets, v)
			}
		}
	}
	return r
}

// String returns s with every secret replaced by Redacted.
func (r *Redactor) String(s string) string {
	if r != nil {
		for _, sec := range r.secrets {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return botTokenRE.ReplaceAllString(s, Redacted)
}

// Error returns err with its message redacted. The result still matches the
// original's sentinels with errors.Is, but does not unwrap to it, so the
// unredacted text cannot be reached by printing an unwrapped error.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.String(err.Error()), inner: err}
}

type redactedError struct {
	msg   string
	inner error
}

func (e *redactedError) Error() string { return e.msg }

// Is lets errors.Is see the original's chain without exposing it.
func (e *redactedError) Is(target error) bool { return errors.Is(e.inner, target) }
