package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"
)

// Every accepted Reschedule sends its own rescheduled notice (#7), also
// when it chooses a primary start an earlier one chose (A to B to C to B),
// or changes only the secondary slot: the notice's sequence tells the
// outbox apart from the earlier one, so neither is taken for a retry.
func TestEveryRescheduleSendsItsOwnNotice(t *testing.T) {
	s := newScenario(t)
	b, c := primaryStart.Add(days(10)), primaryStart.Add(days(20))
	moves := []struct {
		at                 time.Duration
		primary, secondary time.Time
	}{
		{days(5), b, b.Add(days(3))},
		{days(6), c, c.Add(days(3))},
		{days(7), b, b.Add(days(3))},
		{days(8), b, b.Add(days(4))}, // only the secondary changes
	}
	outcomes := make([]*updateOutcome, len(moves))
	for i, m := range moves {
		s.at(scenarioStart.Add(m.at), func() {
			outcomes[i] = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: m.primary, SecondaryStart: m.secondary})
		})
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	for i, o := range outcomes {
		require.NoError(t, o.err, "reschedule %d", i+1)
	}
	type key struct {
		slot     time.Time
		sequence int
	}
	var rescheduled []key
	for _, n := range s.fakes.notices {
		if n.Kind == NoticeRescheduled {
			rescheduled = append(rescheduled, key{n.SlotStart, n.Sequence})
			assert.Equal(t, n.SlotStart, n.Update.Primary.Start)
		} else {
			assert.Zero(t, n.Sequence, "%s notice", n.Kind)
		}
	}
	assert.Equal(t, []key{{b, 0}, {c, 0}, {b, 1}, {b, 2}}, rescheduled,
		"one rescheduled notice per Reschedule, each with its own outbox key")
	assert.Equal(t, b.Add(days(4)), s.fakes.notices[len(s.fakes.notices)-1].Update.Secondary.Start)
}

// A history recorded before the sequence existed replays with sequence 0
// for every notice; the version is asked only for a repeated primary, so
// an update that never repeats one carries no marker for it.
func TestRescheduledSequenceIsPatched(t *testing.T) {
	for _, tt := range []struct {
		name  string
		moves []time.Time
		// version is what the history says; zero (nil mock) means the
		// version must not be asked at all.
		version   *workflow.Version
		sequences []int
	}{
		{"release 1's histories", []time.Time{primaryStart.Add(days(10)), primaryStart.Add(days(10))}, ptr(workflow.DefaultVersion), []int{0, 0}},
		{"no repeat asks for no version", []time.Time{primaryStart.Add(days(10)), primaryStart.Add(days(20))}, nil, []int{0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			if tt.version != nil {
				s.env.OnGetVersion(changeRescheduledSequence, workflow.DefaultVersion, 1).Return(*tt.version)
			} else {
				s.env.OnGetVersion(changeRescheduledSequence, workflow.DefaultVersion, 1).Never()
			}
			for i, primary := range tt.moves {
				s.at(scenarioStart.Add(days(5+i)), func() {
					s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primary, SecondaryStart: primary.Add(days(3 + i))})
				})
			}
			res, err := s.run()
			require.NoError(t, err)
			assert.Equal(t, StatusSucceeded, res.Status)
			var sequences []int
			for _, n := range s.fakes.notices {
				if n.Kind == NoticeRescheduled {
					sequences = append(sequences, n.Sequence)
				}
			}
			assert.Equal(t, tt.sequences, sequences)
			s.env.AssertExpectations(t)
		})
	}
}

func ptr[T any](v T) *T { return &v }
