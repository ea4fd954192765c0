# parachute.session decides whether a session may start and which sandbox it
# gets: runtime, seccomp profile, limits, network, hooks, workspace mount.
# It re-checks trust on its own: a session decision never trusts the message
# decision that led to it. See policies/README.md.
package parachute.session

import data.parachute.lib

connector := lib.connector(input.session.connector)

settings := lib.role_settings(input.session.role)

is_public if connector.public == true

# Direct trust, re-checked from the data: private connector, allow_direct,
# the identity among the connector's owners, a verified sender.
direct_ok if {
	not is_public
	connector.allow_direct == true
	input.session.role == "owner"
	connector.owners[lib.platform_id(input.session.identity)]
	not input.session.unverified == true
}

is_direct if {
	input.session.trust_level == "direct"
	direct_ok
}

deny contains "unknown-connector" if not connector

valid_trust if input.session.trust_level in {"sandboxed", "direct"}

known_role if lib.builtin_role(input.session.role)

deny contains "invalid-trust-level" if not valid_trust

deny contains "direct-trust-public-bot" if {
	input.session.trust_level == "direct"
	is_public
}

deny contains "direct-trust-not-permitted" if {
	input.session.trust_level == "direct"
	not direct_ok
}

# Negations only ever negate a rule: "not f(x)" is not true when x is
# undefined, and a missing field must deny.
workspace_ok if lib.valid_workspace(input.session.workspace)

session_ok if {
	is_string(input.session.id)
	input.session.id != ""
	is_string(input.session.identity)
	input.session.identity != ""
}

deny contains "invalid-workspace" if not workspace_ok

deny contains "invalid-session" if not session_ok

# Guests, public bots and unverified senders get the strict profile.
strict if input.session.role == "guest"

strict if is_public

strict if input.session.unverified == true

strict if not known_role

seccomp_profile := "default" if {
	not strict
} else := "strict"

runtime := "direct" if {
	is_direct
} else := "containerd"

# Vault hooks run on the host, so only for a direct owner session on a
# connector that allows them. Never for sandboxed.
default hooks := false

hooks if {
	is_direct
	connector.allow_hooks == true
}

default network := false

network if {
	input.session.network == true
	connector.network_enabled == true
	settings.network == true
}

# The workspace is mounted read-only unless the session says otherwise and
# the connector is not read-only: a shared chat's sandbox is decided with
# read_only false (its senders' writes are refused call by call), so the
# connector's read_only must hold here too.
read_only := false if {
	input.session.read_only == false
	not connector.read_only == true
} else := true

# The OCI runtime of the sandbox. gvisor (gVisor's user-space kernel: a
# host kernel bug is not reachable from the sandbox) is forced on public
# connectors, for unverified senders and for unknown roles; otherwise the
# role's runtime_class decides (data.json: gvisor for guests, runc for
# members and owners). A value other than runc or gvisor is refused, not
# guessed.
runtime_classes := {"runc", "gvisor"}

gvisor_forced if is_public

gvisor_forced if input.session.unverified == true

gvisor_forced if not known_role

runtime_class := "gvisor" if {
	gvisor_forced
} else := settings.runtime_class if {
	settings.runtime_class in runtime_classes
} else := "gvisor"

runtime_class_ok if settings.runtime_class in runtime_classes

deny contains "invalid-runtime-class" if not runtime_class_ok

# The workspace's size cap in MiB (0: none), enforced by the filesystem.
disk_mb_ok if {
	is_number(settings.disk_mb)
	settings.disk_mb >= 0
}

deny contains "invalid-disk-mb" if not disk_mb_ok

decision := {"allow": false, "reasons": sort(deny)} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reasons": [],
	"runtime": runtime,
	"seccomp_profile": seccomp_profile,
	"memory_mb": settings.memory_mb,
	"cpus": settings.cpus,
	"pids": settings.pids,
	"tmpfs_mb": settings.tmpfs_mb,
	"turn_timeout_seconds": settings.turn_timeout_seconds,
	"network": network,
	"hooks": hooks,
	"read_only": read_only,
	"runtime_class": runtime_class,
	"disk_mb": settings.disk_mb,
}
