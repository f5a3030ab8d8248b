package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An update whose rollout wave is not open at its slot's start waits
// (changeWaveGate), reading the gate again every heldRecheck, and runs
// once the Rollout opens the wave.
func TestHeldUpdateRunsWhenItsWaveOpens(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	opensAt := primaryStart.Add(3 * heldRecheck)
	s.fakes.checkInstance = func(CheckInstanceInput) (CheckInstanceResult, error) {
		return CheckInstanceResult{CurrentVersion: "9.0.0", Mandatory: true, Held: s.env.Now().Before(opensAt)}, nil
	}
	var whileHeld StatusView
	s.at(primaryStart.Add(heldRecheck+time.Minute), func() { whileHeld = s.status() })

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, opensAt, res.Attempts[0].Started.UTC(), "the attempt starts at the first check after the gate opened")
	assert.Len(t, s.fakes.checks, 4, "the check at the start and one every heldRecheck until the wave opened")
	assert.True(t, whileHeld.Held, "Status says the update is held")
	assert.False(t, s.status().Held)
}

// A held update that the rollout's Abort cancels closes as a cancelled
// one: slots given back, admins told, nothing run.
func TestHeldUpdateCancelledByAnAbort(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.checkInstance = func(CheckInstanceInput) (CheckInstanceResult, error) {
		return CheckInstanceResult{CurrentVersion: "9.0.0", Mandatory: true, Held: true}, nil
	}
	s.at(primaryStart.Add(2*time.Hour), s.env.CancelWorkflow)

	_, err := s.run()
	assertCancelled(t, s, err, StatusScheduled, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeCancelled))
	view := s.status()
	assert.Empty(t, view.Attempts, "nothing run")
	assert.False(t, view.Held)
}
