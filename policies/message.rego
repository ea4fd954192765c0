# parachute.message decides an inbound chat message: who may talk, with which
# role, at which trust level, in which workspace, read-only or not, with
# network or not, under which rate limits. See policies/README.md.
package parachute.message

import data.parachute.lib

# Look-ups go straight to the one entry of the operator data they need
# (data.parachute.config, prepared by the gateway: see lib.rego), and the
# input is read where it is used rather than through aliases: each rule a
# decision consults is work on every decision that is not cached.
connector := data.parachute.config.connectors[input.connector]

user := u if {
	u := data.parachute.config.users[input.sender.id]
} else := {}

is_public if connector.public == true

is_dm if input.chat.kind == "dm"

# The identity is the platform user ID, checked against the connector it
# arrived on. Display names and message text never take part.
valid_identity if {
	is_string(input.sender.platform_id)
	input.sender.platform_id != ""
	connector.type == input.connector_type
	input.sender.id == concat(":", [input.connector_type, input.sender.platform_id])
}

is_owner if connector.owners[input.sender.platform_id]

is_allowed if connector.allowed_users[input.sender.platform_id]

has_binding if {
	is_string(input.binding.role)
	input.binding.role != ""
}

admitted if is_owner

admitted if is_allowed

admitted if has_binding

admitted if is_public

base_role := "owner" if {
	is_owner
} else := object.get(user, "role", object.get(connector, "default_role", "member")) if {
	is_allowed
} else := input.binding.role if {
	has_binding
} else := "guest"

# A sender the platform could not verify gets the lowest trust.
role := "guest" if {
	input.unverified == true
} else := base_role

settings := lib.role_settings(role)

# Trust: direct only for a private connector's owner, when it allows direct.
requested_trust := input.requested_trust_level if {
	input.requested_trust_level != ""
} else := connector.default_trust_level if {
	connector.default_trust_level
} else := "sandboxed"

direct_permitted if {
	not is_public
	is_owner
	connector.allow_direct == true
	not input.unverified == true
}

# A shared chat session runs one sandbox for every member: never direct,
# whoever speaks (the owner's DMs still may be).
trust_level := "direct" if {
	requested_trust == "direct"
	direct_permitted
	session_scope == "user"
} else := "sandboxed"

# Workspace: a named shared workspace if the sender is a member, else their
# own folder.
slug := input.requested_workspace if {
	input.requested_workspace != ""
} else := input.binding.workspace if {
	input.binding.workspace != ""
} else := user.workspace if {
	user.workspace != ""
} else := connector.workspace if {
	connector.workspace != ""
}

shared := data.parachute.config.workspaces[slug]

member if shared.members[input.sender.id]

member if shared.read_only_members[input.sender.id]

member if {
	shared
	input.binding.workspace == slug
}

# A shared chat session runs in the chat's own folder, never a member's.
workspace := lib.personal_workspace(concat(":", ["chat", input.connector, input.chat.id])) if {
	session_scope == "chat"
} else := concat("/", ["workspaces", slug]) if {
	shared
} else := lib.personal_workspace(input.sender.id)

default read_only := false

read_only if connector.read_only == true

read_only if settings.read_only == true

read_only if shared.read_only == true

read_only if shared.read_only_members[input.sender.id]

default network := false

network if {
	connector.network_enabled == true
	settings.network == true
	not input.unverified == true
}

session_scope := "chat" if {
	connector.shared_chat_sessions == true
	not is_dm
} else := "user"

rate_limits := [{
	"key": concat(":", ["message", input.sender.id]),
	"rate": settings.message_rate,
	"burst": settings.message_burst,
}]

default may_pair := false

may_pair if {
	connector
	not is_public
	object.get(connector, "pairing", true) == true
	valid_identity
	not admitted
}

# Denials.
deny contains "unknown-connector" if not connector

deny contains "identity-mismatch" if {
	connector
	not valid_identity
}

deny contains "unknown-user" if {
	valid_identity
	not admitted
}

deny contains "user-blocked" if user.blocked == true

# "not x in set" is not true when x is undefined, so membership is a rule of
# its own and the deny negates the rule.
valid_chat_kind if input.chat.kind in {"dm", "group", "channel"}

valid_trust if requested_trust in {"sandboxed", "direct"}

deny contains "invalid-chat-kind" if not valid_chat_kind

deny contains "not-mentioned" if {
	not is_dm
	object.get(connector, "require_mention", true) == true
	not input.mentioned == true
}

deny contains "invalid-trust-level" if not valid_trust

deny contains "direct-trust-public-bot" if {
	is_public
	requested_trust == "direct"
}

deny contains "direct-trust-public-bot" if {
	is_public
	connector.default_trust_level == "direct"
}

deny contains "direct-trust-not-permitted" if {
	not is_public
	input.requested_trust_level == "direct"
	not direct_permitted
}

deny contains "unknown-workspace" if {
	slug
	not shared
}

deny contains "workspace-acl" if {
	shared
	not member
}

# The reply tells a denied user what to do; the most useful reason wins.
reply := "" if {
	"not-mentioned" in deny
} else := "You have been blocked from using this bot." if {
	"user-blocked" in deny
} else := "You are not on this bot's list of users. Send /pair to ask its owner for access." if {
	may_pair
} else := "You are not on this bot's list of users. Ask its owner to add you or to send you an invite." if {
	"unknown-user" in deny
} else := "Direct trust is never available on a public bot." if {
	"direct-trust-public-bot" in deny
} else := "Direct trust is only for this bot's owner, and only when the bot allows it." if {
	"direct-trust-not-permitted" in deny
} else := sprintf("You are not a member of the workspace %q.", [slug]) if {
	"workspace-acl" in deny
} else := sprintf("There is no workspace %q.", [slug]) if {
	"unknown-workspace" in deny
} else := "This message could not be accepted." if {
	count(deny) > 0
} else := ""

# One decision rule: the deny object when any deny rule fired, else the
# allow object.
decision := {
	"allow": false,
	"reasons": sort(deny),
	"reply": reply,
	"may_pair": may_pair,
} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reasons": [],
	"reply": "",
	"may_pair": false,
	"role": role,
	"trust_level": trust_level,
	"workspace": workspace,
	"read_only": read_only,
	"network": network,
	"session_scope": session_scope,
	"rate_limits": rate_limits,
}
