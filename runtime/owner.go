package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
)

// Labels naming the process that created a container, so that a sandbox
// whose creator died (kill -9 of `parachute sandbox run`, a crashed
// gateway) is found and removed. The start label is "<boot id>/<start
// time in clock ticks since boot>" (field 22 of /proc/<pid>/stat): a PID
// reused by another process, or a PID from before a reboot, does not make
// an orphan look owned.
const (
	LabelOwnerPID   = "parachute.owner-pid"
	LabelOwnerStart = "parachute.owner-start"
)

var (
	selfOnce  sync.Once
	selfStart string
)

// ownerLabels are the owner labels of a container this process creates.
func ownerLabels() map[string]string {
	selfOnce.Do(func() { selfStart, _ = processStart(os.Getpid()) })
	return map[string]string{LabelOwnerPID: strconv.Itoa(os.Getpid()), LabelOwnerStart: selfStart}
}

// processStart returns "<boot id>/<start time>" of pid, or an error when
// there is no such process.
func processStart(pid int) (string, error) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses itself: count fields after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strings.TrimSpace(string(boot)) + "/" + f[19], nil
}

// OwnerState says whether the process that created a container is alive.
type OwnerState int

const (
	OwnerUnknown OwnerState = iota // no owner labels (made by an older version, or a pool's before the labels)
	OwnerAlive                     // the creating process still runs (and is not this one)
	OwnerSelf                      // this process created it
	OwnerGone                      // the creating process is gone (its PID is free or another process's)
)

func (s OwnerState) String() string {
	return [...]string{"unknown", "alive", "self", "gone"}[s]
}

// ownerState reads a container's owner labels.
func ownerState(labels map[string]string) OwnerState {
	pid, err := strconv.Atoi(labels[LabelOwnerPID])
	start := labels[LabelOwnerStart]
	if err != nil || pid <= 0 || start == "" {
		return OwnerUnknown
	}
	now, err := processStart(pid)
	if err != nil || now != start {
		return OwnerGone
	}
	if pid == os.Getpid() {
		return OwnerSelf
	}
	return OwnerAlive
}

// removable says whether RemoveOrphans takes a container: everything but
// the sandboxes of another live process (a `parachute sandbox run` in
// progress, say). A container without owner labels has no one vouching for
// it and goes too.
func removable(s OwnerState) bool { return s != OwnerAlive }

// removeContainer kills and deletes one container found in the store.
func (c *Containerd) removeContainer(ctx context.Context, ctr containerd.Container) error {
	b := &ctrSandbox{rt: c, id: ctr.ID(), ctr: ctr}
	if t, err := ctr.Task(ctx, nil); err == nil {
		b.task = t
		b.exitC, _ = t.Wait(ctx)
	}
	return b.remove(ctx)
}
