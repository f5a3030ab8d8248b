package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// A ServiceUpdate runs for months, across many deploys of this code. Every
// change to what the workflow does (its commands or their order) since
// release 1 is a patch: a change ID checked with workflow.GetVersion where
// the behaviour changes. A workflow that passed that point under an older
// release replays the old behaviour, kept here or next to the patch; every
// other one takes the new. README, "Changing the workflow", says when a
// patch and its old branch may go.

// patched reports whether this workflow takes the change changeID: true
// for code running for the first time, false when replaying a history
// recorded before the change. The first call records a marker (two
// history events), so where old and new behaviour only sometimes differ,
// it is asked only when they do: a workflow that never meets the
// difference carries no marker, and one that does is pinned right there.
func patched(ctx workflow.Context, changeID string) bool {
	return workflow.GetVersion(ctx, changeID, workflow.DefaultVersion, 1) >= 1
}

// Release 1 applied these defaults while running, to inputs that left the
// fields empty. Since release 2 the starter resolves the current defaults
// into every input (Input.WithDefaults), so only a workflow started by
// release 1 lacks them, and it keeps the values it ran with from the
// start. They are frozen: never change them, whatever the defaults become.
var release1ReminderOffsets = []time.Duration{
	90 * 24 * time.Hour, 30 * 24 * time.Hour, 15 * 24 * time.Hour, 7 * 24 * time.Hour, 0,
}

const release1WindowLength = 12 * time.Hour

// withRelease1Defaults fills what an input of release 1 may lack.
func withRelease1Defaults(in Input) Input {
	if len(in.ReminderOffsets) == 0 {
		in.ReminderOffsets = slices.Clone(release1ReminderOffsets)
	}
	if in.WindowLength == 0 {
		in.WindowLength = release1WindowLength
	}
	return in
}

// changeReleaseAtClose: every close (Succeeded, Failed, NotApproved)
// gives the update's reservations back, as a cancellation always did.
const changeReleaseAtClose = "release-slots-at-close"

// changeDecidedOutcome: Failed and NotApproved, once decided, close on a
// disconnected context, so a late cancellation changes neither the status
// nor the final notice and audit row.
const changeDecidedOutcome = "decided-outcome-stays"

// changeCancelWokenTimers: a wait for the next reminder, the primary start
// or the period's end that a Reschedule cuts short cancels its timer
// instead of leaving it to fire later (AwaitWithTimeout).
const changeCancelWokenTimers = "cancel-woken-timers"

// changeReleaseWithoutMutex: the decision not to run an unapproved update
// gives its slots back without holding the mutex across the release.
const changeReleaseWithoutMutex = "not-approved-release-without-mutex"

// changeStartWithoutAudit: an attempt's executor starts with its started
// audit row, not after it, and the mutex is not held while the row waits.
const changeStartWithoutAudit = "start-without-waiting-for-audit"

// changeStateOnlyRecheck: after waiting for the mutex, an Update handler
// re-checks only the state that can have changed meanwhile (cancelled,
// started, closed, approved, the primary start passed), never the
// validator's rules. Release 1 ran the whole validator again; its rules
// are frozen below for the histories that did.
const changeStateOnlyRecheck = "handlers-recheck-state-only"

// changeRescheduledSequence: a Reschedule to a primary start that an
// earlier Reschedule chose sends its rescheduled notice with a sequence
// (SendNoticeInput.Sequence), so the outbox sends it instead of taking it
// for the earlier one. Asked only for such a repeat, the one case where
// old and new inputs differ: histories of release 1 replay with sequence 0.
const changeRescheduledSequence = "rescheduled-notice-sequence"

// changeCheckInstance: at the primary and the secondary start the
// workflow first re-reads the instance from Postgres (CheckInstance, a
// local activity): an instance already at or past the target closes
// Succeeded without running, and whether the update is mandatory follows
// the versions recorded since the rollout. Asked at the first start
// reached, where the check is the first new command.
const changeCheckInstance = "check-instance-before-attempt"

// changeRescheduleAfterFailure: an update that failed in both slots stays
// open as Failed, its reservations given back, so its admins can
// reschedule a new attempt until the release period ends; then it closes
// as Failed. Asked only when a failure leaves a primary start to choose.
const changeRescheduleAfterFailure = "reschedule-after-failure"

// changeSupersede marks a history in which a Supersede was accepted (a
// new Update: no older history holds one, so there is no old branch).
// A later change to what it does can switch on it.
const changeSupersede = "supersede"

// changeMove marks a history in which a Move was accepted (a new Update,
// like changeSupersede: no older history holds one).
const changeMove = "move"

// changeRolloutMove marks a Rollout history in which a Resume moved the
// held waves (MoveWaves); no older history holds one.
const changeRolloutMove = "rollout-move"

// changeRolloutDonePhase: a Rollout whose every wave opened sets its
// RolloutPhase search attribute to Done as it completes (it was left at
// Waiting). Asked only there.
const changeRolloutDonePhase = "rollout-done-phase"

// changeRescanSlotsFloor: a Rollout's rescan books a wave's new members
// after the last primary of every earlier wave's members, as reported from
// Postgres; it took only what the rescan itself had started, so one new
// production instance could be booked before the sandboxes' slots, pulling
// its wave's gate ahead of them. Asked only when the report is the later.
const changeRescanSlotsFloor = "rollout-rescan-slots-floor"

// changeZeroBudgetOpens: a Rollout with a failure budget of 0 opens a wave
// when no update before it failed (it held every wave, as no share is
// below 0 %). Asked only when the two differ: a zero budget, no failure.
const changeZeroBudgetOpens = "rollout-zero-budget-opens"

// changeAbandonInvalidInput: a workflow that refuses its input gives the
// rollout's reservations and claim on the instance back before it fails.
// Asked only on that path.
const changeAbandonInvalidInput = "abandon-claim-on-invalid-input"

// changeWaveGate: an update whose rollout wave is not open waits at its
// slot's start until the Rollout opens it (gate.go). Asked only when the
// instance check finds the wave closed, which no older check could say:
// histories from before it never meet the question.
const changeWaveGate = "wave-gate"

// changeLeanLifecycle: the lean lifecycle, asked once, in setup, by a
// workflow whose input does not say LeanLifecycle (started before the
// starters set it). Each
// transition is one local activity (CommitTransition) writing the audit
// row, the projection, the notices and the reminders still due (as
// outbox rows with a due time) and a close's slot release and version in
// one transaction; the worker's dispatcher delivers the emails. The
// workflow then needs no timer, activity or coroutine per notice or
// reminder, and sleeps on one timer until the slot's start. A workflow
// on the lean lifecycle takes every change above without asking for it
// (takes); one started before keeps the old path, asked change by change.
// A workflow whose input says LeanLifecycle but whose first task a worker
// of release 3 ran (a rolling deploy) carries the marker anyway; replay
// takes it, as the SDK skips version markers no call asks for.
const changeLeanLifecycle = "lean-lifecycle"

// takes reports whether this workflow takes a change made before the
// lean lifecycle: always on the lean lifecycle (no marker), otherwise as
// patched says.
func (w *serviceUpdate) takes(ctx workflow.Context, changeID string) bool {
	return w.lean || patched(ctx, changeID)
}

// recheck is the decision of a handler that waited for the mutex: today's
// state-only check, or release 1's (release1) where a history recorded by
// release 1 is replayed. The version is asked only where they disagree.
func (w *serviceUpdate) recheck(ctx workflow.Context, stateOnly, release1 error) error {
	if (stateOnly == nil) == (release1 == nil) || w.takes(ctx, changeStateOnlyRecheck) {
		return stateOnly
	}
	return release1
}

// The release1Recheck functions are what release 1's handlers checked
// after taking the mutex: its validators of the time. They run again when
// a history of release 1 is replayed, so they are frozen copies that must
// never follow a change of today's validators (only their messages may
// change: the decision to refuse is what replay depends on).

func (w *serviceUpdate) release1RecheckApprove(in ApproveInput) error {
	if err := w.release1CheckAdmin(in.Admin); err != nil {
		return err
	}
	if err := w.refuseChanges("approved"); err != nil {
		return err
	}
	switch w.status {
	case StatusApproved:
		return fmt.Errorf("the update was already approved by %s", w.approvedBy)
	case StatusNotApproved:
		return fmt.Errorf("the update was not approved before its slot at %s; reschedule to a later slot instead", w.primaryStart.UTC().Format(timeLayout))
	}
	return nil
}

func (w *serviceUpdate) release1RecheckReschedule(ctx workflow.Context, in RescheduleInput) error {
	if err := w.release1CheckAdmin(in.Admin); err != nil {
		return err
	}
	if err := w.refuseChanges("rescheduled"); err != nil {
		return err
	}
	_, current, _ := FindRelease(w.in.Releases, w.targetVersion)
	release, requested, ok := FindRelease(w.in.Releases, cmp.Or(in.TargetVersion, w.targetVersion))
	if !ok || requested < current {
		return fmt.Errorf("target version %q is not offered for this update or older than the current target %q", in.TargetVersion, w.targetVersion)
	}
	window := w.in.WindowLength // one length for every slot in release 1
	switch {
	case !in.PrimaryStart.After(workflow.Now(ctx)):
		return fmt.Errorf("primary start %s is not in the future; choose a later slot", in.PrimaryStart.UTC().Format(timeLayout))
	case in.SecondaryStart.Before(in.PrimaryStart.Add(window + w.in.SecondaryMinGap)):
		return fmt.Errorf("secondary start %s is too early; choose a later slot", in.SecondaryStart.UTC().Format(timeLayout))
	}
	for _, start := range []time.Time{in.PrimaryStart, in.SecondaryStart} {
		if start.Before(release.PeriodStart) || start.Add(window).After(release.PeriodEnd) {
			return fmt.Errorf("the window starting %s lies outside the release period of %s; choose a slot inside it", start.UTC().Format(timeLayout), release.Version)
		}
	}
	return nil
}

func (w *serviceUpdate) release1RecheckSetAdmins(in SetAdminsInput) error {
	if err := w.refuseAdminChange(); err != nil {
		return err
	}
	if len(in.Admins) == 0 {
		return errors.New("the admin list is empty")
	}
	for _, admin := range in.Admins {
		addr, err := mail.ParseAddress(admin) //workflowcheck:ignore (pure; see ValidateAdmins)
		if err != nil || addr.Address != strings.TrimSpace(admin) {
			return fmt.Errorf("admin %q is not a plain e-mail address", admin)
		}
	}
	return nil
}

// release1CheckAdmin matches an admin as release 1 did: trimmed, case
// insensitive.
func (w *serviceUpdate) release1CheckAdmin(admin string) error {
	for _, listed := range w.admins {
		if strings.EqualFold(strings.TrimSpace(listed), strings.TrimSpace(admin)) {
			return nil
		}
	}
	return fmt.Errorf("%q is not an admin of instance %s", admin, w.in.Instance.ID)
}
