package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/svcupdate/svcupdate/internal/devtest"
)

// These tests run the workflow on a real Temporal dev server (bin/temporal,
// built by `make test`) with the fake activities on real workers: they prove
// what the time-skipping environment cannot (history contents) and record
// the histories that the replay test runs.

// recordEnv set to 1 re-records workflows/testdata/*.json from a dev-server run.
const recordEnv = "RECORD_HISTORIES"

const historyDir = "testdata"

// devServer is shared by every dev-server test of the package (started on
// first use, stopped by TestMain) with one worker per task queue.
var devServer struct {
	once   sync.Once
	err    error
	server *testsuite.DevServer
	client client.Client
	fakes  *fakeActivities
	stop   func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if devServer.stop != nil {
		devServer.stop()
	}
	os.Exit(code)
}

func startDevServer(t *testing.T) (client.Client, *fakeActivities) {
	t.Helper()
	devServer.once.Do(func() { devServer.err = bootDevServer() })
	require.NoError(t, devServer.err)
	return devServer.client, devServer.fakes
}

func bootDevServer() error {
	server, err := devtest.StartServer(SearchAttributeKeys...)
	if err != nil {
		return err
	}
	fakes := &fakeActivities{applyUpdate: recordedExecutor}
	updates := worker.New(server.Client(), TaskQueue, worker.Options{})
	updates.RegisterWorkflowWithOptions(ServiceUpdate, workflow.RegisterOptions{Name: WorkflowType})
	fakes.register(updates)
	executor := worker.New(server.Client(), ExecutorTaskQueue, worker.Options{})
	fakes.registerExecutor(executor)
	for _, w := range []worker.Worker{updates, executor} {
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
	}
	devServer.server, devServer.client, devServer.fakes = server, server.Client(), fakes
	devServer.stop = func() {
		executor.Stop()
		updates.Stop()
		_ = server.Stop()
	}
	return nil
}

// recordedExecutor decides the executor's outcome per instance, so the
// recorded paths can run side by side on one worker.
func recordedExecutor(ctx context.Context, in ApplyUpdateInput) error {
	switch {
	case in.InstanceID == "inst-failed",
		in.InstanceID == "inst-fallback" && in.Attempt == SlotPrimary:
		return temporal.NewNonRetryableApplicationError("migration step 3 failed", ErrTypeUpdateFailed, nil)
	case in.InstanceID == "inst-window" && in.Attempt == SlotPrimary:
		return blockUntilCancelled(ctx, in)
	case in.InstanceID == instanceCancelledRunning:
		return heartbeatUntilCancelled(ctx)
	}
	return nil
}

// instanceCancelledRunning is cancelled while its executor runs.
const instanceCancelledRunning = "inst-cancelled-running"

// compressedInput is a whole lifecycle in seconds: five reminders shaped
// like the defaults, a 3-second window and a secondary slot 4 seconds later.
func compressedInput(instanceID string, now time.Time) Input {
	primary := now.Add(8 * time.Second).Truncate(time.Millisecond).UTC()
	return Input{
		Instance: Instance{
			ID: instanceID, Name: "Acme " + instanceID, TenantID: "acme", Kind: "production",
			Region: "eu-central", TimeZone: "Europe/Berlin",
		},
		Admins:          []string{adminListed},
		CurrentVersion:  "9.1.0",
		TargetVersion:   "9.2.0",
		PrimaryStart:    primary,
		SecondaryStart:  primary.Add(4 * time.Second),
		ReminderOffsets: []time.Duration{6 * time.Second, 4 * time.Second, 2 * time.Second, time.Second, 0},
		WindowLength:    3 * time.Second,
		SecondaryMinGap: time.Second,
		Releases: []ReleaseOption{
			{Version: "9.2.0", PeriodStart: now.Add(-time.Hour).UTC(), PeriodEnd: now.Add(time.Hour).UTC()},
			{Version: "9.3.0", PeriodStart: now.Add(-time.Hour).UTC(), PeriodEnd: now.Add(2 * time.Hour).UTC()},
		},
	}
}

// startUpdate starts a ServiceUpdate on the dev server as the rollout does.
func startUpdate(t *testing.T, c client.Client, in Input) client.WorkflowRun {
	t.Helper()
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                    WorkflowID(in.Instance.ID, in.TargetVersion),
		TaskQueue:             TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, WorkflowType, in)
	require.NoError(t, err)
	return run
}

// awaitStatus polls the Status query until cond holds or the deadline passes.
func awaitStatus(t *testing.T, c client.Client, run client.WorkflowRun, cond func(StatusView) bool) StatusView {
	t.Helper()
	var view StatusView
	require.Eventually(t, func() bool {
		value, err := c.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), QueryStatus)
		if err != nil {
			return false
		}
		return value.Get(&view) == nil && cond(view)
	}, 30*time.Second, 50*time.Millisecond)
	return view
}

func announced(view StatusView) bool {
	return len(view.Notices) > 0 && view.Notices[0].Kind == NoticeScheduled
}

func history(t *testing.T, c client.Client, run client.WorkflowRun) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	iter := c.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		event, err := iter.Next()
		require.NoError(t, err)
		events = append(events, event)
	}
	return events
}

func sendUpdate(c client.Client, run client.WorkflowRun, name string, arg any) (StatusView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: run.GetID(), RunID: run.GetRunID(), UpdateName: name, Args: []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return StatusView{}, err
	}
	var view StatusView
	err = handle.Get(ctx, &view)
	return view, err
}

func TestRejectedUpdateAddsNoHistoryEvent(t *testing.T) {
	c, _ := startDevServer(t)
	in := compressedInput("inst-rejected", time.Now())
	in.PrimaryStart = time.Now().Add(time.Hour).UTC()
	in.SecondaryStart = in.PrimaryStart.Add(DefaultWindowLength + time.Hour)
	in.Releases[0].PeriodEnd = in.PrimaryStart.Add(days(2))
	in.ReminderOffsets = nil // defaults: only day-of is still ahead
	in.WindowLength = 0
	run := startUpdate(t, c, in)
	awaitStatus(t, c, run, announced)

	before := len(history(t, c, run))
	for _, update := range []struct {
		name string
		arg  any
		want string
	}{
		{UpdateApprove, ApproveInput{Admin: "mallory@evil.example"}, "is not an admin of instance inst-rejected"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: time.Now().Add(-time.Minute), SecondaryStart: in.SecondaryStart}, "is not in the future"},
		{UpdateSetAdmins, SetAdminsInput{}, "the admin list is empty"},
	} {
		_, err := sendUpdate(c, run, update.name, update.arg)
		require.Error(t, err, update.name)
		assert.Contains(t, err.Error(), update.want)
	}
	assert.Equal(t, before, len(history(t, c, run)), "rejected Updates must leave no event in history")

	view, err := sendUpdate(c, run, UpdateApprove, ApproveInput{Admin: adminTyped})
	require.NoError(t, err)
	assert.Equal(t, StatusApproved, view.Status)
	assert.Greater(t, len(history(t, c, run)), before, "an accepted Update is in history")

	require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
	err = run.Get(context.Background(), nil)
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled)
}

// recordedPath is one lifecycle recorded into testdata/<name>.json.
type recordedPath struct {
	name       string
	instanceID string
	mandatory  bool
	// drive acts on the running workflow as admins and operators would.
	drive      func(t *testing.T, c client.Client, run client.WorkflowRun, in Input)
	wantStatus Status
}

var recordedPaths = []recordedPath{
	{name: "approved-succeeded", instanceID: "inst-approved", wantStatus: StatusSucceeded,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, announced)
			_, err := sendUpdate(c, run, UpdateApprove, ApproveInput{Admin: adminTyped, Note: "recorded"})
			require.NoError(t, err)
		}},
	{name: "mandatory-succeeded", instanceID: "inst-mandatory", mandatory: true, wantStatus: StatusSucceeded},
	{name: "rescheduled-later-version-succeeded", instanceID: "inst-rescheduled", wantStatus: StatusSucceeded,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, in Input) {
			awaitStatus(t, c, run, announced)
			primary := in.PrimaryStart.Add(2 * time.Second)
			_, err := sendUpdate(c, run, UpdateReschedule, RescheduleInput{
				Admin: adminTyped, PrimaryStart: primary, SecondaryStart: primary.Add(4 * time.Second), TargetVersion: "9.3.0",
			})
			require.NoError(t, err)
		}},
	{name: "fallback-succeeded", instanceID: "inst-fallback", mandatory: true, wantStatus: StatusSucceeded},
	{name: "window-elapsed-fallback-succeeded", instanceID: "inst-window", mandatory: true, wantStatus: StatusSucceeded},
	{name: "both-failed", instanceID: "inst-failed", mandatory: true, wantStatus: StatusFailed},
	{name: "not-approved", instanceID: "inst-not-approved", wantStatus: StatusNotApproved},
	{name: "cancelled", instanceID: "inst-cancelled", wantStatus: StatusCancelled,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, announced)
			require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
		}},
}

// TestRecordHistories runs the lifecycle paths on the dev server on a
// compressed clock. Normally it runs the happy path and checks its size;
// with RECORD_HISTORIES=1 it runs every path and rewrites testdata/.
func TestRecordHistories(t *testing.T) {
	c, _ := startDevServer(t)
	record := os.Getenv(recordEnv) == "1"
	paths := recordedPaths[:1]
	if record {
		paths = recordedPaths
	}
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Go(func() {
			t.Run(p.name, func(t *testing.T) {
				events := runPath(t, c, p)
				t.Logf("%s: %d events", p.name, len(events))
				assert.Less(t, len(events), 150, "history of %s", p.name)
				if record {
					writeHistory(t, p.name, events)
				}
			})
		})
	}
	wg.Wait()
}

func runPath(t *testing.T, c client.Client, p recordedPath) []*historypb.HistoryEvent {
	in := compressedInput(p.instanceID, time.Now())
	in.Mandatory = p.mandatory
	if p.wantStatus == StatusNotApproved {
		in.Releases[0].PeriodEnd = in.SecondaryStart.Add(2 * in.WindowLength)
	}
	run := startUpdate(t, c, in)
	if p.drive != nil {
		p.drive(t, c, run, in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res Result
	err := run.Get(ctx, &res)
	if p.wantStatus == StatusCancelled {
		var cancelled *temporal.CanceledError
		require.True(t, errors.As(err, &cancelled), "want a cancelled run, got %v", err)
	} else {
		require.NoError(t, err)
		assert.Equal(t, p.wantStatus, res.Status)
	}
	return history(t, c, run)
}

func writeHistory(t *testing.T, name string, events []*historypb.HistoryEvent) {
	data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&historypb.History{Events: events})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(historyDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(historyDir, name+".json"), append(data, '\n'), 0o644))
}

func recordedHistories(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(historyDir, "*.json"))
	require.NoError(t, err)
	require.Len(t, files, len(recordedPaths), "testdata must hold one history per recorded path (RECORD_HISTORIES=1 go test -run TestRecordHistories ./workflows/)")
	return files
}

// TestReplayRecordedHistories proves the current workflow code still
// replays every recorded history: a change that would break running
// workflows fails here (and needs workflow.GetVersion).
func TestReplayRecordedHistories(t *testing.T) {
	quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(ServiceUpdate, workflow.RegisterOptions{Name: WorkflowType})
	for _, file := range recordedHistories(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(quiet, file))
		})
	}
}

// TestRecordedHistorySizes keeps every lifecycle far from Temporal's
// history limits: each path, the full happy path included, stays under 150
// events.
func TestRecordedHistorySizes(t *testing.T) {
	for _, file := range recordedHistories(t) {
		f, err := os.Open(file)
		require.NoError(t, err)
		hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
		require.NoError(t, f.Close())
		require.NoError(t, err)
		events := hist.GetEvents()
		t.Logf("%s: %d events", filepath.Base(file), len(events))
		assert.Less(t, len(events), 150, file)
		last := events[len(events)-1].GetEventType()
		assert.Contains(t, []enumspb.EventType{
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
		}, last, "%s must hold a closed run", file)
	}
}

// A cancellation while the update runs is reported only once the executor
// has stopped: the activity's cancellation is awaited (ActivityTaskCanceled
// is in history), the attempt is recorded as cancelled, and the slots are
// released after the executor let go of the instance. The time-skipping
// environment settles a cancelled activity at once, so this needs a server.
func TestCancelInProgressWaitsForTheExecutor(t *testing.T) {
	c, fakes := startDevServer(t)
	in := compressedInput(instanceCancelledRunning, time.Now())
	in.Mandatory = true
	in.ReminderOffsets = []time.Duration{0}
	// A one-minute window gives a 6 s heartbeat timeout: the worker passes
	// the cancellation on with its next heartbeat, within about 5 s.
	in.WindowLength = time.Minute
	in.SecondaryStart = in.PrimaryStart.Add(in.WindowLength + in.SecondaryMinGap)
	// The fakes live as long as the package's shared server (go test
	// -count=N runs this again against them): count from here.
	releasedBefore, underExecutorBefore := fakes.slotReleases(instanceCancelledRunning)
	run := startUpdate(t, c, in)
	require.Eventually(t, func() bool { return fakes.executingOn(instanceCancelledRunning) }, 30*time.Second, 20*time.Millisecond,
		"the executor never started")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.CancelWorkflow(ctx, run.GetID(), run.GetRunID()))
	err := run.Get(ctx, nil)
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled)

	assert.False(t, fakes.executingOn(instanceCancelledRunning), "the run closed while the executor was still running")
	released, underExecutor := fakes.slotReleases(instanceCancelledRunning)
	assert.Equal(t, 1, released-releasedBefore)
	assert.Zero(t, underExecutor-underExecutorBefore, "slots released while the executor still ran")
	last, ok := fakes.lastTransitionOf(instanceCancelledRunning)
	require.True(t, ok)
	assert.Equal(t, actionCancelled, last.Action)
	assert.Equal(t, StatusInProgress, last.From)
	require.Len(t, last.Snapshot.Attempts, 1)
	assert.Equal(t, OutcomeCancelled, last.Snapshot.Attempts[0].Outcome)

	var types []enumspb.EventType
	for _, event := range history(t, c, run) {
		types = append(types, event.GetEventType())
	}
	activityCancelled := slices.Index(types, enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED)
	require.NotEqual(t, -1, activityCancelled, "the executor's cancellation must be confirmed in history")
	assert.Less(t, activityCancelled, slices.Index(types, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED))
}
