package parachute.lib_test

import data.parachute.fixtures
import data.parachute.lib

# One split of a path says which part of .parachute it names, however it is
# spelled.
test_area if {
	every path, want in {
		".parachute": "hooks",
		"./.PARACHUTE/": "hooks",
		"users/a/.parachute/hooks": "hooks",
		"users/a/.Parachute//Hooks/pre-session.sh": "hooks",
		".parachute/./hooks/x": "hooks",
		".parachute/config.yaml": "parachute",
		"a/.parachute/hooksx": "parachute",
		"a/parachute/hooks": "",
		"a/.parachutex/hooks": "",
		"A/.PaRaChUtE/HOOKS/x": "hooks",
		"notes/.parachute-old/hooks/x": "",
		"notes/today.md": "",
		"": "",
	} {
		lib.area(path) == want
	}
}

# A role nobody defined (a binding naming a role since removed from the
# config) gets the guest role as the operator configured it.
test_unknown_role_is_guest if {
	lib.role_settings("no-such-role") == fixtures.config.roles.guest with data.parachute.config as fixtures.config
	lib.role_settings("no-such-role").egress_hosts == ["api.example.com", "*.wiki.example.org"] with data.parachute.config as fixtures.config
}

# A role that is not built in starts from guest's defaults, not the
# operator's guest settings, and gets its rates.
test_named_role_starts_from_guest_defaults if {
	r := lib.role_settings("reviewer") with data.parachute.config as fixtures.config
	r.read_only == true
	r.egress_hosts == data.parachute.defaults.roles.guest.egress_hosts
	r.message_rate == data.parachute.defaults.roles.guest.messages_per_minute / 60
}

# No roles at all (data prepared by nobody): nothing to decide with, so the
# look-up is undefined and the decision a policy-error, never a default.
test_no_roles_is_undefined if {
	not lib.role_settings("member") with data.parachute.config as {}
}
