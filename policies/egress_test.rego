package parachute.egress_test

import data.parachute.egress
import data.parachute.fixtures

decide(x) := d if {
	d := egress.decision with input as x with data.parachute.config as fixtures.config
}

guest := object.union(fixtures.member_session, {"role": "guest", "network": true})

req(host, port) := {"session": guest, "host": host, "port": port}

test_listed_host_allowed if decide(req("api.example.com", 443)).allow

test_host_match_ignores_case if decide(req("API.Example.COM", 443)).allow

test_wildcard_matches_subdomains_only if {
	decide(req("en.wiki.example.org", 443)).allow
	decide(req("wiki.example.org", 443)).reasons == ["egress-host-not-allowed"]
	decide(req("evilwiki.example.org", 443)).reasons == ["egress-host-not-allowed"]
}

test_unlisted_host_denied if decide(req("exfil.example.net", 443)).reasons == ["egress-host-not-allowed"]

test_port_must_be_allowed if {
	decide(req("api.example.com", 22)).reasons == ["egress-port-not-allowed"]
	"egress-port-not-allowed" in decide(object.remove(req("api.example.com", 443), ["port"])).reasons
}

test_no_network_no_egress if {
	d := decide({"session": object.union(guest, {"network": false}), "host": "api.example.com", "port": 443})
	d.reasons == ["network-disabled"]
}

test_private_addresses_denied_even_if_listed if {
	cfg := fixtures.prepare(json.patch(fixtures.operator, [{"op": "add", "path": "/roles/guest/egress_hosts", "value": ["localhost", "127.0.0.1", "10.1.2.3", "::1", "169.254.169.254"]}]))
	every h in ["localhost", "127.0.0.1", "10.1.2.3", "::1", "169.254.169.254"] {
		d := egress.decision with input as req(h, 443) with data.parachute.config as cfg
		"egress-private-address" in d.reasons
	}
}

test_invalid_host if {
	"invalid-host" in decide(req("", 443)).reasons
	"invalid-host" in decide(object.remove(req("x", 443), ["host"])).reasons
}

test_sni_check_off_by_default if {
	d := decide(req("api.example.com", 443))
	d.allow
	d.require_sni == false
}

test_sni_check_per_role if {
	cfg := fixtures.prepare(json.patch(fixtures.operator, [{"op": "add", "path": "/roles/guest/egress_require_sni", "value": true}]))
	d := egress.decision with input as req("api.example.com", 443) with data.parachute.config as cfg
	d.require_sni == true
}

test_transition_literals_denied if {
	cfg := fixtures.prepare(json.patch(fixtures.operator, [{"op": "add", "path": "/roles/guest/egress_hosts", "value": ["::127.0.0.1", "fec0::1", "2001::1", "64:ff9b:1::a00:1"]}]))
	every h in ["::127.0.0.1", "fec0::1", "2001::1", "64:ff9b:1::a00:1"] {
		d := egress.decision with input as req(h, 443) with data.parachute.config as cfg
		"egress-private-address" in d.reasons
	}
}
