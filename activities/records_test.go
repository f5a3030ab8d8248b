package activities

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// activityOutcome is the application error an activity returned, or
// the test fails.
func activityOutcome(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("err = %v (%T), want an application error", err, err)
	}
	return appErr
}

func TestStoreActivitiesClassifyErrors(t *testing.T) {
	s := storetest.Load(t, pgtest.NewPool(t), storetest.Fleet(2, 1))
	acts := &StoreActivities{Store: s}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts.Register(env)

	if _, err := env.ExecuteActivity(workflows.ActivityBookSlots, storetest.Booking("inst-000", 0, 1)); err != nil {
		t.Fatal(err)
	}
	notOffered := storetest.Booking("inst-001", 2, 3)
	notOffered.PrimaryStart = notOffered.PrimaryStart.Add(time.Minute)
	duplicate := storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled)
	duplicate.Snapshot.WorkflowID = "other-workflow"
	if _, err := env.ExecuteActivity(workflows.ActivityRecordTransition, storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		activity string
		input    any
		errType  string
		msg      string
	}{
		{"slot full", workflows.ActivityBookSlots, storetest.Booking("inst-001", 0, 2), workflows.ErrTypeSlotFull,
			"the 9.2.0 slot in eu-west at 2027-03-06 22:00 UTC is full: all 1 places are booked"},
		{"slot not offered", workflows.ActivityBookSlots, notOffered, workflows.ErrTypeSlotNotOffered,
			"release 9.2.0 offers no slot in eu-west starting 2027-03-20 22:01 UTC (the next with free places start 2027-03-20 22:00 UTC, 2027-03-27 22:00 UTC, 2027-04-03 22:00 UTC)"},
		{"unknown instance", workflows.ActivityRecordVersion, workflows.RecordVersionInput{InstanceID: "ghost", Version: "9.2.0"}, workflows.ErrTypeNotFound,
			`record instance version: instance "ghost" does not exist`},
		{"missing fields", workflows.ActivityReleaseSlots, workflows.ReleaseSlotsInput{}, workflows.ErrTypeInvalidInput,
			"release slots: instanceId and offeredVersion required"},
		{"second workflow for one update", workflows.ActivityRecordTransition, duplicate, workflows.ErrTypeInvalidInput,
			`update the projection of other-workflow (instance "inst-000"): already exists (Key (instance_id, offered_version)=(inst-000, 9.2.0) already exists.)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.ExecuteActivity(tc.activity, tc.input)
			appErr := activityOutcome(t, err)
			if appErr.Type() != tc.errType || !appErr.NonRetryable() || appErr.Message() != tc.msg {
				t.Fatalf("got type %q, non-retryable %v, message %q\nwant type %q, non-retryable, message %q",
					appErr.Type(), appErr.NonRetryable(), appErr.Message(), tc.errType, tc.msg)
			}
		})
	}

	// With Postgres unreachable the error is transient: retried.
	closed := pgtest.NewPool(t)
	closed.Close()
	down := &StoreActivities{Store: store.New(closed)}
	downEnv := suite.NewTestActivityEnvironment()
	down.Register(downEnv)
	_, err := downEnv.ExecuteActivity(workflows.ActivityRecordVersion, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.2.0"})
	if appErr := activityOutcome(t, err); appErr.NonRetryable() {
		t.Fatalf("database down: %v is non-retryable, want retryable", appErr)
	}
}

// byNameWorkflow drives the store activities by their
// contract names, the way the ServiceUpdate workflow does.
func byNameWorkflow(ctx workflow.Context, booking workflows.BookSlotsInput, transition workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Millisecond, MaximumAttempts: 5},
	})
	var booked workflows.BookSlotsResult
	if err := workflow.ExecuteActivity(ctx, workflows.ActivityBookSlots, booking).Get(ctx, &booked); err != nil {
		return workflows.RecordTransitionResult{}, err
	}
	var recorded workflows.RecordTransitionResult
	if err := workflow.ExecuteActivity(ctx, workflows.ActivityRecordTransition, transition).Get(ctx, &recorded); err != nil {
		return recorded, err
	}
	var released workflows.ReleaseSlotsResult
	release := workflows.ReleaseSlotsInput{InstanceID: booking.InstanceID, OfferedVersion: booking.OfferedVersion}
	if err := workflow.ExecuteActivity(ctx, workflows.ActivityReleaseSlots, release).Get(ctx, &released); err != nil {
		return recorded, err
	}
	var version workflows.RecordVersionResult
	err := workflow.ExecuteActivity(ctx, workflows.ActivityRecordVersion,
		workflows.RecordVersionInput{InstanceID: booking.InstanceID, Version: booking.TargetVersion}).Get(ctx, &version)
	return recorded, err
}

// A RecordTransition whose worker dies after the commit is retried by
// Temporal with the same run and activity ID: one audit row, and the
// retry answers with its ID.
func TestRecordTransitionRetriedActivityWritesOnce(t *testing.T) {
	ctx := context.Background()
	s := storetest.Load(t, pgtest.NewPool(t), storetest.Fleet(1, 5))
	acts := &StoreActivities{Store: s}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	acts.Register(env)
	var attempts atomic.Int32
	env.RegisterActivityWithOptions(func(ctx context.Context, in workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
		attempts.Add(1)
		res, err := acts.RecordTransition(ctx, in)
		if err == nil && activity.GetInfo(ctx).Attempt == 1 {
			return res, errors.New("worker lost after the commit")
		}
		return res, err
	}, activity.RegisterOptions{Name: workflows.ActivityRecordTransition})
	env.RegisterWorkflow(byNameWorkflow)

	transition := storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusApproved)
	env.ExecuteWorkflow(byNameWorkflow, storetest.Booking("inst-000", 0, 1), transition)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res workflows.RecordTransitionResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	log, err := s.AuditLog(ctx, transition.Snapshot.WorkflowID)
	if err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 2 || len(log) != 1 || log[0].ID != res.AuditID {
		t.Fatalf("%d attempts, audit log %+v, result %+v; want 2 attempts writing one row with the result's ID", attempts.Load(), log, res)
	}
	// The other activities ran by name too: slots released, version recorded.
	if usage := storetest.Usage(t, s); usage[0] != 0 || usage[1] != 0 {
		t.Fatalf("usage = %v, want released", usage)
	}
	inst, err := s.Recipients(ctx, "inst-000")
	if err != nil || inst.CurrentVersion != "9.2.0" {
		t.Fatalf("instance = %+v, %v", inst, err)
	}
}

// A full slot is answered once: the retry policy does not retry it.
func TestBookSlotsFullIsNotRetried(t *testing.T) {
	s := storetest.Load(t, pgtest.NewPool(t), storetest.Fleet(2, 1))
	if _, err := s.BookSlots(context.Background(), storetest.Booking("inst-000", 0, 1)); err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	(&StoreActivities{Store: s}).Register(env)
	env.RegisterWorkflow(byNameWorkflow)
	var started atomic.Int32
	env.SetOnActivityStartedListener(func(_ *activity.Info, _ context.Context, _ converter.EncodedValues) {
		started.Add(1)
	})
	env.ExecuteWorkflow(byNameWorkflow, storetest.Booking("inst-001", 0, 2), storetest.Transition("inst-001", workflows.StatusScheduled, workflows.StatusScheduled))
	err := env.GetWorkflowError()
	appErr := activityOutcome(t, err)
	if appErr.Type() != workflows.ErrTypeSlotFull || started.Load() != 1 {
		t.Fatalf("error type %q after %d attempts, want %q after 1", appErr.Type(), started.Load(), workflows.ErrTypeSlotFull)
	}
}
