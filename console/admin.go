package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// capture is an in-process http.ResponseWriter for the admin handler.
type capture struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (c *capture) Header() http.Header { return c.h }
func (c *capture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *capture) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	if c.body.Len()+len(b) > 16<<20 {
		return 0, fmt.Errorf("console: admin answer over 16 MiB")
	}
	return c.body.Write(b)
}

// adminError is the admin API's refusal body.
type adminError struct {
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// AdminRefusal is an operator API refusal, as the CLI would print it.
type AdminRefusal struct {
	Status int
	Reason string
	Msg    string
}

func (e *AdminRefusal) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("the gateway answered %d: %s", e.Status, e.Msg)
	}
	return fmt.Sprintf("refused (%s): %s", e.Reason, e.Msg)
}

// admin calls the operator API in process as actor: the same handler,
// checks and records as the admin socket.
func (c *Console) admin(ctx context.Context, actor, method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://parachute"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	rec := &capture{h: http.Header{}}
	c.b.Admin(actor).ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	if rec.code != http.StatusOK {
		var e adminError
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error != "" {
			return &AdminRefusal{Status: rec.code, Reason: e.Reason, Msg: e.Error}
		}
		return &AdminRefusal{Status: rec.code, Msg: rec.body.String()}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rec.body.Bytes(), out)
}
