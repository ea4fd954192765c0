# Operator data and input builders shared by the policy tests. It mirrors the
# guide's scenarios: a private Telegram bot, a Discord team bot and a public
# Matrix demo bot, plus edge cases.
package parachute.fixtures

# operator is the operator data as config.PolicyData writes it: membership
# lists are objects keyed by ID.
operator := {
	"connectors": {
		"telegram-private": {
			"type": "telegram",
			"allowed_users": {"123456789": true},
			"owners": {"123456789": true},
			"allow_direct": true,
			"allow_hooks": true,
			"network_enabled": true,
		},
		"discord-team": {
			"type": "discord",
			"allowed_users": {"111222333444555666": true, "777888999000111222": true},
			"owners": {"111222333444555666": true},
			"network_enabled": true,
		},
		"matrix-demo": {"type": "matrix", "public": true, "network_enabled": false},
		"public-direct": {"type": "telegram", "public": true, "default_trust_level": "direct"},
		"no-pairing": {"type": "telegram", "pairing": false, "allowed_users": {"5": true}},
		"shared-group": {
			"type": "telegram",
			"allowed_users": {"7": true, "8": true},
			"shared_chat_sessions": true,
			"require_mention": false,
		},
		"readonly-bot": {"type": "discord", "read_only": true, "allowed_users": {"9": true}},
		"public-net": {"type": "discord", "public": true, "network_enabled": true},
	},
	"users": {
		"discord:777888999000111222": {"role": "reviewer"},
		"telegram:666": {"blocked": true},
		"discord:111222333444555666": {"workspace": "team"},
	},
	"roles": {
		"reviewer": {"read_only": true, "models": ["small-model"]},
		"guest": {"egress_hosts": ["api.example.com", "*.wiki.example.org"]},
	},
	"workspaces": {
		"team": {
			"members": {"discord:111222333444555666": true},
			"read_only_members": {"discord:777888999000111222": true},
		},
		"archive": {"members": {"discord:111222333444555666": true}, "read_only": true},
	},
}

# config is operator as policy sees it at data.parachute.config.
config := prepare(operator)

# prepare does what the engine does in Go when data is set (engine/data.go,
# whose tests check the two agree): every built-in and every named role is
# its defaults (guest's for a role that is not built in) overlaid by the
# operator's settings, with per-second rates.
prepare(op) := object.union(object.remove(op, ["roles"]), {"roles": prepared_roles(object.get(op, "roles", {}))})

prepared_roles(roles) := {name: with_rates(object.union(role_defaults(name), object.get(roles, name, {}))) |
	some name in (object.keys(data.parachute.defaults.roles) | object.keys(roles))
}

role_defaults(name) := r if {
	r := data.parachute.defaults.roles[name]
} else := data.parachute.defaults.roles.guest

with_rates(r) := object.union(r, {
	"message_rate": r.messages_per_minute / 60,
	"tool_call_rate": r.tool_calls_per_minute / 60,
	"model_call_rate": r.model_calls_per_minute / 60,
})

owner_tg := "telegram:123456789"

# msg builds a direct message from a platform user on a connector.
msg(connector, ctype, pid) := {
	"connector": connector,
	"connector_type": ctype,
	"sender": {"id": concat(":", [ctype, pid]), "platform_id": pid, "display_name": "someone"},
	"chat": {"id": "chat-1", "kind": "dm"},
	"mentioned": false,
	"unverified": false,
	"command": "",
	"text_length": 12,
}

# session builds session facts.
session(connector, identity, role, trust, workspace) := {
	"id": "session-1",
	"turn_id": "turn-1",
	"identity": identity,
	"connector": connector,
	"connector_type": substring(identity, 0, indexof(identity, ":")),
	"role": role,
	"trust_level": trust,
	"workspace": workspace,
	"read_only": false,
	"network": true,
	"unverified": false,
}

member_session := session("discord-team", "discord:111222333444555666", "member", "sandboxed", "users/discord%3A111222333444555666")

owner_session := session("telegram-private", owner_tg, "owner", "sandboxed", "users/telegram%3A123456789")

# path builds one resolved path argument inside the member's workspace.
path(raw, rel, acc) := {
	"arg": "path",
	"raw": raw,
	"resolved": concat("/", [member_session.workspace, rel]),
	"inside_workspace": true,
	"access": acc,
	"error": "",
}

tool_call(name, acc, paths) := {
	"session": member_session,
	"tool": {"name": name, "server": "vault", "access": acc},
	"paths": paths,
}
