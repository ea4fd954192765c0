// Command probe checks a session sandbox's walls from inside and prints the
// results as JSON. The runtime's integration test installs it as
// /parachute in a test image and runs it in sandboxes under each seccomp
// profile; every result must be ok.
//
//	probe sandbox init            PID 1 (as `parachute sandbox init`)
//	probe check [flags]           run every check, print JSON, exit 1 if one failed
//	probe memhog MB               allocate and touch MB megabytes
//	probe spin SECONDS            busy loop, print the CPU/wall ratio
//	probe traceme                 PTRACE_TRACEME, then sleep
//	probe traceme-init            PTRACE_TRACEME, then serve as PID 1
//	probe seize-init              PTRACE_SEIZE + PTRACE_INTERRUPT PID 1, hold it, sleep
//	probe sleep SECONDS           sleep
//
// Build it static: CGO_ENABLED=0 go build ./test/probe.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/runtime/sandboxinit"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe check|memhog|spin|traceme|traceme-init|seize-init|sleep|sandbox init")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sandbox":
		if err := sandboxinit.Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "check":
		os.Exit(check(os.Args[2:]))
	case "memhog":
		mb, _ := strconv.Atoi(arg(2))
		memhog(mb)
	case "spin":
		s, _ := strconv.ParseFloat(arg(2), 64)
		fmt.Printf("%.3f\n", spin(time.Duration(s*float64(time.Second))))
	case "traceme":
		_, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		fmt.Println("traceme:", errnoString(e))
		time.Sleep(time.Hour)
	case "traceme-init":
		syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		sandboxinit.Run()
	case "seize-init":
		// Holds PID 1 stopped for as long as this process lives, if the
		// kernel lets it attach.
		goruntime.LockOSThread()
		fmt.Println("seize-init:", errnoString(seizeInit(true)))
		time.Sleep(time.Hour)
	case "sleep":
		s, _ := strconv.ParseFloat(arg(2), 64)
		time.Sleep(time.Duration(s * float64(time.Second)))
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func arg(i int) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return ""
}

// Result is one check.
type Result struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Report is the probe's output.
type Report struct {
	Profile string   `json:"profile"`
	Results []Result `json:"results"`
}

// options say what the sandbox is expected to be.
type options struct {
	profile     string // "default" or "strict"
	class       string // "runc" or "gvisor"
	workspaceRO bool
	pids        int
	memoryMB    int
	heavy       bool // run the fork bomb and memory hog
}

func check(args []string) int {
	var o options
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	fs.StringVar(&o.profile, "profile", "strict", "seccomp profile the sandbox should have")
	fs.StringVar(&o.class, "class", "runc", "runtime class the sandbox should have (runc or gvisor)")
	fs.BoolVar(&o.workspaceRO, "workspace-ro", false, "workspace should be read-only")
	fs.IntVar(&o.pids, "pids", 0, "PID limit (0: skip the fork bomb)")
	fs.IntVar(&o.memoryMB, "memory-mb", 0, "memory limit (0: skip the memory hog)")
	fs.Parse(args)
	rep := Report{Profile: o.profile}
	// First, before the checks open anything: a turn holds 0, 1 and 2
	// and nothing else (neither runc nor PID 1 leaks a descriptor).
	fds := openFDs()
	rep.Results = append(rep.Results, Result{Check: "fds-0-1-2", OK: fds == "0 1 2", Detail: "open: " + fds})
	for _, c := range checks(o) {
		rep.Results = append(rep.Results, c)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
	for _, r := range rep.Results {
		if !r.OK {
			return 1
		}
	}
	return 0
}

// openFDs lists this process's open descriptors but the listing's own.
// Raw system calls: an os.File would start the Go runtime's poller, whose
// own descriptors would be listed.
func openFDs() string {
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err.Error()
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return err.Error()
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	var out []int
	for _, n := range names {
		if v, err := strconv.Atoi(n); err == nil && v != fd {
			out = append(out, v)
		}
	}
	sort.Ints(out)
	return strings.Trim(fmt.Sprint(out), "[]")
}
