package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Reschedule validator refuses whatever it can know from the input
// (#8): a slot the release does not offer in the region, a primary sooner
// than the minimum notice, a secondary too close to the primary, a window
// outside the release period. Refused, the Update is never accepted, so
// no booking runs and nothing enters history; only a full slot is left
// to the booking.
func TestRescheduleValidatorRefusesWhatItCanKnow(t *testing.T) {
	s := newScenario(t)
	s.in.RescheduleMinNotice = time.Hour
	moveTo := OfferedSlot{Version: "9.2.0", Start: primaryStart.Add(days(10)), WindowLength: 12 * time.Hour}
	backup := OfferedSlot{Version: "9.2.0", Start: primaryStart.Add(days(12)), WindowLength: 6 * time.Hour}
	later := OfferedSlot{Version: "9.3.0", Start: primaryStart.Add(days(20)), WindowLength: 12 * time.Hour}
	s.in.Slots = []OfferedSlot{
		{Version: "9.2.0", Start: primaryStart, WindowLength: 12 * time.Hour},
		{Version: "9.2.0", Start: secondaryStart, WindowLength: 12 * time.Hour},
		moveTo, backup, later,
	}
	reschedule := func(primary, secondary time.Time, target string) *updateOutcome {
		return s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primary, SecondaryStart: secondary, TargetVersion: target})
	}
	refused := map[string]*updateOutcome{}
	var moved *updateOutcome
	s.at(scenarioStart.Add(days(5)), func() {
		refused["primary not offered"] = reschedule(moveTo.Start.Add(time.Hour), backup.Start, "")
		refused["secondary not offered"] = reschedule(moveTo.Start, backup.Start.Add(time.Hour), "")
		refused["slot of another release"] = reschedule(moveTo.Start, backup.Start, "9.3.0")
		refused["secondary inside the primary window"] = reschedule(moveTo.Start, moveTo.Start.Add(6*time.Hour), "")
		moved = reschedule(moveTo.Start, backup.Start, "")
	})
	s.at(moveTo.Start.Add(-30*time.Minute), func() {
		refused["primary sooner than the minimum notice"] = reschedule(moveTo.Start, backup.Start, "")
	})

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, moveTo.Start, res.Attempts[0].Started)

	want := map[string]string{
		"primary not offered": "the primary slot 2026-04-25T02:00:00Z is not offered in eu-central for 9.2.0; offered from 2026-01-10T02:00:00Z: " +
			"2026-04-15T01:00:00Z (12h window), 2026-04-22T01:00:00Z (12h window), 2026-04-25T01:00:00Z (12h window), 2026-04-27T01:00:00Z (6h window)",
		"secondary not offered": "the secondary slot 2026-04-27T02:00:00Z is not offered in eu-central for 9.2.0; offered from 2026-04-26T13:00:00Z: " +
			"2026-04-27T01:00:00Z (6h window)",
		"slot of another release": "the primary slot 2026-04-25T01:00:00Z is not offered in eu-central for 9.3.0; offered from 2026-01-10T02:00:00Z: " +
			"2026-05-05T01:00:00Z (12h window)",
		"secondary inside the primary window": "secondary start 2026-04-25T07:00:00Z is too early: it must be at or after 2026-04-26T13:00:00Z " +
			"(primary window end 2026-04-25T13:00:00Z plus a gap of 24h); offered from 2026-04-26T13:00:00Z: 2026-04-27T01:00:00Z (6h window)",
		"primary sooner than the minimum notice": "primary start 2026-04-25T01:00:00Z is too soon (now 2026-04-25T00:30:00Z): " +
			"choose a primary slot at least 1h ahead, starting at or after 2026-04-25T01:30:00Z; offered from 2026-04-25T01:30:00Z: 2026-04-27T01:00:00Z (6h window)",
	}
	for name, outcome := range refused {
		require.Error(t, outcome.rejected, name)
		assert.False(t, outcome.accepted, "%s: a refusal the validator can make never reaches the handler", name)
		assert.Equal(t, want[name], outcome.rejected.Error(), name)
	}
	require.NoError(t, moved.err)
	require.Len(t, s.fakes.bookings, 1, "only the accepted Reschedule books")
	assert.Equal(t, moveTo.Start, s.fakes.bookings[0].PrimaryStart)
}

// Inputs of release 1 carry no offered slots and no minimum notice: any
// start inside the period is left to the booking, as it was.
func TestRescheduleWithoutOfferedSlotsLeavesThemToTheBooking(t *testing.T) {
	s := newScenario(t)
	s.in.Slots, s.in.RescheduleMinNotice = nil, 0
	newPrimary := primaryStart.Add(days(10) + 17*time.Minute)
	var moved, soon *updateOutcome
	s.at(scenarioStart.Add(days(5)), func() {
		moved = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(2))})
	})
	s.at(newPrimary.Add(-time.Minute), func() {
		soon = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(3))})
	})

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.NoError(t, moved.err)
	require.NoError(t, soon.err, "no minimum notice in an input without one")
	assert.Len(t, s.fakes.bookings, 2)
}
