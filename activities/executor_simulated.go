package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

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
	return runAttempt(ctx, in, e.run)
}

// fails reports whether Failures fails attempt of instanceID; instances
// not listed succeed.
func (e *SimulatedExecutor) fails(instanceID string, attempt workflows.SlotRole) bool {
	switch e.Failures[instanceID] {
	case config.FailAll:
		return true
	case config.FailPrimary:
		return attempt == workflows.SlotPrimary
	case config.FailSecondary:
		return attempt == workflows.SlotSecondary
	}
	return false
}

// run is one simulated attempt, given a valid input and a window still
// open at started.
func (e *SimulatedExecutor) run(ctx context.Context, in workflows.ApplyUpdateInput, started time.Time) (workflows.ApplyUpdateResult, error) {
	interval := e.HeartbeatEvery
	if interval <= 0 {
		interval = heartbeatInterval(activity.GetInfo(ctx).HeartbeatTimeout)
	}
	heartbeat := time.NewTicker(interval)
	defer heartbeat.Stop()
	done := time.NewTimer(e.Duration)
	defer done.Stop()
	windowEnd := time.NewTimer(time.Until(in.WindowEnd))
	defer windowEnd.Stop()
	activity.RecordHeartbeat(ctx, heartbeatDetails{Phase: phaseUpdate, Elapsed: "0s"})
	for {
		select {
		case <-done.C:
			if e.fails(in.InstanceID, in.Attempt) {
				return workflows.ApplyUpdateResult{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("simulated update of %s to %s failed in the %s attempt (SIMULATED_FAILURES)", in.InstanceID, in.TargetVersion, in.Attempt),
					workflows.ErrTypeUpdateFailed, nil)
			}
			return workflows.ApplyUpdateResult{
				Output: fmt.Sprintf("simulated update of %s from %s to %s done in %s", in.InstanceID, in.CurrentVersion, in.TargetVersion, e.Duration),
			}, nil
		case <-heartbeat.C:
			activity.RecordHeartbeat(ctx, heartbeatDetails{Phase: phaseUpdate, Elapsed: time.Since(started).Round(time.Second).String()})
		case <-windowEnd.C:
			return workflows.ApplyUpdateResult{}, windowElapsed(in, "it ended after the simulated update had run for "+time.Since(started).Round(time.Millisecond).String(), "")
		case <-ctx.Done():
			ran := time.Since(started).Round(time.Millisecond)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return workflows.ApplyUpdateResult{}, windowElapsed(in, "it ended after the simulated update had run for "+ran.String(), "")
			}
			return workflows.ApplyUpdateResult{}, fmt.Errorf("simulated update stopped after %s: %w", ran, ctx.Err())
		}
	}
}
