//go:build linux

package activities

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// processAttributes puts a program in a process group of its own, so that
// stopping it reaches everything it started, and has the kernel SIGKILL
// it when the worker dies, so a crashed worker leaves no update running.
// Pdeathsig fires when the OS thread that started the program exits; the
// Go runtime ends a thread only when a goroutine locked to it
// (runtime.LockOSThread) returns without unlocking, which nothing in the
// worker does. It reaches the program itself, not what the program
// started: the lease records the group so that a restarted worker kills
// the rest (ReapOrphans). With credential, the program runs as that user.
func processAttributes(credential *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: credential}
}

// errProcessGone: no running process has the PID (it may be a zombie).
var errProcessGone = errors.New("process gone")

// processStat returns the fields of /proc/<pid>/stat after the command
// name: fields[0] is the state (field 3 in proc(5)).
func processStat(pid int) ([]string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, errProcessGone
	}
	// The command name is in parentheses and may itself hold any byte.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat has %d fields after the command name, want at least 20", pid, len(fields))
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return nil, errProcessGone
	}
	return fields, nil
}

// processStarted returns when process pid started, in clock ticks since
// boot (field 22 of /proc/<pid>/stat): with the PID, it names the process
// for good, where a PID alone may be reused.
func processStarted(pid int) (int64, error) {
	fields, err := processStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(fields[19], 10, 64)
}

// bootID identifies the running kernel's boot: process IDs recorded under
// another boot name nothing that still runs.
func bootID() (string, error) {
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the boot ID: %w", err)
	}
	return strings.TrimSpace(string(id)), nil
}

// groupRunning reports whether a process of group pgid still runs;
// zombies, which only wait for their parent to collect them, do not count.
func groupRunning(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// fields[2] is the process group (field 5 in proc(5)).
		if fields, err := processStat(pid); err == nil && fields[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// pidNamespace names the PID namespace of this process: PIDs recorded in
// another one (another container on the same host) name other processes.
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// killMarkedProcesses SIGKILLs every process whose environment carries all
// of markers (the attempt's fence and its worker's PID), and its process
// group. Every program an attempt started inherits them, so this reaches a
// command whose group the lease had not recorded yet when its worker died
// (killed between starting the command and recording its group). It
// reports how many processes it found.
func killMarkedProcesses(markers ...string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	found := 0
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		environ, err := os.ReadFile("/proc/" + entry.Name() + "/environ")
		if err != nil {
			continue
		}
		entries := strings.Split(string(environ), "\x00")
		if !all(markers, func(m string) bool { return slices.Contains(entries, m) }) {
			continue
		}
		found++
		if fields, err := processStat(pid); err == nil {
			if pgid, err := strconv.Atoi(fields[2]); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return found
}

func all(items []string, ok func(string) bool) bool {
	for _, item := range items {
		if !ok(item) {
			return false
		}
	}
	return len(items) > 0
}

// HideWorkerFromPrograms makes the worker process non-dumpable: its
// /proc/<pid>/environ, mem and maps then belong to root, and no process of
// its user can ptrace it, so an update command running as the worker's
// user cannot read the worker's secrets there. Programs the worker starts
// are dumpable again once they exec, so ReapOrphans still reads theirs.
func HideWorkerFromPrograms() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making the worker non-dumpable: %w", err)
	}
	return nil
}
