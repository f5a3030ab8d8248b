package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// What happens at a slot's start: the instance is looked at again, since
// months may have passed since the rollout, and the update runs, waits for
// an approval, or closes because there is nothing left to do.

// checkInstance re-reads the instance from Postgres, a local activity (one
// marker in history), so the update never runs on an instance already at
// or past its target and is mandatory only if the versions recorded now
// say so; an update whose rollout wave is not open waits for it first
// (gate.go). checked is false for a workflow from before changeCheckInstance
// and when Postgres did not answer in time: the update then goes ahead as
// planned, as it did before the check existed (the executor's own probe,
// where configured, still guards the instance).
// The error is a cancellation while held at the gate.
func (w *serviceUpdate) checkInstance(ctx workflow.Context) (res CheckInstanceResult, checked bool, err error) {
	if !w.takes(ctx, changeCheckInstance) {
		return res, false, nil
	}
	if res, checked = w.readInstance(ctx); !checked {
		return res, false, nil
	}
	res, err = w.awaitGate(ctx, res)
	return res, true, err
}

// readInstance runs the CheckInstance local activity.
func (w *serviceUpdate) readInstance(ctx workflow.Context) (res CheckInstanceResult, checked bool) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		// The window is running: a few minutes of Postgres trouble is worth
		// waiting for, not a window's worth.
		ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeInvalidInput},
		},
	})
	err := workflow.ExecuteLocalActivity(lctx, ActivityCheckInstance, CheckInstanceInput{
		InstanceID: w.in.Instance.ID, TargetVersion: w.targetVersion,
	}).Get(lctx, &res)
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Error("Instance not checked before the attempt; the update goes ahead as planned", "error", err)
		}
		return CheckInstanceResult{}, false
	}
	return res, true
}

// decide is the step at a slot's start, given the check (if checked) and
// whether an admin approved the update: nothing to do when the instance
// already runs the target or later; otherwise the check decides anew
// whether the update is mandatory, and it runs if it is or was approved.
func (w *serviceUpdate) decide(check CheckInstanceResult, checked, approved bool) step {
	if checked {
		if check.UpToDate {
			w.foundVersion = check.CurrentVersion
			return stepUpToDate
		}
		w.mandatory = check.Mandatory
	}
	if w.mandatory || approved {
		return stepRun
	}
	return stepDecline
}

// decideAtSecondaryStart looks at the instance again when the secondary
// slot starts: an update done meanwhile closes, and one no longer
// mandatory runs only if an admin approved it; otherwise it takes the
// not-approved path (slots given back, admins told, a late Reschedule
// open until the release period ends).
func (w *serviceUpdate) decideAtSecondaryStart(ctx workflow.Context) (step, error) {
	check, checked, err := w.checkInstance(ctx)
	if err != nil {
		return stepRun, err
	}
	if !checked {
		return stepRun, nil
	}
	if err := w.mu.Lock(ctx); err != nil {
		return stepRun, err
	}
	decision := w.decide(check, checked, w.approvedBy != "")
	if decision != stepDecline {
		w.mu.Unlock()
		return decision, nil
	}
	from := w.status
	// Not started in this slot: open to a late Reschedule.
	w.status, w.startedAt = StatusNotApproved, time.Time{}
	return decision, w.declineUnapproved(ctx, from)
}
