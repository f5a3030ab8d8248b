package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// Every lifecycle path on the lean lifecycle: one commit per transition,
// the notices and reminders queued in it, no activity per notice,
// reminder, audit row, release or version.

// assertLean checks that only the commit, the check, a booking and the
// executor ran: nothing of the old path's per-notice and per-row work.
func assertLean(t *testing.T, f *fakeActivities) {
	t.Helper()
	for _, old := range []string{ActivityRecordTransition, ActivitySendNotice, ActivityReleaseSlots, ActivityRecordVersion} {
		assert.Equal(t, -1, f.lastCall(old), "%s is not called on the lean lifecycle", old)
	}
}

func TestLeanApproveThenSucceed(t *testing.T) {
	s := newLeanScenario(t)
	var approve *updateOutcome
	var beforeStart StatusView
	var queuedBeforeApproval []NoticeKind
	s.at(scenarioStart.Add(days(5)), func() {
		queuedBeforeApproval = s.fakes.queuedReminders("inst-1")
		approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped, Note: "fine by us"})
	})
	s.at(primaryStart.Add(-days(1)), func() { beforeStart = s.status() })

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.2.0", res.FinalVersion)
	assert.Equal(t, primaryStart, s.env.Now().UTC(), "the update runs at the primary start")
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionApproved, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeConfirmed, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds(), "transitions queue their notices")
	assert.Equal(t, reminders(90, 30, 15, 7), queuedBeforeApproval, "no day-of reminder for an update not yet approved")
	approved := s.fakes.commits[1]
	assert.Equal(t, kinds(reminders(90, 30, 15, 7), NoticeDayOf), reminderKinds(approved.Reminders), "the approval queues the day-of reminder")
	assert.Equal(t, primaryStart.Add(-days(7)), approved.Reminders[3].DueAt)
	assert.Equal(t, StatusApproved, approved.Reminders[3].Notice.Update.Status, "a reminder renders the schedule as approved")
	assert.Empty(t, s.fakes.commits[2].Reminders, "the start withdraws every reminder still queued")
	assert.Equal(t, scenarioStart.Add(days(5)), approved.At)

	require.NoError(t, approve.err)
	assert.Equal(t, adminListed, approve.result.ApprovedBy)
	assert.Equal(t, []NoticeKind{NoticeDayOf, NoticeInProgress}, upcomingKinds(beforeStart), "reminders already due leave the upcoming list")
	require.Len(t, beforeStart.Notices, 2)
	assert.True(t, beforeStart.Notices[0].Queued)

	last := s.fakes.commits[len(s.fakes.commits)-1]
	assert.True(t, last.ReleaseSlots, "the close gives the reservations back in its commit")
	assert.Equal(t, "9.2.0", last.RecordVersion)
	assert.Len(t, s.fakes.checks, 1, "the instance is checked before the attempt")
}

func TestLeanRescheduleRequeuesReminders(t *testing.T) {
	s := newLeanScenario(t)
	newPrimary := scenarioStart.Add(days(40))
	var reschedule *updateOutcome
	s.at(scenarioStart.Add(days(20)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(3))})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, s.env.Now().UTC(), "the timer follows the new primary start")
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeRescheduled, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	rescheduled := s.fakes.commits[1]
	assert.Equal(t, kinds(reminders(15, 7), NoticeDayOf), reminderKinds(rescheduled.Reminders), "the new slot's reminders still ahead")
	assert.Equal(t, newPrimary, rescheduled.Reminders[0].Notice.SlotStart)
	require.Len(t, s.fakes.bookings, 1)
}

func TestLeanNotApprovedClosesAtPeriodEnd(t *testing.T) {
	s := newLeanScenario(t)

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusNotApproved, res.Status)
	assert.Equal(t, release92.PeriodEnd, s.env.Now().UTC())
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionNotApproved, actionExpired}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeNotApproved), s.fakes.noticeKinds())
	assert.True(t, s.fakes.commits[1].ReleaseSlots, "the slots go back with the not-approved row")
	assert.Empty(t, s.fakes.commits[1].Reminders)
	assert.Len(t, s.fakes.releases, 2, "at the primary start and at the close")
}

func TestLeanMandatoryRunsWithoutApproval(t *testing.T) {
	s := newLeanScenario(t)
	s.in.Mandatory = true

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, kinds(reminders(90, 30, 15, 7), NoticeDayOf), reminderKinds(s.fakes.commits[0].Reminders), "a mandatory update is reminded of its day")
	assert.True(t, s.fakes.lastTransition().Snapshot.Mandatory)
}

func TestLeanFallbackSucceeds(t *testing.T) {
	s := newLeanScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = primaryFails("schema migration failed")

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, secondaryStart, s.env.Now().UTC())
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Len(t, s.fakes.checks, 2, "checked before each attempt")
	assert.Equal(t, "9.2.0", s.fakes.versions[0].Version)
}

func TestLeanBothAttemptsFail(t *testing.T) {
	s := newLeanScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusFailed, res.Status)
	assert.Equal(t, release92.PeriodEnd, s.env.Now().UTC(), "open for a new attempt until the release period ends")
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionFailed}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeFailed), s.fakes.noticeKinds())
	failed := s.fakes.commits[len(s.fakes.commits)-1]
	assert.True(t, failed.ReleaseSlots, "the failure gives the slots back in its commit")
	assert.Equal(t, StatusFailed, failed.Transition.Snapshot.Status)
	assert.Empty(t, s.fakes.versions)
}

func TestLeanCancelWithdrawsReminders(t *testing.T) {
	s := newLeanScenario(t)
	cancelAt := scenarioStart.Add(days(30))
	s.at(cancelAt, func() { s.env.CancelWorkflow() })

	_, err := s.run()
	var cancelled *temporal.CanceledError
	require.True(t, errors.As(err, &cancelled), "want a cancelled run, got %v", err)

	assert.Equal(t, cancelAt, s.env.Now().UTC())
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionCancelled}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeCancelled), s.fakes.noticeKinds())
	cancel := s.fakes.commits[1]
	assert.True(t, cancel.ReleaseSlots)
	assert.Empty(t, cancel.Reminders, "the cancellation withdraws the reminders still queued")
	assert.Equal(t, ActorOperator, cancel.Transition.Actor)
}

func TestLeanSupersedeCloses(t *testing.T) {
	s := newLeanScenario(t)
	var supersede *updateOutcome
	s.at(scenarioStart.Add(days(20)), func() { supersede = s.update(UpdateSupersede, rollout93) })

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, supersede.err)
	assert.Equal(t, StatusSuperseded, res.Status)
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionSuperseded}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeSuperseded), s.fakes.noticeKinds())
	assert.True(t, s.fakes.commits[1].ReleaseSlots)
	assert.Empty(t, s.fakes.commits[1].Reminders)
}

func TestLeanAlreadyUpToDateCloses(t *testing.T) {
	s := newLeanScenario(t)
	s.in.Mandatory = true
	s.fakes.instances = map[string]CheckInstanceResult{"inst-1": {CurrentVersion: "9.2.0", UpToDate: true}}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.2.0", res.FinalVersion)
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionUpToDate}, s.fakes.actions())
	assert.True(t, s.fakes.commits[1].ReleaseSlots)
	assert.Empty(t, s.fakes.commits[1].RecordVersion, "nothing ran, so nothing is recorded")
}

func reminderKinds(queued []QueuedReminder) []NoticeKind {
	var out []NoticeKind
	for _, r := range queued {
		out = append(out, r.Notice.Kind)
	}
	return out
}

// Not approved at its slot, then rescheduled late: the new slot's
// reminders are queued with the Reschedule and the update runs there.
func TestLeanLateRescheduleAfterNotApproved(t *testing.T) {
	s := newLeanScenario(t)
	newPrimary := primaryStart.Add(days(20))
	var reschedule *updateOutcome
	s.at(primaryStart.Add(days(2)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(2))})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, s.env.Now().UTC())
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionNotApproved, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, kinds(reminders(15, 7), NoticeDayOf), reminderKinds(s.fakes.commits[2].Reminders))
	assert.Len(t, s.fakes.releases, 2, "at the missed slot and at the close")
}

// Failed in both slots, then a new attempt rescheduled: it runs and
// succeeds, all on the lean lifecycle.
func TestLeanFailedThenRescheduledSucceeds(t *testing.T) {
	s := newLeanScenario(t)
	s.in.Mandatory = true
	failures := 0
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		if failures < 2 {
			failures++
			return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
		}
		return nil
	}
	newPrimary := secondaryStart.Add(days(20))
	var reschedule *updateOutcome
	s.at(secondaryStart.Add(days(2)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(3))})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 3)
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionFailed,
		actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, kinds(NoticeScheduled, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeFailed,
		NoticeRescheduled, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
}

// The starter writes the announcement before the workflow's first task
// (launch.Starter.announce): what it writes is what that task commits,
// under the same key, so whichever comes second writes nothing.
func TestAnnouncementCommitIsTheFirstCommit(t *testing.T) {
	s := newLeanScenario(t)
	s.at(scenarioStart.Add(days(1)), func() { s.env.CancelWorkflow() })
	_, _ = s.run()
	require.NotEmpty(t, s.fakes.commits)
	first := s.fakes.commits[0]
	const testRunID = "default-test-run-id" // the test environment's
	assert.Equal(t, AnnouncementKey(testRunID), first.IdempotencyKey)

	want, err := AnnouncementCommit(s.in, scenarioWorkflowID, testRunID, scenarioStart)
	require.NoError(t, err)
	// Compared as the local activity receives it: encoded.
	wantJSON, err := json.Marshal(want)
	require.NoError(t, err)
	gotJSON, err := json.Marshal(first)
	require.NoError(t, err)
	assert.JSONEq(t, string(wantJSON), string(gotJSON))
	assert.Equal(t, []NoticeKind{NoticeScheduled}, kindsOf(want.Notices))
	assert.Equal(t, reminders(90, 30, 15, 7), reminderKinds(want.Reminders))
}

func TestAnnouncementCommitRefusesWhatTheWorkflowRefuses(t *testing.T) {
	in := scenarioInput()
	in.PrimaryStart = time.Time{}
	_, err := AnnouncementCommit(in, scenarioWorkflowID, "run", scenarioStart)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid ServiceUpdate input")
}

func kindsOf(notices []SendNoticeInput) []NoticeKind {
	kinds := make([]NoticeKind, len(notices))
	for i, n := range notices {
		kinds[i] = n.Kind
	}
	return kinds
}
