# Shared helpers for the Parachute entry points: operator data with safe
# defaults, built-in roles, identity escaping, workspace and path checks.
package parachute.lib

# Operator data from the gateway's config (data.parachute.config). Every key
# is optional; a missing key means "nothing configured", never "anything".
default config := {}

config := data.parachute.config

connectors := object.get(config, "connectors", {})

users := object.get(config, "users", {})

workspaces := object.get(config, "workspaces", {})

data_roles := object.get(config, "roles", {})

# Built-in roles. Operator data overlays them field by field; a role that is
# not built in starts from guest.
builtin_roles := {
	"owner": {
		"models": ["*"],
		"tokens_per_day": 2000000,
		"messages_per_minute": 60,
		"message_burst": 20,
		"tool_calls_per_minute": 600,
		"tool_call_burst": 100,
		"model_calls_per_minute": 120,
		"model_call_burst": 30,
		"network": true,
		"read_only": false,
		"tools": [],
		"egress_hosts": [],
		"egress_ports": [80, 443],
		"memory_mb": 2048,
		"cpus": 2,
		"pids": 512,
		"tmpfs_mb": 256,
		"turn_timeout_seconds": 600,
	},
	"member": {
		"models": ["*"],
		"tokens_per_day": 200000,
		"messages_per_minute": 20,
		"message_burst": 5,
		"tool_calls_per_minute": 120,
		"tool_call_burst": 30,
		"model_calls_per_minute": 30,
		"model_call_burst": 10,
		"network": true,
		"read_only": false,
		"tools": [],
		"egress_hosts": [],
		"egress_ports": [80, 443],
		"memory_mb": 1024,
		"cpus": 1,
		"pids": 256,
		"tmpfs_mb": 128,
		"turn_timeout_seconds": 300,
	},
	"guest": {
		"models": ["*"],
		"tokens_per_day": 20000,
		"messages_per_minute": 5,
		"message_burst": 3,
		"tool_calls_per_minute": 30,
		"tool_call_burst": 10,
		"model_calls_per_minute": 10,
		"model_call_burst": 3,
		"network": false,
		"read_only": false,
		"tools": [],
		"egress_hosts": [],
		"egress_ports": [443],
		"memory_mb": 512,
		"cpus": 0.5,
		"pids": 128,
		"tmpfs_mb": 64,
		"turn_timeout_seconds": 120,
	},
}

# role_settings is the effective settings of a role.
role_settings(name) := object.union(builtin_roles[name], object.get(data_roles, name, {})) if {
	builtin_roles[name]
} else := object.union(builtin_roles.guest, object.get(data_roles, name, {}))

# id_in reports whether a platform ID is in a list of IDs given as strings
# or numbers.
id_in(list, id) if {
	some x in list
	sprintf("%v", [x]) == id
}

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

# per_second turns a per-minute figure into a token-bucket rate.
per_second(per_minute) := per_minute / 60
