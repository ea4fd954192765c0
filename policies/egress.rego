# parachute.egress decides one outbound connection a sandboxed session asks
# the gateway's proxy for: allowed only when the session has network and the
# host is on its role's allowlist. See policies/README.md.
package parachute.egress

import data.parachute.lib

s := input.session

settings := lib.role_settings(s.role)

host := lower(input.host)

host_allowed if {
	some pattern in settings.egress_hosts
	matches(host, lower(pattern))
}

matches(h, pattern) if h == pattern

# "*.example.com" matches any subdomain, not example.com itself.
matches(h, pattern) if {
	startswith(pattern, "*.")
	endswith(h, substring(pattern, 1, -1))
}

# An IPv4 or IPv6 literal: "<ip>/32" is a valid CIDR for both families.
is_ip if net.cidr_is_valid(concat("/", [host, "32"]))

private_ranges := [
	"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
	"100.64.0.0/10", "0.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10",
]

deny contains "network-disabled" if not s.network == true

# Negations only ever negate a rule: "not f(x)" is not true when x is
# undefined, and a missing field must deny.
host_ok if {
	is_string(input.host)
	input.host != ""
}

deny contains "invalid-host" if not host_ok

deny contains "egress-host-not-allowed" if not host_allowed

port_allowed if input.port in settings.egress_ports

deny contains "egress-port-not-allowed" if not port_allowed

deny contains "egress-private-address" if host == "localhost"

deny contains "egress-private-address" if {
	is_ip
	some cidr in private_ranges
	net.cidr_contains(cidr, host)
}

decision := {"allow": false, "reasons": sort(deny)} if count(deny) > 0

decision := {"allow": true, "reasons": []} if count(deny) == 0
