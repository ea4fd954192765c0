# Shared helpers for the Parachute entry points: operator data with safe
# defaults, built-in roles, identity escaping, workspace and path checks.
package parachute.lib

# Operator data from the gateway's config lives at data.parachute.config.
# Every key is optional; a missing key means "nothing configured", never
# "anything". Look-ups go straight to the one entry they need: a rule whose
# value is a whole section (every user) would be copied on every decision.
connector(name) := data.parachute.config.connectors[name]

user(identity) := data.parachute.config.users[identity]

workspace(slug) := data.parachute.config.workspaces[slug]

# Role settings as the gateway hands them over: data.parachute.config.roles
# holds every built-in role (policies/data.json, data.parachute.defaults)
# and every role the operator names, each already overlaid with the
# operator's settings (a role that is not built in starts from guest's
# defaults) and with per-second rates (message_rate, tool_call_rate,
# model_call_rate) computed from the per-minute figures. The engine does
# that once when data is set, not on every decision. A role nobody
# defined gets the guest role's settings.
role_settings(name) := r if {
	r := data.parachute.config.roles[name]
} else := data.parachute.config.roles.guest

# builtin_role reports whether name is one of the built-in roles.
builtin_role(name) if data.parachute.defaults.roles[name]

# Membership lists (a connector's allowed_users and owners, a workspace's
# members and read_only_members) are objects keyed by ID, {"123": true}:
# a look-up, not a scan. IDs are strings: the gateway's config hands them
# to policy as written, so a Discord snowflake never passes through a
# float, and a number never matches.

# platform_id is the part of an identity after "<type>:".
platform_id(identity) := substring(identity, indexof(identity, ":") + 1, -1) if {
	indexof(identity, ":") > 0
}

# personal_workspace is an identity's own folder. urlquery.encode is
# injective, so two identities never share a folder, and it leaves no "/".
personal_workspace(identity) := concat("/", ["users", urlquery.encode(identity)])

# valid_workspace: a vault-relative workspace the gateway may mount.
valid_workspace(ws) if {
	regex.match(`^users/[A-Za-z0-9%._~+-]+$`, ws)
	not ws in {"users/.", "users/.."}
}

valid_workspace(ws) if regex.match(`^workspaces/[a-z0-9][a-z0-9_-]{0,62}$`, ws)

# shared_slug is the slug of a shared workspace path.
shared_slug(ws) := substring(ws, count("workspaces/"), -1) if startswith(ws, "workspaces/")

# within reports whether path is root or lies beneath it. A sibling that
# merely shares the prefix ("users/ab" for "users/a") is not within.
within(path, root) if path == root

within(path, root) if startswith(path, concat("", [root, "/"]))

# segments of a path, lowercased, without empty and "." segments, so that
# ".PARACHUTE//Hooks/", "./.parachute/hooks" and ".parachute/hooks" agree.
segments(path) := [s | some s in split(lower(path), "/"); s != ""; s != "."]

# area is the part of a .parachute folder a path names, from one split of
# the path: "hooks" for the .parachute folder itself or anything under a
# .parachute/hooks folder, "parachute" for anything else beneath a
# .parachute folder, "" for neither; at any depth, in any case.
area(path) := segments_area(segments(path)) if {
	names_parachute(path)
} else := ""

# names_parachute: ".parachute" appears in path in some case. A path without
# it has no .parachute segment, so its area is "" without splitting it; a
# path with it (even as part of a longer name) is split and checked.
names_parachute(path) if contains(lower(path), ".parachute")

segments_area(segs) := "hooks" if {
	some i, s in segs
	s == ".parachute"
	hooks_at(segs, i)
} else := "parachute" if {
	".parachute" in segs
} else := ""

hooks_at(segs, i) if i == count(segs) - 1

hooks_at(segs, i) if segs[i + 1] == "hooks"
