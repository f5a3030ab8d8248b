//go:build !linux

package activities

import (
	"errors"
	"syscall"
)

// processAttributes puts a program in a process group of its own, so that
// stopping it reaches everything it started. Only Linux can have the
// kernel kill it when the worker dies (Pdeathsig); elsewhere, run the
// worker under a supervisor that kills its whole process tree.
func processAttributes(credential *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: credential}
}

// errProcessGone: no running process has the PID.
var errProcessGone = errors.New("process gone")

// processStarted is unknown outside Linux: leases record no start times,
// and no worker kills what a dead one left (ReapOrphans does nothing).
func processStarted(int) (int64, error) {
	return 0, errors.New("process start times are read from /proc, which only Linux has")
}

// bootID is unknown outside Linux.
func bootID() (string, error) { return "", nil }

// groupRunning reports whether group pgid still has a process, zombies
// included.
func groupRunning(pgid int) bool {
	return !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

// pidNamespace is unknown outside Linux.
func pidNamespace() string { return "" }

// killMarkedProcesses needs /proc: outside Linux it finds nothing.
func killMarkedProcesses(...string) int { return 0 }

// HideWorkerFromPrograms does nothing outside Linux, which has no
// PR_SET_DUMPABLE: run the update command as another user (EXECUTOR_USER).
func HideWorkerFromPrograms() error { return nil }
