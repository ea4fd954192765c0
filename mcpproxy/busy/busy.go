// Package busy is the one marker the gateway's MCP endpoint uses to say a
// request was shed because the gateway is saturated (a decision missed the
// engine's deadline: reason overloaded), and how a client recognises it.
//
// A shed tools/list or tools/call is answered with a JSON-RPC error of code
// Code, whose data is a Data. Nothing was run and nothing was listed: the
// client should try again after Data.RetryAfterSeconds, and should never
// read the answer as "no such tool" or as a policy denial. A tool denied
// for a policy reason is still a plain tool result with isError set.
//
// The package imports only the MCP SDK's jsonrpc types, so the agent that
// runs in the sandbox can use it without the gateway's engine.
package busy

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Code is the JSON-RPC error code of a request the gateway shed (in the
// implementation-defined server error range, -32000 to -32099).
const Code = -32050

// Reason is Data.Reason: the engine's reason for a decision cut by its
// deadline (engine.ReasonOverloaded).
const Reason = "overloaded"

// Data is the error data of a busy answer.
type Data struct {
	Reason            string `json:"reason"`
	RetryAfterSeconds int    `json:"retry_after_seconds"`
}

// Error is the JSON-RPC error a busy request is answered with.
func Error(retryAfter time.Duration) *jsonrpc.Error {
	secs := seconds(retryAfter)
	data, _ := json.Marshal(Data{Reason: Reason, RetryAfterSeconds: secs})
	return &jsonrpc.Error{
		Code:    Code,
		Message: fmt.Sprintf("the gateway is busy (%s): nothing was run; try again in %ds", Reason, secs),
		Data:    data,
	}
}

// From reports whether err is (or wraps) a busy answer, and how long the
// gateway asked the client to wait.
func From(err error) (time.Duration, bool) {
	var e *jsonrpc.Error
	if !errors.As(err, &e) || e.Code != Code {
		return 0, false
	}
	var d Data
	if json.Unmarshal(e.Data, &d) != nil || d.RetryAfterSeconds < 1 {
		d.RetryAfterSeconds = 1
	}
	return time.Duration(d.RetryAfterSeconds) * time.Second, true
}

// seconds rounds d up to whole seconds, at least one.
func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
