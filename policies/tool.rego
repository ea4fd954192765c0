# parachute.tool decides one MCP tool call. The Go side resolves every path
# argument (symlinks included) against the vault and hands over both the raw
# string and the resolved vault-relative path; this policy decides on the
# resolved path and checks the raw one too. See policies/README.md.
package parachute.tool

import data.parachute.lib

# The input is read where it is used (input.tool.access == "exec"), not
# through an alias rule (access := input.tool.access): OPA's rule index
# skips a rule whose condition on the input fails without evaluating it, and
# cannot see through a rule. See policies/README.md, "Cost".
connector := data.parachute.config.connectors[input.session.connector]

settings := lib.role_settings(input.session.role)

# Anything that is not a read tool may change something: write, exec and
# unknown tools all count as writes (read-only mode refuses them whatever
# the trust level; their paths are checked as written paths).
is_write if input.tool.access != "read"

is_write if {
	some p in input.paths
	p.access == "write"
}

# A path is written when the tool writes or the path is marked written; a
# write tool's every path counts (move_file changes its source too).
written(_) if input.tool.access != "read"

written(p) if p.access == "write"

inside(p) if {
	p.inside_workspace == true
	lib.within(p.resolved, input.session.workspace)
}

allowlisted if input.tool.name in settings.tools

is_direct if input.session.trust_level == "direct"

slug := lib.shared_slug(input.session.workspace)

shared := data.parachute.config.workspaces[slug]

acl_member if shared.members[input.session.identity]

acl_member if shared.read_only_members[input.session.identity]

acl_member if input.session.binding.workspace == slug

# Negations only ever negate a rule: "not f(x)" is not true when x is
# undefined, and a missing field must deny.
workspace_ok if lib.valid_workspace(input.session.workspace)

name_ok if is_string(input.tool.name)

resolved_ok(p) if is_string(p.resolved)

deny contains "invalid-workspace" if not workspace_ok

deny contains "invalid-tool" if not name_ok

valid_access if input.tool.access in {"read", "write", "exec", "unknown"}

deny contains "invalid-tool" if not valid_access

# A call the Go side could not read (arguments that are not one strict
# JSON object or name an undeclared argument, a tool the catalog does not
# have, a refused protocol message) is refused with the reason it gives,
# and recorded like any other call.
invalid_reasons := {"invalid-arguments", "no-such-tool", "protocol-error"}

deny contains r if {
	r := input.invalid.reason
	r in invalid_reasons
}

deny contains "invalid-arguments" if {
	r := input.invalid.reason
	not r in invalid_reasons
}

deny contains "invalid-path" if {
	some p in input.paths
	p.error != ""
}

deny contains "invalid-path" if {
	some p in input.paths
	not resolved_ok(p)
}

deny contains "path-outside-workspace" if {
	some p in input.paths
	not inside(p)
}

deny contains "read-only-mode" if {
	is_write
	not input.session.read_only == false
}

deny contains "read-only-mode" if {
	is_write
	shared.read_only_members[input.session.identity]
}

deny contains "read-only-mode" if {
	is_write
	shared.read_only == true
}

# What each written path names, resolved and as sent, each split once:
# "hooks", "parachute" or "" (lib.area).
written_areas contains lib.area(x) if {
	some p in input.paths
	written(p)
	some x in [p.resolved, p.raw]
}

# Nothing, at any trust level, writes under .parachute/hooks.
deny contains "hooks-write-forbidden" if "hooks" in written_areas

# The rest of .parachute is the gateway's: read-only to sessions through
# tools, as it is mounted read-only in the sandbox.
deny contains "parachute-dir-read-only" if "parachute" in written_areas

# A tool whose definition changed since an operator approved it is refused
# until approved again (parachute mcp approve).
deny contains "tool-changed" if input.tool.changed == true

# An upstream the operator runs on the host (on_host) is code outside the
# walls: never for sessions of a public connector.
deny contains "upstream-on-host" if {
	input.tool.on_host == true
	connector.public == true
}

# A tool first seen on a server whose tools were already approved waits for
# `parachute mcp approve` on public connectors, and wherever the role says
# require_tool_approval.
requires_tool_approval if connector.public == true

requires_tool_approval if settings.require_tool_approval == true

deny contains "tool-unapproved" if {
	input.tool.unapproved == true
	requires_tool_approval
}

deny contains "unknown-tool" if {
	input.tool.access == "unknown"
	not is_direct
	not allowlisted
}

deny contains "exec-tool-sandboxed" if {
	input.tool.access == "exec"
	not is_direct
	not allowlisted
}

deny contains "workspace-acl" if {
	slug
	not shared
}

deny contains "workspace-acl" if {
	shared
	not acl_member
}

rate_limits := [{
	"key": concat(":", ["tool", input.session.id]),
	"rate": settings.tool_call_rate,
	"burst": settings.tool_call_burst,
}]

decision := {"allow": false, "reasons": sort(deny)} if {
	count(deny) > 0
} else := {"allow": true, "reasons": [], "rate_limits": rate_limits}
