package activities

import (
	"cmp"
	"context"
	"errors"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// StoreActivities are the workflow's Postgres side effects: the audit
// log and updates projection, slot reservations and instance versions.
type StoreActivities struct {
	Store *store.Store
}

// Register registers every store activity under its contract name.
func (a *StoreActivities) Register(r worker.ActivityRegistry) {
	r.RegisterActivityWithOptions(a.RecordTransition, activity.RegisterOptions{Name: workflows.ActivityRecordTransition})
	r.RegisterActivityWithOptions(a.BookSlots, activity.RegisterOptions{Name: workflows.ActivityBookSlots})
	r.RegisterActivityWithOptions(a.BookSlotsFrom, activity.RegisterOptions{Name: workflows.ActivityBookSlotsFrom})
	r.RegisterActivityWithOptions(a.ReleaseSlots, activity.RegisterOptions{Name: workflows.ActivityReleaseSlots})
	r.RegisterActivityWithOptions(a.RecordInstanceVersion, activity.RegisterOptions{Name: workflows.ActivityRecordVersion})
	r.RegisterActivityWithOptions(a.CheckInstance, activity.RegisterOptions{Name: workflows.ActivityCheckInstance})
	r.RegisterActivityWithOptions(a.AbandonUpdate, activity.RegisterOptions{Name: workflows.ActivityAbandonUpdate})
	r.RegisterActivityWithOptions(a.CommitTransition, activity.RegisterOptions{Name: workflows.ActivityCommitTransition})
}

// CommitTransition writes one transition of the lean lifecycle in one
// transaction (store.CommitTransition). The workflow runs it as a local
// activity: the row is keyed by the run and the local activity's ID,
// which a replay of the workflow gives it again, so a commit retried or
// repeated after a lost workflow task writes once. The announcement
// carries its own key (workflows.AnnouncementKey), which the starter
// used to write it first.
func (a *StoreActivities) CommitTransition(ctx context.Context, in workflows.CommitTransitionInput) (workflows.CommitTransitionResult, error) {
	info := activity.GetInfo(ctx)
	key := cmp.Or(in.IdempotencyKey, info.WorkflowExecution.RunID+"/local/"+info.ActivityID)
	res, err := a.Store.CommitTransition(ctx, key, in)
	if err != nil {
		return res, activityError(err)
	}
	activity.GetLogger(ctx).Info("Transition committed", "workflowId", in.Transition.Snapshot.WorkflowID, "action", in.Transition.Action,
		"from", in.Transition.From, "to", in.Transition.Snapshot.Status, "notices", len(in.Notices), "reminders", len(in.Reminders), "auditId", res.AuditID)
	return res, nil
}

// BookSlotsFrom moves an update's reservations to the earliest free pair
// from a time (a rollout moving its held wave).
func (a *StoreActivities) BookSlotsFrom(ctx context.Context, in workflows.BookSlotsFromInput) (workflows.BookSlotsFromResult, error) {
	res, err := a.Store.BookSlotsFrom(ctx, in)
	if err != nil {
		return res, activityError(err)
	}
	activity.GetLogger(ctx).Info("Slots moved", "workflowId", in.WorkflowID, "instanceId", in.InstanceID,
		"from", in.From, "primaryStart", res.PrimaryStart, "secondaryStart", res.SecondaryStart)
	return res, nil
}

// RecordTransition appends the transition's audit row and refreshes the
// updates projection. The row is keyed by the run and activity ID, so a
// retried activity writes it once.
func (a *StoreActivities) RecordTransition(ctx context.Context, in workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
	info := activity.GetInfo(ctx)
	key := info.WorkflowExecution.RunID + "/" + info.ActivityID
	res, err := a.Store.RecordTransition(ctx, key, in)
	if err != nil {
		return res, activityError(err)
	}
	activity.GetLogger(ctx).Info("Transition recorded", "workflowId", in.Snapshot.WorkflowID, "action", in.Action,
		"from", in.From, "to", in.Snapshot.Status, "actor", in.Actor, "auditId", res.AuditID)
	return res, nil
}

// BookSlots books or rebooks an update's primary and secondary slot.
// A full or unknown slot fails without retry (ErrTypeSlotFull,
// ErrTypeSlotNotOffered) with a message naming the slot.
func (a *StoreActivities) BookSlots(ctx context.Context, in workflows.BookSlotsInput) (workflows.BookSlotsResult, error) {
	res, err := a.Store.BookSlots(ctx, in)
	if err != nil {
		return res, activityError(err)
	}
	activity.GetLogger(ctx).Info("Slots booked", "workflowId", in.WorkflowID, "instanceId", in.InstanceID,
		"targetVersion", in.TargetVersion, "primaryStart", in.PrimaryStart, "secondaryStart", in.SecondaryStart)
	return res, nil
}

// ReleaseSlots gives back every reservation of an update.
func (a *StoreActivities) ReleaseSlots(ctx context.Context, in workflows.ReleaseSlotsInput) (workflows.ReleaseSlotsResult, error) {
	res, err := a.Store.ReleaseSlots(ctx, in)
	if err != nil {
		return res, activityError(err)
	}
	activity.GetLogger(ctx).Info("Slots released", "instanceId", in.InstanceID, "offeredVersion", in.OfferedVersion, "released", res.Released)
	return res, nil
}

// RecordInstanceVersion records the version an instance runs after a
// successful update; it never moves the version back.
func (a *StoreActivities) RecordInstanceVersion(ctx context.Context, in workflows.RecordVersionInput) (workflows.RecordVersionResult, error) {
	res, err := a.Store.RecordInstanceVersion(ctx, in)
	if err != nil {
		return res, activityError(err)
	}
	if res.Unchanged {
		activity.GetLogger(ctx).Info("Instance version unchanged: it already runs this or a later release",
			"instanceId", in.InstanceID, "version", in.Version, "currentVersion", res.PreviousVersion)
		return res, nil
	}
	activity.GetLogger(ctx).Info("Instance version recorded", "instanceId", in.InstanceID, "version", in.Version, "previousVersion", res.PreviousVersion)
	return res, nil
}

// CheckInstance reads what the instance runs now and what the update
// policy asks of it for the target. The workflow runs it as a local
// activity, on the worker that runs the workflow, just before an attempt.
func (a *StoreActivities) CheckInstance(ctx context.Context, in workflows.CheckInstanceInput) (workflows.CheckInstanceResult, error) {
	res, err := a.Store.CheckInstance(ctx, in)
	if err != nil {
		return res, activityError(err)
	}
	return res, nil
}

// AbandonUpdate gives back the reservations and the claim on the instance
// that a rollout made for an update whose workflow refused its input.
func (a *StoreActivities) AbandonUpdate(ctx context.Context, in workflows.AbandonUpdateInput) (workflows.AbandonUpdateResult, error) {
	released, err := a.Store.AbandonUpdate(ctx, in.InstanceID, in.OfferedVersion)
	if err != nil {
		return workflows.AbandonUpdateResult{}, activityError(err)
	}
	activity.GetLogger(ctx).Info("Rollout's claim given back", "instanceId", in.InstanceID, "offeredVersion", in.OfferedVersion, "released", released)
	return workflows.AbandonUpdateResult{Released: released}, nil
}

// activityError makes the store's permanent failures non-retryable
// application errors of a stable type, with the store's message for the
// admin; anything else (network, Postgres restarting) stays retryable.
func activityError(err error) error {
	for _, m := range []struct {
		sentinel error
		errType  string
	}{
		{store.ErrSlotFull, workflows.ErrTypeSlotFull},
		{store.ErrNoCapacity, workflows.ErrTypeSlotFull},
		{store.ErrSlotNotOffered, workflows.ErrTypeSlotNotOffered},
		{store.ErrNotFound, workflows.ErrTypeNotFound},
		{store.ErrInvalidRequest, workflows.ErrTypeInvalidInput},
		{store.ErrInstanceHeld, workflows.ErrTypeInstanceHeld},
		{store.ErrDuplicate, workflows.ErrTypeInvalidInput},
	} {
		if errors.Is(err, m.sentinel) {
			return temporal.NewNonRetryableApplicationError(err.Error(), m.errType, err)
		}
	}
	return err
}
