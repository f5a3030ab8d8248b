package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// A window that ran out is labelled window-elapsed, however the executor
// and Temporal report it; only the update's own failure is failed.

func TestAttemptOutcome(t *testing.T) {
	end := time.Date(2026, 4, 15, 13, 0, 0, 0, time.UTC)
	before := end.Add(-time.Minute)
	stopped := temporal.NewApplicationError("the update command was stopped 1m0s before the window's end", ErrTypeWindowElapsed)
	tests := []struct {
		name      string
		err       error
		cancelled bool
		finished  time.Time
		want      string
	}{
		{"success", nil, false, before, OutcomeSucceeded},
		{"cancelled", errors.New("canceled"), true, before, OutcomeCancelled},
		{"definitive failure", temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil), false, before, OutcomeFailed},
		{"retryable failure before the end", errors.New("executor unreachable"), false, before, OutcomeFailed},
		{"timed out", temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE, nil), false, before, OutcomeWindowElapsed},
		{"any failure at the end", errors.New("executor unreachable"), false, end, OutcomeWindowElapsed},
		{"stopped for the window, before the end", stopped, false, before, OutcomeWindowElapsed},
		{"stopped for the window, wrapped", fmt.Errorf("activity error: %w", stopped), false, before, OutcomeWindowElapsed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, attemptOutcome(tt.err, tt.cancelled, tt.finished, end))
		})
	}
}

// The executor stops itself a little before the window ends with its
// retryable WindowElapsed error; Temporal then stops retrying, as the next
// try would not fit, and hands the workflow that error before the end.
func TestExecutorStoppedForTheWindowIsWindowElapsed(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.in.WindowLength, s.in.SecondaryWindowLength = 15*time.Minute, 15*time.Minute
	s.fakes.applyUpdate = func(_ context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return temporal.NewApplicationError("the primary update window ends soon: the update command was stopped", ErrTypeWindowElapsed)
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 2)
	assert.True(t, res.Attempts[0].Finished.Before(primaryStart.Add(15*time.Minute)), "ended before the window did")
	assert.Equal(t, OutcomeWindowElapsed, res.Attempts[0].Outcome)
	assert.Contains(t, res.Attempts[0].Error, "the update command was stopped")
	fallback := s.fakes.transitions[slices.Index(s.fakes.actions(), actionFallback)]
	assert.Contains(t, fallback.Detail, OutcomeWindowElapsed+": ")
}

// On a real server, retries that stop because the next one would not fit
// in the window end with retry state Timeout, whatever the last error was:
// here a plain retryable error, as an executor without the WindowElapsed
// type returns.
func TestRetriesStoppedByTheWindowAreWindowElapsedOnTheServer(t *testing.T) {
	c, _ := startDevServer(t)
	in := compressedInput(instanceStoppedForWindow, time.Now())
	in.Mandatory = true
	in.ReminderOffsets = []time.Duration{0}
	// The first retry (after 10 s) does not fit in a 6 s window: the
	// attempt fails at once, with seconds to spare on a loaded machine.
	in.WindowLength, in.SecondaryWindowLength = 6*time.Second, 6*time.Second
	in.SecondaryStart = in.PrimaryStart.Add(in.WindowLength + in.SecondaryMinGap)
	run := startUpdate(t, c, in)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res Result
	require.NoError(t, run.Get(ctx, &res))

	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 2)
	assert.True(t, res.Attempts[0].Finished.Before(in.PrimaryStart.Add(in.WindowLength)), "retries stopped before the window's end")
	assert.Equal(t, OutcomeWindowElapsed, res.Attempts[0].Outcome)
	assert.Equal(t, errStoppedForWindow.Error(), res.Attempts[0].Error)
}
