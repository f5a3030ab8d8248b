package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// The audit log and the projection are never given up: a Postgres outage
// longer than any fixed budget only delays them.
func TestAuditRetriedUntilWritten(t *testing.T) {
	s := newScenario(t)
	outage := 0
	s.fakes.recordTransition = func(in RecordTransitionInput) error {
		if in.Action == actionApproved && outage < 2 { // down for six minutes
			outage++
			return temporal.NewApplicationErrorWithOptions("connection refused", "", temporal.ApplicationErrorOptions{NextRetryDelay: 3 * time.Minute})
		}
		return nil
	}
	approveAt := scenarioStart.Add(days(5))
	var approve *updateOutcome
	s.at(approveAt, func() { approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.NoError(t, approve.err)
	assert.Equal(t, approveAt.Add(6*time.Minute), approve.completedAt, "answered once the approval is in the audit log")
	assert.Equal(t, []string{actionScheduled, actionApproved, actionStarted, actionSucceeded}, s.fakes.actions())
}

// A Reschedule's booking runs on the admin task queue, so an admin never
// waits behind the notices and audit rows of a rollout.
func TestRescheduleBooksOnTheAdminQueue(t *testing.T) {
	s := newScenario(t)
	s.at(scenarioStart.Add(days(5)), func() {
		s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart.Add(days(1)), SecondaryStart: secondaryStart.Add(days(1))})
	})

	_, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, []string{AdminTaskQueue}, s.fakes.bookQueues)
}
