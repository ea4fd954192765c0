package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/engine"
)

// seccompDir is the repository's own profile folder.
const testSeccompDir = "../policies/seccomp"

func testProfile(seccomp string) engine.SessionProfile {
	return engine.SessionProfile{
		Runtime: "containerd", Seccomp: seccomp, MemoryMB: 256, CPUs: 0.5,
		PIDs: 64, TmpfsMB: 32, ReadOnly: true,
	}
}

func testSpec(t *testing.T, p engine.SessionProfile) *specs.Spec {
	t.Helper()
	s, err := buildSpec(context.Background(), specInput{
		Namespace: "parachute", ID: "parachute-s1", Init: []string{"/parachute", "sandbox", "init"},
		Workspace: "/srv/ws/alice", SocketDir: "/run/parachute-gw/s1", Profile: p, SeccompDir: testSeccompDir,
	})
	if err != nil {
		t.Fatalf("buildSpec: %v", err)
	}
	return s
}

func TestSpecProcessWalls(t *testing.T) {
	s := testSpec(t, testProfile("default"))
	p := s.Process
	if p.User.UID != SandboxUID || p.User.GID != SandboxGID || len(p.User.AdditionalGids) != 0 {
		t.Errorf("user = %+v, want 65534:65534 without groups", p.User)
	}
	if !p.NoNewPrivileges {
		t.Error("NoNewPrivileges not set")
	}
	c := p.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable, "ambient": c.Ambient} {
		if len(set) != 0 {
			t.Errorf("capabilities %s = %v, want none", name, set)
		}
	}
	if s.Root == nil || !s.Root.Readonly {
		t.Error("root filesystem is not read-only")
	}
	if p.Terminal {
		t.Error("terminal set")
	}
}

func TestSpecNamespacesFresh(t *testing.T) {
	s := testSpec(t, testProfile("default"))
	var got []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s joins %s", ns.Type, ns.Path)
		}
		got = append(got, ns.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		if !slices.Contains(got, want) {
			t.Errorf("no fresh %s namespace", want)
		}
	}
}

func TestSpecLimits(t *testing.T) {
	s := testSpec(t, testProfile("default"))
	r := s.Linux.Resources
	if *r.Memory.Limit != 256<<20 || *r.Memory.Swap != *r.Memory.Limit {
		t.Errorf("memory limit %d swap %d, want both %d", *r.Memory.Limit, *r.Memory.Swap, 256<<20)
	}
	if *r.CPU.Quota != 50_000 || *r.CPU.Period != 100_000 {
		t.Errorf("cpu quota %d/%d, want 50000/100000", *r.CPU.Quota, *r.CPU.Period)
	}
	if *r.Pids.Limit != 64 {
		t.Errorf("pids %d, want 64", *r.Pids.Limit)
	}
}

func TestSpecRefusesMissingLimits(t *testing.T) {
	for _, mut := range []func(*engine.SessionProfile){
		func(p *engine.SessionProfile) { p.MemoryMB = 0 },
		func(p *engine.SessionProfile) { p.CPUs = 0 },
		func(p *engine.SessionProfile) { p.PIDs = 0 },
		func(p *engine.SessionProfile) { p.TmpfsMB = 0 },
		func(p *engine.SessionProfile) { p.Runtime = "direct" },
	} {
		p := testProfile("default")
		mut(&p)
		_, err := buildSpec(context.Background(), specInput{Namespace: "n", ID: "x", Init: []string{"/i"}, Workspace: "/w", Profile: p, SeccompDir: testSeccompDir})
		if !errors.Is(err, ErrProfile) {
			t.Errorf("profile %+v: err = %v, want ErrProfile", p, err)
		}
	}
}

func mountAt(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestSpecMountsOnlyOurs(t *testing.T) {
	for _, ro := range []bool{true, false} {
		p := testProfile("default")
		p.ReadOnly = ro
		s := testSpec(t, p)
		var dests []string
		for _, m := range s.Mounts {
			dests = append(dests, m.Destination)
			if m.Type == "bind" && !strings.HasPrefix(m.Source, "/srv/ws/alice") && m.Source != "/run/parachute-gw/s1" {
				t.Errorf("bind of unexpected host path %q", m.Source)
			}
		}
		want := []string{"/proc", "/dev", "/dev/pts", "/sys", "/tmp", "/workspace", "/workspace/.parachute", "/run/parachute"}
		if !slices.Equal(dests, want) {
			t.Errorf("mounts = %v, want exactly %v", dests, want)
		}
		ws := mountAt(s, "/workspace")
		if slices.Contains(ws.Options, "ro") != ro || slices.Contains(ws.Options, "rw") == ro {
			t.Errorf("read-only %v: workspace options %v", ro, ws.Options)
		}
		for _, d := range []string{"/workspace/.parachute", "/run/parachute", "/sys"} {
			if !slices.Contains(mountAt(s, d).Options, "ro") {
				t.Errorf("%s not read-only: %v", d, mountAt(s, d).Options)
			}
		}
		tmp := mountAt(s, "/tmp")
		for _, o := range []string{"nosuid", "nodev", "noexec", "size=32m"} {
			if !slices.Contains(tmp.Options, o) {
				t.Errorf("/tmp options %v lack %s", tmp.Options, o)
			}
		}
		if s.Mounts[len(s.Mounts)-3].Destination != "/workspace" {
			t.Error("the .parachute mount must come after the workspace it covers")
		}
	}
}

func TestSpecProcPaths(t *testing.T) {
	s := testSpec(t, testProfile("default"))
	for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys"} {
		if !slices.Contains(s.Linux.ReadonlyPaths, p) {
			t.Errorf("%s not read-only", p)
		}
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
}

// allowed reports whether the filter has an allowing rule for name with no
// argument conditions.
func allowed(f *specs.LinuxSeccomp, name string) bool {
	for _, r := range f.Syscalls {
		if allows(r.Action) && slices.Contains(r.Names, name) && len(r.Args) == 0 {
			return true
		}
	}
	return false
}

func socketAllowed(f *specs.LinuxSeccomp, family uint64) bool {
	for _, r := range f.Syscalls {
		if !allows(r.Action) || !slices.Contains(r.Names, "socket") {
			continue
		}
		if len(r.Args) == 0 {
			return true
		}
		a := r.Args[0]
		if (a.Op == specs.OpEqualTo && a.Value == family) || (a.Op == specs.OpLessThan && family < a.Value) {
			return true
		}
	}
	return false
}

func TestSeccompDefaultAndStrict(t *testing.T) {
	def := testSpec(t, testProfile("default")).Linux.Seccomp
	strict := testSpec(t, testProfile("strict")).Linux.Seccomp
	for _, f := range []*specs.LinuxSeccomp{def, strict} {
		if f.DefaultAction != specs.ActErrno {
			t.Fatalf("default action %s, want errno", f.DefaultAction)
		}
		for _, name := range []string{"mount", "unshare", "setns", "chroot", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup", "clone3"} {
			if allowed(f, name) {
				t.Errorf("%s allowed", name)
			}
		}
		if !allowed(f, "read") || !allowed(f, "execve") {
			t.Error("basic syscalls denied")
		}
		if !socketAllowed(f, unix.AF_UNIX) {
			t.Error("unix sockets denied")
		}
	}
	for _, f := range []*specs.LinuxSeccomp{def, strict} {
		if goruntime.GOARCH == "amd64" && !slices.Equal(f.Architectures, []specs.Arch{specs.ArchX86_64}) {
			t.Errorf("architectures %v, want only the native x86_64 ABI", f.Architectures)
		}
	}
	if !allowed(def, "ptrace") || !socketAllowed(def, unix.AF_INET) {
		t.Error("default profile should equal containerd's default (ptrace, AF_INET allowed)")
	}
	for _, name := range []string{"ptrace", "process_vm_readv", "process_vm_writev", "personality", "socketcall"} {
		if allowed(strict, name) {
			t.Errorf("strict allows %s", name)
		}
	}
	for _, r := range strict.Syscalls {
		if slices.Contains(r.Names, "personality") && allows(r.Action) {
			t.Errorf("strict keeps a personality rule %+v", r)
		}
	}
	for _, fam := range []uint64{unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK, unix.AF_PACKET, unix.AF_ALG, unix.AF_VSOCK} {
		if socketAllowed(strict, fam) {
			t.Errorf("strict allows socket family %d", fam)
		}
	}
	// clone with CLONE_NEWUSER: only the masked-equal rule that requires
	// every namespace flag clear may allow clone.
	for _, f := range []*specs.LinuxSeccomp{def, strict} {
		for _, r := range f.Syscalls {
			if slices.Contains(r.Names, "clone") && allows(r.Action) {
				if len(r.Args) != 1 || r.Args[0].Op != specs.OpMaskedEqual || r.Args[0].Value&unix.CLONE_NEWUSER == 0 || r.Args[0].ValueTwo != 0 {
					t.Errorf("clone allowed without the namespace mask: %+v", r)
				}
			}
		}
	}
}

func TestSeccompFailsClosed(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "profile.json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("typo", `{"base":"containerd-default","deny_syscall":["ptrace"]}`)
	write("badbase", `{"base":"unconfined"}`)
	write("badfam", `{"base":"containerd-default","deny_socket_families":["AF_INTE"]}`)
	write("allowall", `{"defaultAction":"SCMP_ACT_ALLOW"}`)
	write("notjson", `deny everything`)
	write("full", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}`)
	for _, name := range []string{"missing", "typo", "badbase", "badfam", "allowall", "notjson", "../default", "", "Strict"} {
		p := testProfile(name)
		_, err := buildSpec(context.Background(), specInput{Namespace: "n", ID: "x", Init: []string{"/i"}, Workspace: "/w", Profile: p, SeccompDir: dir})
		if !errors.Is(err, ErrProfile) {
			t.Errorf("profile %q: err = %v, want ErrProfile", name, err)
		}
	}
	s, err := buildSpec(context.Background(), specInput{Namespace: "n", ID: "x", Init: []string{"/i"}, Workspace: "/w", Profile: testProfile("full"), SeccompDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Seccomp.Syscalls) != 1 || !allowed(s.Linux.Seccomp, "read") || allowed(s.Linux.Seccomp, "open") {
		t.Errorf("full profile not used as-is: %+v", s.Linux.Seccomp)
	}
}

// socketPermits evaluates the filter's socket(2) rules for a call with
// these 64-bit argument registers, as seccomp does (a rule matches when
// every one of its argument conditions holds).
func socketPermits(f *specs.LinuxSeccomp, domain, proto uint64) bool {
	regs := map[uint]uint64{0: domain, 2: proto}
	for _, r := range f.Syscalls {
		if !allows(r.Action) || !slices.Contains(r.Names, "socket") {
			continue
		}
		match := true
		for _, a := range r.Args {
			v, ok := regs[a.Index]
			switch {
			case !ok:
				match = false
			case a.Op == specs.OpEqualTo:
				match = match && v == a.Value
			case a.Op == specs.OpLessThan:
				match = match && v < a.Value
			case a.Op == specs.OpMaskedEqual:
				match = match && v&a.Value == a.ValueTwo
			default:
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

// TestSeccompNoUeventSocket: no profile opens a netlink uevent socket, not
// even with garbage in the upper 32 bits of the protocol register (the
// kernel reads it as an int); default keeps the other netlink protocols.
func TestSeccompNoUeventSocket(t *testing.T) {
	def := testSpec(t, testProfile("default")).Linux.Seccomp
	strict := testSpec(t, testProfile("strict")).Linux.Seccomp
	for _, tc := range []struct {
		name    string
		f       *specs.LinuxSeccomp
		domain  uint64
		proto   uint64
		permits bool
	}{
		{"default uevent", def, unix.AF_NETLINK, unix.NETLINK_KOBJECT_UEVENT, false},
		{"default uevent high bits", def, unix.AF_NETLINK, 1<<32 | unix.NETLINK_KOBJECT_UEVENT, false},
		{"default uevent all high bits", def, unix.AF_NETLINK, 0xffffffff_0000000f, false},
		{"default route", def, unix.AF_NETLINK, unix.NETLINK_ROUTE, true},
		{"default sock_diag", def, unix.AF_NETLINK, unix.NETLINK_SOCK_DIAG, true},
		{"default inet", def, unix.AF_INET, 0, true},
		{"default unix", def, unix.AF_UNIX, 0, true},
		{"default netlink domain high bits", def, 1<<32 | unix.AF_NETLINK, unix.NETLINK_ROUTE, false},
		{"strict uevent", strict, unix.AF_NETLINK, unix.NETLINK_KOBJECT_UEVENT, false},
		{"strict route", strict, unix.AF_NETLINK, unix.NETLINK_ROUTE, false},
		{"strict unix", strict, unix.AF_UNIX, 0, true},
	} {
		if got := socketPermits(tc.f, tc.domain, tc.proto); got != tc.permits {
			t.Errorf("%s: socket(%#x, _, %#x) permitted = %v, want %v", tc.name, tc.domain, tc.proto, got, tc.permits)
		}
	}
}

func TestSeccompNetlinkProtocolNames(t *testing.T) {
	_, err := parseSeccomp("x", []byte(`{"base":"containerd-default","deny_netlink_protocols":["NETLINK_KOBJECT_UEVNT"]}`))
	if err == nil || !strings.Contains(err.Error(), "NETLINK_KOBJECT_UEVNT") {
		t.Errorf("misspelt protocol: err %v, want it named", err)
	}
}
