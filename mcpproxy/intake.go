package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/parachute-gateway/parachute/internal/strictjson"
)

// JSON-RPC error codes the intake answers with.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
)

// requestMethods are the client requests the proxy serves; notifications
// are the client notifications it accepts. Everything else, client responses
// included (the proxy never asks the client anything), is refused.
var (
	requestMethods = map[string]bool{
		"initialize": true, "ping": true, "tools/list": true, "tools/call": true,
		"logging/setLevel": true, // the SDK server advertises logging
		"server/discover":  true, // SEP-2575: capabilities and server info, as initialize
	}
	notificationMethods = map[string]bool{
		"notifications/initialized": true, "notifications/cancelled": true,
	}
	// envelopeKeys are the only members a message may have. Checking them
	// exactly closes the gap between this parser and the SDK's (encoding/json
	// matches "Method" to method; a second "method" member wins).
	envelopeKeys = map[string]bool{"jsonrpc": true, "id": true, "method": true, "params": true}
)

// RPCError is a refusal of one client message, as a JSON-RPC error.
type RPCError struct {
	ID      json.RawMessage // the message's id, or null
	Code    int
	Message string
}

func (e *RPCError) Error() string { return e.Message }

// MarshalJSON encodes the whole JSON-RPC error response.
func (e *RPCError) MarshalJSON() ([]byte, error) {
	id := e.ID
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	return json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{e.Code, e.Message}})
}

// CheckMessage validates one client message before the SDK sees it: a
// single JSON object (no batch), JSON-RPC 2.0, only the envelope members,
// each once, a string or number id, and a method the proxy serves. It
// returns nil or the error to answer with.
func CheckMessage(msg []byte, max int64) *RPCError {
	if int64(len(msg)) > max {
		return &RPCError{Code: CodeInvalidRequest, Message: fmt.Sprintf("message larger than %d bytes", max)}
	}
	msg = bytes.TrimSpace(msg)
	if len(msg) > 0 && msg[0] == '[' {
		return &RPCError{Code: CodeInvalidRequest, Message: "JSON-RPC batches are not accepted; send one message at a time"}
	}
	// One reading for the proxy and the SDK: a duplicate member anywhere
	// (the SDK would keep the last), invalid UTF-8 or a lone surrogate
	// escape (the SDK would read U+FFFD) is refused here.
	if err := strictjson.Validate(msg); err != nil {
		return &RPCError{Code: CodeParseError, Message: "malformed JSON-RPC message: " + err.Error()}
	}
	members, err := objectMembers(msg)
	if err != nil {
		return &RPCError{Code: CodeParseError, Message: "malformed JSON-RPC message: " + err.Error()}
	}
	id, hasID := members["id"]
	bad := func(format string, a ...any) *RPCError {
		e := &RPCError{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, a...)}
		if hasID && validID(id) {
			e.ID = id
		}
		return e
	}
	for k := range members {
		if !envelopeKeys[k] {
			return bad("unexpected member %q in a JSON-RPC message (client responses are not accepted)", k)
		}
	}
	var version string
	if json.Unmarshal(members["jsonrpc"], &version) != nil || version != "2.0" {
		return bad(`"jsonrpc" must be "2.0"`)
	}
	if hasID && !validID(id) {
		return bad(`"id" must be a string or a number`)
	}
	var method string
	if json.Unmarshal(members["method"], &method) != nil || method == "" {
		return bad(`"method" must be a non-empty string`)
	}
	if p, ok := members["params"]; ok {
		if t := bytes.TrimSpace(p); len(t) == 0 || t[0] != '{' {
			return bad(`"params" must be an object`)
		}
		if method == "tools/call" {
			if err := checkCallParams(p); err != nil {
				return bad("tools/call params: %s", err)
			}
		}
	}
	switch {
	case method == "notifications/roots/list_changed":
		return bad("roots are fixed by the gateway: the session's workspace is its only root")
	case hasID && requestMethods[method], !hasID && notificationMethods[method]:
		return nil
	}
	e := bad("method %q is not served by this proxy", method)
	e.Code = CodeMethodNotFound
	return e
}

// callParamKeys are the members of tools/call params, spelled exactly: the
// SDK's parser would read "Name" as name, and the proxy decides on the
// catalog entry the SDK dispatches to.
var callParamKeys = map[string]bool{"name": true, "arguments": true, "_meta": true}

func checkCallParams(p []byte) error {
	members, err := objectMembers(bytes.TrimSpace(p))
	if err != nil {
		return err
	}
	for k := range members {
		if !callParamKeys[k] {
			return fmt.Errorf("unexpected member %q (the members are name, arguments and _meta)", k)
		}
	}
	var name string
	if json.Unmarshal(members["name"], &name) != nil || name == "" {
		return errors.New(`"name" must be a non-empty string`)
	}
	return nil
}

// objectMembers splits a JSON object into its raw members, refusing
// anything else, duplicate members and trailing data.
func objectMembers(msg []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad member name")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := members[key]; dup {
			return nil, fmt.Errorf("member %q appears twice", key)
		}
		members[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

func validID(id json.RawMessage) bool {
	t := bytes.TrimSpace(id)
	if len(t) == 0 {
		return false
	}
	if t[0] == '"' {
		var s string
		return json.Unmarshal(t, &s) == nil
	}
	_, err := strconv.ParseFloat(string(t), 64)
	return err == nil
}

// RejectFunc is told of every message the intake refuses, so that the
// refusal is recorded; nil records nothing.
type RejectFunc func(*RPCError)

// Intake wraps an MCP streamable HTTP handler: it accepts POST (and DELETE,
// which ends an MCP session), reads
// the body up to max bytes, checks it with CheckMessage and answers a
// refusal itself with a JSON-RPC error (telling onReject); an accepted body
// is replayed to next.
func Intake(next http.Handler, max int64, onReject RejectFunc) http.Handler {
	if onReject == nil {
		onReject = func(*RPCError) {}
	}
	writeRPCError := func(w http.ResponseWriter, status int, e *RPCError) {
		onReject(e)
		writeRPCErrorResponse(w, status, e)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
		case http.MethodDelete:
			// Ends an MCP session; it carries no body.
			r.Body = http.NoBody
			next.ServeHTTP(w, r)
			return
		default:
			// A GET is how a streamable HTTP client asks for a stream of
			// server-initiated messages: the answer is no, and it is no
			// attack, so it is not recorded as one.
			w.Header().Set("Allow", "POST, DELETE")
			writeRPCErrorResponse(w, http.StatusMethodNotAllowed, &RPCError{Code: CodeInvalidRequest,
				Message: "only POST is served: this endpoint sends no server-initiated messages"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeRPCError(w, http.StatusRequestEntityTooLarge, &RPCError{Code: CodeInvalidRequest,
					Message: fmt.Sprintf("message larger than %d bytes", max)})
				return
			}
			writeRPCError(w, http.StatusBadRequest, &RPCError{Code: CodeParseError, Message: "could not read the request body"})
			return
		}
		if rerr := CheckMessage(body, max); rerr != nil {
			writeRPCError(w, http.StatusBadRequest, rerr)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

func writeRPCErrorResponse(w http.ResponseWriter, status int, e *RPCError) {
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
