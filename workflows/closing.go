package workflows

import (
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// How a ServiceUpdate ends: Succeeded, Failed or NotApproved through close,
// Cancelled through cancel; each gives the reservations back, records the
// final transition, counts the outcome and waits for handlers and notices.

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
	released := w.giveBackAtClose(dctx)
	w.recordVersion(dctx)
	return w.closeAfter(dctx, released, StatusSucceeded, change{action: actionSucceeded, notice: NoticeSucceeded, slotStart: w.slotStart(w.activeSlot())})
}

// close gives the reservations back, moves to the final status, records
// it, counts it and returns the Result once every Update handler has
// finished. As in run, an error means the workflow was cancelled.
func (w *serviceUpdate) close(ctx workflow.Context, final Status, c change) (Result, error) {
	return w.closeAfter(ctx, w.giveBackAtClose(ctx), final, c)
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
	if err := w.releaseSlots(dctx); err != nil {
		w.logger.Error("Slots not released after cancellation", "error", err)
	}
	if err := w.transition(dctx, from, StatusCancelled, change{action: actionCancelled, actor: ActorOperator, channel: ChannelOperator, notice: NoticeCancelled, slotStart: w.slotStart(SlotPrimary)}); err != nil {
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
	if w.status == StatusSucceeded {
		final = w.targetVersion
	}
	return Result{Status: w.status, FinalVersion: final, Attempts: w.attempts}, nil
}

// decided is the context a decided outcome closes on: disconnected, as
// succeed's always was, so a cancellation arriving now neither turns it
// into Cancelled nor cuts off its notice and audit row. A workflow that
// closed before changeDecidedOutcome closes on ctx, as release 1 did.
func (w *serviceUpdate) decided(ctx workflow.Context) workflow.Context {
	if !patched(ctx, changeDecidedOutcome) {
		return ctx
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	return dctx
}
