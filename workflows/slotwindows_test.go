package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each slot has its own window length (the fleet file gives every slot
// one): the update runs for it, the validator judges a chosen slot by it,
// and the Status view and the emails show it.

// slotsWithOwnWindows offers a 12 h primary, a 6 h secondary, a 24 h slot
// and a 6 h slot just before the end of 9.2.0's period.
func slotsWithOwnWindows(s *scenario) (long, shortAtEnd OfferedSlot) {
	long = OfferedSlot{Version: "9.2.0", Start: primaryStart.Add(days(10)), WindowLength: 24 * time.Hour}
	shortAtEnd = OfferedSlot{Version: "9.2.0", Start: release92.PeriodEnd.Add(-6 * time.Hour), WindowLength: 6 * time.Hour}
	s.in.WindowLength, s.in.SecondaryWindowLength = 12*time.Hour, 6*time.Hour
	s.in.Slots = []OfferedSlot{
		{Version: "9.2.0", Start: primaryStart, WindowLength: 12 * time.Hour},
		{Version: "9.2.0", Start: secondaryStart, WindowLength: 6 * time.Hour},
		long, shortAtEnd,
	}
	return long, shortAtEnd
}

func TestSecondaryRunsForItsOwnWindow(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	slotsWithOwnWindows(s)
	s.fakes.applyUpdate = primaryFails("migration failed")

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, s.fakes.applies, 2)
	assert.Equal(t, primaryStart.Add(12*time.Hour), s.fakes.applies[0].WindowEnd)
	assert.Equal(t, secondaryStart.Add(6*time.Hour), s.fakes.applies[1].WindowEnd, "the secondary attempt ends with the secondary's window")

	final := s.status()
	assert.Equal(t, primaryStart.Add(12*time.Hour), final.Primary.End)
	assert.Equal(t, secondaryStart.Add(6*time.Hour), final.Secondary.End)
	assert.Equal(t, "Wed 22 Apr 2026 09:00 CEST", final.Secondary.LocalEnd)
	for _, n := range s.fakes.notices {
		assert.Equal(t, secondaryStart.Add(6*time.Hour), n.Update.Secondary.End, "the %s email shows the secondary's own window", n.Kind)
		if n.Kind == NoticeInProgress && n.SlotStart.Equal(secondaryStart) {
			assert.Equal(t, secondaryStart.Add(6*time.Hour), n.Deadline)
		}
	}
}

func TestRescheduleTakesEachSlotsOwnWindow(t *testing.T) {
	s := newScenario(t)
	long, shortAtEnd := slotsWithOwnWindows(s)
	overrunning := OfferedSlot{Version: "9.2.0", Start: release92.PeriodEnd.Add(-13 * time.Hour), WindowLength: 24 * time.Hour}
	s.in.Slots = append(s.in.Slots, overrunning)
	at := scenarioStart.Add(days(5))
	var refused, moved *updateOutcome
	s.at(at, func() {
		// A 24 h secondary that ends after the period: a 12 h window would fit.
		refused = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: long.Start, SecondaryStart: overrunning.Start})
		// A 6 h secondary just before the end: a 12 h window would not fit.
		moved = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: long.Start, SecondaryStart: shortAtEnd.Start})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.Error(t, refused.rejected)
	assert.Contains(t, refused.rejected.Error(), "the secondary window 2026-06-13T12:00:00Z to 2026-06-14T12:00:00Z lies outside the release period of 9.2.0")
	require.NoError(t, moved.err)
	assert.Equal(t, long.Start.Add(24*time.Hour), moved.result.Primary.End)
	assert.Equal(t, release92.PeriodEnd, moved.result.Secondary.End)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, s.fakes.applies, 1)
	assert.Equal(t, long.Start.Add(24*time.Hour), s.fakes.applies[0].WindowEnd, "the update may run the whole 24 h slot")
}

// The not-approved email's deadline is the last offered slot that a later
// one can back up, each with its own window.
func TestNotApprovedDeadlineFollowsOfferedWindows(t *testing.T) {
	s := newScenario(t)
	long, _ := slotsWithOwnWindows(s)

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusNotApproved, res.Status)
	for _, n := range s.fakes.notices {
		if n.Kind == NoticeNotApproved {
			assert.Equal(t, long.Start, n.Deadline)
			return
		}
	}
	t.Fatal("no not-approved notice")
}
