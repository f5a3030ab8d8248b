package activities

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// Executor runs the update of one instance inside one window: the
// ApplyUpdate activity. The update itself is the provider's business, so
// the worker picks one implementation by EXECUTOR.
type Executor interface {
	ApplyUpdate(ctx context.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error)
}

// ExecutorOptions says which executor NewExecutor builds and how it runs
// updates. The worker fills it from its configuration.
type ExecutorOptions struct {
	Kind config.ExecutorKind
	// Command is the program and its arguments (config.SplitCommand) of
	// the command executor.
	Command []string
	// KillGrace is the time between SIGTERM and SIGKILL when the command
	// executor stops its program.
	KillGrace time.Duration
	// SimulatedDuration is how long each simulated update takes.
	SimulatedDuration time.Duration
	// SimulatedFailures says which simulated updates fail, and in which
	// attempt.
	SimulatedFailures config.SimulatedFailures
	// Probe is the optional version probe of the command executor
	// (EXECUTOR_PROBE_COMMAND, split).
	Probe []string
	// Leases is where the command executor takes its per-instance leases.
	Leases *store.Store
	// PassEnv and Credential isolate the command executor's programs
	// (EXECUTOR_PASS_ENV, EXECUTOR_USER).
	PassEnv    []string
	Credential *syscall.Credential
}

// NewExecutor builds the executor opts.Kind names. A command executor
// whose program cannot be found fails here, at start, rather than at the
// first update window.
func NewExecutor(opts ExecutorOptions) (Executor, error) {
	switch opts.Kind {
	case config.ExecutorCommand:
		if len(opts.Command) == 0 {
			return nil, errors.New("EXECUTOR=command needs EXECUTOR_COMMAND")
		}
		if _, err := exec.LookPath(opts.Command[0]); err != nil {
			return nil, fmt.Errorf("EXECUTOR_COMMAND program %q cannot be run: %w", opts.Command[0], err)
		}
		if len(opts.Probe) > 0 {
			if _, err := exec.LookPath(opts.Probe[0]); err != nil {
				return nil, fmt.Errorf("EXECUTOR_PROBE_COMMAND program %q cannot be run: %w", opts.Probe[0], err)
			}
		}
		if opts.Leases == nil {
			return nil, errors.New("EXECUTOR=command needs Postgres for its per-instance leases")
		}
		return &CommandExecutor{Argv: opts.Command, Probe: opts.Probe, KillGrace: opts.KillGrace, Leases: opts.Leases,
			PassEnv: opts.PassEnv, Credential: opts.Credential}, nil
	case config.ExecutorSimulated:
		return &SimulatedExecutor{Duration: opts.SimulatedDuration, Failures: opts.SimulatedFailures}, nil
	case config.ExecutorNone:
		return nil, fmt.Errorf("EXECUTOR=%s: this worker hosts no executor, so there is none to build", config.ExecutorNone)
	}
	return nil, fmt.Errorf("unknown executor %q (accepted: %s, %s or %s)", opts.Kind, config.ExecutorSimulated, config.ExecutorCommand, config.ExecutorNone)
}

// RegisterExecutor registers e's ApplyUpdate under its contract name.
func RegisterExecutor(r worker.ActivityRegistry, e Executor) {
	r.RegisterActivityWithOptions(e.ApplyUpdate, activity.RegisterOptions{Name: workflows.ActivityApplyUpdate})
}

const (
	// applyDurationMetric times every ApplyUpdate, tagged with the attempt
	// (primary, secondary) and its outcome.
	applyDurationMetric = "svcupdate_executor_duration"
	// defaultHeartbeat is the heartbeat interval when the activity has no
	// heartbeat timeout.
	defaultHeartbeat = 10 * time.Second
	// minHeartbeat keeps a tiny heartbeat timeout from turning into a
	// flood of heartbeats.
	minHeartbeat = time.Second
)

// heartbeatDetails is what the executors report while they run; it shows
// in the Web UI as the pending activity's heartbeat details, and a retry
// reads its predecessor's (activity.GetHeartbeatDetails) to tell a lost
// attempt's progress from a fresh start.
type heartbeatDetails struct {
	// Phase is where the attempt is: one of the phase constants.
	Phase string `json:"phase,omitempty"`
	// Fence is the attempt's executor lease, once taken.
	Fence int64 `json:"fence,omitempty"`
	// CommandStarted is when the update command started, once it did: a
	// lost attempt that got this far may have updated the instance.
	CommandStarted time.Time `json:"commandStarted,omitzero"`
	// WaitingFor names the holder of the lease the attempt waits for.
	WaitingFor string `json:"waitingFor,omitempty"`
	Elapsed    string `json:"elapsed"`
	LastOutput string `json:"lastOutput,omitempty"`
}

// Attempt phases, as heartbeat details report them.
const (
	phaseLease  = "waiting-for-lease"
	phaseProbe  = "probing"
	phaseUpdate = "updating"
	phaseVerify = "verifying"
)

// heartbeatInterval is a third of the activity's heartbeat timeout, so two
// heartbeats can be lost before the server declares the attempt dead.
func heartbeatInterval(heartbeatTimeout time.Duration) time.Duration {
	if heartbeatTimeout <= 0 {
		return defaultHeartbeat
	}
	return max(heartbeatTimeout/3, minHeartbeat)
}

// validateApplyUpdate refuses input no executor can act on.
func validateApplyUpdate(in workflows.ApplyUpdateInput) error {
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

// windowElapsed is the error when the window ends before the update did,
// or before it could start: non-retryable, since a retry could start
// seconds before the window closes and run past it. The workflow labels
// the attempt window-elapsed.
func windowElapsed(in workflows.ApplyUpdateInput, what, output string) error {
	msg := fmt.Sprintf("the %s update window ends at %s: %s", in.Attempt, in.WindowEnd.UTC().Format(time.RFC3339), what)
	if output != "" {
		msg += "; last output:\n" + output
	}
	return temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeWindowElapsed, nil)
}

// applyOutcome names how an ApplyUpdate ended, for the duration metric.
func applyOutcome(ctx context.Context, err error) string {
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return workflows.OutcomeSucceeded
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeWindowElapsed:
		return workflows.OutcomeWindowElapsed
	case errors.Is(ctx.Err(), context.Canceled):
		return workflows.OutcomeCancelled
	default:
		return workflows.OutcomeFailed
	}
}

func recordDuration(ctx context.Context, in workflows.ApplyUpdateInput, outcome string, d time.Duration) {
	activity.GetMetricsHandler(ctx).WithTags(map[string]string{
		"attempt": string(in.Attempt),
		"outcome": outcome,
	}).Timer(applyDurationMetric).Record(d)
}

// runAttempt is what every executor does around one attempt: it refuses
// an invalid input, fails at once when the window has already ended (the
// attempt started too late to do anything), and records the attempt's
// duration and outcome however it ends. attempt does the update itself.
func runAttempt(ctx context.Context, in workflows.ApplyUpdateInput,
	attempt func(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (workflows.ApplyUpdateResult, error),
) (_ workflows.ApplyUpdateResult, err error) {
	if err := validateApplyUpdate(in); err != nil {
		return workflows.ApplyUpdateResult{}, err
	}
	started := time.Now()
	defer func() {
		recordDuration(ctx, in, applyOutcome(ctx, err), time.Since(started))
	}()

	if !time.Now().Before(in.WindowEnd) {
		return workflows.ApplyUpdateResult{}, windowElapsed(in, "it ended before the attempt started", "")
	}
	return attempt(ctx, in, started)
}
