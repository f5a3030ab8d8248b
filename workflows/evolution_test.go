package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// Safe evolution: what a workflow started by an older release keeps, and
// what no release may re-decide on replay.

// A workflow started by release 1 may lack the defaults, which release 1
// applied while running. It keeps release 1's values for life: a later
// change of the defaults must not re-plan its reminders (on replay, a
// different set of timers would be a non-determinism error).
func TestRelease1InputKeepsRelease1Defaults(t *testing.T) {
	current := DefaultReminderOffsets
	t.Cleanup(func() { DefaultReminderOffsets = current })
	DefaultReminderOffsets = []time.Duration{days(60), days(1)}

	s := newScenario(t)
	s.in.Mandatory = true
	s.in.ReminderOffsets, s.in.WindowLength = nil, 0 // as release 1's starter left them

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, primaryStart.Add(12*time.Hour), s.fakes.applies[0].WindowEnd)
}

// An accepted Reschedule that waited for the mutex re-checks the state,
// not the validator's rules: here another admin's Reschedule moved the
// target to 9.3.0 meanwhile, which the target rule ("not older than the
// current target") would now refuse. The SDK skips validators on replay
// so that their rules can change; a handler that ran them again would
// turn every rule change into a different replay.
func TestAcceptedRescheduleIsNotRevalidated(t *testing.T) {
	s := newScenario(t)
	firstAt := scenarioStart.Add(days(35))
	bookings := 0
	s.fakes.bookSlots = func(BookSlotsInput) error {
		bookings++
		if bookings == 1 { // the first booking holds the mutex for a minute
			return temporal.NewApplicationErrorWithOptions("connection reset by peer", "", temporal.ApplicationErrorOptions{NextRetryDelay: time.Minute})
		}
		return nil
	}
	later := primaryStart.Add(days(10))
	var first, second *updateOutcome
	s.at(firstAt, func() {
		first = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: later, SecondaryStart: later.Add(days(2)), TargetVersion: "9.3.0"})
	})
	s.at(firstAt.Add(10*time.Second), func() {
		second = s.update(UpdateReschedule, RescheduleInput{Admin: "ops@acme.example", PrimaryStart: primaryStart, SecondaryStart: secondaryStart, TargetVersion: "9.2.0"})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, first.err)
	require.True(t, second.accepted)
	require.NoError(t, second.err, "accepted against the state it saw; the later one wins")
	assert.Equal(t, firstAt.Add(time.Minute), second.completedAt)
	assert.Equal(t, "9.2.0", second.result.TargetVersion)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.2.0", res.FinalVersion)
	assert.Equal(t, primaryStart, res.Attempts[0].Started)
}
