# parachute.egress decides one outbound connection a sandboxed session asks
# the gateway's proxy for: allowed only when the session has network and the
# host is on its role's allowlist. See policies/README.md.
package parachute.egress

import data.parachute.lib

settings := lib.role_settings(input.session.role)

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

# A first line only: the proxy checks every literal and every resolved
# address against the full list (egress.Public), including the IPv6
# transition forms that embed an IPv4 address.
private_ranges := [
	"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
	"100.64.0.0/10", "0.0.0.0/8", "::/96", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10",
	"64:ff9b:1::/48", "2001::/23", "ff00::/8",
]

deny contains "network-disabled" if not input.session.network == true

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

# require_sni: the proxy reads the TLS ClientHello of a CONNECT tunnel and
# refuses it (egress-sni-mismatch) unless its server name is the CONNECT
# host. Off unless the role sets egress_require_sni: a tunnel that is not TLS
# then cannot be opened at all.
default require_sni := false

require_sni if settings.egress_require_sni == true

decision := {"allow": false, "reasons": sort(deny)} if {
	count(deny) > 0
} else := {"allow": true, "reasons": [], "require_sni": require_sni}
