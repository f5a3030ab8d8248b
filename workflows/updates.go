package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// lockAnnounced takes the mutex for an Update handler once the schedule
// has been announced.
func (w *serviceUpdate) lockAnnounced(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return w.announced }); err != nil {
		return err
	}
	return w.mu.Lock(ctx)
}

// lockToBook is lockAnnounced for a handler that books slots: it also
// waits until no release of the slots is under way, which would undo the
// booking.
func (w *serviceUpdate) lockToBook(ctx workflow.Context) error {
	for {
		if err := workflow.Await(ctx, func() bool { return w.announced && !w.releasing }); err != nil {
			return err
		}
		if err := w.mu.Lock(ctx); err != nil {
			return err
		}
		if !w.releasing {
			return nil
		}
		w.mu.Unlock() // a release began while this handler waited
	}
}

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

// listedAs is admin as the admin list spells it; as given when SetAdmins
// removed it after the Update was accepted.
func (w *serviceUpdate) listedAs(admin string) string {
	if listed, ok := FindAdmin(w.admins, admin); ok {
		return listed
	}
	return admin
}

func (w *serviceUpdate) checkAdmin(admin string) error {
	if _, ok := FindAdmin(w.admins, admin); !ok {
		return fmt.Errorf("%q is not an admin of instance %s; ask one of its admins", admin, w.in.Instance.ID)
	}
	return nil
}

func (w *serviceUpdate) validateApprove(ctx workflow.Context, in ApproveInput) error {
	if err := w.authorizeAdmin(ctx, in.Assertion, actor.ActionApprove, in.Admin); err != nil {
		return err
	}
	return w.refuseApproval()
}

// refuseApproval explains why the state no longer takes an approval, or
// returns nil while it does.
func (w *serviceUpdate) refuseApproval() error {
	if err := w.refuseChanges("approved"); err != nil {
		return err
	}
	switch w.status {
	case StatusApproved:
		return fmt.Errorf("the update was already approved by %s at %s", w.approvedBy, w.approvedAt.UTC().Format(timeLayout))
	case StatusNotApproved:
		return fmt.Errorf("the update was not approved before its slot at %s; reschedule to a later slot instead (a primary slot starting by %s, so both windows fit in the release period ending %s)",
			w.primaryStart.UTC().Format(timeLayout), w.latestPrimaryStart().UTC().Format(timeLayout), w.release.PeriodEnd.UTC().Format(timeLayout))
	case StatusFailed:
		return fmt.Errorf("the update failed in both its slots; reschedule a new attempt to later slots instead (a primary slot starting by %s, so both windows fit in the release period ending %s)",
			w.latestPrimaryStart().UTC().Format(timeLayout), w.release.PeriodEnd.UTC().Format(timeLayout))
	}
	return nil
}

func (w *serviceUpdate) approve(ctx workflow.Context, in ApproveInput) (StatusView, error) {
	by, err := w.admit(in.Assertion, in.Admin)
	if err != nil {
		return StatusView{}, err
	}
	if err := w.lockAnnounced(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	// The state may have moved while this handler waited for the mutex:
	// check it again, but not the validator's rules, which may change
	// from one release to the next (the SDK skips validators on replay).
	if err := w.recheck(ctx, w.refuseApproval(), w.release1RecheckApprove(in)); err != nil {
		return StatusView{}, err
	}
	from := w.status
	w.status = StatusApproved
	w.approvedBy = w.listedAs(in.Admin)
	w.approvedAt = workflow.Now(ctx)
	approved := change{action: actionApproved, actor: w.approvedBy, operator: by.operator, channel: by.channel, detail: in.Note,
		notice: NoticeConfirmed, slotStart: w.primaryStart, deadline: w.primaryStart}
	w.keepApproval(approved, w.approvedAt)
	err = w.record(ctx, from, approved)
	return w.view(ctx), err
}

// validateReschedule refuses every Reschedule the input lets it judge, so
// a refusal leaves no trace in history: the admin, the state, the target,
// whether both slots are offered in the instance's region (Input.Slots;
// not known in inputs of release 1), the minimum notice, the order of the
// slots and the release period, each slot with its own window. Only a
// full slot is found by the booking, after acceptance.
//
// Tightening these rules needs no GetVersion: the SDK does not run
// validators on replay (a refused Update is not in history), and after
// the mutex the handler re-checks only state (handlers-recheck-state-only),
// never these rules.
func (w *serviceUpdate) validateReschedule(ctx workflow.Context, in RescheduleInput) error {
	if err := w.authorizeAdmin(ctx, in.Assertion, actor.ActionReschedule, in.Admin); err != nil {
		return err
	}
	if err := w.refuseChanges("rescheduled"); err != nil {
		return err
	}
	if w.releasing {
		return fmt.Errorf("the slots of the missed primary slot at %s are being given back; send the reschedule again in a few minutes",
			w.primaryStart.UTC().Format(timeLayout))
	}
	release, err := ChooseTargetVersion(w.in.Releases, w.targetVersion, in.TargetVersion)
	if err != nil {
		return err
	}
	var offered []OfferedSlot // nil: not known, left to the booking
	if len(w.in.Slots) > 0 {
		offered = w.in.Slots
	}
	return ValidateSlots(SlotChoice{
		PrimaryStart: in.PrimaryStart, PrimaryWindow: w.offeredWindow(release.Version, in.PrimaryStart),
		SecondaryStart: in.SecondaryStart, SecondaryWindow: w.offeredWindow(release.Version, in.SecondaryStart),
		SecondaryMinGap: w.in.SecondaryMinGap, Release: release,
		MinNotice: w.in.RescheduleMinNotice, Offered: offered, Region: w.in.Instance.Region,
	}, workflow.Now(ctx))
}

// refuseReschedule re-checks, once the mutex is held, what can have
// changed since the validator accepted in: the state, and time, which may
// have carried the chosen primary start into the past.
func (w *serviceUpdate) refuseReschedule(ctx workflow.Context, in RescheduleInput) error {
	if err := w.refuseChanges("rescheduled"); err != nil {
		return err
	}
	if now := workflow.Now(ctx); !in.PrimaryStart.After(now) {
		return fmt.Errorf("primary start %s passed while the reschedule waited its turn (now %s); choose a later slot",
			in.PrimaryStart.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	return nil
}

func (w *serviceUpdate) reschedule(ctx workflow.Context, in RescheduleInput) (StatusView, error) {
	by, err := w.admit(in.Assertion, in.Admin)
	if err != nil {
		return StatusView{}, err
	}
	// The release the validator accepted: another Reschedule may move the
	// target while this one waits for the mutex.
	release, _, _ := FindRelease(w.in.Releases, cmp.Or(in.TargetVersion, w.targetVersion))
	if err := w.lockToBook(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	if err := w.recheck(ctx, w.refuseReschedule(ctx, in), w.release1RecheckReschedule(ctx, in)); err != nil {
		return StatusView{}, err
	}
	// Release 1 resolved the target only now, after the wait.
	if then, _, _ := FindRelease(w.in.Releases, cmp.Or(in.TargetVersion, w.targetVersion)); then.Version != release.Version &&
		!w.takes(ctx, changeStateOnlyRecheck) {
		release = then
	}
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
	w.primaryWindow = w.offeredWindow(release.Version, in.PrimaryStart)
	w.secondaryWindow = w.offeredWindow(release.Version, in.SecondaryStart)
	w.reminders = ReminderSchedule(w.primaryStart, w.in.ReminderOffsets, now)
	w.scheduleVersion++
	w.numberRescheduledNotice(ctx)
	w.status = StatusApproved
	w.approvedBy = w.listedAs(in.Admin)
	w.approvedAt = now
	rescheduled := change{action: actionRescheduled, actor: w.approvedBy, operator: by.operator, channel: by.channel,
		detail: fmt.Sprintf("primary %s, secondary %s, target %s", w.primaryStart.Format(timeLayout), w.secondaryStart.Format(timeLayout), w.targetVersion),
		notice: NoticeRescheduled, slotStart: w.primaryStart, deadline: w.primaryStart}
	w.keepApproval(rescheduled, now)
	err = w.record(ctx, from, rescheduled)
	return w.view(ctx), err
}

// numberRescheduledNotice sets the sequence of the rescheduled notice of
// the Reschedule just accepted: how many earlier ones chose the same
// primary start. By it the outbox tells each Reschedule's notice from an
// earlier one for the same slot, while a retry of one still sends once.
// Release 1 sent every one with sequence 0.
func (w *serviceUpdate) numberRescheduledNotice(ctx workflow.Context) {
	repeats := 0
	for _, start := range w.rescheduledTo {
		if start.Equal(w.primaryStart) {
			repeats++
		}
	}
	w.rescheduledTo = append(w.rescheduledTo, w.primaryStart)
	w.rescheduledSequence = 0
	if repeats > 0 && w.takes(ctx, changeRescheduledSequence) {
		w.rescheduledSequence = repeats
	}
}

// noticeSequence is the Sequence of a notice of kind scheduled now.
func (w *serviceUpdate) noticeSequence(kind NoticeKind) int {
	if kind == NoticeRescheduled {
		return w.rescheduledSequence
	}
	return 0
}

// keepApproval adds an approving change to the Status view's history.
func (w *serviceUpdate) keepApproval(c change, at time.Time) {
	w.approvals = append(w.approvals, Approval{By: c.actor, Operator: c.operator, At: at, Action: c.action, Channel: c.channel, Detail: c.detail})
}

func (w *serviceUpdate) validateSetAdmins(ctx workflow.Context, in SetAdminsInput) error {
	if err := w.authorizeAdminList(ctx, in.Assertion); err != nil {
		return err
	}
	if err := w.refuseAdminChange(); err != nil {
		return err
	}
	return ValidateAdmins(in.Admins)
}

// refuseAdminChange explains why the admins can no longer change, or
// returns nil while they can.
func (w *serviceUpdate) refuseAdminChange() error {
	switch {
	case w.cancelled:
		return errors.New("the update was cancelled; its admins can no longer change")
	case w.closing:
		return fmt.Errorf("the update closed as %s; its admins can no longer change", w.status)
	}
	return nil
}

func (w *serviceUpdate) setAdmins(ctx workflow.Context, in SetAdminsInput) (StatusView, error) {
	by, err := w.admit(in.Assertion, "")
	if err != nil {
		return StatusView{}, err
	}
	if err := w.lockAnnounced(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	if err := w.recheck(ctx, w.refuseAdminChange(), w.release1RecheckSetAdmins(in)); err != nil {
		return StatusView{}, err
	}
	w.admins = slices.Clone(in.Admins)
	err = w.recordAudit(ctx, w.status, change{action: actionAdminsChanged, actor: by.actor, operator: by.operator, channel: by.channel, detail: fmt.Sprint(w.admins)})
	return w.view(ctx), err
}
