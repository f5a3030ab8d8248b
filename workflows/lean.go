package workflows

import (
	"cmp"
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
	now := workflow.Now(ctx)
	in := CommitTransitionInput{
		At: now,
		Transition: RecordTransitionInput{
			Actor: cmp.Or(c.actor, ActorSystem), Operator: c.operator, Channel: cmp.Or(c.channel, ChannelWorkflow),
			Action: c.action, From: from, Detail: c.detail,
		},
		ReleaseSlots: c.releaseSlots,
	}
	if c.recordVersion {
		in.RecordVersion = w.targetVersion
	}
	if c.notice != "" {
		in.Notices = []SendNoticeInput{w.noticeInput(ctx, c.notice, 0, c.slotStart, c.deadline)}
		w.notices = append(w.notices, NoticeRecord{Kind: c.notice, At: now, Queued: true})
	}
	// The snapshot after the notice is queued, so the projection lists it.
	in.Transition.Snapshot = w.view(ctx)
	in.Reminders = w.queuedReminders(ctx, in.Transition.Snapshot)
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

// queuedReminders are the reminders still due for the schedule as it
// stands: none once the update started, declined or closed; the day-of
// notice only for an update that will run. Each carries the snapshot of
// this transition, so it renders the schedule it reminds of.
func (w *serviceUpdate) queuedReminders(ctx workflow.Context, snapshot StatusView) []QueuedReminder {
	if w.closing || (w.status != StatusScheduled && w.status != StatusApproved) {
		return nil
	}
	now := workflow.Now(ctx)
	var out []QueuedReminder
	for _, r := range w.reminders {
		if r.At.Before(now) || (r.Offset == 0 && !w.mayRun()) {
			continue
		}
		n := w.noticeInput(ctx, r.Kind, r.Offset, w.primaryStart, w.primaryStart)
		n.Update = snapshot
		out = append(out, QueuedReminder{DueAt: r.At, Notice: n})
	}
	return out
}

// noticeInput is the SendNotice input of a notice of kind scheduled now.
func (w *serviceUpdate) noticeInput(ctx workflow.Context, kind NoticeKind, offset time.Duration, slotStart, deadline time.Time) SendNoticeInput {
	return SendNoticeInput{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		Kind:       kind, Offset: offset, SlotStart: slotStart, Sequence: w.noticeSequence(kind), Deadline: deadline, Update: w.view(ctx),
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
