package parachute.tool_test

import data.parachute.fixtures
import data.parachute.tool

decide(x) := d if {
	d := tool.decision with input as x with data.parachute.config as fixtures.config
}

ws := fixtures.member_session.workspace

with_session(call, fields) := object.union(call, {"session": object.union(call.session, fields)})

test_read_inside_workspace_allowed_with_rate_limit if {
	d := decide(fixtures.tool_call("read_file", "read", [fixtures.path("notes.md", "notes.md", "read")]))
	d.allow
	d.rate_limits == [{"key": "tool:session-1", "rate": 2, "burst": 30}]
}

test_write_inside_workspace_allowed if {
	decide(fixtures.tool_call("write_file", "write", [fixtures.path("a/b.md", "a/b.md", "write")])).allow
}

test_tool_without_paths_allowed if decide(fixtures.tool_call("list_allowed_directories", "read", [])).allow

# Scenario 1 of the guide: reading outside the workspace.
test_path_outside_workspace if {
	p := {"arg": "path", "raw": "/vault/secrets.txt", "resolved": "secrets.txt", "inside_workspace": false, "access": "read", "error": ""}
	decide(fixtures.tool_call("read_file", "read", [p])).reasons == ["path-outside-workspace"]
}

# Defense in depth: the policy checks the resolved path itself.
test_inside_flag_alone_is_not_trusted if {
	p := {"arg": "path", "raw": "x", "resolved": "users/other/x", "inside_workspace": true, "access": "read", "error": ""}
	decide(fixtures.tool_call("read_file", "read", [p])).reasons == ["path-outside-workspace"]
}

test_sibling_prefix_is_outside if {
	p := {"arg": "path", "raw": "x", "resolved": concat("", [ws, "_evil/x"]), "inside_workspace": true, "access": "read", "error": ""}
	decide(fixtures.tool_call("read_file", "read", [p])).reasons == ["path-outside-workspace"]
}

test_workspace_root_itself_is_inside if {
	p := {"arg": "path", "raw": ".", "resolved": ws, "inside_workspace": true, "access": "read", "error": ""}
	decide(fixtures.tool_call("list_directory", "read", [p])).allow
}

test_one_bad_path_denies_the_call if {
	bad := {"arg": "paths[1]", "raw": "../../x", "resolved": "x", "inside_workspace": false, "access": "read", "error": ""}
	decide(fixtures.tool_call("read_multiple_files", "read", [fixtures.path("a", "a", "read"), bad])).reasons == ["path-outside-workspace"]
}

test_move_with_bad_destination if {
	src := fixtures.path("a", "a", "write")
	dst := {"arg": "destination", "raw": "/etc/x", "resolved": "", "inside_workspace": false, "access": "write", "error": "outside the vault"}
	d := decide(fixtures.tool_call("move_file", "write", [src, dst]))
	"invalid-path" in d.reasons
	"path-outside-workspace" in d.reasons
}

test_unresolvable_path if {
	p := {"arg": "path", "raw": "a\u0000b", "inside_workspace": false, "access": "read", "error": "NUL in path"}
	"invalid-path" in decide(fixtures.tool_call("read_file", "read", [p])).reasons
}

# Read-only bot mode refuses every write.
test_read_only_refuses_writes if {
	call := with_session(fixtures.tool_call("write_file", "write", [fixtures.path("a", "a", "write")]), {"read_only": true})
	decide(call).reasons == ["read-only-mode"]
}

test_read_only_allows_reads if {
	decide(with_session(fixtures.tool_call("read_file", "read", [fixtures.path("a", "a", "read")]), {"read_only": true})).allow
}

test_missing_read_only_refuses_writes if {
	call := fixtures.tool_call("create_directory", "write", [fixtures.path("d", "d", "write")])
	call2 := json.remove(call, ["session/read_only"])
	decide(call2).reasons == ["read-only-mode"]
}

test_write_path_in_read_tool_is_a_write if {
	call := with_session(fixtures.tool_call("custom", "read", [fixtures.path("a", "a", "write")]), {"read_only": true})
	decide(call).reasons == ["read-only-mode"]
}

# Scenario 3 of the guide: nothing writes a hook, in any spelling, at any trust level.
test_hooks_writes_denied_in_every_spelling if {
	every rel in [
		".parachute/hooks/pre-session.sh",
		".PARACHUTE/Hooks/pre-session.sh",
		".Parachute/HOOKS",
		".parachute//hooks/",
		"./.parachute/hooks/x",
		"sub/.parachute/hooks/x",
		".parachute",
		".parachute/",
	] {
		"hooks-write-forbidden" in decide(fixtures.tool_call("write_file", "write", [fixtures.path(rel, rel, "write")])).reasons
	}
}

test_hooks_raw_path_checked_too if {
	p := object.union(fixtures.path("x", "x", "write"), {"raw": "/workspace/.parachute/hooks/x"})
	decide(fixtures.tool_call("write_file", "write", [p])).reasons == ["hooks-write-forbidden"]
}

test_hooks_denied_even_for_direct_owner if {
	call := with_session(fixtures.tool_call("write_file", "write", [fixtures.path(".parachute/hooks/x", ".parachute/hooks/x", "write")]), {"trust_level": "direct", "role": "owner"})
	decide(call).reasons == ["hooks-write-forbidden"]
}

test_hooks_move_out_denied if {
	src := fixtures.path(".parachute/hooks/x", ".parachute/hooks/x", "read")
	dst := fixtures.path("y", "y", "write")
	decide(fixtures.tool_call("move_file", "write", [src, dst])).reasons == ["hooks-write-forbidden"]
}

test_hooks_can_be_read if {
	decide(fixtures.tool_call("read_file", "read", [fixtures.path(".parachute/hooks/x", ".parachute/hooks/x", "read")])).allow
}

test_similar_names_are_not_hooks if {
	every rel in [".parachute-notes/hooks/x", "parachute/hooks/x", "notes/parachute", "a.parachute/b"] {
		decide(fixtures.tool_call("write_file", "write", [fixtures.path(rel, rel, "write")])).allow
	}
}

test_parachute_dir_read_only_through_tools if {
	every rel in [".parachute/config.json", ".parachute/hooksx/y", "sub/.PARACHUTE/x", ".Parachute/x"] {
		decide(fixtures.tool_call("write_file", "write", [fixtures.path(rel, rel, "write")])).reasons == ["parachute-dir-read-only"]
	}
}

test_parachute_dir_raw_path_checked_too if {
	p := object.union(fixtures.path("x", "x", "write"), {"raw": "/workspace/.parachute/x2"})
	decide(fixtures.tool_call("write_file", "write", [p])).reasons == ["parachute-dir-read-only"]
}

test_parachute_dir_can_be_read if {
	decide(fixtures.tool_call("read_file", "read", [fixtures.path(".parachute/config.json", ".parachute/config.json", "read")])).allow
}

test_read_only_refuses_every_non_read_class if {
	every a in ["write", "exec", "unknown"] {
		call := with_session(fixtures.tool_call("save_note", a, []), {"trust_level": "direct", "role": "owner", "read_only": true})
		"read-only-mode" in decide(call).reasons
	}
}

test_read_only_allows_read if {
	call := with_session(fixtures.tool_call("read_file", "read", []), {"read_only": true})
	decide(call).allow
}

test_unknown_tool_paths_count_as_written if {
	call := with_session(fixtures.tool_call("save_note", "unknown", [fixtures.path(".parachute/hooks/x", ".parachute/hooks/x", "read")]), {"trust_level": "direct", "role": "owner"})
	decide(call).reasons == ["hooks-write-forbidden"]
}

test_invalid_calls_refused_with_their_reason if {
	every r in ["invalid-arguments", "no-such-tool", "protocol-error"] {
		call := object.union(fixtures.tool_call("read_file", "read", []), {"invalid": {"reason": r, "detail": "x", "suppressed": 0}})
		decide(call).reasons == [r]
	}
}

test_invalid_call_with_odd_reason_refused if {
	call := object.union(fixtures.tool_call("read_file", "read", []), {"invalid": {"reason": "weird", "detail": "", "suppressed": 0}})
	decide(call).reasons == ["invalid-arguments"]
}

test_unapproved_tool_allowed_on_private_connector if {
	decide(unapproved_call).allow
}

unapproved_call := object.union(fixtures.tool_call("read_file", "read", []), {"tool": {"name": "read_file", "server": "fs", "access": "read", "changed": false, "unapproved": true}})

test_unapproved_tool_refused_where_role_requires_approval if {
	cfg := fixtures.prepare(object.union(fixtures.operator, {"roles": {"member": {"require_tool_approval": true}}}))
	d := tool.decision with input as unapproved_call with data.parachute.config as cfg
	d.reasons == ["tool-unapproved"]
}

test_unapproved_tool_refused_on_public_connector if {
	call := with_session(unapproved_call, {"connector": "matrix-demo", "role": "guest"})
	"tool-unapproved" in decide(call).reasons
}

test_unknown_tool_denied_when_sandboxed if {
	decide(fixtures.tool_call("mystery", "unknown", [])).reasons == ["unknown-tool"]
}

test_exec_tool_denied_when_sandboxed if {
	decide(fixtures.tool_call("run_command", "exec", [])).reasons == ["exec-tool-sandboxed"]
}

test_allowlisted_tool_allowed if {
	cfg := fixtures.prepare(json.patch(fixtures.operator, [{"op": "add", "path": "/roles/member", "value": {"tools": ["mystery"]}}]))
	d := tool.decision with input as fixtures.tool_call("mystery", "unknown", []) with data.parachute.config as cfg
	d.allow
}

test_direct_session_may_call_unknown_and_exec if {
	decide(with_session(fixtures.tool_call("mystery", "unknown", []), {"trust_level": "direct"})).allow
	decide(with_session(fixtures.tool_call("run_command", "exec", []), {"trust_level": "direct"})).allow
}

test_invalid_access_class if {
	decide(fixtures.tool_call("x", "admin", [])).reasons == ["invalid-tool"]
	d := decide(json.remove(fixtures.tool_call("x", "read", []), ["tool"]))
	"invalid-tool" in d.reasons
}

# Workspace ACLs, re-checked on every call.
team_call(identity, acc) := c if {
	base := fixtures.tool_call("write_file", acc, [{
		"arg": "path", "raw": "a", "resolved": "workspaces/team/a",
		"inside_workspace": true, "access": acc, "error": "",
	}])
	c := with_session(base, {"workspace": "workspaces/team", "identity": identity})
}

test_shared_workspace_member_may_write if decide(team_call("discord:111222333444555666", "write")).allow

test_removed_member_loses_access_mid_session if {
	decide(team_call("discord:42", "read")).reasons == ["workspace-acl"]
}

test_read_only_member_cannot_write if {
	decide(team_call("discord:777888999000111222", "write")).reasons == ["read-only-mode"]
	decide(team_call("discord:777888999000111222", "read")).allow
}

test_invite_binding_grants_workspace if {
	c := with_session(team_call("telegram:42", "write"), {"binding": {"role": "member", "workspace": "team", "source": "invite"}})
	decide(c).allow
}

test_read_only_workspace_refuses_writes if {
	c := fixtures.tool_call("write_file", "write", [{
		"arg": "path", "raw": "a", "resolved": "workspaces/archive/a",
		"inside_workspace": true, "access": "write", "error": "",
	}])
	decide(with_session(c, {"workspace": "workspaces/archive"})).reasons == ["read-only-mode"]
}

test_unknown_shared_workspace if {
	c := with_session(fixtures.tool_call("read_file", "read", []), {"workspace": "workspaces/gone"})
	decide(c).reasons == ["workspace-acl"]
}

test_invalid_session_workspace if {
	every w in ["", "users", "users/../x", "/"] {
		"invalid-workspace" in decide(with_session(fixtures.tool_call("read_file", "read", []), {"workspace": w})).reasons
	}
}

test_missing_input_denied if {
	d := decide({})
	not d.allow
	"invalid-workspace" in d.reasons
	"invalid-tool" in d.reasons
}

test_changed_tool_denied if {
	call := fixtures.tool_call("read_file", "read", [fixtures.path("notes.md", "notes.md", "read")])
	d := decide(object.union(call, {"tool": object.union(call.tool, {"changed": true})}))
	d.reasons == ["tool-changed"]
}

test_unchanged_flag_false_allowed if {
	call := fixtures.tool_call("read_file", "read", [fixtures.path("notes.md", "notes.md", "read")])
	decide(object.union(call, {"tool": object.union(call.tool, {"changed": false})})).allow
}

test_on_host_upstream_refused_on_public_connector if {
	call := with_session(object.union(fixtures.tool_call("read_file", "read", []), {"tool": {"on_host": true}}), {"connector": "matrix-demo", "role": "guest"})
	"upstream-on-host" in decide(call).reasons
}

test_on_host_upstream_allowed_on_private_connector if {
	decide(object.union(fixtures.tool_call("read_file", "read", []), {"tool": {"on_host": true}})).allow
}
