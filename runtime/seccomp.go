package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultSeccompDir is where seccomp profiles are looked up by name:
// <dir>/<name>/profile.json.
const DefaultSeccompDir = "policies/seccomp"

// BaseContainerdDefault names containerd's default profile as the base of a
// short-form profile.
const BaseContainerdDefault = "containerd-default"

// SeccompProfile is the short form of a profile file: containerd's default
// profile with syscalls and socket families taken away. It can only remove
// permissions from the base, never add them.
type SeccompProfile struct {
	Base               string   `json:"base"`
	Comment            string   `json:"comment,omitempty"`
	DenySyscalls       []string `json:"deny_syscalls,omitempty"`
	DenySocketFamilies []string `json:"deny_socket_families,omitempty"`
	// DenyNetlinkProtocols takes netlink protocols away from an
	// AF_NETLINK the base allows (and deny_socket_families keeps).
	DenyNetlinkProtocols []string `json:"deny_netlink_protocols,omitempty"`
}

// netlinkProtocols maps the names a profile may use to their numbers.
var netlinkProtocols = map[string]uint64{
	"NETLINK_ROUTE": unix.NETLINK_ROUTE, "NETLINK_USERSOCK": unix.NETLINK_USERSOCK,
	"NETLINK_FIREWALL": unix.NETLINK_FIREWALL, "NETLINK_SOCK_DIAG": unix.NETLINK_SOCK_DIAG,
	"NETLINK_NFLOG": unix.NETLINK_NFLOG, "NETLINK_XFRM": unix.NETLINK_XFRM,
	"NETLINK_SELINUX": unix.NETLINK_SELINUX, "NETLINK_ISCSI": unix.NETLINK_ISCSI,
	"NETLINK_AUDIT": unix.NETLINK_AUDIT, "NETLINK_FIB_LOOKUP": unix.NETLINK_FIB_LOOKUP,
	"NETLINK_CONNECTOR": unix.NETLINK_CONNECTOR, "NETLINK_NETFILTER": unix.NETLINK_NETFILTER,
	"NETLINK_IP6_FW": unix.NETLINK_IP6_FW, "NETLINK_DNRTMSG": unix.NETLINK_DNRTMSG,
	"NETLINK_KOBJECT_UEVENT": unix.NETLINK_KOBJECT_UEVENT, "NETLINK_GENERIC": unix.NETLINK_GENERIC,
	"NETLINK_SCSITRANSPORT": unix.NETLINK_SCSITRANSPORT, "NETLINK_ECRYPTFS": unix.NETLINK_ECRYPTFS,
	"NETLINK_RDMA": unix.NETLINK_RDMA, "NETLINK_CRYPTO": unix.NETLINK_CRYPTO,
	"NETLINK_SMC": unix.NETLINK_SMC,
}

// netlinkMaxProtocol bounds the protocols a netlink socket can have
// (MAX_LINKS in the kernel): socket() refuses any other with
// EPROTONOSUPPORT.
const netlinkMaxProtocol = 32

// socketFamilies maps the names a profile may use to their numbers.
var socketFamilies = map[string]uint64{
	"AF_UNIX": unix.AF_UNIX, "AF_INET": unix.AF_INET, "AF_INET6": unix.AF_INET6,
	"AF_NETLINK": unix.AF_NETLINK, "AF_PACKET": unix.AF_PACKET, "AF_KEY": unix.AF_KEY,
	"AF_VSOCK": unix.AF_VSOCK, "AF_ALG": unix.AF_ALG, "AF_BLUETOOTH": unix.AF_BLUETOOTH,
	"AF_XDP": unix.AF_XDP, "AF_CAN": unix.AF_CAN, "AF_TIPC": unix.AF_TIPC,
	"AF_RDS": unix.AF_RDS, "AF_SMC": unix.AF_SMC, "AF_KCM": unix.AF_KCM,
	"AF_QIPCRTR": unix.AF_QIPCRTR, "AF_MCTP": unix.AF_MCTP, "AF_PPPOX": unix.AF_PPPOX,
}

var (
	profileNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	syscallNameRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// seccompSource is a profile file as read: either the short form or a full
// OCI document used as-is.
type seccompSource struct {
	name  string
	short *SeccompProfile
	full  *specs.LinuxSeccomp
}

// loadSeccomp reads <dir>/<name>/profile.json. An unknown or malformed
// profile is an error wrapping ErrProfile: a sandbox never starts with less
// filtering than the policy named.
func loadSeccomp(dir, name string) (*seccompSource, error) {
	if !profileNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: seccomp profile name %q", ErrProfile, name)
	}
	if dir == "" {
		dir = DefaultSeccompDir
	}
	path := filepath.Join(dir, name, "profile.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: unknown seccomp profile %q (no %s)", ErrProfile, name, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: seccomp profile %q: %w", ErrProfile, name, err)
	}
	src, err := parseSeccomp(name, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrProfile, path, err)
	}
	return src, nil
}

// parseSeccomp decodes a profile strictly (unknown fields are errors, so a
// misspelt "deny_syscall" cannot silently deny nothing).
func parseSeccomp(name string, b []byte) (*seccompSource, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if _, ok := probe["defaultAction"]; ok {
		var full specs.LinuxSeccomp
		if err := dec.Decode(&full); err != nil {
			return nil, err
		}
		if full.DefaultAction == specs.ActAllow || full.DefaultAction == specs.ActLog {
			return nil, fmt.Errorf("defaultAction %s allows every syscall not listed", full.DefaultAction)
		}
		return &seccompSource{name: name, full: &full}, nil
	}
	var p SeccompProfile
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if p.Base != BaseContainerdDefault {
		return nil, fmt.Errorf("base %q: want %q or a full profile with defaultAction", p.Base, BaseContainerdDefault)
	}
	for _, s := range p.DenySyscalls {
		if !syscallNameRE.MatchString(s) {
			return nil, fmt.Errorf("deny_syscalls: bad syscall name %q", s)
		}
	}
	for _, f := range p.DenySocketFamilies {
		if _, ok := socketFamilies[f]; !ok {
			return nil, fmt.Errorf("deny_socket_families: unknown family %q", f)
		}
	}
	for _, n := range p.DenyNetlinkProtocols {
		if _, ok := netlinkProtocols[n]; !ok {
			return nil, fmt.Errorf("deny_netlink_protocols: unknown protocol %q", n)
		}
	}
	return &seccompSource{name: name, short: &p}, nil
}

// compose returns the filter for spec s. It must run after the process's
// capabilities are final: containerd's default profile allows more
// syscalls to a process holding CAP_SYS_ADMIN and others.
func (src *seccompSource) compose(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	if src.full != nil {
		cp := *src.full
		cp.Syscalls = slices.Clone(src.full.Syscalls)
		return &cp, nil
	}
	if s.Process == nil || s.Process.Capabilities == nil {
		return nil, errors.New("seccomp: process capabilities must be set before the profile")
	}
	prof := seccomp.DefaultProfile(s)
	prof.Syscalls = withoutSyscalls(prof.Syscalls, src.short.DenySyscalls)
	if len(src.short.DenySocketFamilies) > 0 || len(src.short.DenyNetlinkProtocols) > 0 {
		var err error
		if prof.Syscalls, err = withoutSocketFamilies(prof.Syscalls, src.short.DenySocketFamilies, src.short.DenyNetlinkProtocols); err != nil {
			return nil, err
		}
	}
	if a, ok := nativeArch[goruntime.GOARCH]; ok {
		// Only the native syscall ABI: 32-bit and x32 calls do not match
		// the filter's architecture and are refused. This closes
		// socketcall(2), whose arguments seccomp cannot see, and makes the
		// filter a third of the size (runc compiles it on every exec).
		prof.Architectures = []specs.Arch{a}
	}
	return prof, nil
}

// nativeArch maps GOARCH to its seccomp architecture.
var nativeArch = map[string]specs.Arch{
	"amd64": specs.ArchX86_64, "arm64": specs.ArchAARCH64, "riscv64": specs.ArchRISCV64,
	"ppc64le": specs.ArchPPC64LE, "s390x": specs.ArchS390X,
}

// allows reports whether a rule lets the call through (anything but an
// errno, trap or kill).
func allows(a specs.LinuxSeccompAction) bool {
	return a == specs.ActAllow || a == specs.ActLog || a == specs.ActTrace || a == specs.ActNotify
}

// withoutSyscalls removes names from every allowing rule. The profile's
// default action (errno EPERM) then answers those calls.
func withoutSyscalls(rules []specs.LinuxSyscall, deny []string) []specs.LinuxSyscall {
	out := rules[:0:0]
	for _, r := range rules {
		if allows(r.Action) {
			r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(deny, n) })
			if len(r.Names) == 0 {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// withoutSocketFamilies rewrites the base's socket(2) rules (one
// "domain == N" rule per family, or "domain < N" for a run starting at
// AF_UNIX) as one equality rule per family still allowed. A socket rule of
// any other shape is an error: we will not guess what it allows.
//
// With netlink protocols denied, AF_NETLINK becomes one rule per protocol
// still allowed, each matching the protocol argument's low 32 bits
// (masked equality). "protocol != N" would not do: seccomp compares all 64
// bits of the register and the kernel truncates it to an int, so
// 1<<32|N would pass the filter and open protocol N.
func withoutSocketFamilies(rules []specs.LinuxSyscall, deny, denyNetlink []string) ([]specs.LinuxSyscall, error) {
	denied := map[uint64]bool{}
	for _, f := range deny {
		denied[socketFamilies[f]] = true
	}
	var domains []uint64
	out := rules[:0:0]
	for _, r := range rules {
		if !slices.Contains(r.Names, "socket") || !allows(r.Action) {
			out = append(out, r)
			continue
		}
		if len(r.Names) != 1 || len(r.Args) != 1 || r.Args[0].Index != 0 {
			return nil, fmt.Errorf("seccomp: unexpected socket rule in base profile: %+v", r)
		}
		switch a := r.Args[0]; a.Op {
		case specs.OpEqualTo:
			domains = append(domains, a.Value)
		case specs.OpLessThan:
			for d := uint64(unix.AF_UNIX); d < a.Value; d++ {
				domains = append(domains, d)
			}
		default:
			return nil, fmt.Errorf("seccomp: unexpected socket rule operator %s in base profile", a.Op)
		}
	}
	noNetlink := map[uint64]bool{}
	for _, n := range denyNetlink {
		noNetlink[netlinkProtocols[n]] = true
	}
	slices.Sort(domains)
	for _, d := range slices.Compact(domains) {
		if denied[d] {
			continue
		}
		if d == unix.AF_NETLINK && len(noNetlink) > 0 {
			for proto := uint64(0); proto < netlinkMaxProtocol; proto++ {
				if noNetlink[proto] {
					continue
				}
				out = append(out, specs.LinuxSyscall{
					Names:  []string{"socket"},
					Action: specs.ActAllow,
					Args: []specs.LinuxSeccompArg{
						{Index: 0, Value: d, Op: specs.OpEqualTo},
						{Index: 2, Value: 0xffffffff, ValueTwo: proto, Op: specs.OpMaskedEqual},
					},
				})
			}
			continue
		}
		out = append(out, specs.LinuxSyscall{
			Names:  []string{"socket"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 0, Value: d, Op: specs.OpEqualTo}},
		})
	}
	return out, nil
}

// WithSeccompProfile sets the seccomp filter named by the session profile,
// read from <dir>/<name>/profile.json. Apply it after the capabilities.
func WithSeccompProfile(dir, name string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		src, err := loadSeccomp(dir, name)
		if err != nil {
			return err
		}
		prof, err := src.compose(s)
		if err != nil {
			return fmt.Errorf("%w: seccomp profile %q: %w", ErrProfile, name, err)
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		s.Linux.Seccomp = prof
		return nil
	}
}
