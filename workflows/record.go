package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Audit actions written by RecordTransition.
const (
	actionScheduled     = "scheduled"
	actionApproved      = "approved"
	actionRescheduled   = "rescheduled"
	actionAdminsChanged = "admins-changed"
	actionStarted       = "started"
	actionNotApproved   = "not-approved"
	actionExpired       = "release-period-ended"
	actionFallback      = "fallback-scheduled"
	actionSucceeded     = "succeeded"
	actionUpToDate      = "already-up-to-date"
	actionSuperseded    = "superseded"
	actionMoved         = "moved"
	actionFailed        = "failed"
	actionCancelled     = "cancelled"
)

// change describes one recorded transition.
type change struct {
	action   string
	actor    string // default ActorSystem
	operator string // the operator who acted for actor, if one did
	channel  string // default ChannelWorkflow
	detail   string
	// notice, when set, is scheduled alongside the audit row.
	notice    NoticeKind
	slotStart time.Time
	deadline  time.Time
	// On the lean lifecycle, the commit also gives the reservations back
	// and records the target as the instance's version.
	releaseSlots  bool
	recordVersion bool
	// idempotencyKey, when set, keys the lean commit instead of the run
	// and the local activity's ID (the announcement's, AnnouncementKey).
	idempotencyKey string
}

// record publishes the current state after a transition from `from`:
// search attributes and Web UI details, the audit row, and the change's
// notice. Audit and notice are scheduled in the same workflow task, in
// lifecycle order; record waits for the audit only: an email being retried
// must hold neither the lifecycle nor an admin's answer. Activity failures
// are logged, never fatal; the only error returned is the workflow's
// cancellation.
func (w *serviceUpdate) record(ctx workflow.Context, from Status, c change) error {
	audit, err := w.startRecord(ctx, from, c)
	if err != nil {
		return err
	}
	return w.finishAudit(ctx, audit, c)
}

// startRecord is record without the wait for the audit row, which it
// returns. Rows are written in the order of the changes: it first waits
// for any row still settling in the background.
func (w *serviceUpdate) startRecord(ctx workflow.Context, from Status, c change) (workflow.Future, error) {
	if err := w.awaitEarlierAudits(ctx); err != nil {
		return nil, err
	}
	w.publish(ctx)
	if w.lean {
		return w.startCommit(ctx, from, c), nil
	}
	audit := w.startAudit(ctx, from, c)
	if c.notice != "" {
		w.sendNotice(ctx, c.notice, 0, c.slotStart, c.deadline)
	}
	return audit, nil
}

// awaitEarlierAudits waits until no audit row settles in the background,
// so a snapshot of the projection never overtakes an older one.
func (w *serviceUpdate) awaitEarlierAudits(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return w.auditsInFlight == 0 })
}

// announceStart moves to InProgress and records it like transition, but
// lets the audit row settle in the background: the window is running, so
// the executor is started at once, not after the row (Postgres may be
// away for minutes), and the mutex is free meanwhile.
func (w *serviceUpdate) announceStart(ctx workflow.Context, from Status, c change) error {
	if err := w.mu.Lock(ctx); err != nil {
		return err
	}
	defer w.mu.Unlock()
	w.status = StatusInProgress
	audit, err := w.startRecord(ctx, from, c)
	if err != nil {
		return err
	}
	w.auditsInFlight++
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { w.auditsInFlight-- }()
		// Only a cancellation ends it early, and the main flow meets that
		// in the attempt.
		_ = w.finishAudit(ctx, audit, c)
	})
	return nil
}

// transition moves the main flow from one status to another and records
// it. It holds the mutex that the Update handlers hold while they change
// and record state, so no handler interleaves and audit rows and the
// projection's snapshots are written in the order the changes happened.
func (w *serviceUpdate) transition(ctx workflow.Context, from, to Status, c change) error {
	if err := w.mu.Lock(ctx); err != nil {
		return err
	}
	defer w.mu.Unlock()
	w.status = to
	if to.Terminal() {
		w.closing = true
	}
	return w.record(ctx, from, c)
}

// recordAudit writes the audit row of a change that affects no search
// attribute and sends no notice.
func (w *serviceUpdate) recordAudit(ctx workflow.Context, from Status, c change) error {
	if err := w.awaitEarlierAudits(ctx); err != nil {
		return err
	}
	if w.lean {
		return w.finishAudit(ctx, w.startCommit(ctx, from, c), c)
	}
	return w.finishAudit(ctx, w.startAudit(ctx, from, c), c)
}

// publish upserts every search attribute and the Web UI's current details.
func (w *serviceUpdate) publish(ctx workflow.Context) {
	scheduled := w.slotStart(w.activeSlot())
	// In the order of SearchAttributeKeys.
	updates := []temporal.SearchAttributeUpdate{
		SearchAttrUpdateStatus.ValueSet(string(w.status)),
		SearchAttrInstanceID.ValueSet(w.in.Instance.ID),
		SearchAttrTenantID.ValueSet(w.in.Instance.TenantID),
		SearchAttrTargetVersion.ValueSet(w.targetVersion),
		SearchAttrScheduledStart.ValueSet(scheduled),
		SearchAttrMandatory.ValueSet(w.mandatory),
	}
	workflow.SetCurrentDetails(ctx, w.currentDetails())
	if w.lean {
		w.publishChanged(ctx, updates, scheduled)
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		w.logger.Error("Search attributes not updated", "error", err)
	}
}

func (w *serviceUpdate) finishAudit(ctx workflow.Context, f workflow.Future, c change) error {
	var res RecordTransitionResult
	if err := f.Get(ctx, &res); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.logger.Error("Transition not written to the audit log", "action", c.action, "error", err)
	}
	return nil
}

// sendNotice schedules one notice now, so notices go out in the order the
// lifecycle produced them, and leaves waiting for its result to a
// coroutine that holds no mutex. finish waits until every one has settled.
func (w *serviceUpdate) sendNotice(ctx workflow.Context, kind NoticeKind, offset time.Duration, slotStart, deadline time.Time) {
	f := w.startNotice(ctx, kind, offset, slotStart, deadline)
	w.noticesInFlight++
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { w.noticesInFlight-- }()
		w.finishNotice(ctx, f, kind)
	})
}

// finishNotice waits for a notice and records it, with its error if it
// was undeliverable, given up on, or cancelled with the workflow.
func (w *serviceUpdate) finishNotice(ctx workflow.Context, f workflow.Future, kind NoticeKind) {
	var res SendNoticeResult
	err := f.Get(ctx, &res)
	record := NoticeRecord{Kind: kind, At: workflow.Now(ctx)}
	if err != nil {
		record.Error = failureText(err)
		var appErr *temporal.ApplicationError
		var cancelled *temporal.CanceledError
		switch {
		case errors.As(err, &cancelled):
			w.logger.Warn("Notice abandoned: the workflow was cancelled", "kind", kind)
		case errors.As(err, &appErr) && (appErr.Type() == ErrTypeNoRecipients || appErr.Type() == ErrTypeMailRejected):
			w.logger.Warn("Notice not delivered", "kind", kind, "error", err)
		default:
			w.logger.Error("Notice not sent", "kind", kind, "error", err)
		}
	}
	w.notices = append(w.notices, record)
}
