package workflows

import (
	"cmp"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The lean lifecycle (changeLeanLifecycle): a transition is one local
// activity, CommitTransition, one marker in history. Its transaction
// writes the audit row, the projection, the transition's notice and the
// reminders as they now stand into the notice queue (each with its due
// time), and at a close gives the reservations back and records the
// version. The worker's dispatcher delivers what comes due, within
// SendGrid's rate limits, so no notice or reminder costs the workflow a
// timer, an activity or a coroutine.

// startCommit starts the commit of change c from status from; finishAudit
// (record.go) waits for it. c's notice is queued, not sent.
func (w *serviceUpdate) startCommit(ctx workflow.Context, from Status, c change) workflow.Future {
	in := w.commitInput(workflow.GetInfo(ctx).WorkflowExecution.ID, workflow.Now(ctx), from, c)
	summary := c.action
	if c.notice != "" {
		summary += ", " + string(c.notice) + " email"
	}
	// As the audit activity of the old path: never given up (a Postgres
	// outage only delays the row), each try short, the backoff capped.
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
		Summary: summary,
	})
	return workflow.ExecuteLocalActivity(ctx, ActivityCommitTransition, in)
}

// commitInput is the commit of change c from status from by workflow
// workflowID at now; it records c's notice as queued.
func (w *serviceUpdate) commitInput(workflowID string, now time.Time, from Status, c change) CommitTransitionInput {
	in := CommitTransitionInput{
		At: now,
		Transition: RecordTransitionInput{
			Actor: cmp.Or(c.actor, ActorSystem), Operator: c.operator, Channel: cmp.Or(c.channel, ChannelWorkflow),
			Action: c.action, From: from, Detail: c.detail,
		},
		ReleaseSlots:   c.releaseSlots,
		IdempotencyKey: c.idempotencyKey,
	}
	if c.recordVersion {
		in.RecordVersion = w.targetVersion
	}
	if c.notice != "" {
		in.Notices = []SendNoticeInput{w.noticeInput(workflowID, now, c.notice, 0, c.slotStart, c.deadline)}
		w.notices = append(w.notices, NoticeRecord{Kind: c.notice, At: now, Queued: true})
	}
	// The snapshot after the notice is queued, so the projection lists it.
	in.Transition.Snapshot = w.viewAt(workflowID, now)
	in.Reminders = w.queuedReminders(workflowID, now, in.Transition.Snapshot)
	return in
}

// queuedReminders are the reminders still due for the schedule as it
// stands: none once the update started, declined or closed; the day-of
// notice only for an update that will run. Each carries the snapshot of
// this transition, so it renders the schedule it reminds of.
func (w *serviceUpdate) queuedReminders(workflowID string, now time.Time, snapshot StatusView) []QueuedReminder {
	if w.closing || (w.status != StatusScheduled && w.status != StatusApproved) {
		return nil
	}
	var out []QueuedReminder
	for _, r := range w.reminders {
		if r.At.Before(now) || (r.Offset == 0 && !w.mayRun()) {
			continue
		}
		n := w.noticeInput(workflowID, now, r.Kind, r.Offset, w.primaryStart, w.primaryStart)
		n.Update = snapshot
		out = append(out, QueuedReminder{DueAt: r.At, Notice: n})
	}
	return out
}

// noticeInput is the SendNotice input of a notice of kind that workflow
// workflowID schedules at now.
func (w *serviceUpdate) noticeInput(workflowID string, now time.Time, kind NoticeKind, offset time.Duration, slotStart, deadline time.Time) SendNoticeInput {
	return SendNoticeInput{
		WorkflowID: workflowID,
		Kind:       kind, Offset: offset, SlotStart: slotStart, Sequence: w.noticeSequence(kind), Deadline: deadline, Update: w.viewAt(workflowID, now),
	}
}

// publishChanged upserts only the search attributes whose value changed
// (the starter set them all at start): one history event per transition
// that changes any, none for one that changes none. updates are in the
// order of SearchAttributeKeys.
func (w *serviceUpdate) publishChanged(ctx workflow.Context, updates []temporal.SearchAttributeUpdate, scheduled time.Time) {
	current := workflow.GetTypedSearchAttributes(ctx)
	keyword := func(key temporal.SearchAttributeKeyKeyword, want string) bool {
		got, ok := current.GetKeyword(key)
		return ok && got == want
	}
	start, hasStart := current.GetTime(SearchAttrScheduledStart)
	mandatory, hasMandatory := current.GetBool(SearchAttrMandatory)
	unchanged := []bool{
		keyword(SearchAttrUpdateStatus, string(w.status)),
		keyword(SearchAttrInstanceID, w.in.Instance.ID),
		keyword(SearchAttrTenantID, w.in.Instance.TenantID),
		keyword(SearchAttrTargetVersion, w.targetVersion),
		hasStart && start.Equal(scheduled),
		hasMandatory && mandatory == w.mandatory,
	}
	var changed []temporal.SearchAttributeUpdate
	for i, same := range unchanged {
		if !same {
			changed = append(changed, updates[i])
		}
	}
	if len(changed) == 0 {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, changed...); err != nil {
		w.logger.Error("Search attributes not updated", "error", err)
	}
}

// sleepLabelled is workflow.Sleep with a summary the Web UI shows on the
// timer ("secondary window") instead of "Sleep".
func sleepLabelled(ctx workflow.Context, d time.Duration, summary string) error {
	return workflow.NewTimerWithOptions(ctx, d, workflow.TimerOptions{Summary: summary}).Get(ctx, nil)
}

// An update is announced by its first transition. A rollout defers each
// update's first task until its starts are done (a start delay), so the
// starter writes the announcement's commit itself as the workflow starts
// (launch.Starter.announce): admins are told as the rollout goes, and the
// workflow's own commit of it, keyed alike, writes nothing when it runs.

// announcement is the first transition: the provider prescheduled (and
// booked) both slots, and the admins are told. Its commit is keyed by the
// run, whoever writes it.
func (w *serviceUpdate) announcement(runID string) change {
	return change{action: actionScheduled, notice: NoticeScheduled, slotStart: w.primaryStart, deadline: w.primaryStart,
		idempotencyKey: AnnouncementKey(runID)}
}

// AnnouncementKey is the idempotency key of the announcement of run runID.
func AnnouncementKey(runID string) string { return runID + "/announcement" }

// AnnouncementCommit is the first commit of the lean lifecycle of run
// runID of workflow workflowID, started with input in (its defaults
// resolved), as that run makes it at now. A starter writes it
// (store.CommitTransition, keyed by AnnouncementKey) once the workflow
// exists, so the admins are told without waiting for the workflow's first
// task. An input the workflow would refuse is refused here too, so no
// admin is told of an update that fails at once.
func AnnouncementCommit(in Input, workflowID, runID string, now time.Time) (CommitTransitionInput, error) {
	if err := validateInput(in); err != nil {
		return CommitTransitionInput{}, fmt.Errorf("invalid ServiceUpdate input: %w", err)
	}
	w := newServiceUpdate(in, now)
	w.lean = true
	return w.commitInput(workflowID, now, w.status, w.announcement(runID)), nil
}
