package parachute.message_test

import data.parachute.fixtures
import data.parachute.message

decide(x) := d if {
	d := message.decision with input as x with data.parachute.config as fixtures.config
}

owner_msg := fixtures.msg("telegram-private", "telegram", "123456789")

stranger_msg := fixtures.msg("telegram-private", "telegram", "42")

# Scenario: private Telegram bot, its owner writes.
test_private_owner_allowed_sandboxed_by_default if {
	d := decide(owner_msg)
	d.allow
	d.role == "owner"
	d.trust_level == "sandboxed"
	d.workspace == "users/telegram%3A123456789"
	d.network
	not d.read_only
	d.session_scope == "user"
	d.rate_limits == [{"key": "message:telegram:123456789", "rate": 1, "burst": 20}]
}

test_owner_may_ask_for_direct if {
	d := decide(object.union(owner_msg, {"requested_trust_level": "direct"}))
	d.allow
	d.trust_level == "direct"
}

# Scenario 2 of the guide: someone else using the bot's chat is not in allowed_users.
test_stranger_on_private_bot_denied_and_told_to_pair if {
	d := decide(stranger_msg)
	not d.allow
	d.reasons == ["unknown-user"]
	d.may_pair
	contains(d.reply, "/pair")
}

test_stranger_on_bot_without_pairing_not_offered_pairing if {
	d := decide(fixtures.msg("no-pairing", "telegram", "42"))
	d.reasons == ["unknown-user"]
	not d.may_pair
	not contains(d.reply, "/pair")
}

test_numeric_allowed_user_ids_match if decide(fixtures.msg("no-pairing", "telegram", "5")).allow

# Hostile: a display name grants nothing, whatever it says.
test_display_name_admin_grants_nothing if {
	inp := json.patch(stranger_msg, [{"op": "replace", "path": "/sender/display_name", "value": "admin"}])
	decide(inp).reasons == ["unknown-user"]
}

test_display_name_of_owner_grants_nothing if {
	inp := json.patch(stranger_msg, [{"op": "replace", "path": "/sender/display_name", "value": "Owner (123456789)"}])
	decide(inp).reasons == ["unknown-user"]
}

test_identity_must_match_platform_id if {
	inp := json.patch(stranger_msg, [{"op": "replace", "path": "/sender/id", "value": fixtures.owner_tg}])
	decide(inp).reasons == ["identity-mismatch"]
}

test_identity_must_match_connector_type if {
	inp := object.union(fixtures.msg("telegram-private", "discord", "123456789"), {})
	decide(inp).reasons == ["identity-mismatch"]
}

test_platform_id_of_wrong_type_is_mismatch if {
	inp := json.patch(owner_msg, [{"op": "replace", "path": "/sender/platform_id", "value": 123456789}])
	"identity-mismatch" in decide(inp).reasons
}

test_missing_sender_denied if {
	d := decide(object.remove(owner_msg, ["sender"]))
	not d.allow
	"identity-mismatch" in d.reasons
}

test_empty_input_denied if {
	d := decide({})
	not d.allow
	"unknown-connector" in d.reasons
	"invalid-chat-kind" in d.reasons
}

test_unknown_connector_denied if {
	d := decide(fixtures.msg("nope", "telegram", "123456789"))
	d.reasons == ["unknown-connector"]
	not d.may_pair
}

test_no_config_denies_everyone if {
	d := message.decision with input as owner_msg
	not d.allow
	d.reasons == ["unknown-connector"]
}

# Scenario 1: public Matrix demo bot.
test_public_bot_stranger_is_sandboxed_guest if {
	d := decide(fixtures.msg("matrix-demo", "matrix", "@mallory:evil.example"))
	d.allow
	d.role == "guest"
	d.trust_level == "sandboxed"
	not d.network
	d.workspace == "users/matrix%3A%40mallory%3Aevil.example"
}

test_public_bot_never_direct if {
	d := decide(object.union(fixtures.msg("matrix-demo", "matrix", "@a:b"), {"requested_trust_level": "direct"}))
	not d.allow
	"direct-trust-public-bot" in d.reasons
	contains(d.reply, "public")
}

test_public_bot_with_direct_default_denies_all if {
	d := decide(fixtures.msg("public-direct", "telegram", "1"))
	d.reasons == ["direct-trust-public-bot"]
}

test_member_cannot_ask_for_direct if {
	d := decide(object.union(fixtures.msg("discord-team", "discord", "777888999000111222"), {"requested_trust_level": "direct"}))
	d.reasons == ["direct-trust-not-permitted"]
	contains(d.reply, "owner")
}

test_owner_without_allow_direct_cannot_ask_for_direct if {
	d := decide(object.union(fixtures.msg("discord-team", "discord", "111222333444555666"), {"requested_trust_level": "direct"}))
	d.reasons == ["direct-trust-not-permitted"]
}

test_unverified_owner_is_lowest_trust if {
	inp := object.union(owner_msg, {"unverified": true})
	d := decide(inp)
	d.allow
	d.role == "guest"
	not d.network
	decide(object.union(inp, {"requested_trust_level": "direct"})).reasons == ["direct-trust-not-permitted"]
}

test_invalid_trust_level if {
	decide(object.union(owner_msg, {"requested_trust_level": "root"})).reasons == ["invalid-trust-level"]
}

test_group_without_mention_is_silent if {
	inp := json.patch(owner_msg, [{"op": "replace", "path": "/chat/kind", "value": "group"}])
	d := decide(inp)
	d.reasons == ["not-mentioned"]
	d.reply == ""
}

test_group_with_mention_gets_own_session if {
	inp := json.patch(owner_msg, [
		{"op": "replace", "path": "/chat/kind", "value": "group"},
		{"op": "replace", "path": "/mentioned", "value": true},
	])
	d := decide(inp)
	d.allow
	d.session_scope == "user"
}

test_shared_chat_session_when_configured if {
	inp := json.patch(fixtures.msg("shared-group", "telegram", "7"), [{"op": "replace", "path": "/chat/kind", "value": "channel"}])
	d := decide(inp)
	d.allow
	d.session_scope == "chat"
}

test_shared_chat_is_never_direct if {
	conn := object.union(fixtures.config.connectors["shared-group"], {
		"owners": {"7": true},
		"allow_direct": true,
		"default_trust_level": "direct",
	})
	group := json.patch(fixtures.msg("shared-group", "telegram", "7"), [{"op": "replace", "path": "/chat/kind", "value": "group"}])
	d := message.decision with input as group
		with data.parachute.config as fixtures.config
		with data.parachute.config.connectors["shared-group"] as conn
	d.allow
	d.session_scope == "chat"
	d.trust_level == "sandboxed"
	d.workspace == "users/chat%3Ashared-group%3Achat-1"
	dm := message.decision with input as fixtures.msg("shared-group", "telegram", "7")
		with data.parachute.config as fixtures.config
		with data.parachute.config.connectors["shared-group"] as conn
	dm.trust_level == "direct"
}

test_invalid_chat_kind if {
	inp := json.patch(owner_msg, [{"op": "replace", "path": "/chat/kind", "value": "broadcast"}])
	"invalid-chat-kind" in decide(inp).reasons
}

test_blocked_user if {
	inp := object.union(fixtures.msg("matrix-demo", "matrix", "@x:y"), {})
	decide(inp).allow
	blocked := fixtures.msg("public-net", "discord", "1")
	decide(blocked).allow
	d := decide(object.union(fixtures.msg("telegram-private", "telegram", "666"), {"binding": {"role": "member", "workspace": "", "source": "pairing"}}))
	"user-blocked" in d.reasons
	contains(d.reply, "blocked")
}

# Token authentication: a paired or invited user holds a binding.
test_paired_user_admitted_with_bound_role if {
	d := decide(object.union(stranger_msg, {"binding": {"role": "member", "workspace": "", "source": "pairing"}}))
	d.allow
	d.role == "member"
	d.workspace == "users/telegram%3A42"
}

test_empty_binding_role_admits_nobody if {
	d := decide(object.union(stranger_msg, {"binding": {"role": "", "workspace": "", "source": "pairing"}}))
	d.reasons == ["unknown-user"]
}

test_invite_grants_its_workspace if {
	d := decide(object.union(stranger_msg, {"binding": {"role": "member", "workspace": "team", "source": "invite"}}))
	d.allow
	d.workspace == "workspaces/team"
}

# Workspace ACLs.
test_member_gets_configured_shared_workspace if {
	d := decide(fixtures.msg("discord-team", "discord", "111222333444555666"))
	d.allow
	d.role == "owner"
	d.workspace == "workspaces/team"
}

test_non_member_cannot_request_shared_workspace if {
	d := decide(object.union(owner_msg, {"requested_workspace": "team"}))
	d.reasons == ["workspace-acl"]
	contains(d.reply, "team")
}

test_unknown_workspace if {
	d := decide(object.union(owner_msg, {"requested_workspace": "secret"}))
	d.reasons == ["unknown-workspace"]
	contains(d.reply, "secret")
}

test_read_only_member_is_read_only if {
	d := decide(object.union(fixtures.msg("discord-team", "discord", "777888999000111222"), {"requested_workspace": "team"}))
	d.allow
	d.role == "reviewer"
	d.read_only
}

test_read_only_workspace if {
	d := decide(object.union(fixtures.msg("discord-team", "discord", "111222333444555666"), {"requested_workspace": "archive"}))
	d.allow
	d.read_only
}

test_read_only_bot_mode if {
	d := decide(fixtures.msg("readonly-bot", "discord", "9"))
	d.allow
	d.read_only
	d.role == "member"
}

test_role_read_only if {
	d := decide(fixtures.msg("discord-team", "discord", "777888999000111222"))
	d.read_only
}

test_connector_default_workspace if {
	cfg := fixtures.prepare(json.patch(fixtures.operator, [{"op": "add", "path": "/connectors/readonly-bot/workspace", "value": "team"}]))
	d := message.decision with input as fixtures.msg("readonly-bot", "discord", "9") with data.parachute.config as cfg
	d.reasons == ["workspace-acl"]
}

# Personal folders never collide, whatever the IDs look like.
test_personal_workspaces_are_injective if {
	a := decide(fixtures.msg("matrix-demo", "matrix", "@a_b:c")).workspace
	b := decide(fixtures.msg("matrix-demo", "matrix", "@a:b_c")).workspace
	a != b
	not contains(a, "/..")
}

test_hostile_platform_id_stays_one_folder if {
	d := decide(fixtures.msg("matrix-demo", "matrix", "../../etc"))
	d.allow
	d.workspace == "users/matrix%3A..%2F..%2Fetc"
}
