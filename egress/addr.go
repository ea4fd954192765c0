package egress

import "net/netip"

// Public reports whether addr is a public unicast address the proxy may
// connect a sandbox to.
//
// IPv4: everything but the special-purpose ranges of RFC 6890 and its
// successors (loopback, private, link-local, CGNAT, "this network",
// IETF protocol assignments, documentation, benchmarking, the deprecated
// 6to4 relay anycast, multicast, reserved and broadcast).
//
// IPv6: only the global unicast block 2000::/3 can be public, which leaves
// out loopback, unspecified, IPv4-compatible (::a.b.c.d), SIIT
// (::ffff:0:a.b.c.d), discard (100::/64), unique local, link-local,
// site-local (fec0::/10), multicast and SRv6 SIDs (5f00::/16) at once.
// Inside 2000::/3, the IETF protocol assignments 2001::/23 (Teredo, ORCHID,
// benchmarking and others), documentation (2001:db8::/32, 3fff::/20) are
// refused. Two forms embed an IPv4 address and are public only when it is:
// 6to4 (2002:a.b.c.d::/48) and NAT64 well-known (64:ff9b::a.b.c.d, the one
// IPv6 form outside 2000::/3 let through, because DNS64 hands it out for
// every IPv4-only site on an IPv6-only network). NAT64 local-use
// (64:ff9b:1::/48) translates to whatever the operator's translator
// reaches and is refused. An IPv4-mapped address (::ffff:a.b.c.d) is its
// IPv4 address: that is where a dial goes.
//
// An address with a zone (fe80::1%eth0) is never public.
func Public(addr netip.Addr) bool {
	if !addr.IsValid() || addr.Zone() != "" {
		return false
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return public4(addr)
	}
	if nat64.Contains(addr) {
		return public4(embedded(addr, 12))
	}
	if !globalUnicast6.Contains(addr) {
		return false
	}
	if sixToFour.Contains(addr) {
		return public4(embedded(addr, 2))
	}
	for _, p := range special6 {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

func public4(a netip.Addr) bool {
	for _, p := range special4 {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// embedded returns the IPv4 address at byte offset off of a 16-byte address.
func embedded(a netip.Addr, off int) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte{b[off], b[off+1], b[off+2], b[off+3]})
}

var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// special4 are the IPv4 ranges that are not public (IANA IPv4
// Special-Purpose Address Registry, plus multicast and reserved).
var special4 = prefixes(
	"0.0.0.0/8",          // this network
	"10.0.0.0/8",         // private
	"100.64.0.0/10",      // CGNAT shared address space
	"127.0.0.0/8",        // loopback
	"169.254.0.0/16",     // link-local (cloud metadata at 169.254.169.254)
	"172.16.0.0/12",      // private
	"192.0.0.0/24",       // IETF protocol assignments
	"192.0.2.0/24",       // documentation TEST-NET-1
	"192.88.99.0/24",     // 6to4 relay anycast (deprecated)
	"192.168.0.0/16",     // private
	"198.18.0.0/15",      // benchmarking
	"198.51.100.0/24",    // documentation TEST-NET-2
	"203.0.113.0/24",     // documentation TEST-NET-3
	"224.0.0.0/4",        // multicast
	"240.0.0.0/4",        // reserved, and 255.255.255.255 broadcast
	"255.255.255.255/32", // (inside 240/4; named for the reader)
)

// special6 are the ranges inside 2000::/3 that are not public. 6to4 is
// handled by its embedded address.
var special6 = prefixes(
	"2001::/23",     // IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID(v2) 2001:10::/28, 2001:20::/28, …
	"2001:db8::/32", // documentation
	"3fff::/20",     // documentation (RFC 9637)
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
