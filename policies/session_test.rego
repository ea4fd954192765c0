package parachute.session_test

import data.parachute.fixtures
import data.parachute.session

decide(x) := d if {
	d := session.decision with input as {"session": x} with data.parachute.config as fixtures.config
}

test_member_gets_default_profile_with_role_limits if {
	d := decide(fixtures.member_session)
	d.allow
	d.runtime == "containerd"
	d.seccomp_profile == "default"
	d.memory_mb == 1024
	d.pids == 256
	d.cpus == 1
	d.tmpfs_mb == 128
	d.turn_timeout_seconds == 300
	d.network
	not d.hooks
	not d.read_only
}

test_guest_gets_strict_profile if {
	d := decide(object.union(fixtures.member_session, {"role": "guest"}))
	d.seccomp_profile == "strict"
	d.memory_mb == 512
}

test_public_connector_gets_strict_profile if {
	d := decide(fixtures.session("public-net", "discord:5", "member", "sandboxed", "users/discord%3A5"))
	d.allow
	d.seccomp_profile == "strict"
}

test_unverified_gets_strict_profile if {
	decide(object.union(fixtures.member_session, {"unverified": true})).seccomp_profile == "strict"
}

test_custom_role_gets_strict_profile_and_guest_limits if {
	d := decide(object.union(fixtures.member_session, {"role": "reviewer"}))
	d.seccomp_profile == "strict"
	d.memory_mb == 512
}

test_network_needs_connector_and_role if {
	not decide(object.union(fixtures.member_session, {"network": false})).network
	pub := fixtures.session("matrix-demo", "matrix:@a:b", "guest", "sandboxed", "users/matrix%3A%40a%3Ab")
	not decide(pub).network
}

test_direct_owner_runs_direct_with_hooks if {
	d := decide(object.union(fixtures.owner_session, {"trust_level": "direct"}))
	d.allow
	d.runtime == "direct"
	d.hooks
}

# Scenario 3 of the guide: hooks never run for sandboxed sessions.
test_sandboxed_owner_never_runs_hooks if {
	d := decide(fixtures.owner_session)
	d.allow
	d.runtime == "containerd"
	not d.hooks
}

test_direct_never_on_public_bot if {
	d := decide(fixtures.session("public-direct", "telegram:1", "owner", "direct", "users/telegram%3A1"))
	not d.allow
	"direct-trust-public-bot" in d.reasons
}

test_direct_needs_owner_role if {
	d := decide(object.union(fixtures.owner_session, {"trust_level": "direct", "role": "member"}))
	d.reasons == ["direct-trust-not-permitted"]
}

test_direct_needs_identity_among_owners if {
	s := fixtures.session("telegram-private", "telegram:42", "owner", "direct", "users/telegram%3A42")
	decide(s).reasons == ["direct-trust-not-permitted"]
}

test_direct_needs_allow_direct if {
	s := fixtures.session("discord-team", "discord:111222333444555666", "owner", "direct", "users/x")
	decide(s).reasons == ["direct-trust-not-permitted"]
}

test_direct_refused_for_unverified if {
	d := decide(object.union(fixtures.owner_session, {"trust_level": "direct", "unverified": true}))
	d.reasons == ["direct-trust-not-permitted"]
}

test_invalid_trust_level if {
	decide(object.union(fixtures.member_session, {"trust_level": "root"})).reasons == ["invalid-trust-level"]
}

test_workspace_must_be_clean if {
	every ws in ["", "/etc", "users/../etc", "users/..", "users/.", "users/a/b", "workspaces/Team", "workspaces/../x", "vault"] {
		"invalid-workspace" in decide(object.union(fixtures.member_session, {"workspace": ws})).reasons
	}
	decide(object.union(fixtures.member_session, {"workspace": "workspaces/team"})).allow
}

test_read_only_connector_mounts_read_only_whatever_the_session_says if {
	d := decide(fixtures.session("readonly-bot", "discord:9", "member", "sandboxed", "users/discord%3A9"))
	d.allow
	d.read_only
}

test_read_only_unless_said_otherwise if {
	decide(object.remove(fixtures.member_session, ["read_only"])).read_only
	decide(object.union(fixtures.member_session, {"read_only": "no"})).read_only
	decide(object.union(fixtures.member_session, {"read_only": true})).read_only
}

test_unknown_connector if {
	decide(object.union(fixtures.member_session, {"connector": "nope"})).reasons == ["unknown-connector"]
}

test_missing_session_denied if {
	d := decide({})
	not d.allow
	"invalid-session" in d.reasons
	"invalid-workspace" in d.reasons
	"unknown-connector" in d.reasons
}

test_empty_session_id_denied if {
	decide(object.union(fixtures.member_session, {"id": ""})).reasons == ["invalid-session"]
}

# Runtime classes: gvisor for guests, public connectors, unverified senders
# and unknown roles; runc for members and owners; data can change a role's.
test_runtime_class_by_role_and_connector if {
	decide(fixtures.member_session).runtime_class == "runc"
	decide(object.union(fixtures.owner_session, {"trust_level": "sandboxed"})).runtime_class == "runc"
	decide(object.union(fixtures.member_session, {"role": "guest"})).runtime_class == "gvisor"
	decide(object.union(fixtures.member_session, {"unverified": true})).runtime_class == "gvisor"
	decide(object.union(fixtures.member_session, {"role": "reviewer"})).runtime_class == "gvisor"
	decide(fixtures.session("public-net", "discord:5", "member", "sandboxed", "users/discord%3A5")).runtime_class == "gvisor"
}

role_decide(role, settings) := d if {
	cfg := object.union(fixtures.config, {"roles": {role: object.union(fixtures.config.roles[role], settings)}})
	d := session.decision with input as {"session": object.union(fixtures.member_session, {"role": role})}
		with data.parachute.config as cfg
}

test_runtime_class_from_data if {
	role_decide("member", {"runtime_class": "gvisor"}).runtime_class == "gvisor"
	role_decide("guest", {"runtime_class": "runc"}).runtime_class == "runc"
}

test_public_connector_gvisor_whatever_the_role_says if {
	cfg := object.union(fixtures.config, {"roles": {"member": object.union(fixtures.config.roles.member, {"runtime_class": "runc"})}})
	d := session.decision with input as {"session": fixtures.session("public-net", "discord:5", "member", "sandboxed", "users/discord%3A5")}
		with data.parachute.config as cfg
	d.runtime_class == "gvisor"
}

test_invalid_runtime_class_denied if {
	d := role_decide("member", {"runtime_class": "rnuc"})
	not d.allow
	"invalid-runtime-class" in d.reasons
	"invalid-runtime-class" in role_decide("member", {"runtime_class": 1}).reasons
}

test_disk_mb_from_role if {
	decide(fixtures.member_session).disk_mb == 1024
	decide(object.union(fixtures.owner_session, {"trust_level": "sandboxed"})).disk_mb == 0
	decide(object.union(fixtures.member_session, {"role": "guest"})).disk_mb == 256
	role_decide("member", {"disk_mb": 0}).disk_mb == 0
	"invalid-disk-mb" in role_decide("member", {"disk_mb": -1}).reasons
	"invalid-disk-mb" in role_decide("member", {"disk_mb": "10"}).reasons
}
