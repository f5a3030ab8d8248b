package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/actor"
)

func TestApproveThenSucceed(t *testing.T) {
	s := newScenario(t)
	var approve *updateOutcome
	var beforeStart StatusView
	s.at(scenarioStart.Add(days(5)), func() { approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped, Note: "fine by us"}) })
	s.at(primaryStart.Add(-days(1)), func() { beforeStart = s.status() })

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.2.0", res.FinalVersion)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, Attempt{Slot: SlotPrimary, Started: primaryStart, Finished: primaryStart, Outcome: OutcomeSucceeded}, res.Attempts[0])
	assert.Equal(t, primaryStart, s.env.Now().UTC(), "the update runs at the primary start")
	assert.Equal(t, map[string]int64{string(StatusSucceeded): 1}, s.completions())

	assert.Equal(t, kinds(NoticeScheduled, NoticeConfirmed, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionApproved, actionStarted, actionSucceeded}, s.fakes.actions())

	require.True(t, approve.completed)
	require.NoError(t, approve.err)
	assert.Equal(t, StatusApproved, approve.result.Status)
	assert.Equal(t, adminListed, approve.result.ApprovedBy, "the admin is matched case-insensitively and recorded as listed")
	assert.Equal(t, scenarioStart.Add(days(5)), approve.result.ApprovedAt)
	approved := s.fakes.transitions[1]
	assert.Equal(t, adminListed, approved.Actor)
	assert.Equal(t, string(actor.ChannelPortalSession), approved.Channel, "the channel the assertion names")
	assert.Empty(t, approved.Operator, "an admin acting for themself")
	assert.Equal(t, StatusScheduled, approved.From)
	assert.Equal(t, "fine by us", approved.Detail)

	assert.Equal(t, []NoticeKind{NoticeDayOf, NoticeInProgress}, upcomingKinds(beforeStart))
	assert.Equal(t, "Wed 15 Apr 2026 03:00 CEST", beforeStart.Primary.LocalStart)
	assert.Equal(t, primaryStart.Add(DefaultWindowLength), beforeStart.Primary.End)

	final := s.status()
	assert.Equal(t, primaryStart.Add(-days(30)), noticeAt(t, final, ReminderKind(days(30))).At)
	assert.Equal(t, primaryStart, noticeAt(t, final, NoticeDayOf).At)
	assert.Empty(t, final.Upcoming)

	bookings, releases, versions, applies := s.fakes.counts()
	assert.Equal(t, []int{0, 1, 1, 1}, []int{bookings, releases, versions, applies}, "bookings, releases, versions, applies: the secondary slot is given back after the success")
	assert.Equal(t, RecordVersionInput{InstanceID: "inst-1", Version: "9.2.0"}, s.fakes.versions[0])
	assert.Equal(t, ExecutorTaskQueue, s.fakes.applyQueues[0])
	assert.Equal(t, primaryStart.Add(DefaultWindowLength), s.fakes.applies[0].WindowEnd)
	assert.Equal(t, SlotPrimary, s.fakes.applies[0].Attempt)
	reminder30 := s.fakes.notices[3]
	assert.Equal(t, days(30), reminder30.Offset)
	assert.Equal(t, primaryStart, reminder30.SlotStart)
}

func TestRescheduleRearmsRemindersThenSucceeds(t *testing.T) {
	s := newScenario(t)
	// On day 20 (the 90-day reminder went out on day 10) the admin moves
	// the update to day 40: the 90- and 30-day reminders of the new slot are
	// already past, the 15-day one (day 25) is not.
	rescheduledAt := scenarioStart.Add(days(20))
	newPrimary := scenarioStart.Add(days(40))
	newSecondary := newPrimary.Add(days(3))
	var reschedule *updateOutcome
	s.at(rescheduledAt, func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: "OPS@acme.example", PrimaryStart: newPrimary, SecondaryStart: newSecondary})
	})

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, s.env.Now().UTC(), "the update runs at the new primary start")
	assert.Equal(t, kinds(NoticeScheduled, reminders(90), NoticeRescheduled, reminders(15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())

	require.True(t, reschedule.completed)
	require.NoError(t, reschedule.err)
	view := reschedule.result
	assert.Equal(t, StatusApproved, view.Status, "a reschedule implies approval")
	assert.Equal(t, "ops@acme.example", view.ApprovedBy)
	assert.Equal(t, rescheduledAt, view.ApprovedAt)
	assert.Equal(t, newPrimary, view.Primary.Start)
	assert.Equal(t, newSecondary, view.Secondary.Start)
	assert.Equal(t, kinds(reminders(15, 7), NoticeDayOf, NoticeInProgress), upcomingKinds(view))
	assert.Equal(t, newPrimary.Add(-days(15)), view.Upcoming[0].At)

	require.Len(t, s.fakes.bookings, 1)
	assert.Equal(t, BookSlotsInput{
		WorkflowID: s.fakes.bookings[0].WorkflowID, InstanceID: "inst-1", Region: "eu-central",
		OfferedVersion: "9.2.0", TargetVersion: "9.2.0", PrimaryStart: newPrimary, SecondaryStart: newSecondary,
	}, s.fakes.bookings[0])
	reminder15 := s.fakes.notices[3]
	assert.Equal(t, newPrimary, reminder15.SlotStart, "reminders of the new slot carry its start (the outbox key)")
	assert.Equal(t, newPrimary.Add(DefaultWindowLength), s.fakes.applies[0].WindowEnd)
}

func TestRescheduleToLaterTargetVersion(t *testing.T) {
	s := newScenario(t)
	newPrimary := primaryStart.Add(days(10)) // inside 9.3.0's period
	newSecondary := newPrimary.Add(days(2))
	var reschedule, backwards *updateOutcome
	s.at(scenarioStart.Add(days(50)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary, TargetVersion: "9.3.0"})
	})
	s.at(scenarioStart.Add(days(51)), func() {
		backwards = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary, TargetVersion: "9.2.0"})
	})

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.3.0", res.FinalVersion)
	assert.Equal(t, newPrimary, s.env.Now().UTC())
	require.NoError(t, reschedule.err)
	assert.Equal(t, "9.3.0", reschedule.result.TargetVersion)
	assert.Equal(t, "9.2.0", reschedule.result.OfferedVersion, "the offered version stays the one in the workflow ID")
	assert.Equal(t, release93, reschedule.result.ReleasePeriod)

	require.Error(t, backwards.rejected)
	assert.Contains(t, backwards.rejected.Error(), `target version "9.2.0" is older than the current target "9.3.0"; choose one of 9.3.0`)
	assert.False(t, backwards.accepted)

	require.Len(t, s.fakes.bookings, 1)
	assert.Equal(t, "9.2.0", s.fakes.bookings[0].OfferedVersion)
	assert.Equal(t, "9.3.0", s.fakes.bookings[0].TargetVersion)
	assert.Equal(t, "9.3.0", s.fakes.applies[0].TargetVersion)
	assert.Equal(t, RecordVersionInput{InstanceID: "inst-1", Version: "9.3.0"}, s.fakes.versions[0])
	assert.Equal(t, "9.3.0", s.fakes.lastTransition().Snapshot.TargetVersion)
}

func TestValidatorsRejectBadUpdates(t *testing.T) {
	checkAt := scenarioStart.Add(days(1))
	good := RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: secondaryStart}
	tests := []struct {
		name   string
		update string
		arg    any
		want   string
	}{
		{"approve by a non-admin", UpdateApprove, ApproveInput{Admin: "mallory@evil.example"},
			`"mallory@evil.example" is not an admin of instance inst-1`},
		{"reschedule by a non-admin", UpdateReschedule, RescheduleInput{Admin: "mallory@evil.example", PrimaryStart: primaryStart, SecondaryStart: secondaryStart},
			`"mallory@evil.example" is not an admin of instance inst-1`},
		{"primary slot in the past", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: checkAt.Add(-time.Hour), SecondaryStart: secondaryStart},
			"primary start 2026-01-06T00:00:00Z is not in the future (now 2026-01-06T01:00:00Z); choose a later slot"},
		{"secondary inside the primary window", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: primaryStart.Add(6 * time.Hour)},
			"secondary start 2026-04-15T07:00:00Z is too early: it must be at or after 2026-04-16T13:00:00Z (primary window end 2026-04-15T13:00:00Z plus a gap of 24h)"},
		{"secondary within the minimum gap", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: primaryStart.Add(20 * time.Hour)},
			"secondary start 2026-04-15T21:00:00Z is too early"},
		{"secondary after the release period", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: release92.PeriodEnd.Add(-time.Hour)},
			"the secondary window 2026-06-14T00:00:00Z to 2026-06-14T12:00:00Z lies outside the release period of 9.2.0 (2025-12-26T01:00:00Z to 2026-06-14T01:00:00Z); choose a slot inside it"},
		{"primary before the later release's period", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: checkAt.Add(days(2)), SecondaryStart: secondaryStart, TargetVersion: "9.3.0"},
			"the primary window 2026-01-08T01:00:00Z to 2026-01-08T13:00:00Z lies outside the release period of 9.3.0 (2026-02-04T01:00:00Z to 2026-09-12T01:00:00Z); choose a slot inside it"},
		{"unknown target version", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: secondaryStart, TargetVersion: "10.0.0"},
			`target version "10.0.0" is not offered for this update; choose one of 9.2.0, 9.3.0`},
		{"empty admin list", UpdateSetAdmins, SetAdminsInput{}, "the admin list is empty; give at least one e-mail address"},
		{"admin that is no address", UpdateSetAdmins, SetAdminsInput{Admins: []string{"ops@acme.example", "Ops Team <ops@acme.example>"}},
			`admin "Ops Team <ops@acme.example>" is not a plain e-mail address (like admin@example.com)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			var outcome, control *updateOutcome
			var after StatusView
			s.at(checkAt, func() { outcome = s.update(tt.update, tt.arg) })
			s.at(checkAt.Add(time.Hour), func() {
				after = s.status()
				s.env.CancelWorkflow()
			})
			// A valid Update after the rejection proves the workflow still answers.
			s.at(checkAt.Add(30*time.Minute), func() { control = s.update(UpdateReschedule, good) })

			_, err := s.run()
			require.Error(t, err)
			require.Error(t, outcome.rejected, "the validator must reject the Update")
			assert.Contains(t, outcome.rejected.Error(), tt.want)
			assert.False(t, outcome.accepted)
			assert.False(t, outcome.completed)
			require.NoError(t, control.err)
			assert.Equal(t, StatusApproved, after.Status)
			assert.Len(t, s.fakes.bookings, 1, "only the valid reschedule books")
			assert.Equal(t, []string{actionScheduled, actionRescheduled, actionCancelled}, s.fakes.actions())
		})
	}
}

func TestApproveTwiceRefused(t *testing.T) {
	s := newScenario(t)
	var first, second *updateOutcome
	s.at(scenarioStart.Add(days(1)), func() { first = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	s.at(scenarioStart.Add(days(2)), func() { second = s.update(UpdateApprove, ApproveInput{Admin: "ops@acme.example"}) })

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.NoError(t, first.err)
	require.Error(t, second.rejected)
	assert.Equal(t, "the update was already approved by Admin@Acme.example at 2026-01-06T01:00:00Z", second.rejected.Error())
	assert.Equal(t, 1, countKind(s.fakes.noticeKinds(), NoticeConfirmed))
}

func TestChangesAfterStartRefused(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = primaryFails("migration step 3 failed")
	var approve, reschedule *updateOutcome
	checkAt := primaryStart.Add(days(1)) // fallback scheduled, waiting for the secondary slot
	s.at(checkAt, func() {
		approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped})
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: checkAt.Add(days(2)), SecondaryStart: checkAt.Add(days(4))})
	})

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	want := "the update started at 2026-04-15T01:00:00Z; it can no longer be "
	require.Error(t, approve.rejected)
	assert.Equal(t, want+"approved", approve.rejected.Error())
	require.Error(t, reschedule.rejected)
	assert.Equal(t, want+"rescheduled", reschedule.rejected.Error())
	assert.Empty(t, s.fakes.bookings)
}

func TestUnapprovedOptionalThenLateRescheduleSucceeds(t *testing.T) {
	s := newScenario(t)
	lateAt := primaryStart.Add(days(2))
	newPrimary := primaryStart.Add(days(10))
	newSecondary := newPrimary.Add(days(2))
	var approve, reschedule *updateOutcome
	var declined StatusView
	s.at(primaryStart.Add(days(1)), func() {
		declined = s.status()
		approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped})
	})
	s.at(lateAt, func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary})
	})

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeNotApproved, NoticeRescheduled, reminders(7), NoticeDayOf, NoticeInProgress, NoticeSucceeded),
		s.fakes.noticeKinds(), "no day-of for an update that will not run; the new slot's reminders are sent again")
	assert.Equal(t, []string{actionScheduled, actionNotApproved, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())

	assert.Equal(t, StatusNotApproved, declined.Status)
	assert.Empty(t, declined.Upcoming)
	notApproved := s.fakes.notices[5]
	assert.Equal(t, release92.PeriodEnd.Add(-days(2)), notApproved.Deadline,
		"the admins may reschedule to a primary start that leaves both 12 h windows and the 24 h gap inside the release period")
	require.Error(t, approve.rejected)
	assert.Equal(t, "the update was not approved before its slot at 2026-04-15T01:00:00Z; reschedule to a later slot instead (a primary slot starting by 2026-06-12T01:00:00Z, so both windows fit in the release period ending 2026-06-14T01:00:00Z)", approve.rejected.Error())
	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusApproved, reschedule.result.Status)

	require.Len(t, s.fakes.releases, 2, "the unapproved slots went back to the pool, the new ones at the close")
	assert.Equal(t, ReleaseSlotsInput{InstanceID: "inst-1", OfferedVersion: "9.2.0"}, s.fakes.releases[0])
	require.Len(t, s.fakes.bookings, 1, "the late reschedule books again")
}

func TestUnapprovedUntilPeriodEndClosesNotApproved(t *testing.T) {
	s := newScenario(t)

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusNotApproved, res.Status)
	assert.Equal(t, "9.1.0", res.FinalVersion)
	assert.Equal(t, map[string]int64{string(StatusNotApproved): 1}, s.completions())
	assert.Empty(t, res.Attempts)
	assert.Equal(t, release92.PeriodEnd, s.env.Now().UTC(), "open for a late reschedule until the period ends")
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeNotApproved), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionNotApproved, actionExpired}, s.fakes.actions())
	assert.Equal(t, StatusNotApproved, s.fakes.lastTransition().Snapshot.Status)
	bookings, releases, versions, applies := s.fakes.counts()
	assert.Equal(t, []int{0, 2, 0, 0}, []int{bookings, releases, versions, applies}, "bookings, releases, versions, applies: at the primary start and at the close")
}

func TestMandatoryRunsWithoutApproval(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, primaryStart, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.True(t, s.fakes.lastTransition().Snapshot.Mandatory)
	assert.Empty(t, s.fakes.lastTransition().Snapshot.ApprovedBy)
	assert.Len(t, s.fakes.applies, 1)
}

func TestPrimaryFailsFallbackSucceeds(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = primaryFails("schema migration failed")

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, secondaryStart, s.env.Now().UTC(), "the second attempt runs at the secondary start")
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, SlotPrimary, res.Attempts[0].Slot)
	assert.Equal(t, OutcomeFailed, res.Attempts[0].Outcome)
	assert.Equal(t, "schema migration failed", res.Attempts[0].Error, "the executor's message, without the SDK's wrapping")
	assert.Equal(t, Attempt{Slot: SlotSecondary, Started: secondaryStart, Finished: secondaryStart, Outcome: OutcomeSucceeded}, res.Attempts[1])
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionSucceeded}, s.fakes.actions())
	require.Len(t, s.fakes.applies, 2, "a definitive failure is not retried")
	assert.Equal(t, secondaryStart.Add(DefaultWindowLength), s.fakes.applies[1].WindowEnd)
	fallback := s.fakes.notices[7]
	assert.Equal(t, secondaryStart, fallback.SlotStart)
	assert.Equal(t, StatusFallbackScheduled, fallback.Update.Status)
}

func TestBothAttemptsFail(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusFailed, res.Status)
	assert.Equal(t, map[string]int64{string(StatusFailed): 1}, s.completions())
	assert.Equal(t, "9.1.0", res.FinalVersion)
	assert.Equal(t, release92.PeriodEnd, s.env.Now().UTC(), "open for a new attempt until the release period ends")
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, OutcomeFailed, res.Attempts[1].Outcome)
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeFailed), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionFailed}, s.fakes.actions())
	assert.Empty(t, s.fakes.versions, "the instance stays on its version")
}

func TestTransientExecutorErrorsRetriedInsideWindow(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	calls := 0
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		calls++
		if calls < 3 {
			return errors.New("executor unreachable")
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1, "retries are one attempt in one window")
	assert.Equal(t, 3, calls)
	assert.Equal(t, primaryStart.Add(30*time.Second), s.env.Now().UTC(), "retried after 10 s and 20 s of backoff")
}

func TestWindowElapsesFallsBack(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	// A short window keeps the real-time wait of the hanging executor short.
	s.in.WindowLength = time.Second
	s.fakes.applyUpdate = func(ctx context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return blockUntilCancelled(ctx, in)
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, OutcomeWindowElapsed, res.Attempts[0].Outcome)
	assert.Contains(t, res.Attempts[0].Error, "timed out (", "a lapsed window is reported as a timeout")
	assert.NotContains(t, res.Attempts[0].Error, "scheduledEventID", "without the SDK's wrapping")
	assert.Equal(t, OutcomeSucceeded, res.Attempts[1].Outcome)
	assert.Equal(t, secondaryStart, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
}

func TestUndeliverableNoticesDoNotStopTheLifecycle(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.sendNotice = func(in SendNoticeInput) error {
		switch in.Kind {
		case ReminderKind(days(30)):
			return temporal.NewNonRetryableApplicationError("no admin or extra recipient", ErrTypeNoRecipients, nil)
		case NoticeInProgress:
			return temporal.NewNonRetryableApplicationError("SendGrid 400: invalid address", ErrTypeMailRejected, nil)
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	final := s.status()
	assert.Contains(t, noticeAt(t, final, ReminderKind(days(30))).Error, "no admin or extra recipient")
	assert.Contains(t, noticeAt(t, final, NoticeInProgress).Error, "invalid address")
	assert.Empty(t, noticeAt(t, final, NoticeSucceeded).Error)
}

func TestFullSlotLeavesScheduleUnchanged(t *testing.T) {
	s := newScenario(t)
	s.fakes.bookSlots = func(BookSlotsInput) error {
		return temporal.NewNonRetryableApplicationError("slot 2026-02-01T01:00:00Z in eu-central is full (40 of 40)", ErrTypeSlotFull, nil)
	}
	var reschedule *updateOutcome
	var after StatusView
	s.at(scenarioStart.Add(days(3)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: scenarioStart.Add(days(27)), SecondaryStart: scenarioStart.Add(days(29))})
	})
	s.at(scenarioStart.Add(days(4)), func() {
		after = s.status()
		s.env.CancelWorkflow()
	})

	_, err := s.run()
	require.Error(t, err)
	require.True(t, reschedule.accepted, "capacity is only known in Postgres, after validation")
	require.Error(t, reschedule.err)
	assert.Contains(t, reschedule.err.Error(), "the slots could not be booked: slot 2026-02-01T01:00:00Z in eu-central is full (40 of 40); choose other slots from those offered for 9.2.0 in eu-central")
	assert.Equal(t, StatusScheduled, after.Status)
	assert.Equal(t, primaryStart, after.Primary.Start)
	assert.Empty(t, after.ApprovedBy)
	assert.Equal(t, kinds(NoticeScheduled, NoticeCancelled), s.fakes.noticeKinds())
}

func TestSetAdminsReplacesWhoMayAct(t *testing.T) {
	s := newScenario(t)
	var set, formerAdmin, newAdmin *updateOutcome
	s.at(scenarioStart.Add(days(1)), func() {
		set = s.update(UpdateSetAdmins, SetAdminsInput{Admins: []string{"new-admin@acme.example"}})
	})
	s.at(scenarioStart.Add(days(2)), func() { formerAdmin = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	s.at(scenarioStart.Add(days(3)), func() { newAdmin = s.update(UpdateApprove, ApproveInput{Admin: "New-Admin@acme.example"}) })

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.NoError(t, set.err)
	assert.Equal(t, []string{"new-admin@acme.example"}, set.result.Admins)
	require.Error(t, formerAdmin.rejected)
	assert.Equal(t, `"admin@acme.example" is not an admin of instance inst-1; ask one of its admins`, formerAdmin.rejected.Error())
	require.NoError(t, newAdmin.err)
	assert.Equal(t, "new-admin@acme.example", newAdmin.result.ApprovedBy)
	assert.Equal(t, []string{actionScheduled, actionAdminsChanged, actionApproved, actionStarted, actionSucceeded}, s.fakes.actions())
}

func TestInvalidInputFailsTheWorkflow(t *testing.T) {
	s := newScenario(t)
	s.in.Instance.TimeZone = "Mars/Olympus"

	_, err := s.run()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, ErrTypeInvalidInput, appErr.Type())
	assert.True(t, appErr.NonRetryable())
	assert.Contains(t, appErr.Error(), `instance.timeZone "Mars/Olympus" is not an IANA time zone name`)
	assert.Empty(t, s.fakes.noticeKinds())
}

// A workflow that refuses its input gives back what the rollout booked and
// claimed for it before it fails (#21): the workflow ID can never run
// again, and the claim would hold the instance from every later update.
// Without an instance ID or version there is nothing to name them by.
func TestInvalidInputGivesTheRolloutsClaimBack(t *testing.T) {
	s := newScenario(t)
	s.in.Instance.TimeZone = "Mars/Olympus"
	_, err := s.run()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, ErrTypeInvalidInput, appErr.Type())
	assert.Equal(t, []AbandonUpdateInput{{InstanceID: "inst-1", OfferedVersion: "9.2.0"}}, s.fakes.abandons)

	s = newScenario(t)
	s.in.Instance.ID = ""
	_, err = s.run()
	require.ErrorAs(t, err, &appErr)
	assert.Empty(t, s.fakes.abandons)
}
