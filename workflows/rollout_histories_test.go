package workflows

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Rollouts are recorded like lifecycles (histories_test.go): each path
// runs on the dev server against the fake rollout activities, every gate
// due at once, and -record writes the missing ones into the current
// release's folder, where TestReplayRecordedHistories replays them.

// recordedRollout is one Rollout recorded into testdata/<release>/<name>.json.
type recordedRollout struct {
	name                         string
	failedInWave0, failedInWave1 int
	// drive steers the running rollout as its operators would.
	drive     func(t *testing.T, c client.Client, run client.WorkflowRun)
	wantPhase RolloutPhase
}

var recordedRollouts = []recordedRollout{
	// Nothing failed: each wave opens at its gate.
	{name: "rollout-waves-opened", wantPhase: PhaseDone},
	// A sandbox failed: wave 1 is held until Resume; wave 2, still over
	// the budget, is held and aborted.
	{name: "rollout-held-resumed-aborted", failedInWave0: 1, wantPhase: PhaseAborted,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun) {
			awaitProgress(t, c, run, func(p RolloutProgress) bool { return p.Phase == PhasePaused && p.CurrentWave == 1 })
			steerRun(t, c, run, UpdateResume, ResumeInput{By: "ops@provider.example"})
			awaitProgress(t, c, run, func(p RolloutProgress) bool { return p.Phase == PhasePaused && p.CurrentWave == 2 })
			steerRun(t, c, run, UpdateAbort, AbortInput{By: "ops@provider.example", Reason: "still failing"})
		}},
	// Wave 1 is held, then moved an hour on and opened; wave 2, moved a
	// day after it, is aborted while it waits for its gate.
	{name: "rollout-held-moved", failedInWave0: 1, wantPhase: PhaseAborted,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun) {
			awaitProgress(t, c, run, func(p RolloutProgress) bool { return p.Phase == PhasePaused && p.CurrentWave == 1 })
			steerRun(t, c, run, UpdateResume, ResumeInput{By: "ops@provider.example", MoveTo: time.Now().Add(time.Hour).Truncate(time.Second)})
			awaitProgress(t, c, run, func(p RolloutProgress) bool { return p.CurrentWave == 2 && p.MovingTo.IsZero() })
			steerRun(t, c, run, UpdateAbort, AbortInput{By: "ops@provider.example", Reason: "moved wave failing"})
		}},
}

// TestRecordRolloutHistories runs every recorded rollout path on the dev
// server (a few seconds each) and checks how it ends; with -record it
// writes the ones missing from testdata/<currentRelease>/.
func TestRecordRolloutHistories(t *testing.T) {
	c, _ := startDevServer(t)
	for _, p := range recordedRollouts {
		t.Run(p.name, func(t *testing.T) {
			events := runRollout(t, c, p)
			t.Logf("%s: %d events", p.name, len(events))
			if _, err := os.Stat(historyPath(p.name)); *recordHistories && errors.Is(err, os.ErrNotExist) {
				writeHistory(t, historyPath(p.name), events)
			}
		})
	}
}

// runRollout runs one path on a task queue of its own, with its own fake
// activities, and returns its history.
func runRollout(t *testing.T, c client.Client, p recordedRollout) []*historypb.HistoryEvent {
	now := time.Now()
	fake := newFakeRollout(now, p.failedInWave0, p.failedInWave1)
	for i := range fake.reports {
		// Within the gate's lead: each gate is decided as soon as the walk
		// reaches it.
		fake.reports[i].FirstStart, fake.reports[i].LastStart = now.Add(time.Minute), now.Add(time.Minute)
	}
	queue := "record-" + p.name
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(Rollout, workflow.RegisterOptions{Name: RolloutWorkflowType})
	for name, fn := range map[string]any{
		ActivityPlanWaves: fake.PlanWaves, ActivityStartBatch: fake.StartBatch, ActivityWaveReport: fake.WaveReport,
		ActivitySetWaveState: fake.SetWaveState, ActivityAlertOperators: fake.AlertOperators, ActivityCancelWaves: fake.CancelWaves,
		ActivityMoveWaves: fake.MoveWaves,
	} {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	require.NoError(t, w.Start())
	defer w.Stop()
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: RolloutID("9.2.0") + ":" + p.name, TaskQueue: queue},
		RolloutWorkflowType, testRolloutInput())
	require.NoError(t, err)
	if p.drive != nil {
		p.drive(t, c, run)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress RolloutProgress
	require.NoError(t, run.Get(ctx, &progress))
	require.Equal(t, p.wantPhase, progress.Phase)
	return history(t, c, run)
}

// awaitProgress waits until the rollout's Progress satisfies cond.
func awaitProgress(t *testing.T, c client.Client, run client.WorkflowRun, cond func(RolloutProgress) bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		value, err := c.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), QueryProgress)
		var p RolloutProgress
		return err == nil && value.Get(&p) == nil && cond(p)
	}, 30*time.Second, 50*time.Millisecond)
}

// steerRun sends an operator's Update and waits for its answer.
func steerRun(t *testing.T, c client.Client, run client.WorkflowRun, name string, arg any) {
	t.Helper()
	_, err := sendUpdateAsIs(c, run, name, arg)
	require.NoError(t, err)
}
