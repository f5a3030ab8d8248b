package workflows

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/devtest"
)

// These tests run the workflow on a real Temporal dev server (bin/temporal,
// built by `make test`) with the fake activities on real workers: they prove
// what the time-skipping environment cannot (history contents) and record
// the histories that the replay test runs.

// devServer is shared by every dev-server test of the package (started on
// first use, stopped by TestMain) with one worker per task queue.
var devServer struct {
	once   sync.Once
	err    error
	server *devtest.Server
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
	fakes := &fakeActivities{applyUpdate: recordedExecutor, bookSlots: recordedBooking,
		instances:  map[string]CheckInstanceResult{instanceUpToDate: {CurrentVersion: "9.2.0", UpToDate: true}},
		heldChecks: map[string]int{instanceHeldAborted: -1, instanceHeldMoved: -1, instanceHeldOpened: 1}}
	updates := worker.New(server.Client(), TaskQueue, worker.Options{})
	updates.RegisterWorkflowWithOptions(trustingTestKeys.ServiceUpdate, workflow.RegisterOptions{Name: WorkflowType})
	fakes.register(updates)
	executor := worker.New(server.Client(), ExecutorTaskQueue, worker.Options{})
	fakes.registerExecutor(executor)
	admin := worker.New(server.Client(), AdminTaskQueue, worker.Options{DisableWorkflowWorker: true})
	fakes.register(admin)
	for _, w := range []worker.Worker{updates, executor, admin} {
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
	}
	devServer.server, devServer.client, devServer.fakes = server, server.Client(), fakes
	devServer.stop = func() {
		admin.Stop()
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
	case in.InstanceID == "inst-failed", in.InstanceID == instanceViewsFailed,
		in.InstanceID == "inst-fallback" && in.Attempt == SlotPrimary:
		return temporal.NewNonRetryableApplicationError("migration step 3 failed", ErrTypeUpdateFailed, nil)
	case in.InstanceID == "inst-window" && in.Attempt == SlotPrimary:
		return blockUntilCancelled(ctx, in)
	case in.InstanceID == instanceCancelledRunning:
		return heartbeatUntilCancelled(ctx)
	case in.InstanceID == instanceStoppedForWindow && in.Attempt == SlotPrimary:
		return errStoppedForWindow
	}
	return nil
}

// recordedBooking finds every slot full for instanceFullSlot; other
// bookings succeed.
func recordedBooking(in BookSlotsInput) error {
	if in.InstanceID == instanceFullSlot {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("slot %s in %s is full (40 of 40)",
			in.PrimaryStart.Format(timeLayout), in.Region), ErrTypeSlotFull, nil)
	}
	return nil
}

// instanceFullSlot finds every slot it books full.
const instanceFullSlot = "inst-full-slot"

// instanceUpToDate is found already on its target at the primary start.
const instanceUpToDate = "inst-up-to-date"

// instanceHeldAborted's and instanceHeldMoved's rollout waves stay held
// until the update is cancelled; instanceHeldOpened's wave opens at the
// first recheck.
const (
	instanceHeldAborted = "inst-held-aborted"
	instanceHeldMoved   = "inst-held-moved"
	instanceHeldOpened  = "inst-held-opened"
)

// instanceCancelledRunning is cancelled while its executor runs.
const instanceCancelledRunning = "inst-cancelled-running"

// instanceStoppedForWindow's primary attempt keeps failing with a
// retryable error until the window leaves no room for another try.
const instanceStoppedForWindow = "inst-stopped-for-window"

var errStoppedForWindow = errors.New("the primary update window ends soon: the update command was stopped")

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
		LeanLifecycle:   true, // as WithDefaults sets it
		Releases: []ReleaseOption{
			{Version: "9.2.0", PeriodStart: now.Add(-time.Hour).UTC(), PeriodEnd: now.Add(time.Hour).UTC()},
			{Version: "9.3.0", PeriodStart: now.Add(-time.Hour).UTC(), PeriodEnd: now.Add(2 * time.Hour).UTC()},
		},
	}
}

// startUpdate starts a ServiceUpdate on the dev server as the rollout does.
func startUpdate(t *testing.T, c client.Client, in Input) client.WorkflowRun {
	t.Helper()
	devServer.fakes.expect(in)
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

// awaitIdle waits until the workflow has no workflow task and no
// activity pending, so its history holds everything it has done so far.
func awaitIdle(t *testing.T, c client.Client, run client.WorkflowRun) {
	t.Helper()
	require.Eventually(t, func() bool {
		desc, err := c.DescribeWorkflow(context.Background(), run.GetID(), run.GetRunID())
		return err == nil && desc.RawResponse.GetPendingWorkflowTask() == nil && len(desc.RawResponse.GetPendingActivities()) == 0
	}, 30*time.Second, 20*time.Millisecond, "the workflow never went idle")
}

func sendUpdate(c client.Client, run client.WorkflowRun, name string, arg any) (StatusView, error) {
	return sendUpdateAsIs(c, run, name, signed(nil, run.GetID(), name, arg, time.Now()))
}

// sendUpdateAsIs is sendUpdate without signing: arg goes as it is.
func sendUpdateAsIs(c client.Client, run client.WorkflowRun, name string, arg any) (StatusView, error) {
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

// offeredAnHourAhead is an input whose primary slot starts in an hour,
// with the slots the release offers and a two-hour minimum notice for a
// Reschedule: the current primary is too soon to choose again, the later
// slot may be.
func offeredAnHourAhead(instanceID string) (in Input, later OfferedSlot) {
	in = compressedInput(instanceID, time.Now())
	in.PrimaryStart = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	in.SecondaryStart = in.PrimaryStart.Add(DefaultWindowLength + time.Hour)
	in.Releases[0].PeriodEnd = in.PrimaryStart.Add(days(4))
	in.ReminderOffsets = nil // defaults: only day-of is still ahead
	in.WindowLength = 0
	in.RescheduleMinNotice = 2 * time.Hour
	later = OfferedSlot{Version: "9.2.0", Start: in.PrimaryStart.Add(days(1)), WindowLength: DefaultWindowLength}
	in.Slots = []OfferedSlot{
		{Version: "9.2.0", Start: in.PrimaryStart, WindowLength: DefaultWindowLength},
		{Version: "9.2.0", Start: in.SecondaryStart, WindowLength: DefaultWindowLength},
		later,
		{Version: "9.2.0", Start: later.Start.Add(days(1)), WindowLength: DefaultWindowLength},
	}
	return in, later
}

func TestRejectedUpdateAddsNoHistoryEvent(t *testing.T) {
	c, _ := startDevServer(t)
	in, later := offeredAnHourAhead("inst-rejected")
	overrunning := OfferedSlot{Version: "9.2.0", Start: in.Releases[0].PeriodEnd.Add(-time.Hour), WindowLength: DefaultWindowLength}
	in.Slots = append(in.Slots, overrunning)
	run := startUpdate(t, c, in)
	awaitStatus(t, c, run, announced)
	awaitIdle(t, c, run)

	before := len(history(t, c, run))
	for _, update := range []struct {
		name string
		arg  any
		want string
	}{
		{UpdateApprove, ApproveInput{Admin: "mallory@evil.example"}, "is not an admin of instance inst-rejected"},
		{UpdateReschedule, RescheduleInput{Admin: "mallory@evil.example", PrimaryStart: later.Start, SecondaryStart: later.Start.Add(days(1))}, "is not an admin of instance inst-rejected"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: time.Now().Add(-time.Minute), SecondaryStart: in.SecondaryStart}, "is not offered in eu-central for 9.2.0"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: in.PrimaryStart, SecondaryStart: later.Start}, "choose a primary slot at least 2h ahead"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later.Start, SecondaryStart: in.SecondaryStart}, "is too early"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later.Start, SecondaryStart: later.Start.Add(days(1) + time.Minute)}, "the secondary slot"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later.Start, SecondaryStart: overrunning.Start}, "lies outside the release period of 9.2.0"},
		{UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later.Start, SecondaryStart: later.Start.Add(days(1)), TargetVersion: "9.3.0"}, "is not offered in eu-central for 9.3.0"},
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

// fullSlotRefusalEvents is what a Reschedule refused because a slot is
// full adds to history (README, approve and reschedule): the validator
// cannot know capacity, so the Update is accepted (a workflow task and
// UpdateAccepted, 4 events), books (ActivityTaskScheduled, Started,
// Failed: 3) and answers with the refusal (a workflow task and
// UpdateCompleted: 4). The state is left as it was.
const fullSlotRefusalEvents = 11

// Only a full slot is refused after acceptance, and each such refusal adds
// the same bounded number of events, however often an admin retries.
func TestFullSlotRefusalAddsBoundedHistory(t *testing.T) {
	c, _ := startDevServer(t)
	in, later := offeredAnHourAhead(instanceFullSlot)
	run := startUpdate(t, c, in)
	awaitStatus(t, c, run, announced)

	for try := 1; try <= 2; try++ {
		awaitIdle(t, c, run)
		before := len(history(t, c, run))
		_, err := sendUpdate(c, run, UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later.Start, SecondaryStart: later.Start.Add(days(1))})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the slots could not be booked: slot "+later.Start.Format(timeLayout)+" in eu-central is full (40 of 40)")
		events := history(t, c, run)
		var added []string
		for _, event := range events[before:] {
			added = append(added, event.GetEventType().String())
		}
		assert.Equal(t, fullSlotRefusalEvents, len(events)-before, "events added by refusal %d: %v", try, added)
	}
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	assert.Contains(t, strings.Join(strings.Fields(string(readme)), " "), fmt.Sprintf("adds %d events to history each time", fullSlotRefusalEvents),
		"README documents what a full-slot refusal adds")
	view := awaitStatus(t, c, run, func(StatusView) bool { return true })
	assert.Equal(t, StatusScheduled, view.Status)
	assert.Equal(t, in.PrimaryStart, view.Primary.Start)

	require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, run.Get(context.Background(), nil), &cancelled)
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
