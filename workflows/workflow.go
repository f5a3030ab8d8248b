package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/log"
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
	actionFailed        = "failed"
	actionCancelled     = "cancelled"
)

// The workflow's one metric: closed updates, tagged with their final status.
const (
	metricUpdatesClosed = "svcupdate_updates_completed"
	metricTagOutcome    = "outcome"
)

// ServiceUpdate takes one instance to one target version: it announces the
// schedule, reminds the admins, takes approvals and reschedules as Temporal
// Updates, runs the update in its primary window, falls back to the
// secondary one, and reports every step. DESIGN.md, "The ServiceUpdate
// workflow", is the specification; run below follows it step by step.
func ServiceUpdate(ctx workflow.Context, in Input) (Result, error) {
	w, err := setup(ctx, in)
	if err != nil {
		return Result{}, err
	}
	return w.run(ctx)
}

// serviceUpdate is the state of one ServiceUpdate. Update handlers only
// change it (and record what they changed); the main flow in run waits on it.
type serviceUpdate struct {
	in     Input
	logger log.Logger
	// mu serialises the handlers that call activities with each other, with
	// due reminders and with the decision at the primary start, so a
	// Reschedule that is booking slots can never race the update starting
	// nor let a reminder for the old slot out. Notices are only scheduled
	// under it, never awaited.
	mu workflow.Mutex

	status         Status
	admins         []string
	targetVersion  string
	release        ReleaseOption
	primaryStart   time.Time
	secondaryStart time.Time
	approvedBy     string
	approvedAt     time.Time
	startedAt      time.Time // when the update began; zero before that
	closing        bool      // the final status is decided; nothing may change it
	cancelled      bool      // an operator cancelled the workflow
	attempts       []Attempt
	notices        []NoticeRecord
	reminders      []Reminder // still due for the current primary slot, earliest first
	// announced is set once the scheduled notice was scheduled; admin Updates
	// wait for it, so an approval in the workflow's first moments is neither
	// overwritten by the announcement nor confirmed before it.
	announced bool
	// scheduleVersion changes whenever the primary slot moves, so the main
	// loop re-arms its timer (the updatabletimer pattern) and drops a
	// reminder computed for the old slot.
	scheduleVersion int
	// noticesInFlight counts the notices scheduled and not yet settled;
	// the workflow returns only once it is zero.
	noticesInFlight int
}

// setup validates the input, applies defaults and registers every handler
// before the first blocking call, so no Update or query arrives unhandled.
func setup(ctx workflow.Context, in Input) (*serviceUpdate, error) {
	in = withDefaults(in)
	if err := validateInput(in); err != nil {
		return nil, temporal.NewNonRetryableApplicationError("invalid ServiceUpdate input: "+err.Error(), ErrTypeInvalidInput, err)
	}
	release, _, _ := FindRelease(in.Releases, in.TargetVersion)
	w := &serviceUpdate{
		in: in,
		logger: log.With(workflow.GetLogger(ctx),
			"instanceId", in.Instance.ID, "tenantId", in.Instance.TenantID, "targetVersion", in.TargetVersion),
		mu:             workflow.NewMutex(ctx),
		status:         StatusScheduled,
		admins:         slices.Clone(in.Admins),
		targetVersion:  in.TargetVersion,
		release:        release,
		primaryStart:   in.PrimaryStart.UTC(),
		secondaryStart: in.SecondaryStart.UTC(),
		reminders:      ReminderSchedule(in.PrimaryStart, in.ReminderOffsets, workflow.Now(ctx)),
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (StatusView, error) {
		return w.view(ctx), nil
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
	}
	for _, u := range updates {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, u.handler,
			workflow.UpdateHandlerOptions{Validator: u.validator}); err != nil {
			return nil, fmt.Errorf("register update %s: %w", u.name, err)
		}
	}
	return w, nil
}

// run is the lifecycle of DESIGN.md: announce, remind until the primary
// start, run (or decline) the update, fall back once, report.
func (w *serviceUpdate) run(ctx workflow.Context) (Result, error) {
	// 1. The provider prescheduled (and booked) both slots: announce them.
	if err := w.transition(ctx, w.status, StatusScheduled, change{action: actionScheduled, notice: NoticeScheduled, slotStart: w.primaryStart, deadline: w.primaryStart}); err != nil {
		return w.cancel(ctx)
	}
	w.announced = true
	for {
		// 2. Reminders until the primary start; Approve and Reschedule
		// arrive meanwhile as Updates.
		from, err := w.awaitPrimaryStart(ctx)
		if err != nil {
			return w.cancel(ctx)
		}
		if w.status == StatusInProgress {
			// 4. Approved or mandatory: run it in the primary window.
			succeeded, err := w.execute(ctx, SlotPrimary, from)
			if err != nil {
				return w.cancel(ctx)
			}
			if succeeded {
				return w.succeed(ctx)
			}
			break
		}
		// 4. Optional and not approved: it does not run. The admins may
		// still reschedule until the release period ends.
		rescheduled, err := w.awaitLateReschedule(ctx)
		if err != nil {
			return w.cancel(ctx)
		}
		if !rescheduled {
			return w.close(ctx, StatusNotApproved, change{action: actionExpired, detail: "release period ended without approval"})
		}
	}
	// 5. The primary attempt failed: fall back to the secondary slot.
	if err := w.fallBack(ctx); err != nil {
		return w.cancel(ctx)
	}
	succeeded, err := w.execute(ctx, SlotSecondary, StatusFallbackScheduled)
	if err != nil {
		return w.cancel(ctx)
	}
	if succeeded {
		return w.succeed(ctx)
	}
	w.logger.Error("Service update failed in both slots; the instance stays on its current version",
		"currentVersion", w.in.CurrentVersion, "attempts", w.attempts)
	return w.close(ctx, StatusFailed, change{action: actionFailed, notice: NoticeFailed, slotStart: w.secondaryStart})
}

// awaitPrimaryStart sends the reminders as they come due and returns at the
// primary start with the status decided: InProgress when the update may
// run; NotApproved (slots released, admins told) when it may not. It
// reports the status before that.
func (w *serviceUpdate) awaitPrimaryStart(ctx workflow.Context) (Status, error) {
	for {
		now := workflow.Now(ctx)
		armed := w.scheduleVersion
		if due, _, _ := DueReminder(w.reminders, now); due != nil {
			if err := w.remind(ctx, armed); err != nil {
				return "", err
			}
			continue
		}
		next := w.primaryStart
		if len(w.reminders) > 0 {
			next = w.reminders[0].At
		}
		if next.After(now) {
			if _, err := workflow.AwaitWithTimeout(ctx, next.Sub(now), func() bool {
				return w.scheduleVersion != armed
			}); err != nil {
				return "", err
			}
			continue
		}
		// The primary start has come. Take the mutex so that no Reschedule
		// is halfway through booking, then decide.
		if err := w.mu.Lock(ctx); err != nil {
			return "", err
		}
		if w.primaryStart.After(workflow.Now(ctx)) {
			w.mu.Unlock() // a Reschedule moved the slot while we waited
			continue
		}
		from := w.status
		if w.mayRun() {
			w.status = StatusInProgress
			w.startedAt = workflow.Now(ctx)
			w.mu.Unlock()
			return from, nil
		}
		// Optional and not approved: give the slots back and tell the
		// admins while still holding the mutex, so that a late Reschedule
		// books and reports only after this.
		w.status = StatusNotApproved
		err := w.releaseSlots(ctx)
		if err == nil {
			err = w.record(ctx, from, change{action: actionNotApproved, notice: NoticeNotApproved, slotStart: w.primaryStart, deadline: w.latestPrimaryStart()})
		}
		w.mu.Unlock()
		return from, err
	}
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
	return w.in.Mandatory || w.status == StatusApproved
}

// awaitLateReschedule waits, after an optional update was not approved at
// its primary start, for a late Reschedule until the release period ends.
// It reports whether one came.
func (w *serviceUpdate) awaitLateReschedule(ctx workflow.Context) (bool, error) {
	rescheduled := func() bool { return w.status == StatusApproved }
	if remaining := w.release.PeriodEnd.Sub(workflow.Now(ctx)); remaining > 0 {
		if _, err := workflow.AwaitWithTimeout(ctx, remaining, rescheduled); err != nil {
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
	return LatestPrimaryStart(w.release, w.in.WindowLength, w.in.SecondaryMinGap)
}

// execute runs the update in one slot and records the attempt. It reports
// whether the update succeeded; an error means the workflow was cancelled.
func (w *serviceUpdate) execute(ctx workflow.Context, role SlotRole, from Status) (bool, error) {
	slotStart := w.slotStart(role)
	windowEnd := slotStart.Add(w.in.WindowLength)
	if err := w.transition(ctx, from, StatusInProgress, change{action: actionStarted, detail: string(role) + " slot", notice: NoticeInProgress, slotStart: slotStart, deadline: windowEnd}); err != nil {
		return false, err
	}
	attempt := Attempt{Slot: role, Started: workflow.Now(ctx)}
	err := w.applyUpdate(ctx, role, windowEnd)
	attempt.Finished = workflow.Now(ctx)
	var timeout *temporal.TimeoutError
	switch {
	case err == nil:
		attempt.Outcome = OutcomeSucceeded
	case ctx.Err() != nil:
		attempt.Outcome, attempt.Error = OutcomeCancelled, failureText(err)
	case errors.As(err, &timeout) || !attempt.Finished.Before(windowEnd):
		attempt.Outcome, attempt.Error = OutcomeWindowElapsed, failureText(err)
	default:
		attempt.Outcome, attempt.Error = OutcomeFailed, failureText(err)
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

// fallBack schedules the secondary slot after a failed primary attempt and
// waits for its start.
func (w *serviceUpdate) fallBack(ctx workflow.Context) error {
	last := w.attempts[len(w.attempts)-1]
	if err := w.transition(ctx, w.status, StatusFallbackScheduled, change{action: actionFallback, detail: last.Outcome + ": " + last.Error, notice: NoticeFallback, slotStart: w.secondaryStart, deadline: w.secondaryStart}); err != nil {
		return err
	}
	if wait := w.secondaryStart.Sub(workflow.Now(ctx)); wait > 0 {
		return workflow.Sleep(ctx, wait)
	}
	return nil
}

// succeed records the new version and closes the workflow as Succeeded.
// The update has happened whatever comes next, so the bookkeeping runs on a
// disconnected context: a late cancellation must not misreport it.
func (w *serviceUpdate) succeed(ctx workflow.Context) (Result, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	w.recordVersion(dctx)
	return w.close(dctx, StatusSucceeded, change{action: actionSucceeded, notice: NoticeSucceeded, slotStart: w.slotStart(w.activeSlot())})
}

// close moves to the final status, records it, counts it and returns the
// Result once every Update handler has finished.
func (w *serviceUpdate) close(ctx workflow.Context, final Status, c change) (Result, error) {
	if err := w.transition(ctx, w.status, final, c); err != nil {
		return w.cancel(ctx)
	}
	return w.finish(ctx)
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
		return workflow.AllHandlersFinished(dctx) && w.noticesInFlight == 0
	}); err != nil {
		return Result{}, err
	}
	final := w.in.CurrentVersion
	if w.status == StatusSucceeded {
		final = w.targetVersion
	}
	return Result{Status: w.status, FinalVersion: final, Attempts: w.attempts}, nil
}

// activeSlot is the slot the update runs (or ran last) in.
func (w *serviceUpdate) activeSlot() SlotRole {
	if w.status == StatusFallbackScheduled || (len(w.attempts) > 0 && w.attempts[len(w.attempts)-1].Slot == SlotSecondary) {
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

// --- Updates -----------------------------------------------------------

// refuseChanges explains why the schedule can no longer change, or returns
// nil while it still can. verb completes "it can no longer be ...".
func (w *serviceUpdate) refuseChanges(verb string) error {
	switch {
	case w.cancelled:
		return fmt.Errorf("the update was cancelled; it can no longer be %s", verb)
	case !w.startedAt.IsZero():
		return fmt.Errorf("the update started at %s; it can no longer be %s", w.startedAt.UTC().Format(timeLayout), verb)
	case w.closing:
		return fmt.Errorf("the update closed as %s; it can no longer be %s", w.status, verb)
	}
	return nil
}

func (w *serviceUpdate) checkAdmin(admin string) error {
	if _, ok := FindAdmin(w.admins, admin); !ok {
		return fmt.Errorf("%q is not an admin of instance %s; ask one of its admins", admin, w.in.Instance.ID)
	}
	return nil
}

func (w *serviceUpdate) validateApprove(ctx workflow.Context, in ApproveInput) error {
	if err := w.checkAdmin(in.Admin); err != nil {
		return err
	}
	if err := w.refuseChanges("approved"); err != nil {
		return err
	}
	switch w.status {
	case StatusApproved:
		return fmt.Errorf("the update was already approved by %s at %s", w.approvedBy, w.approvedAt.UTC().Format(timeLayout))
	case StatusNotApproved:
		return fmt.Errorf("the update was not approved before its slot at %s; reschedule to a later slot instead (a primary slot starting by %s, so both windows fit in the release period ending %s)",
			w.primaryStart.UTC().Format(timeLayout), w.latestPrimaryStart().UTC().Format(timeLayout), w.release.PeriodEnd.UTC().Format(timeLayout))
	}
	return nil
}

func (w *serviceUpdate) approve(ctx workflow.Context, in ApproveInput) (StatusView, error) {
	if err := w.lockAnnounced(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	// The state may have moved while this handler waited for the mutex.
	if err := w.validateApprove(ctx, in); err != nil {
		return StatusView{}, err
	}
	from := w.status
	w.status = StatusApproved
	w.approvedBy, _ = FindAdmin(w.admins, in.Admin)
	w.approvedAt = workflow.Now(ctx)
	err := w.record(ctx, from, change{action: actionApproved, actor: w.approvedBy, channel: ChannelUpdate, detail: in.Note,
		notice: NoticeConfirmed, slotStart: w.primaryStart, deadline: w.primaryStart})
	return w.view(ctx), err
}

func (w *serviceUpdate) validateReschedule(ctx workflow.Context, in RescheduleInput) error {
	if err := w.checkAdmin(in.Admin); err != nil {
		return err
	}
	if err := w.refuseChanges("rescheduled"); err != nil {
		return err
	}
	release, err := ChooseTargetVersion(w.in.Releases, w.targetVersion, in.TargetVersion)
	if err != nil {
		return err
	}
	return ValidateSlots(SlotChoice{
		PrimaryStart: in.PrimaryStart, SecondaryStart: in.SecondaryStart,
		WindowLength: w.in.WindowLength, SecondaryMinGap: w.in.SecondaryMinGap, Release: release,
	}, workflow.Now(ctx))
}

func (w *serviceUpdate) reschedule(ctx workflow.Context, in RescheduleInput) (StatusView, error) {
	if err := w.lockAnnounced(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	if err := w.validateReschedule(ctx, in); err != nil {
		return StatusView{}, err
	}
	release, _ := ChooseTargetVersion(w.in.Releases, w.targetVersion, in.TargetVersion)
	// Capacity lives in Postgres, so a full or withdrawn slot is only found
	// here, after the validator accepted the Update: this is the one refusal
	// that leaves an Update in history. The state stays unchanged.
	if err := w.bookSlots(ctx, release.Version, in.PrimaryStart, in.SecondaryStart); err != nil {
		return StatusView{}, err
	}
	// A cancellation that came while the booking finished wins: cancel
	// releases the slots once this handler has returned.
	if err := w.refuseChanges("rescheduled"); err != nil {
		return StatusView{}, err
	}
	from := w.status
	now := workflow.Now(ctx)
	w.targetVersion, w.release = release.Version, release
	w.primaryStart, w.secondaryStart = in.PrimaryStart.UTC(), in.SecondaryStart.UTC()
	w.reminders = ReminderSchedule(w.primaryStart, w.in.ReminderOffsets, now)
	w.scheduleVersion++
	w.status = StatusApproved
	w.approvedBy, _ = FindAdmin(w.admins, in.Admin)
	w.approvedAt = now
	err := w.record(ctx, from, change{action: actionRescheduled, actor: w.approvedBy, channel: ChannelUpdate,
		detail: fmt.Sprintf("primary %s, secondary %s, target %s", w.primaryStart.Format(timeLayout), w.secondaryStart.Format(timeLayout), w.targetVersion),
		notice: NoticeRescheduled, slotStart: w.primaryStart, deadline: w.primaryStart})
	return w.view(ctx), err
}

func (w *serviceUpdate) validateSetAdmins(ctx workflow.Context, in SetAdminsInput) error {
	switch {
	case w.cancelled:
		return errors.New("the update was cancelled; its admins can no longer change")
	case w.closing:
		return fmt.Errorf("the update closed as %s; its admins can no longer change", w.status)
	}
	return ValidateAdmins(in.Admins)
}

func (w *serviceUpdate) setAdmins(ctx workflow.Context, in SetAdminsInput) (StatusView, error) {
	if err := w.lockAnnounced(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	if err := w.validateSetAdmins(ctx, in); err != nil {
		return StatusView{}, err
	}
	w.admins = slices.Clone(in.Admins)
	err := w.recordAudit(ctx, w.status, change{action: actionAdminsChanged, channel: ChannelUpdate, detail: fmt.Sprint(w.admins)})
	return w.view(ctx), err
}

// --- Views -------------------------------------------------------------

// window renders a slot; an unknown zone (validated away at start, but
// rendering must never fail a query) falls back to UTC.
func (w *serviceUpdate) window(start time.Time) Window {
	end := start.Add(w.in.WindowLength)
	win, err := NewWindow(start, end, w.in.Instance.TimeZone)
	if err != nil {
		win, _ = NewWindow(start, end, "UTC")
	}
	return win
}

func (w *serviceUpdate) view(ctx workflow.Context) StatusView {
	return StatusView{
		WorkflowID:     workflow.GetInfo(ctx).WorkflowExecution.ID,
		InstanceID:     w.in.Instance.ID,
		InstanceName:   w.in.Instance.Name,
		TenantID:       w.in.Instance.TenantID,
		Admins:         slices.Clone(w.admins),
		CurrentVersion: w.in.CurrentVersion,
		OfferedVersion: w.in.TargetVersion,
		TargetVersion:  w.targetVersion,
		Mandatory:      w.in.Mandatory,
		Status:         w.status,
		Primary:        w.window(w.primaryStart),
		Secondary:      w.window(w.secondaryStart),
		ReleasePeriod:  w.release,
		ApprovedBy:     w.approvedBy,
		ApprovedAt:     w.approvedAt,
		Attempts:       slices.Clone(w.attempts),
		Notices:        slices.Clone(w.notices),
		Upcoming:       w.upcoming(),
	}
}

// upcoming lists the notices still due, earliest first.
func (w *serviceUpdate) upcoming() []NoticeRecord {
	upcoming := []NoticeRecord{}
	switch w.status {
	case StatusScheduled, StatusApproved:
		for _, r := range w.reminders {
			if r.Offset == 0 && !w.mayRun() {
				continue
			}
			upcoming = append(upcoming, NoticeRecord{Kind: r.Kind, At: r.At})
		}
		atStart := NoticeNotApproved
		if w.mayRun() {
			atStart = NoticeInProgress
		}
		upcoming = append(upcoming, NoticeRecord{Kind: atStart, At: w.primaryStart})
	case StatusFallbackScheduled:
		upcoming = append(upcoming, NoticeRecord{Kind: NoticeInProgress, At: w.secondaryStart})
	}
	return upcoming
}

// summary is the one line the Web UI shows for this workflow.
func (w *serviceUpdate) summary() string {
	primary, secondary := w.window(w.primaryStart), w.window(w.secondaryStart)
	policy := "optional"
	if w.in.Mandatory {
		policy = "mandatory"
	}
	line := fmt.Sprintf("%s: %s %s -> %s (%s); primary %s (%s UTC), secondary %s",
		w.status, w.in.Instance.ID, w.in.CurrentVersion, w.targetVersion, policy,
		primary.LocalStart, primary.Start.Format(timeLayout), secondary.LocalStart)
	if w.approvedBy != "" {
		line += fmt.Sprintf("; approved by %s", w.approvedBy)
	}
	return line
}

// --- Recording transitions and notices ---------------------------------

// change describes one recorded transition.
type change struct {
	action  string
	actor   string // default ActorSystem
	channel string // default ChannelWorkflow
	detail  string
	// notice, when set, is scheduled alongside the audit row.
	notice    NoticeKind
	slotStart time.Time
	deadline  time.Time
}

// record publishes the current state after a transition from `from`:
// search attributes and Web UI details, the audit row, and the change's
// notice. Audit and notice are scheduled in the same workflow task, in
// lifecycle order; record waits for the audit only: an email being retried
// must hold neither the lifecycle nor an admin's answer. Activity failures
// are logged, never fatal; the only error returned is the workflow's
// cancellation.
func (w *serviceUpdate) record(ctx workflow.Context, from Status, c change) error {
	w.publish(ctx)
	audit := w.startAudit(ctx, from, c)
	if c.notice != "" {
		w.sendNotice(ctx, c.notice, 0, c.slotStart, c.deadline)
	}
	return w.finishAudit(ctx, audit, c)
}

// lockAnnounced takes the mutex for an Update handler once the schedule
// has been announced.
func (w *serviceUpdate) lockAnnounced(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return w.announced }); err != nil {
		return err
	}
	return w.mu.Lock(ctx)
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
	return w.finishAudit(ctx, w.startAudit(ctx, from, c), c)
}

// publish upserts every search attribute and the Web UI's current details.
func (w *serviceUpdate) publish(ctx workflow.Context) {
	scheduled := w.slotStart(w.activeSlot())
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrUpdateStatus.ValueSet(string(w.status)),
		SearchAttrInstanceID.ValueSet(w.in.Instance.ID),
		SearchAttrTenantID.ValueSet(w.in.Instance.TenantID),
		SearchAttrTargetVersion.ValueSet(w.targetVersion),
		SearchAttrScheduledStart.ValueSet(scheduled),
		SearchAttrMandatory.ValueSet(w.in.Mandatory),
	); err != nil {
		w.logger.Error("Search attributes not updated", "error", err)
	}
	workflow.SetCurrentDetails(ctx, w.summary())
}

func (w *serviceUpdate) startAudit(ctx workflow.Context, from Status, c change) workflow.Future {
	in := RecordTransitionInput{
		Actor: cmp.Or(c.actor, ActorSystem), Channel: cmp.Or(c.channel, ChannelWorkflow),
		Action: c.action, From: from, Detail: c.detail, Snapshot: w.view(ctx),
	}
	// Retried with backoff for a few minutes, then logged and given up: an
	// admin's Update waits for it, and the next transition's snapshot
	// refreshes the projection anyway.
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
	})
	return workflow.ExecuteActivity(ctx, ActivityRecordTransition, in)
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

func (w *serviceUpdate) startNotice(ctx workflow.Context, kind NoticeKind, offset time.Duration, slotStart, deadline time.Time) workflow.Future {
	in := SendNoticeInput{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		Kind:       kind, Offset: offset, SlotStart: slotStart, Deadline: deadline, Update: w.view(ctx),
	}
	// The outbox makes retries safe; a notice still failing after a day is
	// not worth holding the lifecycle for.
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNoRecipients, ErrTypeMailRejected, ErrTypeInvalidInput},
		},
	})
	return workflow.ExecuteActivity(ctx, ActivitySendNotice, in)
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

// --- Slots, version, executor ------------------------------------------

// bookSlots reserves both slots of the chosen release for this update. A
// full, withdrawn or unknown slot comes back as an error for the admin.
func (w *serviceUpdate) bookSlots(ctx workflow.Context, version string, primary, secondary time.Time) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 2 * time.Minute, // an admin is waiting for the answer
		// On cancellation, wait until the booking has really ended, so the
		// release that follows cannot be overtaken by it.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeSlotFull, ErrTypeSlotNotOffered, ErrTypeNotFound, ErrTypeInvalidInput},
		},
	})
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

// releaseSlots gives both reservations back to the pool. Retried for a
// day: a reservation left behind takes capacity from other instances.
func (w *serviceUpdate) releaseSlots(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
		},
	})
	var res ReleaseSlotsResult
	err := workflow.ExecuteActivity(ctx, ActivityReleaseSlots, ReleaseSlotsInput{
		InstanceID: w.in.Instance.ID, OfferedVersion: w.in.TargetVersion,
	}).Get(ctx, &res)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		w.logger.Error("Slot reservations not released", "error", err)
	}
	return nil
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
		ScheduleToCloseTimeout: remaining,
		StartToCloseTimeout:    remaining,
		HeartbeatTimeout:       HeartbeatTimeout(w.in.WindowLength),
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
