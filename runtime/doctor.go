package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Check is one finding of Doctor.
type Check struct {
	Name   string
	OK     bool
	Detail string
	Fix    string // what to do when not OK
}

// DoctorOptions say what Doctor checks against.
type DoctorOptions struct {
	Containerd ContainerdOptions
	Image      string   // "" = DefaultImage
	Profiles   []string // seccomp profiles that must load (default: default, strict)
}

// Doctor checks that this host can run sandboxes: root, containerd
// reachable, runc, seccomp, cgroups, the seccomp profiles and the image.
func Doctor(ctx context.Context, o DoctorOptions) []Check {
	var cs []Check
	add := func(name string, ok bool, detail, fix string) {
		cs = append(cs, Check{Name: name, OK: ok, Detail: detail, Fix: fix})
	}
	add("root", os.Geteuid() == 0, fmt.Sprintf("euid %d", os.Geteuid()),
		"run the gateway as root: containerd's socket and sandbox creation need it")

	rt, err := NewContainerd(ctx, o.Containerd)
	if err == nil {
		defer rt.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var v string
		v, err = rt.Ping(pctx)
		cancel()
		if err == nil {
			add("containerd", true, fmt.Sprintf("version %s at %s", v, rt.opts.Address), "")
		}
	}
	if err != nil {
		add("containerd", false, err.Error(),
			"install containerd (apt-get install containerd) and start it (systemctl start containerd), or pass --address SOCKET")
	}

	if path, lerr := exec.LookPath("runc"); lerr != nil {
		add("runc", false, lerr.Error(), "apt-get install runc (crun does not work with hybrid cgroups)")
	} else {
		out, _ := exec.CommandContext(ctx, path, "--version").Output()
		add("runc", true, path+": "+firstLine(string(out)), "")
	}

	// gvisor: the class the shipped policy gives guests and public bots.
	// A host without it refuses those sessions (runtime-class-unavailable).
	gv := &Containerd{opts: o.Containerd}
	if gv.opts.RunscPath == "" {
		gv.opts.RunscPath = DefaultRunscPath
	}
	if err := gv.gvisorInstalled(); err != nil {
		var ce *ClassError
		fix := "apt-get install runsc"
		if errors.As(err, &ce) {
			fix = ce.Fix
		}
		add("runtime class gvisor", false, err.Error()+"; sessions the policy gives runtime_class gvisor (guests, public bots by default) are refused", fix)
	} else {
		out, verr := exec.CommandContext(ctx, gv.opts.RunscPath, "--version").Output()
		detail := gv.opts.RunscPath + ": " + firstLine(string(out))
		if verr != nil {
			detail = gv.opts.RunscPath + " --version: " + verr.Error()
		}
		add("runtime class gvisor", verr == nil, detail, "reinstall it: apt-get install --reinstall runsc")
	}

	// Disk quotas (disk_mb): an ext4 image per workspace, loop-mounted.
	var missing []string
	for _, bin := range []string{"mkfs.ext4", "mount", "cp"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		missing = append(missing, "/dev/loop-control")
	}
	add("disk quotas", len(missing) == 0, "mkfs.ext4, mount, cp and /dev/loop-control for disk_mb; missing: "+strings.Join(missing, ", "),
		"apt-get install e2fsprogs mount coreutils, and load the loop module (modprobe loop); without them sessions with disk_mb > 0 do not start")
	if len(missing) == 0 {
		cs[len(cs)-1].Detail = "mkfs.ext4, mount and loop devices present (disk_mb)"
	}

	status, serr := os.ReadFile("/proc/self/status")
	hasSeccomp := serr == nil && strings.Contains(string(status), "\nSeccomp:")
	add("seccomp", hasSeccomp, "kernel reports a Seccomp field in /proc/self/status",
		"use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER")

	ver, cok, fix := cgroupCheck()
	add("cgroups", cok, ver, fix)

	profiles := o.Profiles
	if len(profiles) == 0 {
		profiles = []string{"default", "strict"}
	}
	for _, p := range profiles {
		_, err := loadSeccomp(o.Containerd.SeccompDir, p)
		detail := "loads"
		if err != nil {
			detail = err.Error()
		}
		add("seccomp profile "+p, err == nil, detail,
			"run from the folder holding policies/, or pass --seccomp-dir; the file is <dir>/"+p+"/profile.json")
	}

	ref := o.Image
	if ref == "" {
		ref = DefaultImage
	}
	if rt != nil {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := rt.client.GetImage(rt.ns(ictx), ref)
		cancel()
		detail := ref + " in namespace " + rt.opts.Namespace
		if err != nil {
			detail = err.Error()
		}
		add("image", err == nil, detail, "build and import it: parachute image build")
	} else {
		add("image", false, "containerd unreachable", "fix containerd first, then: parachute image build")
	}
	if rt != nil {
		add(orphanCheck(ctx, rt))
	}
	return cs
}

// cgroupCheck reports the cgroup version and whether the controllers the
// limits need are there.
func cgroupCheck() (string, bool, string) {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		have := strings.Fields(string(b))
		var missing []string
		for _, c := range []string{"memory", "pids", "cpu"} {
			if !containsStr(have, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return "v2, missing controllers " + strings.Join(missing, ","), false, "enable them in the parent's cgroup.subtree_control"
		}
		return "v2 (memory, pids, cpu)", true, ""
	}
	var missing []string
	for _, c := range []string{"memory", "pids", "cpu"} {
		if _, err := os.Stat("/sys/fs/cgroup/" + c); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, c)
		}
	}
	kind := "v1"
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		kind = "v1 (hybrid)"
	}
	if len(missing) > 0 {
		return kind + ", missing controllers " + strings.Join(missing, ","), false, "mount the memory, pids and cpu cgroup controllers"
	}
	return kind + " (memory, pids, cpu)", true, ""
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// orphanCheck removes the sandboxes whose creator is gone (kill -9 of
// `sandbox run`, a crashed gateway) and lists them: finding any fails the
// check, so an operator hears of it once.
func orphanCheck(ctx context.Context, rt *Containerd) (string, bool, string, string) {
	const name, fix = "orphan sandboxes", "they are removed now; a sandbox whose starter died is removed by the next doctor, sandbox run or gateway start"
	removed, err := rt.RemoveOrphaned(ctx)
	var l []string
	for _, in := range removed {
		l = append(l, fmt.Sprintf("%s (session %s, owner %s, pid %d %s, created %s)", in.ID, in.SessionID, in.Owner,
			in.OwnerPID, in.OwnerState, in.Created.UTC().Format(time.RFC3339)))
	}
	switch {
	case err != nil:
		return name, false, fmt.Sprintf("removed %d, failed: %v", len(removed), err), "check containerd, then run doctor again"
	case len(removed) > 0:
		return name, false, fmt.Sprintf("found and removed %d: %s", len(removed), strings.Join(l, "; ")), fix
	}
	return name, true, "none", ""
}
