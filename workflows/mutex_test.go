package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// Slow Postgres work in the main flow holds neither the admins' Updates
// on the mutex nor the update itself.

// The release of an unapproved update's slots, retried for ten minutes,
// does not hold the mutex: SetAdmins answers at once; a Reschedule is
// refused while the release runs (so the release can never undo its
// booking) and taken afterwards.
func TestNotApprovedReleaseHoldsNoUpdate(t *testing.T) {
	s := newScenario(t)
	down := true
	s.fakes.releaseSlots = func(ReleaseSlotsInput) error {
		if down {
			down = false
			return temporal.NewApplicationErrorWithOptions("connection refused", "", temporal.ApplicationErrorOptions{NextRetryDelay: 10 * time.Minute})
		}
		return nil
	}
	during, after := primaryStart.Add(time.Minute), primaryStart.Add(11*time.Minute)
	newPrimary := primaryStart.Add(days(10))
	late := RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(2))}
	var setAdmins, early, reschedule *updateOutcome
	s.at(during, func() {
		setAdmins = s.update(UpdateSetAdmins, SetAdminsInput{Admins: []string{adminListed, "new@acme.example"}})
		early = s.update(UpdateReschedule, late)
	})
	s.at(after, func() { reschedule = s.update(UpdateReschedule, late) })

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, setAdmins.err)
	assert.Equal(t, during, setAdmins.completedAt, "SetAdmins does not wait for the release")
	require.Error(t, early.rejected)
	assert.Equal(t, "the slots of the missed primary slot at 2026-04-15T01:00:00Z are being given back; send the reschedule again in a few minutes", early.rejected.Error())
	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, res.Attempts[0].Started)
	assert.Equal(t, []string{actionScheduled, actionAdminsChanged, actionNotApproved, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	require.Len(t, s.fakes.bookings, 1)
}

// The update starts at its slot while its started audit row waits for
// Postgres; the rows are still written in order.
func TestUpdateStartsWithoutWaitingForItsAuditRow(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	down := true
	s.fakes.recordTransition = func(in RecordTransitionInput) error {
		if in.Action == actionStarted && down {
			down = false
			return temporal.NewApplicationErrorWithOptions("connection refused", "", temporal.ApplicationErrorOptions{NextRetryDelay: 3 * time.Minute})
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, primaryStart, res.Attempts[0].Started, "the executor starts at the primary start")
	assert.Equal(t, []string{actionScheduled, actionStarted, actionSucceeded}, s.fakes.actions(), "rows in the order of the changes")
	assert.Equal(t, StatusSucceeded, s.fakes.lastTransition().Snapshot.Status)
	assert.Equal(t, primaryStart.Add(3*time.Minute), s.env.Now().UTC())
}
