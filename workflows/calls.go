package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// bookSlots reserves both slots of the chosen release for this update. A
// full, withdrawn or unknown slot comes back as an error for the admin.
func (w *serviceUpdate) bookSlots(ctx workflow.Context, version string, primary, secondary time.Time) error {
	ctx = bookingOptions(ctx, "book slots", ErrTypeSlotFull, ErrTypeSlotNotOffered, ErrTypeNotFound, ErrTypeInvalidInput)
	var res BookSlotsResult
	err := workflow.ExecuteActivity(ctx, ActivityBookSlots, BookSlotsInput{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		InstanceID: w.in.Instance.ID, Region: w.in.Instance.Region,
		OfferedVersion: w.in.TargetVersion, TargetVersion: version,
		PrimaryStart: primary.UTC(), SecondaryStart: secondary.UTC(),
	}).Get(ctx, &res)
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case ErrTypeSlotFull, ErrTypeSlotNotOffered, ErrTypeNotFound:
			return fmt.Errorf("the slots could not be booked: %s; choose other slots from those offered for %s in %s",
				appErr.Message(), version, w.in.Instance.Region)
		}
	}
	return fmt.Errorf("the slots could not be booked, try again later: %w", err)
}

// bookingOptions are the options of a booking that someone (an admin, a
// rollout's operator) waits for, retried on all but the nonRetryable
// error types.
func bookingOptions(ctx workflow.Context, summary string, nonRetryable ...string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              AdminTaskQueue, // never behind a rollout's bulk of notices
		Summary:                summary,
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 2 * time.Minute,
		// On cancellation, wait until the booking has really ended, so the
		// release that follows cannot be overtaken by it.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
}

// releaseSlots gives both reservations back to the pool.
func (w *serviceUpdate) releaseSlots(ctx workflow.Context) error {
	return w.settleRelease(ctx, w.startReleaseSlots(ctx))
}

// startReleaseSlots starts giving both reservations back; settleRelease
// waits for it. Retried for a day: a reservation left behind takes
// capacity from other instances.
func (w *serviceUpdate) startReleaseSlots(ctx workflow.Context) workflow.Future {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
		},
	})
	return workflow.ExecuteActivity(ctx, ActivityReleaseSlots, ReleaseSlotsInput{
		InstanceID: w.in.Instance.ID, OfferedVersion: w.in.TargetVersion,
	})
}

// settleRelease waits for a release started by startReleaseSlots. A
// release given up on is logged; the only error returned is the
// workflow's cancellation.
func (w *serviceUpdate) settleRelease(ctx workflow.Context, f workflow.Future) error {
	var res ReleaseSlotsResult
	err := f.Get(ctx, &res)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		w.logger.Error("Slot reservations not released", "error", err)
	}
	return nil
}

// abandonClaim gives back what the rollout booked and claimed for an
// update whose input the workflow refuses: no run of this workflow ID
// will use the reservations, and the claim would hold the instance from
// every later update. Without an instance and a version there is nothing
// to name them by. A workflow from before changeAbandonInvalidInput kept
// them.
func abandonClaim(ctx workflow.Context, in Input) {
	if in.Instance.ID == "" || in.TargetVersion == "" || !patched(ctx, changeAbandonInvalidInput) {
		return
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour, // as a release of the slots
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
	})
	var res AbandonUpdateResult
	if err := workflow.ExecuteActivity(ctx, ActivityAbandonUpdate, AbandonUpdateInput{
		InstanceID: in.Instance.ID, OfferedVersion: in.TargetVersion,
	}).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Error("The rollout's reservations and claim on the instance were not given back",
			"instanceId", in.Instance.ID, "offeredVersion", in.TargetVersion, "error", err)
	}
}

// recordVersion stores the version the instance now runs.
func (w *serviceUpdate) recordVersion(ctx workflow.Context) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNotFound},
		},
	})
	var res RecordVersionResult
	if err := workflow.ExecuteActivity(ctx, ActivityRecordVersion, RecordVersionInput{
		InstanceID: w.in.Instance.ID, Version: w.targetVersion,
	}).Get(ctx, &res); err != nil {
		w.logger.Error("New version not recorded on the instance", "version", w.targetVersion, "error", err)
	}
}

// applyUpdate runs the executor inside the window: its deadline is the
// window's end, it is retried until then, and a definitive failure
// (ErrTypeUpdateFailed) falls back at once.
func (w *serviceUpdate) applyUpdate(ctx workflow.Context, role SlotRole, windowEnd time.Time) error {
	remaining := windowEnd.Sub(workflow.Now(ctx))
	if remaining <= 0 {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the %s window ended at %s before the update could start", role, windowEnd.Format(timeLayout)),
			ErrTypeUpdateFailed, nil)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              ExecutorTaskQueue,
		Summary:                string(role) + " window",
		ScheduleToCloseTimeout: remaining,
		StartToCloseTimeout:    remaining,
		HeartbeatTimeout:       HeartbeatTimeout(w.slotWindow(role)),
		// A cancelled workflow reports Cancelled only once the executor has
		// stopped (or stopped heartbeating), never while it still changes
		// the instance.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 10 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeUpdateFailed},
		},
	})
	var res ApplyUpdateResult
	return workflow.ExecuteActivity(ctx, ActivityApplyUpdate, ApplyUpdateInput{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		InstanceID: w.in.Instance.ID, TenantID: w.in.Instance.TenantID,
		CurrentVersion: w.in.CurrentVersion, TargetVersion: w.targetVersion,
		Attempt: role, WindowEnd: windowEnd,
	}).Get(ctx, &res)
}

// startAudit starts RecordTransition for a change; finishAudit (record.go)
// waits for it.
func (w *serviceUpdate) startAudit(ctx workflow.Context, from Status, c change) workflow.Future {
	in := RecordTransitionInput{
		Actor: cmp.Or(c.actor, ActorSystem), Operator: c.operator, Channel: cmp.Or(c.channel, ChannelWorkflow),
		Action: c.action, From: from, Detail: c.detail, Snapshot: w.view(ctx),
	}
	// The audit log is who did what and when; the projection is what
	// operators list. Neither is ever given up: retried until written (a
	// Postgres outage only delays them), each try short, the backoff
	// capped so the row follows soon after Postgres is back.
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
	})
	return workflow.ExecuteActivity(ctx, ActivityRecordTransition, in)
}

// startNotice starts SendNotice; finishNotice (record.go) waits for it.
func (w *serviceUpdate) startNotice(ctx workflow.Context, kind NoticeKind, offset time.Duration, slotStart, deadline time.Time) workflow.Future {
	in := w.noticeInput(workflow.GetInfo(ctx).WorkflowExecution.ID, workflow.Now(ctx), kind, offset, slotStart, deadline)
	// The outbox makes retries safe; a notice still failing after a day is
	// not worth holding the lifecycle for.
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:                string(kind) + " email",
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNoRecipients, ErrTypeMailRejected, ErrTypeInvalidInput},
		},
	})
	return workflow.ExecuteActivity(ctx, ActivitySendNotice, in)
}

// failureText is what operators and admins read about a failed activity in
// the Status query: the executor's or mailer's own message, without the
// SDK's wrapping (activity type, event IDs, worker identity).
func failureText(err error) string {
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return "timed out (" + timeout.TimeoutType().String() + ") before the activity finished"
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var cancelled *temporal.CanceledError
	if errors.As(err, &cancelled) {
		return "cancelled"
	}
	return err.Error()
}
