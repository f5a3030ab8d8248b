package workflows

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// After Failed, the admins can reschedule a new attempt until the release
// period ends ("reschedule the update until any issues are resolved"):
// the update stays open as Failed, its reservations given back, and a
// Reschedule books new slots and runs the lifecycle again from Approved.
func TestFailedUpdateCanBeRescheduled(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	failures := 0
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		if failures < 2 { // both slots of the first try
			failures++
			return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
		}
		return nil
	}
	rescheduledAt := secondaryStart.Add(days(2))
	newPrimary := secondaryStart.Add(days(20))
	var failed StatusView
	var approve, reschedule *updateOutcome
	s.at(secondaryStart.Add(days(1)), func() {
		failed = s.status()
		approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped})
	})
	s.at(rescheduledAt, func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(3))})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.NotNil(t, approve, "the workflow closed at the failure")
	assert.Equal(t, StatusFailed, failed.Status, "open, as Failed, while it waits")
	assert.Empty(t, failed.Upcoming)
	require.Error(t, approve.rejected, "an approval would run the failed slots again")
	assert.Contains(t, approve.rejected.Error(), "the update failed in both its slots; reschedule a new attempt to later slots instead")
	require.NotNil(t, reschedule)
	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusApproved, reschedule.result.Status)

	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 3)
	assert.Equal(t, Attempt{Slot: SlotPrimary, Started: newPrimary, Finished: newPrimary, Outcome: OutcomeSucceeded}, res.Attempts[2])
	assert.Equal(t, newPrimary, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeFailed,
		NoticeRescheduled, reminders(15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionFailed,
		actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Equal(t, map[string]int64{string(StatusSucceeded): 1}, s.completions())

	failedNotice := s.fakes.notices[slices.Index(s.fakes.noticeKinds(), NoticeFailed)]
	assert.Equal(t, LatestPrimaryStart(release92, DefaultWindowLength, s.in.SecondaryMinGap), failedNotice.Deadline,
		"the failed notice says by when a new attempt can be scheduled")
	// Given back at the failure, booked by the Reschedule, given back at
	// the close.
	bookings, releases, _, _ := s.fakes.counts()
	assert.Equal(t, []int{1, 2}, []int{bookings, releases})
	assert.Less(t, slices.Index(s.fakes.calls, ActivityReleaseSlots), slices.Index(s.fakes.calls, ActivityBookSlots))
	failedRow := s.fakes.transitions[4]
	assert.Equal(t, StatusFailed, failedRow.Snapshot.Status)
	assert.Equal(t, StatusInProgress, failedRow.From)
}

// An operator who cancels a failed update while it waits for a new
// attempt withdraws the offer: it closes as Failed (what happened), with
// a row saying so, and its reservations given back.
func TestCancelWhileFailedWaitsKeepsFailed(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}
	s.at(secondaryStart.Add(days(1)), s.env.CancelWorkflow)

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusFailed, res.Status)
	assert.Equal(t, secondaryStart.Add(days(1)), s.env.Now().UTC())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionFailed, actionCancelled}, s.fakes.actions())
	row := s.fakes.lastTransition()
	assert.Equal(t, StatusFailed, row.Snapshot.Status)
	assert.Equal(t, ActorOperator, row.Actor)
	assert.NotContains(t, s.fakes.noticeKinds(), NoticeCancelled)
	assert.Equal(t, map[string]int64{string(StatusFailed): 1}, s.completions())
}

// A failure that leaves no primary start to choose in the release period
// closes as Failed at once, as before.
func TestFailureAtThePeriodsEndCloses(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.in.Releases = []ReleaseOption{{Version: "9.2.0", PeriodStart: release92.PeriodStart, PeriodEnd: secondaryStart.Add(days(1))}}
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusFailed, res.Status)
	assert.Equal(t, secondaryStart, s.env.Now().UTC())
	assert.Zero(t, s.fakes.notices[len(s.fakes.notices)-1].Deadline, "no new attempt is offered")
}
