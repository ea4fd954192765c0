package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxModelResponseBytes bounds a model answer read from the socket.
const MaxModelResponseBytes = 16 << 20

// ModelError is a refusal or failure answered by the gateway or the
// provider behind it (HTTP 4xx/5xx). Message is the server's own message.
type ModelError struct {
	Status  int
	Message string
}

func (e *ModelError) Error() string {
	what := "the model call failed"
	switch {
	case e.Status == http.StatusTooManyRequests:
		what = "the model call was refused (rate limit or token budget)"
	case e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized:
		what = "the model call was refused"
	}
	return fmt.Sprintf("%s: HTTP %d: %s", what, e.Status, e.Message)
}

// postJSON sends body to path on the socket and decodes a 2xx answer into
// out. Headers are set explicitly; no credential header is ever sent.
func postJSON(ctx context.Context, client *http.Client, path string, headers map[string]string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding the model request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, BaseURL+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("building the model request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the model through the gateway socket: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxModelResponseBytes+1))
	if err != nil {
		return fmt.Errorf("reading the model's answer: %w", err)
	}
	if len(data) > MaxModelResponseBytes {
		return fmt.Errorf("the model's answer is larger than %d bytes", MaxModelResponseBytes)
	}
	if resp.StatusCode/100 != 2 {
		return &ModelError{Status: resp.StatusCode, Message: errorMessage(data)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the model's answer is not the expected JSON: %w", err)
	}
	return nil
}

// errorMessage extracts error.message (both providers use it) or falls
// back to the body's first line, bounded and on one line.
func errorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		var s string
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			msg = obj.Message
		} else if json.Unmarshal(e.Error, &s) == nil {
			msg = s
		}
	}
	if msg == "" {
		msg = string(body)
	}
	return oneLine(msg, 500)
}

// oneLine folds whitespace runs (newlines included) to single spaces and
// bounds the length, so an error fits on the one stderr line the gateway reads.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if s == "" {
		return "(no message)"
	}
	if len(s) > n {
		s = truncate(s, n)
		s = strings.Join(strings.Fields(s), " ")
	}
	return s
}

// errModelNoAnswer is returned when a 2xx answer holds nothing usable.
var errModelNoAnswer = errors.New("the model's answer has no message")
