package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// CommandExecutor runs a provider's program for each update: exit 0 is
// success, any other exit fails the attempt for good. The program gets the
// update in its environment (INSTANCE_ID, TENANT_ID, CURRENT_VERSION,
// TARGET_VERSION, ATTEMPT, WINDOW_END, WORKFLOW_ID, SVCUPDATE_FENCE) on top
// of the worker's, less the worker's own configuration variables.
//
// At most one program runs per instance: each attempt first takes the
// instance's lease in Postgres, waiting for (or, past its kill deadline,
// breaking) another holder's, and passes the lease's fence to the program.
// With a Probe, the instance's version is read before the update (an
// instance already at or past the target is not updated again, say after
// a worker died as its update finished) and after it (the update must have
// reached the target).
//
// Programs run without a shell, in a process group of its own, so that
// everything they started gets SIGTERM and, after KillGrace, SIGKILL: on
// cancellation, when the lease cannot be renewed, and KillGrace before the
// window's end so that nothing runs past the window. The kernel kills a
// program whose worker dies (Linux), and a worker restarted on the host
// kills the rest of its group (ReapOrphans).
type CommandExecutor struct {
	Argv      []string      // program and arguments (config.SplitCommand)
	Probe     []string      // optional version probe, program and arguments
	KillGrace time.Duration // SIGTERM to SIGKILL
	Leases    *store.Store  // the per-instance leases
	// PassEnv names the worker's variables the programs get beyond the
	// base ones (EXECUTOR_PASS_ENV).
	PassEnv []string
	// Credential, when set, runs the programs as another user
	// (EXECUTOR_USER), who can read neither the worker's files nor its
	// /proc.
	Credential *syscall.Credential
	// HeartbeatEvery overrides the interval derived from the activity's
	// heartbeat timeout; zero derives it. Leases are renewed as often.
	HeartbeatEvery time.Duration
}

// ApplyUpdate implements Executor.
func (e *CommandExecutor) ApplyUpdate(ctx context.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
	return runAttempt(ctx, in, e.run)
}

// attempt is one ApplyUpdate of the command executor.
type attempt struct {
	e       *CommandExecutor
	in      workflows.ApplyUpdateInput
	logger  log.Logger
	started time.Time
	every   time.Duration // heartbeat and lease renewal interval
	// previous is the last heartbeat of this activity's previous attempt,
	// if it got that far: a lost worker's progress.
	previous       heartbeatDetails
	fence          int64
	commandStarted time.Time
	activityID     string
	number         int32 // the activity's attempt number, from 1
}

// run is one attempt, given a valid input and a window still open at
// started: lease, probe, update, probe.
func (e *CommandExecutor) run(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (workflows.ApplyUpdateResult, error) {
	info := activity.GetInfo(ctx)
	a := &attempt{e: e, in: in, logger: activity.GetLogger(ctx), started: started, every: e.HeartbeatEvery,
		activityID: info.ActivityID, number: info.Attempt}
	if a.every <= 0 {
		a.every = heartbeatInterval(info.HeartbeatTimeout)
	}
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &a.previous) == nil {
		a.logger.Warn("Retrying an attempt that did not finish", "instanceId", in.InstanceID, "previousPhase", a.previous.Phase,
			"previousFence", a.previous.Fence, "previousCommandStarted", a.previous.CommandStarted, "probe", len(e.Probe) > 0)
	}
	lease, err := e.takeLease(ctx, a)
	if err != nil {
		return workflows.ApplyUpdateResult{}, err
	}
	defer lease.release()
	a.fence = lease.fence

	if len(e.Probe) > 0 {
		version, err := a.probe(ctx, lease, probeBefore)
		if err != nil {
			return workflows.ApplyUpdateResult{}, err
		}
		if reached(version, in.TargetVersion) {
			a.logger.Info("Already up to date: the update command is not run", "instanceId", in.InstanceID, "version", version, "target", in.TargetVersion)
			return workflows.ApplyUpdateResult{
				AlreadyCurrent: true, ProbedVersion: version,
				Output: fmt.Sprintf("already up to date: the version probe says %s runs %s (target %s); the update command was not run", in.InstanceID, version, in.TargetVersion),
			}, nil
		}
	}
	output, err := a.update(ctx, lease)
	if err != nil {
		return workflows.ApplyUpdateResult{}, err
	}
	result := workflows.ApplyUpdateResult{Output: output}
	if len(e.Probe) > 0 {
		version, err := a.probe(ctx, lease, probeAfter)
		if err != nil {
			// Retryable: the next attempt's first probe tells whether the
			// update took.
			return workflows.ApplyUpdateResult{}, err
		}
		if !sameVersion(version, in.TargetVersion) {
			return workflows.ApplyUpdateResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the update command succeeded, but the version probe says %s runs %s, not the target %s; update output: %s",
					in.InstanceID, version, in.TargetVersion, output),
				workflows.ErrTypeUpdateFailed, nil)
		}
		result.ProbedVersion = version
	}
	return result, nil
}

// update runs the update command under the lease.
func (a *attempt) update(ctx context.Context, lease *heldLease) (string, error) {
	output := &outputTail{}
	a.commandStarted = time.Now()
	stopAt := stopTime(a.commandStarted, a.in.WindowEnd, a.e.KillGrace)
	x, err := a.supervise(ctx, lease, program{what: "update command", argv: a.e.Argv, env: a.env(), stderr: output, phase: phaseUpdate}, stopAt)
	if err != nil {
		return "", err
	}
	tail := output.String()
	switch {
	case x.stopped == stoppedLimit:
		return "", stoppedForWindow(a.in, a.in.WindowEnd.Sub(stopAt), x.ran, tail)
	case x.stopped != ranToEnd:
		return "", a.stoppedError(ctx, "the update command", x, tail)
	case x.state != nil && x.state.Success():
		a.logger.Info("Update command succeeded", "instanceId", a.in.InstanceID, "slot", a.in.Attempt, "fence", a.fence, "duration", x.ran)
		return tail, nil
	}
	return "", exitFailure(x, tail)
}

// env is the programs' environment: the worker's less its configuration,
// the update, and the lease's fence.
func (a *attempt) env() []string {
	env := append(inheritedEnvironment(a.e.PassEnv),
		"INSTANCE_ID="+a.in.InstanceID,
		"TENANT_ID="+a.in.TenantID,
		"CURRENT_VERSION="+a.in.CurrentVersion,
		"TARGET_VERSION="+a.in.TargetVersion,
		"ATTEMPT="+string(a.in.Attempt),
		"WINDOW_END="+a.in.WindowEnd.UTC().Format(time.RFC3339),
		"WORKFLOW_ID="+a.in.WorkflowID,
		fenceVariable(a.fence),
		workerVariable(os.Getpid()),
	)
	if a.previous.Fence != 0 && a.previous.Fence != a.fence {
		// The lease of this update's previous attempt, lost or failed: a
		// program that keeps state per fence can pick up from there.
		env = append(env, "SVCUPDATE_PREVIOUS_FENCE="+strconv.FormatInt(a.previous.Fence, 10))
	}
	return env
}

// holder describes the attempt in its lease, for people.
func (a *attempt) holder(me store.WorkerProcess) string {
	return fmt.Sprintf("%s activity %s attempt %d (%s slot), worker pid %d on %s", a.in.WorkflowID,
		a.activityID, a.number, a.in.Attempt, me.PID, me.Host)
}

// beat records a heartbeat with the attempt's progress.
func (a *attempt) beat(ctx context.Context, d heartbeatDetails) {
	d.Fence, d.CommandStarted = a.fence, a.commandStarted
	d.Elapsed = time.Since(a.started).Round(time.Second).String()
	activity.RecordHeartbeat(ctx, d)
}

// stoppedError is the error of a program stopped before its end for
// another reason than the caller's stop time.
func (a *attempt) stoppedError(ctx context.Context, what string, x programExit, output string) error {
	ran := x.ran.Round(time.Millisecond)
	switch x.stopped {
	case stoppedLeaseLost:
		return withOutput(fmt.Sprintf("%s was killed after %s: another attempt broke this attempt's executor lease (fence %d)", what, ran, a.fence), output)
	case stoppedLeaseExpired:
		return withOutput(fmt.Sprintf("%s was stopped after %s: the executor lease (fence %d) could not be renewed, and another attempt may break it at its kill deadline", what, ran, a.fence), output)
	}
	return a.interrupted(ctx, fmt.Sprintf("after %s ran for %s", what, ran), output)
}

// interrupted is the error of an attempt whose context ended: the
// activity's deadline is the window's end; a cancellation comes from the
// workflow or a stopping worker.
func (a *attempt) interrupted(ctx context.Context, when, output string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return windowElapsed(a.in, "it ended "+when, output)
	}
	return withOutput(fmt.Sprintf("attempt stopped %s: %v", when, ctx.Err()), output)
}

// stoppedForWindow is the error of a command stopped because its window
// ends.
func stoppedForWindow(in workflows.ApplyUpdateInput, beforeEnd, ran time.Duration, output string) error {
	when := "at its end"
	if beforeEnd > 0 {
		when = fmt.Sprintf("%s before its end (EXECUTOR_KILL_GRACE) so as to be gone by then", beforeEnd)
	}
	return windowElapsed(in, fmt.Sprintf("the update command was stopped %s, after running for %s", when, ran.Round(time.Millisecond)), output)
}

// baseEnvironment are the worker's variables every program gets: what
// locates programs and files and sets the language and time zone.
var baseEnvironment = []string{"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}

// inheritedEnvironment is the part of the worker's environment the programs
// get: an allow-list (baseEnvironment, LC_*, and pass, EXECUTOR_PASS_ENV),
// so credentials such as SENDGRID_API_KEY, the password in DATABASE_URL,
// PGPASSWORD or a cloud token never reach the provider's program.
func inheritedEnvironment(pass []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(baseEnvironment, name) || strings.HasPrefix(name, "LC_") || slices.Contains(pass, name) {
			env = append(env, kv)
		}
	}
	return env
}

// exitText describes how a program that ran to its end exited.
func exitText(x programExit) string {
	switch {
	case x.state == nil:
		return fmt.Sprintf("could not be waited for (%v)", x.waitErr)
	case x.state.ExitCode() >= 0:
		return fmt.Sprintf("exited with status %d", x.state.ExitCode())
	}
	return "was killed by a signal (" + x.state.String() + ")"
}

// exitFailure is the non-retryable error of a command that ran to its end
// and did not succeed: running it again in the same window would most
// likely fail the same way, and the secondary slot exists for a retry.
func exitFailure(x programExit, tail string) error {
	// The exit status is in the message; the *exec.ExitError would only
	// repeat it as a cause, so it is kept only when there is no status.
	var cause error
	if x.state == nil {
		cause = x.waitErr
	}
	msg := "update command " + exitText(x)
	if tail != "" {
		msg += ": " + tail
	}
	return temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeUpdateFailed, cause)
}

// fenceVariable is the environment entry that hands a program its
// attempt's fence. With workerVariable it marks every process an attempt
// started, so a restarted worker finds them (killMarkedProcesses).
func fenceVariable(fence int64) string {
	return "SVCUPDATE_FENCE=" + strconv.FormatInt(fence, 10)
}

// workerVariable names the worker process that started a program.
func workerVariable(pid int) string {
	return "SVCUPDATE_WORKER_PID=" + strconv.Itoa(pid)
}
