package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// Before each attempt the workflow reads the instance again
// (changeCheckInstance): months pass between a rollout and a slot, and
// the instance may have been updated meanwhile, by a later update or by
// hand, or moved closer to the target.

// An instance found at or past the target when the primary slot starts is
// left alone: the update closes Succeeded without running, says so, and
// gives its reservations back.
func TestAlreadyUpToDateClosesWithoutRunning(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.instances = map[string]CheckInstanceResult{"inst-1": {CurrentVersion: "9.3.0", UpToDate: true}}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.3.0", res.FinalVersion, "the version found, not the target")
	assert.Empty(t, res.Attempts)
	_, releases, versions, applies := s.fakes.counts()
	assert.Equal(t, []int{1, 0, 0}, []int{releases, versions, applies}, "reservations given back; nothing run or recorded")
	assert.Equal(t, []CheckInstanceInput{{InstanceID: "inst-1", TargetVersion: "9.2.0"}}, s.fakes.checks)
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionUpToDate}, s.fakes.actions())
	row := s.fakes.lastTransition()
	assert.Equal(t, "the instance already runs 9.3.0; nothing was run", row.Detail)
	assert.Equal(t, StatusScheduled, row.From)
	succeeded := s.fakes.notices[len(s.fakes.notices)-1]
	assert.True(t, succeeded.Update.AlreadyUpToDate, "the succeeded notice says it was already up to date")
	assert.Equal(t, "9.3.0", succeeded.Update.FoundVersion)
	assert.Equal(t, primaryStart, succeeded.SlotStart)
	view := s.status()
	assert.True(t, view.AlreadyUpToDate)
	assert.Equal(t, "9.3.0", view.FoundVersion)
	assert.Equal(t, map[string]int64{string(StatusSucceeded): 1}, s.completions())
}

// The secondary slot checks again: here the instance was updated between
// the failed primary attempt and the secondary start.
func TestAlreadyUpToDateAtTheSecondaryStart(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("migration failed", ErrTypeUpdateFailed, nil)
	}
	s.fakes.checkInstance = func(CheckInstanceInput) (CheckInstanceResult, error) {
		if len(s.fakes.checks) == 1 {
			return CheckInstanceResult{CurrentVersion: "9.0.0", Mandatory: true}, nil
		}
		return CheckInstanceResult{CurrentVersion: "9.2.0", UpToDate: true}, nil
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.2.0", res.FinalVersion)
	require.Len(t, res.Attempts, 1, "no second attempt")
	assert.Len(t, s.fakes.checks, 2)
	assert.Equal(t, secondaryStart, s.env.Now().UTC())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionUpToDate}, s.fakes.actions())
	assert.Equal(t, secondaryStart, s.fakes.notices[len(s.fakes.notices)-1].SlotStart)
}

// Whether an update is mandatory is decided again from the versions
// recorded at the slot's start: one that was mandatory (n-2) but whose
// instance is now one release behind needs an approval again, and one
// that became mandatory runs without it.
func TestMandatoryIsDecidedAgainAtTheStart(t *testing.T) {
	t.Run("no longer mandatory, not approved", func(t *testing.T) {
		s := newScenario(t)
		s.in.Mandatory = true
		s.fakes.instances = map[string]CheckInstanceResult{"inst-1": {CurrentVersion: "9.1.0"}}

		res, err := s.run()
		require.NoError(t, err)
		assert.Equal(t, StatusNotApproved, res.Status)
		assert.Empty(t, res.Attempts)
		assert.Equal(t, []string{actionScheduled, actionNotApproved, actionExpired}, s.fakes.actions())
		assert.False(t, s.status().Mandatory)
		assert.False(t, s.fakes.lastTransition().Snapshot.Mandatory)
	})
	t.Run("no longer mandatory, approved", func(t *testing.T) {
		s := newScenario(t)
		s.in.Mandatory = true
		s.fakes.instances = map[string]CheckInstanceResult{"inst-1": {CurrentVersion: "9.1.0"}}
		s.at(scenarioStart.Add(days(5)), func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })

		res, err := s.run()
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, res.Status)
		assert.Equal(t, primaryStart, res.Attempts[0].Started)
	})
	t.Run("became mandatory", func(t *testing.T) {
		s := newScenario(t)
		s.fakes.instances = map[string]CheckInstanceResult{"inst-1": {CurrentVersion: "9.0.0", Mandatory: true}}

		res, err := s.run()
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, res.Status, "runs without an approval")
		assert.Equal(t, primaryStart, res.Attempts[0].Started)
		assert.True(t, s.status().Mandatory)
	})
	t.Run("no longer mandatory at the secondary start", func(t *testing.T) {
		s := newScenario(t)
		s.in.Mandatory = true
		attempts := 0
		s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
			if attempts++; attempts == 1 {
				return temporal.NewNonRetryableApplicationError("migration failed", ErrTypeUpdateFailed, nil)
			}
			return nil
		}
		s.fakes.checkInstance = func(CheckInstanceInput) (CheckInstanceResult, error) {
			if len(s.fakes.checks) == 1 {
				return CheckInstanceResult{CurrentVersion: "9.0.0", Mandatory: true}, nil
			}
			return CheckInstanceResult{CurrentVersion: "9.1.0"}, nil
		}
		var late *updateOutcome
		later := secondaryStart.Add(days(10))
		s.at(secondaryStart.Add(days(1)), func() {
			late = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later, SecondaryStart: later.Add(days(2))})
		})

		res, err := s.run()
		require.NoError(t, err)
		require.Len(t, res.Attempts, 2, "the primary attempt, then the rescheduled one; none in the secondary slot")
		assert.Equal(t, later, res.Attempts[1].Started)
		assert.Equal(t, StatusSucceeded, res.Status)
		require.NotNil(t, late)
		require.NoError(t, late.err, "the not-approved path takes a late Reschedule")
		assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionNotApproved, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	})
}

// A check Postgres cannot answer does not hold the update back: it goes
// ahead as planned once the check's few minutes are up.
func TestUncheckedInstanceGoesAheadAsPlanned(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.checkInstance = func(CheckInstanceInput) (CheckInstanceResult, error) {
		return CheckInstanceResult{}, temporal.NewApplicationError("connection refused", "")
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1)
	assert.WithinDuration(t, primaryStart.Add(5*time.Minute), res.Attempts[0].Started, time.Minute)
}
