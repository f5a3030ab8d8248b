package activities

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// outputLines is how much of a command's output is kept for the result
	// or the error: enough to show why it failed, small enough for
	// workflow history.
	outputLines = 20
	// outputMaxLineBytes bounds each kept line, so a command printing one
	// endless line cannot fill memory or history.
	outputMaxLineBytes = 500
	// pipeGrace is how long output is still read after the command exited,
	// in case something it started keeps the pipe open.
	pipeGrace = 2 * time.Second
)

// program is one program the command executor runs under a lease: the
// update command or the version probe.
type program struct {
	what   string // for messages: "update command", "version probe"
	argv   []string
	env    []string
	stdout io.Writer
	stderr *outputTail // also stdout's, when stdout is nil
	phase  string      // reported in the heartbeats while it runs
}

// stopReason says why a program did not run to its own end.
type stopReason int

const (
	ranToEnd     stopReason = iota
	stoppedLimit            // the caller's stop time (the window's, or the probe's timeout)
	stoppedCancelled
	stoppedLeaseLost    // Postgres says another attempt broke the lease
	stoppedLeaseExpired // renewals failed until the lease's promise came due
)

// programExit is how a supervised program ended.
type programExit struct {
	state   *os.ProcessState
	waitErr error
	stopped stopReason
	ran     time.Duration
}

// supervise runs p under lease and waits for it, heartbeating. It stops
// the program (SIGTERM, then SIGKILL after KillGrace) at stopAt, on
// cancellation, or when the lease's renewals have failed for too long; at
// once (SIGKILL) when the lease turns out to be broken. Whatever the
// program leaves running in its group is killed when it ends. An error
// means the program could not be started under the lease.
func (a *attempt) supervise(ctx context.Context, lease *heldLease, p program, stopAt time.Time) (programExit, error) {
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if p.stdout == nil {
		cmd.Stdout = p.stderr
	}
	cmd.SysProcAttr = processAttributes(a.e.Credential)
	cmd.WaitDelay = pipeGrace
	started := time.Now()
	if err := cmd.Start(); err != nil {
		// Retryable: a missing or broken program is the operator's to fix,
		// and the window may still leave time after the fix.
		return programExit{}, fmt.Errorf("could not start the %s %q: %w", p.what, p.argv[0], err)
	}
	pgid := cmd.Process.Pid // its own group (Setpgid), so -pgid reaches only it and what it started
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := lease.recordProcess(ctx, pgid); err != nil {
		// Unrecorded, it could not be found should this worker die.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		return programExit{}, fmt.Errorf("the %s was stopped as it started: %w", p.what, err)
	}
	a.logger.Info("Started the "+p.what, "pid", pgid, "fence", lease.fence, "instanceId", a.in.InstanceID, "slot", a.in.Attempt, "stopAt", stopAt)

	heartbeat := time.NewTicker(a.every)
	defer heartbeat.Stop()
	a.beat(ctx, heartbeatDetails{Phase: p.phase, LastOutput: p.stderr.lastLine()})
	x := programExit{}
	for x.stopped == ranToEnd {
		limit, reason := stopAt, stoppedLimit
		if by := lease.stopBy(); by.Before(limit) {
			limit, reason = by, stoppedLeaseExpired
		}
		timer := time.NewTimer(time.Until(limit))
		select {
		case x.waitErr = <-exited:
			timer.Stop()
			x.state, x.ran = cmd.ProcessState, time.Since(started)
			_ = syscall.Kill(-pgid, syscall.SIGKILL) // what it left running
			return x, nil
		case <-heartbeat.C:
			a.beat(ctx, heartbeatDetails{Phase: p.phase, LastOutput: p.stderr.lastLine()})
		case <-lease.lost:
			x.stopped = stoppedLeaseLost
			a.logger.Error("Stopping the "+p.what+" at once: its executor lease was broken", "pid", pgid, "fence", lease.fence)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			x.waitErr = <-exited
		case <-timer.C:
			if reason == stoppedLeaseExpired && time.Now().Before(lease.stopBy()) {
				continue // renewed meanwhile
			}
			x.stopped = reason
			a.logger.Warn("Stopping the "+p.what, "pid", pgid, "reason", reasonText(reason), "killGrace", a.e.KillGrace)
			x.waitErr = a.e.stop(pgid, exited)
		case <-ctx.Done():
			x.stopped = stoppedCancelled
			a.logger.Warn("Attempt cancelled, stopping the "+p.what, "pid", pgid, "reason", ctx.Err())
			x.waitErr = a.e.stop(pgid, exited)
		}
		timer.Stop()
	}
	x.state, x.ran = cmd.ProcessState, time.Since(started)
	return x, nil
}

func reasonText(r stopReason) string {
	switch r {
	case stoppedLeaseExpired:
		return "the executor lease could not be renewed"
	case stoppedLimit:
		return "its time is up"
	}
	return "stopped"
}

// stop ends the program's process group: SIGTERM, then SIGKILL once the
// grace period is over (also for anything the program left behind after
// it exited on SIGTERM). It returns the program's exit.
func (e *CommandExecutor) stop(pgid int, exited <-chan error) error {
	// ESRCH means it is gone already.
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	grace := time.NewTimer(e.KillGrace)
	defer grace.Stop()
	select {
	case err := <-exited:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return err
	case <-grace.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return <-exited
	}
}

// stopTime is when a program still running gets SIGTERM: KillGrace before
// the window's end, so that the SIGKILL after the grace lands at the end
// at the latest. A program started with less than KillGrace left is given
// what is left and stopped at the end instead of at once.
func stopTime(started, windowEnd time.Time, killGrace time.Duration) time.Time {
	stopAt := windowEnd.Add(-killGrace)
	if !stopAt.After(started) {
		return windowEnd
	}
	return stopAt
}

// outputTail keeps the last outputLines lines written to it (stdout and
// stderr interleaved as the program wrote them).
type outputTail struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (t *outputTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.push(string(t.partial))
			t.partial = t.partial[:0]
			continue
		}
		if len(t.partial) < outputMaxLineBytes {
			t.partial = append(t.partial, b)
		}
	}
	return len(p), nil
}

func (t *outputTail) push(line string) {
	t.lines = append(t.lines, strings.TrimRight(line, "\r"))
	if len(t.lines) > outputLines {
		t.lines = t.lines[len(t.lines)-outputLines:]
	}
}

// String returns the kept lines, an unfinished last line included.
func (t *outputTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
		if len(lines) > outputLines {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func (t *outputTail) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.partial) > 0 {
		return string(t.partial)
	}
	if len(t.lines) == 0 {
		return ""
	}
	return t.lines[len(t.lines)-1]
}
