package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// serviceUpdate is the state of one ServiceUpdate. Update handlers only
// change it (and record what they changed); the main flow in run waits on it.
type serviceUpdate struct {
	in     Input
	logger log.Logger
	// trusted verifies the assertion of every admin Update; nonces holds
	// those of the Updates accepted, so none is accepted twice.
	trusted *actor.Verifier
	nonces  map[string]struct{}
	// mu serialises the handlers that call activities with each other, with
	// due reminders and with the decision at the primary start, so a
	// Reschedule that is booking slots can never race the update starting
	// nor let a reminder for the old slot out. Notices are only scheduled
	// under it, never awaited.
	mu workflow.Mutex

	status Status
	admins []string
	// mandatory starts as the rollout found it and follows the versions
	// recorded since, checked at each slot's start (checkInstance).
	mandatory      bool
	targetVersion  string
	release        ReleaseOption
	primaryStart   time.Time
	secondaryStart time.Time
	// Each slot's own window length.
	primaryWindow   time.Duration
	secondaryWindow time.Duration
	approvedBy      string // the last approval, as approvals has it
	approvedAt      time.Time
	approvals       []Approval
	startedAt       time.Time // when the update began; zero before that
	closing         bool      // the final status is decided; nothing may change it
	cancelled       bool      // an operator cancelled the workflow
	held            bool      // waiting for its rollout wave's gate (gate.go)
	attempts        []Attempt
	notices         []NoticeRecord
	reminders       []Reminder // still due for the current primary slot, earliest first
	// releasing is set while the slots of an unapproved update are being
	// given back; a Reschedule waits (or is refused) until that is done.
	releasing bool
	// announced is set once the scheduled notice was scheduled; admin Updates
	// wait for it, so an approval in the workflow's first moments is neither
	// overwritten by the announcement nor confirmed before it.
	announced bool
	// scheduleVersion changes whenever the primary slot moves, so the main
	// loop re-arms its timer (the updatabletimer pattern) and drops a
	// reminder computed for the old slot.
	scheduleVersion int
	// rescheduledTo lists the primary starts accepted Reschedules chose,
	// oldest first; rescheduledSequence numbers the last one's notice.
	rescheduledTo       []time.Time
	rescheduledSequence int
	// noticesInFlight counts the notices scheduled and not yet settled;
	// the workflow returns only once it is zero.
	noticesInFlight int
	// auditsInFlight counts audit rows settled in the background (an
	// attempt's start); the next row is written only once it is zero.
	auditsInFlight int
	// foundVersion is what the instance ran when a check found it already
	// at or past the target (the update then closes without running).
	foundVersion string
	// supersededBy is the target of the update that superseded this one.
	supersededBy string
	// lean: the workflow runs the lean lifecycle (changeLeanLifecycle).
	lean bool
}

// setup validates the input and registers every handler before the first
// blocking call, so no Update or query arrives unhandled. Defaults were
// resolved when the workflow was started; only an input from release 1
// may lack them (withRelease1Defaults).
func setup(ctx workflow.Context, in Input, trusted *actor.Verifier) (*serviceUpdate, error) {
	in = withRelease1Defaults(in)
	if err := validateInput(in); err != nil {
		abandonClaim(ctx, in)
		return nil, temporal.NewNonRetryableApplicationError("invalid ServiceUpdate input: "+err.Error(), ErrTypeInvalidInput, err)
	}
	w := newServiceUpdate(in, workflow.Now(ctx))
	w.logger = log.With(workflow.GetLogger(ctx), "instanceId", in.Instance.ID, "tenantId", in.Instance.TenantID, "targetVersion", in.TargetVersion)
	w.mu, w.trusted = workflow.NewMutex(ctx), trusted
	w.lean = in.LeanLifecycle || patched(ctx, changeLeanLifecycle)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (StatusView, error) {
		return w.queryView(ctx), nil
	}); err != nil {
		return nil, fmt.Errorf("register query %s: %w", QueryStatus, err)
	}
	updates := []struct {
		name               string
		handler, validator any
	}{
		{UpdateApprove, w.approve, w.validateApprove},
		{UpdateReschedule, w.reschedule, w.validateReschedule},
		{UpdateSetAdmins, w.setAdmins, w.validateSetAdmins},
		{UpdateSupersede, w.supersede, w.validateSupersede},
		{UpdateMove, w.move, w.validateMove},
	}
	for _, u := range updates {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, u.handler,
			workflow.UpdateHandlerOptions{Validator: u.validator}); err != nil {
			return nil, fmt.Errorf("register update %s: %w", u.name, err)
		}
	}
	return w, nil
}

// newServiceUpdate is the state of a ServiceUpdate with input in (valid,
// its defaults resolved) before its first transition, at now.
func newServiceUpdate(in Input, now time.Time) *serviceUpdate {
	release, _, _ := FindRelease(in.Releases, in.TargetVersion)
	return &serviceUpdate{
		in:             in,
		nonces:         map[string]struct{}{},
		status:         StatusScheduled,
		admins:         slices.Clone(in.Admins),
		mandatory:      in.Mandatory,
		targetVersion:  in.TargetVersion,
		release:        release,
		primaryStart:   in.PrimaryStart.UTC(),
		secondaryStart: in.SecondaryStart.UTC(),
		primaryWindow:  in.WindowLength,
		// Zero in inputs of release 1, which gave both slots one length.
		secondaryWindow: cmp.Or(in.SecondaryWindowLength, in.WindowLength),
		reminders:       ReminderSchedule(in.PrimaryStart, in.ReminderOffsets, now),
	}
}

// run is the lifecycle of DESIGN.md: announce, remind until the primary
// start, run (or decline) the update, fall back once, report; an update
// that was not approved or failed waits for a late Reschedule, which
// starts it again. The steps handle activity failures themselves and
// return an error only when the workflow was cancelled, so every error
// path ends in cancel.
func (w *serviceUpdate) run(ctx workflow.Context) (Result, error) {
	// 1. The provider prescheduled (and booked) both slots: announce them.
	if err := w.transition(ctx, w.status, StatusScheduled, w.announcement(workflow.GetInfo(ctx).WorkflowExecution.RunID)); err != nil {
		return w.cancel(ctx)
	}
	w.announced = true
	for {
		// 2.-5. Reminders, the primary slot, the secondary slot.
		next, err := w.try(ctx)
		if err != nil {
			return w.cancel(ctx)
		}
		switch next {
		case stepSucceeded:
			return w.succeed(ctx)
		case stepUpToDate:
			return w.closeUpToDate(ctx)
		case stepSuperseded:
			return w.finish(ctx)
		case stepFailed:
			if !w.offersNewAttempt(ctx) {
				w.logger.Error("Service update failed in both slots; the instance stays on its current version",
					"currentVersion", w.in.CurrentVersion, "attempts", w.attempts)
				return w.close(w.decided(ctx), StatusFailed, change{action: actionFailed, notice: NoticeFailed, slotStart: w.secondaryStart})
			}
			if err := w.offerNewAttempt(ctx); err != nil {
				return w.cancel(ctx)
			}
		}
		// Not approved at a slot's start, or failed: the admins may still
		// reschedule until the release period ends.
		rescheduled, err := w.awaitLateReschedule(ctx)
		switch {
		case err != nil:
			return w.cancelWait(ctx)
		case w.status == StatusSuperseded:
			return w.finish(ctx)
		case !rescheduled:
			return w.closeAtPeriodEnd(ctx)
		}
	}
}

// step is how the lifecycle goes on at a slot's start or after a try.
type step int

const (
	stepRun        step = iota // approved or mandatory: the attempt runs
	stepDecline                // optional and not approved: NotApproved, waiting for a late Reschedule
	stepUpToDate               // the instance already runs the target: close without running
	stepSuperseded             // a Supersede closed the update
	stepSucceeded
	stepFailed // in both slots
)

// try takes the update once through reminders, the primary slot and the
// secondary slot, and says how that ended; an error means the workflow
// was cancelled.
func (w *serviceUpdate) try(ctx workflow.Context) (step, error) {
	next, from, err := w.awaitPrimaryStart(ctx)
	if err != nil || next != stepRun {
		return next, err
	}
	// 4. Approved or mandatory: run it in the primary window.
	succeeded, err := w.execute(ctx, SlotPrimary, from)
	switch {
	case err != nil:
		return next, err
	case succeeded:
		return stepSucceeded, nil
	}
	// 5. The primary attempt failed: fall back to the secondary slot.
	if err := w.fallBack(ctx); err != nil {
		return next, err
	}
	if next, err := w.decideAtSecondaryStart(ctx); err != nil || next != stepRun {
		return next, err
	}
	succeeded, err = w.execute(ctx, SlotSecondary, StatusFallbackScheduled)
	switch {
	case err != nil:
		return next, err
	case succeeded:
		return stepSucceeded, nil
	}
	return stepFailed, nil
}

// awaitPrimaryStart sends the reminders as they come due and returns at the
// primary start with the next step decided: stepRun (status InProgress),
// stepDecline (NotApproved: slots released, admins told), stepUpToDate,
// or stepSuperseded. It reports the status before the decision.
func (w *serviceUpdate) awaitPrimaryStart(ctx workflow.Context) (step, Status, error) {
	for {
		if w.status == StatusSuperseded {
			return stepSuperseded, w.status, nil
		}
		now := workflow.Now(ctx)
		armed := w.scheduleVersion
		// On the lean lifecycle the reminders wait in the notice queue.
		if due, _, _ := DueReminder(w.reminders, now); due != nil && !w.lean {
			if err := w.remind(ctx, armed); err != nil {
				return stepRun, "", err
			}
			continue
		}
		next, summary := w.primaryStart, "primary window"
		if len(w.reminders) > 0 && !w.lean {
			next, summary = w.reminders[0].At, string(w.reminders[0].Kind)
		}
		if next.After(now) {
			if err := w.sleepUnlessWoken(ctx, next.Sub(now), summary, func() bool {
				return w.scheduleVersion != armed
			}); err != nil {
				return stepRun, "", err
			}
			continue
		}
		// The primary start has come. Look at the instance first, without
		// the mutex, then take it so that no Reschedule is halfway through
		// booking, and decide.
		check, checked, err := w.checkInstance(ctx)
		if err != nil {
			return stepRun, "", err
		}
		if err := w.mu.Lock(ctx); err != nil {
			return stepRun, "", err
		}
		if w.primaryStart.After(workflow.Now(ctx)) || w.status == StatusSuperseded {
			w.mu.Unlock() // a Reschedule moved the slot, or a Supersede closed the update, while we waited
			continue
		}
		from := w.status
		switch decision := w.decide(check, checked, w.status == StatusApproved); decision {
		case stepRun:
			w.status = StatusInProgress
			w.startedAt = workflow.Now(ctx)
			w.mu.Unlock()
			return decision, from, nil
		case stepUpToDate:
			w.mu.Unlock()
			return decision, from, nil
		}
		// Optional and not approved: it does not run.
		w.status = StatusNotApproved
		return stepDecline, from, w.declineUnapproved(ctx, from)
	}
}

// declineUnapproved gives the slots of an unapproved update back and tells
// the admins; the caller holds the mutex and it is released on return. A
// late Reschedule books and reports only after this. The release may be
// retried for hours while Postgres is away, so it runs without the mutex:
// no admin's Update waits for it, and a Reschedule is refused meanwhile
// (releasing) rather than let its booking be undone by the release.
// Before changeReleaseWithoutMutex, release 1 held the mutex throughout.
func (w *serviceUpdate) declineUnapproved(ctx workflow.Context, from Status) error {
	notApproved := change{action: actionNotApproved, notice: NoticeNotApproved, slotStart: w.primaryStart, deadline: w.latestPrimaryStart()}
	if w.lean {
		// One commit gives the slots back with the row: nothing to wait
		// for without the mutex.
		defer w.mu.Unlock()
		notApproved.releaseSlots = true
		return w.record(ctx, from, notApproved)
	}
	if !patched(ctx, changeReleaseWithoutMutex) {
		defer w.mu.Unlock()
		if err := w.releaseSlots(ctx); err != nil {
			return err
		}
		return w.record(ctx, from, notApproved)
	}
	w.releasing = true
	w.mu.Unlock()
	if err := w.releaseSlots(ctx); err != nil {
		return err
	}
	if err := w.mu.Lock(ctx); err != nil {
		return err
	}
	defer w.mu.Unlock()
	w.releasing = false // under the mutex: the not-approved row comes first
	return w.record(ctx, from, notApproved)
}

// sleepUnlessWoken waits for d, or until woken holds (a handler changed
// the schedule). A timer woken early is cancelled (the updatabletimer
// pattern) rather than left to fire later into an empty workflow task, as
// AwaitWithTimeout leaves it in this SDK. Until then it issues the same
// commands as AwaitWithTimeout, which release 1 waited with, so only the
// cancellation is patched (changeCancelWokenTimers) and only a wait that
// is cut short asks for the version. woken must be false on entry.
func (w *serviceUpdate) sleepUnlessWoken(ctx workflow.Context, d time.Duration, summary string, woken func() bool) error {
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	// The summary is metadata, not part of the command replay compares.
	timer := workflow.NewTimerWithOptions(timerCtx, d, workflow.TimerOptions{Summary: summary})
	if err := workflow.Await(ctx, func() bool { return timer.IsReady() || woken() }); err != nil {
		return err
	}
	if timer.IsReady() {
		return timer.Get(ctx, nil)
	}
	if w.takes(ctx, changeCancelWokenTimers) {
		cancelTimer()
	}
	return nil
}

// remind sends the reminder due now for the schedule of version armed. It
// takes the mutex, so a Reschedule that is booking new slots finishes
// first; if that Reschedule moved the slot, the reminder (computed for the
// old slot) is dropped and the caller recomputes from the new schedule.
func (w *serviceUpdate) remind(ctx workflow.Context, armed int) error {
	if err := w.mu.Lock(ctx); err != nil {
		return err
	}
	defer w.mu.Unlock()
	if w.scheduleVersion != armed {
		return nil
	}
	due, stale, rest := DueReminder(w.reminders, workflow.Now(ctx))
	if due == nil {
		return nil
	}
	w.reminders = rest
	for _, r := range stale {
		w.logger.Warn("Reminder skipped: a later one came due at the same time", "kind", r.Kind, "dueAt", r.At)
	}
	if due.Offset == 0 && !w.mayRun() {
		// No day-of notice for an update that will not run; the
		// not-approved notice follows at once.
		return nil
	}
	w.sendNotice(ctx, due.Kind, due.Offset, w.primaryStart, w.primaryStart)
	return nil
}

// mayRun reports whether the update runs at its slot without further ado.
func (w *serviceUpdate) mayRun() bool {
	return w.mandatory || w.status == StatusApproved
}

// execute runs the update in one slot and records the attempt. It reports
// whether the update succeeded; an error means the workflow was cancelled.
func (w *serviceUpdate) execute(ctx workflow.Context, role SlotRole, from Status) (bool, error) {
	slotStart := w.slotStart(role)
	windowEnd := slotStart.Add(w.slotWindow(role))
	started := change{action: actionStarted, detail: string(role) + " slot", notice: NoticeInProgress, slotStart: slotStart, deadline: windowEnd}
	if w.takes(ctx, changeStartWithoutAudit) {
		if err := w.announceStart(ctx, from, started); err != nil {
			return false, err
		}
	} else if err := w.transition(ctx, from, StatusInProgress, started); err != nil {
		return false, err // release 1 waited for the audit row, under the mutex
	}
	attempt := Attempt{Slot: role, Started: workflow.Now(ctx)}
	err := w.applyUpdate(ctx, role, windowEnd)
	attempt.Finished = workflow.Now(ctx)
	attempt.Outcome = attemptOutcome(err, ctx.Err() != nil, attempt.Finished, windowEnd)
	if err != nil {
		attempt.Error = failureText(err)
	}
	w.attempts = append(w.attempts, attempt)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	}
	w.logger.Warn("Update attempt did not succeed", "slot", role, "outcome", attempt.Outcome, "error", err)
	return false, nil
}

// attemptOutcome names how an attempt that ended at finished in a window
// ending at windowEnd went. A window that ran out is window-elapsed however
// it shows: Temporal's timeout, retries stopped because the next one would
// not fit in the window (on a server, retry state Timeout, whatever the
// last failure), the executor's own WindowElapsed error as the last
// failure (it stops a little before the end), or simply an end at or
// after the window's end.
func attemptOutcome(err error, cancelled bool, finished, windowEnd time.Time) string {
	var timeout *temporal.TimeoutError
	var activityErr *temporal.ActivityError
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return OutcomeSucceeded
	case cancelled:
		return OutcomeCancelled
	case errors.As(err, &timeout), !finished.Before(windowEnd),
		errors.As(err, &activityErr) && activityErr.RetryState() == enumspb.RETRY_STATE_TIMEOUT,
		errors.As(err, &appErr) && appErr.Type() == ErrTypeWindowElapsed:
		return OutcomeWindowElapsed
	}
	return OutcomeFailed
}

// fallBack schedules the secondary slot after a failed primary attempt and
// waits for its start.
func (w *serviceUpdate) fallBack(ctx workflow.Context) error {
	last := w.attempts[len(w.attempts)-1]
	if err := w.transition(ctx, w.status, StatusFallbackScheduled, change{action: actionFallback, detail: last.Outcome + ": " + last.Error, notice: NoticeFallback, slotStart: w.secondaryStart, deadline: w.secondaryStart}); err != nil {
		return err
	}
	if wait := w.secondaryStart.Sub(workflow.Now(ctx)); wait > 0 {
		return sleepLabelled(ctx, wait, "secondary window")
	}
	return nil
}

// activeSlot is the slot the update runs (or ran last) in; the primary
// while a schedule waits for it, also after a failed try was rescheduled.
func (w *serviceUpdate) activeSlot() SlotRole {
	switch w.status {
	case StatusFallbackScheduled:
		return SlotSecondary
	case StatusScheduled, StatusApproved:
		return SlotPrimary
	}
	if len(w.attempts) > 0 && w.attempts[len(w.attempts)-1].Slot == SlotSecondary {
		return SlotSecondary
	}
	return SlotPrimary
}

func (w *serviceUpdate) slotStart(role SlotRole) time.Time {
	if role == SlotSecondary {
		return w.secondaryStart
	}
	return w.primaryStart
}

func (w *serviceUpdate) slotWindow(role SlotRole) time.Duration {
	if role == SlotSecondary {
		return w.secondaryWindow
	}
	return w.primaryWindow
}

// offeredWindow is the window of the slot release version offers at
// start; WindowLength when the input lists no such slot (every slot of
// release 1's inputs, or one the booking will refuse as not offered).
func (w *serviceUpdate) offeredWindow(version string, start time.Time) time.Duration {
	for _, slot := range w.in.Slots {
		if slot.Version == version && slot.Start.Equal(start) {
			return slot.WindowLength
		}
	}
	return w.in.WindowLength
}
