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

data_role(name) := r if {
	r := data.parachute.config.roles[name]
} else := {}

# Built-in roles live in policies/data.json (data.parachute.defaults): as
# stored data they are read, not rebuilt, on every decision. Operator data
# overlays them field by field; a role that is not built in starts from
# guest.
# role_settings is the effective settings of a role.
role_settings(name) := object.union(data.parachute.defaults.roles[name], data_role(name)) if {
	data.parachute.defaults.roles[name]
} else := object.union(data.parachute.defaults.roles.guest, data_role(name))

# builtin_role reports whether name is one of the built-in roles.
builtin_role(name) if data.parachute.defaults.roles[name]

# id_in reports whether a platform ID is in a list of IDs. IDs are strings:
# the gateway's config hands them to policy as written, so a Discord
# snowflake never passes through a float.
id_in(list, id) if id in list

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

# touches_hooks: the path is the .parachute folder itself or lies under a
# .parachute/hooks folder, at any depth, in any case.
touches_hooks(path) if {
	segs := segments(path)
	some i, s in segs
	s == ".parachute"
	i == count(segs) - 1
}

touches_hooks(path) if {
	segs := segments(path)
	some i, s in segs
	s == ".parachute"
	segs[i + 1] == "hooks"
}

# touches_parachute: the path is a .parachute folder or lies beneath one,
# at any depth, in any case.
touches_parachute(path) if ".parachute" in segments(path)

# per_second turns a per-minute figure into a token-bucket rate.
per_second(per_minute) := per_minute / 60
