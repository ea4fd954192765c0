package mcpproxy

import (
	"slices"

	"github.com/parachute-gateway/parachute/engine"
)

// ReasonReadOnly is the policy reason of a write in a read-only workspace
// (the session's read_only, a read-only member of a shared workspace, or a
// shared workspace that is read-only for all).
const ReasonReadOnly = "read-only-mode"

// readOnlyReply is what a refused write says when policy gave no reply of
// its own: the user asked for something the workspace does not allow, not
// for a tool that does not exist.
const readOnlyReply = "this workspace is read-only for you: files can be listed and read, not created, changed or deleted; an operator can lift read-only mode"

// replyFor is the text a denial shows: policy's reply, or the Go side's
// explanation of a reason users meet often.
func replyFor(d *engine.Decision) string {
	if d.Reply != "" {
		return d.Reply
	}
	if slices.Contains(d.Reasons, ReasonReadOnly) {
		return readOnlyReply
	}
	return ""
}
