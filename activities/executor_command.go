package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
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

// CommandExecutor runs a provider's program for each update: exit 0 is
// success, any other exit fails the attempt for good. The program gets the
// update in its environment (INSTANCE_ID, TENANT_ID, CURRENT_VERSION,
// TARGET_VERSION, ATTEMPT, WINDOW_END, WORKFLOW_ID) on top of the worker's,
// less the worker's own configuration variables.
//
// The program runs without a shell, in a process group of its own, so that
// everything it started gets SIGTERM and, after KillGrace, SIGKILL: on
// cancellation, and KillGrace before the window's end so that nothing of it
// runs past the window. A worker crash makes Temporal run it again after
// the heartbeat timeout, so the program must be safe to re-run.
type CommandExecutor struct {
	Argv      []string      // program and arguments (config.SplitCommand)
	KillGrace time.Duration // SIGTERM to SIGKILL
	// HeartbeatEvery overrides the interval derived from the activity's
	// heartbeat timeout; zero derives it.
	HeartbeatEvery time.Duration
}

// ApplyUpdate implements Executor.
func (e *CommandExecutor) ApplyUpdate(ctx context.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
	return runAttempt(ctx, in, e.run)
}

// run is one attempt of the program, given a valid input and a window
// still open at started; windowEnded says the window's end stopped it.
func (e *CommandExecutor) run(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (_ workflows.ApplyUpdateResult, windowEnded bool, err error) {
	logger := activity.GetLogger(ctx)
	output := &outputTail{}
	cmd := exec.Command(e.Argv[0], e.Argv[1:]...)
	cmd.Env = append(inheritedEnvironment(),
		"INSTANCE_ID="+in.InstanceID,
		"TENANT_ID="+in.TenantID,
		"CURRENT_VERSION="+in.CurrentVersion,
		"TARGET_VERSION="+in.TargetVersion,
		"ATTEMPT="+string(in.Attempt),
		"WINDOW_END="+in.WindowEnd.UTC().Format(time.RFC3339),
		"WORKFLOW_ID="+in.WorkflowID,
	)
	cmd.Stdout, cmd.Stderr = output, output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = pipeGrace
	if err = cmd.Start(); err != nil {
		// Retryable: a missing or broken program is the operator's to fix,
		// and the window may still leave time after the fix.
		err = fmt.Errorf("could not start update command %q: %w", e.Argv[0], err)
		return workflows.ApplyUpdateResult{}, false, err
	}
	logger.Info("Update command started", "pid", cmd.Process.Pid, "instanceId", in.InstanceID, "slot", in.Attempt, "windowEnd", in.WindowEnd)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	interval := e.HeartbeatEvery
	if interval <= 0 {
		interval = heartbeatInterval(activity.GetInfo(ctx).HeartbeatTimeout)
	}
	heartbeat := time.NewTicker(interval)
	defer heartbeat.Stop()
	stopAt := stopTime(started, in.WindowEnd, e.KillGrace)
	windowEnd := time.NewTimer(time.Until(stopAt))
	defer windowEnd.Stop()
	activity.RecordHeartbeat(ctx, heartbeatDetails{Elapsed: "0s"})

	var waitErr error
	stopped := false
	// timedOut: the activity's own deadline (the window's end) came first.
	timedOut := false
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case <-heartbeat.C:
			activity.RecordHeartbeat(ctx, heartbeatDetails{
				Elapsed:    time.Since(started).Round(time.Second).String(),
				LastOutput: output.lastLine(),
			})
		case <-windowEnd.C:
			windowEnded, stopped = true, true
			logger.Warn("Update window ending, stopping the update command", "pid", cmd.Process.Pid, "windowEnd", in.WindowEnd, "killGrace", e.KillGrace)
			waitErr = e.stop(cmd.Process.Pid, exited)
			break loop
		case <-ctx.Done():
			// The activity's deadline is the window's end; a cancellation
			// comes from the workflow or a stopping worker.
			timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
			windowEnded, stopped = timedOut, true
			logger.Warn("Update attempt cancelled, stopping the update command", "pid", cmd.Process.Pid, "reason", ctx.Err())
			waitErr = e.stop(cmd.Process.Pid, exited)
			break loop
		}
	}

	tail := output.String()
	ran := time.Since(started)
	switch {
	case windowEnded && !timedOut:
		err = stoppedForWindow(in, in.WindowEnd.Sub(stopAt), ran, tail)
	case windowEnded:
		err = windowElapsed(in, ran, tail)
	case stopped:
		err = fmt.Errorf("update command stopped after %s: %w", ran.Round(time.Millisecond), ctx.Err())
	case cmd.ProcessState != nil && cmd.ProcessState.Success():
		logger.Info("Update command succeeded", "instanceId", in.InstanceID, "slot", in.Attempt, "duration", ran)
		return workflows.ApplyUpdateResult{Output: tail}, false, nil
	default:
		err = exitFailure(cmd.ProcessState, waitErr, tail)
	}
	return workflows.ApplyUpdateResult{}, windowEnded, err
}

// stopTime is when a command still running gets SIGTERM: KillGrace before
// the window's end, so that the SIGKILL after the grace lands at the end
// at the latest. A command started with less than KillGrace left is given
// what is left and stopped at the end instead of at once.
func stopTime(started, windowEnd time.Time, killGrace time.Duration) time.Time {
	stopAt := windowEnd.Add(-killGrace)
	if !stopAt.After(started) {
		return windowEnd
	}
	return stopAt
}

// stoppedForWindow is the error of a command stopped because its window
// ends: retryable for the same reason as windowElapsed.
func stoppedForWindow(in workflows.ApplyUpdateInput, beforeEnd, ran time.Duration, output string) error {
	when := "at its end"
	if beforeEnd > 0 {
		when = fmt.Sprintf("%s before its end (EXECUTOR_KILL_GRACE) so as to be gone by then", beforeEnd)
	}
	msg := fmt.Sprintf("the %s update window ends at %s: the update command was stopped %s, after running for %s",
		in.Attempt, in.WindowEnd.UTC().Format(time.RFC3339), when, ran.Round(time.Millisecond))
	if output != "" {
		msg += "; last output:\n" + output
	}
	return errors.New(msg)
}

// inheritedEnvironment is the worker's environment without its own
// configuration, so credentials such as SENDGRID_API_KEY and the password
// in DATABASE_URL never reach the provider's program.
func inheritedEnvironment() []string {
	own := map[string]bool{}
	for _, v := range config.Variables() {
		own[v.Name] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !own[name] {
			env = append(env, kv)
		}
	}
	return env
}

// stop ends the command's process group: SIGTERM, then SIGKILL once the
// grace period is over (also for anything the command left behind after it
// exited on SIGTERM). It returns the command's exit.
func (e *CommandExecutor) stop(pgid int, exited <-chan error) error {
	// The group is the command's own (Setpgid), so -pgid reaches only it
	// and what it started. ESRCH means it is gone already.
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

// exitFailure is the non-retryable error of a command that ran to its end
// and did not succeed: running it again in the same window would most
// likely fail the same way, and the secondary slot exists for a retry.
func exitFailure(state *os.ProcessState, waitErr error, tail string) error {
	// The exit status is in the message; the *exec.ExitError would only
	// repeat it as a cause, so it is kept only when there is no status.
	var (
		msg   string
		cause error
	)
	switch {
	case state == nil:
		msg, cause = "update command could not be waited for", waitErr
	case state.ExitCode() >= 0:
		msg = fmt.Sprintf("update command exited with status %d", state.ExitCode())
	default:
		msg = "update command was killed by a signal (" + state.String() + ")"
	}
	if tail != "" {
		msg += ": " + tail
	}
	return temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeUpdateFailed, cause)
}

// outputTail keeps the last outputLines lines written to it (stdout and
// stderr interleaved as the command wrote them).
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
