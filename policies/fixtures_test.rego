# Operator data and input builders shared by the policy tests. It mirrors the
# guide's scenarios: a private Telegram bot, a Discord team bot and a public
# Matrix demo bot, plus edge cases.
package parachute.fixtures

config := {
	"connectors": {
		"telegram-private": {
			"type": "telegram",
			"allowed_users": ["123456789"],
			"owners": ["123456789"],
			"allow_direct": true,
			"allow_hooks": true,
			"network_enabled": true,
		},
		"discord-team": {
			"type": "discord",
			"allowed_users": ["111222333444555666", "777888999000111222"],
			"owners": ["111222333444555666"],
			"network_enabled": true,
		},
		"matrix-demo": {"type": "matrix", "public": true, "network_enabled": false},
		"public-direct": {"type": "telegram", "public": true, "default_trust_level": "direct"},
		"no-pairing": {"type": "telegram", "pairing": false, "allowed_users": ["5"]},
		"shared-group": {
			"type": "telegram",
			"allowed_users": ["7", "8"],
			"shared_chat_sessions": true,
			"require_mention": false,
		},
		"readonly-bot": {"type": "discord", "read_only": true, "allowed_users": ["9"]},
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
			"members": ["discord:111222333444555666"],
			"read_only_members": ["discord:777888999000111222"],
		},
		"archive": {"members": ["discord:111222333444555666"], "read_only": true},
	},
}

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
