package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timerLog records, in virtual time, when each timer was armed for and
// whether it fired or was cancelled.
type timerLog struct {
	due       map[string]time.Time
	fired     []time.Time
	cancelled []time.Time // the time each cancelled timer was due
}

func watchTimers(s *scenario) *timerLog {
	log := &timerLog{due: map[string]time.Time{}}
	s.env.SetOnTimerScheduledListener(func(id string, d time.Duration) { log.due[id] = s.env.Now().UTC().Add(d) })
	s.env.SetOnTimerFiredListener(func(id string) { log.fired = append(log.fired, log.due[id]) })
	s.env.SetOnTimerCanceledListener(func(id string) { log.cancelled = append(log.cancelled, log.due[id]) })
	return log
}

// A timer woken early by a Reschedule is cancelled, not left to fire into
// an empty workflow task later: here the old slot's 30-day reminder and,
// after a late reschedule, the end of the release period.
func TestWokenTimersAreCancelled(t *testing.T) {
	t.Run("reminder of the old slot", func(t *testing.T) {
		s := newScenario(t)
		timers := watchTimers(s)
		newPrimary := scenarioStart.Add(days(40))
		s.at(scenarioStart.Add(days(20)), func() {
			s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(3))})
		})

		res, err := s.run()
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, res.Status)
		oldReminder := primaryStart.Add(-days(30))
		assert.Equal(t, []time.Time{oldReminder}, timers.cancelled)
		assert.NotContains(t, timers.fired, oldReminder)
	})
	t.Run("end of the release period", func(t *testing.T) {
		s := newScenario(t)
		timers := watchTimers(s)
		newPrimary := primaryStart.Add(days(10))
		s.at(primaryStart.Add(days(2)), func() {
			s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(2))})
		})

		res, err := s.run()
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, res.Status)
		assert.Equal(t, []time.Time{release92.PeriodEnd}, timers.cancelled)
		assert.NotContains(t, timers.fired, release92.PeriodEnd)
	})
}
