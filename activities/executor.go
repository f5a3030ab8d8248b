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
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

// Executor runs the update of one instance inside one window: the
// ApplyUpdate activity. The update itself is the provider's business, so
// the worker picks one implementation by EXECUTOR.
type Executor interface {
	ApplyUpdate(ctx context.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error)
}

// NewExecutor builds the executor cfg.Executor names. A command executor
// whose program cannot be found fails here, at start, rather than at the
// first update window.
func NewExecutor(cfg config.Config) (Executor, error) {
	switch cfg.Executor {
	case config.ExecutorCommand:
		if len(cfg.ExecutorArgv) == 0 {
			return nil, errors.New("EXECUTOR=command needs EXECUTOR_COMMAND")
		}
		if _, err := exec.LookPath(cfg.ExecutorArgv[0]); err != nil {
			return nil, fmt.Errorf("EXECUTOR_COMMAND program %q cannot be run: %w", cfg.ExecutorArgv[0], err)
		}
		return &CommandExecutor{Argv: cfg.ExecutorArgv, KillGrace: cfg.ExecutorKillGrace}, nil
	case config.ExecutorSimulated:
		return &SimulatedExecutor{Duration: cfg.SimulatedDuration, Failures: cfg.SimulatedFailures}, nil
	case config.ExecutorNone:
		return nil, fmt.Errorf("EXECUTOR=%s: this worker hosts no executor, so there is none to build", config.ExecutorNone)
	}
	return nil, fmt.Errorf("unknown executor %q (accepted: %s, %s or %s)", cfg.Executor, config.ExecutorSimulated, config.ExecutorCommand, config.ExecutorNone)
}

// RegisterExecutor registers e's ApplyUpdate under its contract name.
func RegisterExecutor(r worker.ActivityRegistry, e Executor) {
	r.RegisterActivityWithOptions(e.ApplyUpdate, activity.RegisterOptions{Name: workflows.ActivityApplyUpdate})
}

const (
	// executorDurationMetric times every ApplyUpdate, tagged with the
	// attempt (primary, secondary) and its outcome.
	executorDurationMetric = "svcupdate_executor_duration"
	// executorOutputLines is how much of a command's output is kept for the
	// result or the error: enough to show why it failed, small enough for
	// workflow history.
	executorOutputLines = 20
	// executorMaxLineBytes bounds each kept line, so a command printing one
	// endless line cannot fill memory or history.
	executorMaxLineBytes = 500
	// executorDefaultHeartbeat is the heartbeat interval when the activity
	// has no heartbeat timeout.
	executorDefaultHeartbeat = 10 * time.Second
	// executorMinHeartbeat keeps a tiny heartbeat timeout from turning into
	// a flood of heartbeats.
	executorMinHeartbeat = time.Second
	// executorPipeGrace is how long output is still read after the command
	// exited, in case something it started keeps the pipe open.
	executorPipeGrace = 2 * time.Second
)

// executorHeartbeat is what the executors report while they run; it shows
// in the Web UI as the pending activity's heartbeat details.
type executorHeartbeat struct {
	Elapsed    string `json:"elapsed"`
	LastOutput string `json:"lastOutput,omitempty"`
}

// executorHeartbeatInterval is a third of the activity's heartbeat timeout,
// so two heartbeats can be lost before the server declares the attempt dead.
func executorHeartbeatInterval(heartbeatTimeout time.Duration) time.Duration {
	if heartbeatTimeout <= 0 {
		return executorDefaultHeartbeat
	}
	return max(heartbeatTimeout/3, executorMinHeartbeat)
}

// executorValidate refuses input no executor can act on.
func executorValidate(in workflows.ApplyUpdateInput) error {
	var problem string
	switch {
	case in.InstanceID == "":
		problem = "no instance ID"
	case in.TargetVersion == "":
		problem = "no target version"
	case in.Attempt != workflows.SlotPrimary && in.Attempt != workflows.SlotSecondary:
		problem = fmt.Sprintf("attempt %q is not %s or %s", in.Attempt, workflows.SlotPrimary, workflows.SlotSecondary)
	case in.WindowEnd.IsZero():
		problem = "no window end"
	default:
		return nil
	}
	return temporal.NewNonRetryableApplicationError("ApplyUpdate: "+problem, workflows.ErrTypeInvalidInput, nil)
}

// executorWindowElapsed is the error when the window ends before the update
// did. It stays retryable: the activity's schedule-to-close timeout, set to
// the window's end, is what closes the attempt for the workflow.
func executorWindowElapsed(in workflows.ApplyUpdateInput, ran time.Duration, output string) error {
	msg := fmt.Sprintf("the %s update window ended at %s after the update had run for %s", in.Attempt, in.WindowEnd.UTC().Format(time.RFC3339), ran.Round(time.Millisecond))
	if output != "" {
		msg += "; last output:\n" + output
	}
	return errors.New(msg)
}

// commandStoppedForWindow is the error of a command stopped because its
// window ends: retryable for the same reason as executorWindowElapsed.
func commandStoppedForWindow(in workflows.ApplyUpdateInput, beforeEnd, ran time.Duration, output string) error {
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

// executorOutcome names how an ApplyUpdate ended, for the duration metric.
func executorOutcome(ctx context.Context, err error, windowEnded bool) string {
	switch {
	case err == nil:
		return workflows.OutcomeSucceeded
	case windowEnded:
		return workflows.OutcomeWindowElapsed
	case errors.Is(ctx.Err(), context.Canceled):
		return workflows.OutcomeCancelled
	default:
		return workflows.OutcomeFailed
	}
}

func executorRecordDuration(ctx context.Context, in workflows.ApplyUpdateInput, outcome string, d time.Duration) {
	activity.GetMetricsHandler(ctx).WithTags(map[string]string{
		"attempt": string(in.Attempt),
		"outcome": outcome,
	}).Timer(executorDurationMetric).Record(d)
}

// executorRun is what every executor does around one attempt: it refuses
// an invalid input, fails at once when the window has already ended (the
// attempt started too late to do anything), and records the attempt's
// duration and outcome however it ends. attempt does the update itself.
func executorRun(ctx context.Context, in workflows.ApplyUpdateInput,
	attempt func(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (workflows.ApplyUpdateResult, bool, error),
) (_ workflows.ApplyUpdateResult, err error) {
	if err := executorValidate(in); err != nil {
		return workflows.ApplyUpdateResult{}, err
	}
	started := time.Now()
	windowEnded := false
	defer func() {
		executorRecordDuration(ctx, in, executorOutcome(ctx, err, windowEnded), time.Since(started))
	}()

	if !time.Now().Before(in.WindowEnd) {
		windowEnded = true
		return workflows.ApplyUpdateResult{}, executorWindowElapsed(in, 0, "")
	}
	var result workflows.ApplyUpdateResult
	result, windowEnded, err = attempt(ctx, in, started)
	return result, err
}

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
	return executorRun(ctx, in, e.run)
}

// run is one attempt of the program, given a valid input and a window
// still open at started; windowEnded says the window's end stopped it.
func (e *CommandExecutor) run(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (_ workflows.ApplyUpdateResult, windowEnded bool, err error) {
	logger := activity.GetLogger(ctx)
	output := &commandOutputTail{}
	cmd := exec.Command(e.Argv[0], e.Argv[1:]...)
	cmd.Env = append(commandInheritedEnvironment(),
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
	cmd.WaitDelay = executorPipeGrace
	if err = cmd.Start(); err != nil {
		// Retryable: a missing or broken program is the operator's to fix,
		// and the window may still leave time after the fix.
		err = fmt.Errorf("could not start update command %q: %w", e.Argv[0], err)
		return workflows.ApplyUpdateResult{}, false, err
	}
	logger.Info("Update command started", "pid", cmd.Process.Pid, "instance", in.InstanceID, "attempt", in.Attempt, "windowEnd", in.WindowEnd)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	interval := e.HeartbeatEvery
	if interval <= 0 {
		interval = executorHeartbeatInterval(activity.GetInfo(ctx).HeartbeatTimeout)
	}
	heartbeat := time.NewTicker(interval)
	defer heartbeat.Stop()
	stopAt := commandStopTime(started, in.WindowEnd, e.KillGrace)
	windowEnd := time.NewTimer(time.Until(stopAt))
	defer windowEnd.Stop()
	activity.RecordHeartbeat(ctx, executorHeartbeat{Elapsed: "0s"})

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
			activity.RecordHeartbeat(ctx, executorHeartbeat{
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
		err = commandStoppedForWindow(in, in.WindowEnd.Sub(stopAt), ran, tail)
	case windowEnded:
		err = executorWindowElapsed(in, ran, tail)
	case stopped:
		err = fmt.Errorf("update command stopped after %s: %w", ran.Round(time.Millisecond), ctx.Err())
	case cmd.ProcessState != nil && cmd.ProcessState.Success():
		logger.Info("Update command succeeded", "instance", in.InstanceID, "attempt", in.Attempt, "duration", ran)
		return workflows.ApplyUpdateResult{Output: tail}, false, nil
	default:
		err = commandFailure(cmd.ProcessState, waitErr, tail)
	}
	return workflows.ApplyUpdateResult{}, windowEnded, err
}

// commandStopTime is when a command still running gets SIGTERM: KillGrace
// before the window's end, so that the SIGKILL after the grace lands at the
// end at the latest. A command started with less than KillGrace left is
// given what is left and stopped at the end instead of at once.
func commandStopTime(started, windowEnd time.Time, killGrace time.Duration) time.Time {
	stopAt := windowEnd.Add(-killGrace)
	if !stopAt.After(started) {
		return windowEnd
	}
	return stopAt
}

// commandInheritedEnvironment is the worker's environment without its own
// configuration, so credentials such as SENDGRID_API_KEY and the password
// in DATABASE_URL never reach the provider's program.
func commandInheritedEnvironment() []string {
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

// commandFailure is the non-retryable error of a command that ran to its
// end and did not succeed: running it again in the same window would most
// likely fail the same way, and the secondary slot exists for a retry.
func commandFailure(state *os.ProcessState, waitErr error, tail string) error {
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

// commandOutputTail keeps the last executorOutputLines lines written to it
// (stdout and stderr interleaved as the command wrote them).
type commandOutputTail struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (t *commandOutputTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.push(string(t.partial))
			t.partial = t.partial[:0]
			continue
		}
		if len(t.partial) < executorMaxLineBytes {
			t.partial = append(t.partial, b)
		}
	}
	return len(p), nil
}

func (t *commandOutputTail) push(line string) {
	t.lines = append(t.lines, strings.TrimRight(line, "\r"))
	if len(t.lines) > executorOutputLines {
		t.lines = t.lines[len(t.lines)-executorOutputLines:]
	}
}

// String returns the kept lines, an unfinished last line included.
func (t *commandOutputTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
		if len(lines) > executorOutputLines {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func (t *commandOutputTail) lastLine() string {
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

// SimulatedExecutor stands in for a real update in the demo and in tests:
// it takes Duration, heartbeating, and fails where Failures says.
type SimulatedExecutor struct {
	Duration time.Duration
	Failures config.SimulatedFailures
	// HeartbeatEvery overrides the interval derived from the activity's
	// heartbeat timeout; zero derives it.
	HeartbeatEvery time.Duration
}

// ApplyUpdate implements Executor.
func (e *SimulatedExecutor) ApplyUpdate(ctx context.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
	return executorRun(ctx, in, e.run)
}

// run is one simulated attempt, given a valid input and a window still
// open at started; windowEnded says the window's end stopped it.
func (e *SimulatedExecutor) run(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (_ workflows.ApplyUpdateResult, windowEnded bool, err error) {
	interval := e.HeartbeatEvery
	if interval <= 0 {
		interval = executorHeartbeatInterval(activity.GetInfo(ctx).HeartbeatTimeout)
	}
	heartbeat := time.NewTicker(interval)
	defer heartbeat.Stop()
	done := time.NewTimer(e.Duration)
	defer done.Stop()
	windowEnd := time.NewTimer(time.Until(in.WindowEnd))
	defer windowEnd.Stop()
	activity.RecordHeartbeat(ctx, executorHeartbeat{Elapsed: "0s"})
	for {
		select {
		case <-done.C:
			if e.Failures.Fails(in.InstanceID, in.Attempt) {
				err = temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("simulated update of %s to %s failed in the %s attempt (SIMULATED_FAILURES)", in.InstanceID, in.TargetVersion, in.Attempt),
					workflows.ErrTypeUpdateFailed, nil)
				return workflows.ApplyUpdateResult{}, false, err
			}
			return workflows.ApplyUpdateResult{
				Output: fmt.Sprintf("simulated update of %s from %s to %s done in %s", in.InstanceID, in.CurrentVersion, in.TargetVersion, e.Duration),
			}, false, nil
		case <-heartbeat.C:
			activity.RecordHeartbeat(ctx, executorHeartbeat{Elapsed: time.Since(started).Round(time.Second).String()})
		case <-windowEnd.C:
			windowEnded = true
			err = executorWindowElapsed(in, time.Since(started), "")
			return workflows.ApplyUpdateResult{}, windowEnded, err
		case <-ctx.Done():
			windowEnded = errors.Is(ctx.Err(), context.DeadlineExceeded)
			err = fmt.Errorf("simulated update stopped after %s: %w", time.Since(started).Round(time.Millisecond), ctx.Err())
			return workflows.ApplyUpdateResult{}, windowEnded, err
		}
	}
}
