package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// How a ServiceUpdate ends: Succeeded, Failed or NotApproved through close,
// Cancelled through cancel, Superseded through its Update; each gives the
// reservations back, records the final transition, counts the outcome and
// waits for handlers and notices. An update not approved at a slot's start,
// or failed in both slots, first waits for a late Reschedule.

// The workflow's one metric: closed updates, tagged with their final status.
const (
	metricUpdatesClosed = "svcupdate_updates_completed"
	metricTagOutcome    = "outcome"
)

// succeed records the new version and closes the workflow as Succeeded.
// The update has happened whatever comes next, so the bookkeeping runs on a
// disconnected context: a late cancellation must not misreport it.
func (w *serviceUpdate) succeed(ctx workflow.Context) (Result, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	succeeded := change{action: actionSucceeded, notice: NoticeSucceeded, slotStart: w.slotStart(w.activeSlot())}
	if w.lean {
		succeeded.releaseSlots, succeeded.recordVersion = true, true
		return w.closeAfter(dctx, nil, StatusSucceeded, succeeded)
	}
	released := w.giveBackAtClose(dctx)
	w.recordVersion(dctx)
	return w.closeAfter(dctx, released, StatusSucceeded, succeeded)
}

// closeUpToDate closes an update whose instance the check at a slot's
// start found already at or past the target: nothing runs, the
// reservations are given back, and admins and users get the succeeded
// notice, which says it was already up to date.
func (w *serviceUpdate) closeUpToDate(ctx workflow.Context) (Result, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	upToDate := change{action: actionUpToDate,
		detail: "the instance already runs " + w.foundVersion + "; nothing was run",
		notice: NoticeSucceeded, slotStart: w.slotStart(w.activeSlot()), releaseSlots: w.lean}
	return w.closeAfter(dctx, w.startReleaseUnlessLean(dctx), StatusSucceeded, upToDate)
}

// close gives the reservations back, moves to the final status, records
// it, counts it and returns the Result once every Update handler has
// finished. As in run, an error means the workflow was cancelled.
func (w *serviceUpdate) close(ctx workflow.Context, final Status, c change) (Result, error) {
	if w.lean {
		c.releaseSlots = true
		return w.closeAfter(ctx, nil, final, c)
	}
	return w.closeAfter(ctx, w.giveBackAtClose(ctx), final, c)
}

// startReleaseUnlessLean starts giving the reservations back, except on
// the lean lifecycle, where the commit of the change does (nil).
func (w *serviceUpdate) startReleaseUnlessLean(ctx workflow.Context) workflow.Future {
	if w.lean {
		return nil
	}
	return w.startReleaseSlots(ctx)
}

// closeAfter is close with the release of the reservations already
// started (nil: none to wait for); the final transition goes out beside it.
func (w *serviceUpdate) closeAfter(ctx workflow.Context, released workflow.Future, final Status, c change) (Result, error) {
	if err := w.transition(ctx, w.status, final, c); err != nil {
		return w.cancel(ctx)
	}
	if released != nil {
		if err := w.settleRelease(ctx, released); err != nil {
			return w.cancel(ctx)
		}
	}
	return w.finish(ctx)
}

// giveBackAtClose starts releasing every reservation of the update: once
// it closes none is of use (the secondary after a primary success, both
// after a failure), and one left behind keeps other instances out of the
// slot. Nil for a workflow that closed before changeReleaseAtClose, which
// kept them, as release 1 did.
func (w *serviceUpdate) giveBackAtClose(ctx workflow.Context) workflow.Future {
	if !patched(ctx, changeReleaseAtClose) {
		return nil
	}
	return w.startReleaseSlots(ctx)
}

// cancel handles an operator's cancellation in any phase: release the
// slots, record it, tell the admins, and report the run as cancelled.
func (w *serviceUpdate) cancel(ctx workflow.Context) (Result, error) {
	cause := ctx.Err()
	if cause == nil {
		cause = temporal.NewCanceledError()
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	from := w.status
	w.cancelled, w.closing = true, true // no Update is accepted from here on
	// A Reschedule may be booking right now (BookSlots waits for its
	// cancellation to be confirmed): release only after it has finished,
	// or its reservation would outlive the release.
	if err := workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) }); err != nil {
		return Result{}, err
	}
	if !w.lean {
		if err := w.releaseSlots(dctx); err != nil {
			w.logger.Error("Slots not released after cancellation", "error", err)
		}
	}
	if err := w.transition(dctx, from, StatusCancelled, change{action: actionCancelled, actor: ActorOperator, channel: ChannelOperator, notice: NoticeCancelled,
		slotStart: w.slotStart(SlotPrimary), releaseSlots: w.lean}); err != nil {
		w.logger.Error("Cancellation not recorded", "error", err)
	}
	if _, err := w.finish(dctx); err != nil {
		return Result{}, err
	}
	return Result{}, cause
}

// finish counts the outcome and waits until no Update handler is running
// and every notice has settled. The wait is not interrupted by a late
// cancellation: the outcome is decided, and a cancellation settles the
// notices it cancels at once.
func (w *serviceUpdate) finish(ctx workflow.Context) (Result, error) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{metricTagOutcome: string(w.status)}).
		Counter(metricUpdatesClosed).Inc(1)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(dctx, func() bool {
		return workflow.AllHandlersFinished(dctx) && w.noticesInFlight == 0 && w.auditsInFlight == 0
	}); err != nil {
		return Result{}, err
	}
	final := w.in.CurrentVersion
	switch {
	case w.foundVersion != "":
		final = w.foundVersion
	case w.status == StatusSucceeded:
		final = w.targetVersion
	}
	return Result{Status: w.status, FinalVersion: final, Attempts: w.attempts}, nil
}

// decided is the context a decided outcome closes on: disconnected, as
// succeed's always was, so a cancellation arriving now neither turns it
// into Cancelled nor cuts off its notice and audit row. A workflow that
// closed before changeDecidedOutcome closes on ctx, as release 1 did.
func (w *serviceUpdate) decided(ctx workflow.Context) workflow.Context {
	if !w.takes(ctx, changeDecidedOutcome) {
		return ctx
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	return dctx
}

// awaitLateReschedule waits, after an optional update was not approved at
// a slot's start or an update failed, for a late Reschedule until the
// release period ends or a Supersede closes it. It reports whether a
// Reschedule came.
func (w *serviceUpdate) awaitLateReschedule(ctx workflow.Context) (bool, error) {
	rescheduled := func() bool { return w.status == StatusApproved }
	if remaining := w.release.PeriodEnd.Sub(workflow.Now(ctx)); remaining > 0 {
		if err := w.sleepUnlessWoken(ctx, remaining, "release period end", func() bool {
			return rescheduled() || w.status == StatusSuperseded
		}); err != nil {
			return false, err
		}
	}
	// Decide under the mutex: a Reschedule that is booking right now wins;
	// after this no other is accepted.
	if err := w.mu.Lock(ctx); err != nil {
		return false, err
	}
	defer w.mu.Unlock()
	if rescheduled() {
		return true, nil
	}
	w.closing = true
	return false, nil
}

// latestPrimaryStart is the last primary start a reschedule in the current
// release may choose.
func (w *serviceUpdate) latestPrimaryStart() time.Time {
	if latest, ok := LatestOfferedPrimaryStart(w.in.Slots, w.release, w.in.SecondaryMinGap); ok {
		return latest
	}
	// No offered slots in the input (release 1): every slot has one length.
	return LatestPrimaryStart(w.release, w.in.WindowLength, w.in.SecondaryMinGap)
}

// offersNewAttempt reports whether an update that failed in both slots
// waits for a Reschedule rather than closing: while a primary start can
// still be chosen in the release period, for a workflow since
// changeRescheduleAfterFailure.
func (w *serviceUpdate) offersNewAttempt(ctx workflow.Context) bool {
	return w.latestPrimaryStart().After(workflow.Now(ctx)) && w.takes(ctx, changeRescheduleAfterFailure)
}

// offerNewAttempt records the failure (audit row, search attributes, the
// failed notice saying by when a new attempt can be scheduled), gives the
// reservations back and opens the update to a Reschedule, which runs the
// lifecycle again from Approved. The failure is decided: it is recorded
// on a disconnected context (a path since changeRescheduleAfterFailure,
// so always since changeDecidedOutcome too). A Reschedule waits until the
// release has settled (releasing), so the release cannot undo its booking.
func (w *serviceUpdate) offerNewAttempt(ctx workflow.Context) error {
	w.logger.Error("Service update failed in both slots; its admins may reschedule a new attempt until the release period ends",
		"currentVersion", w.in.CurrentVersion, "attempts", w.attempts, "periodEnd", w.release.PeriodEnd)
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if err := w.mu.Lock(ctx); err != nil {
		return err
	}
	released := w.startReleaseUnlessLean(ctx)
	from := w.status
	w.status, w.startedAt, w.releasing = StatusFailed, time.Time{}, !w.lean
	err := w.record(ctx, from, change{action: actionFailed, notice: NoticeFailed, slotStart: w.secondaryStart, deadline: w.latestPrimaryStart(), releaseSlots: w.lean})
	w.mu.Unlock()
	if err != nil || released == nil {
		return err
	}
	err = w.settleRelease(ctx, released)
	w.releasing = false
	return err
}

// cancelWait ends a wait for a late Reschedule that an operator cancelled.
// A failed update stays Failed: that outcome is decided, and the
// cancellation only withdraws the offer of a new attempt (recorded, no
// notice). Any other update is cancelled.
func (w *serviceUpdate) cancelWait(ctx workflow.Context) (Result, error) {
	if w.status != StatusFailed {
		return w.cancel(ctx)
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	w.closing = true // no Update is accepted from here on
	// A Reschedule may be booking right now: it is refused once booked,
	// and released here after it has finished.
	if err := workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) }); err != nil {
		return Result{}, err
	}
	return w.closeAfter(dctx, w.startReleaseUnlessLean(dctx), StatusFailed, change{action: actionCancelled, actor: ActorOperator, channel: ChannelOperator,
		detail: "cancelled while the failed update waited for a new attempt; it stays Failed", releaseSlots: w.lean})
}

// closeAtPeriodEnd closes an update whose release period ended while it
// waited for a late Reschedule: NotApproved with its row, as release 1
// did; Failed as it stands, its row and notice written at the failure.
func (w *serviceUpdate) closeAtPeriodEnd(ctx workflow.Context) (Result, error) {
	if w.status == StatusFailed {
		return w.finish(ctx)
	}
	return w.close(w.decided(ctx), StatusNotApproved, change{action: actionExpired, detail: "release period ended without approval"})
}
