package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcupdate/svcupdate/internal/actor"
)

var movedByRollout = MoveInput{RequestedBy: "rollout of 9.2.0, resumed by ops@provider.example", Reason: "wave 1 held after failures"}

// A held update that its rollout moves (Resume with a later time) books
// the earliest pair from that time, tells its admins, and runs at the new
// primary start once its wave is open: not at the moment the gate opens.
func TestMoveTakesAHeldUpdateToLaterSlots(t *testing.T) {
	s := newLeanScenario(t)
	s.in.Mandatory = true
	opensAt := primaryStart.Add(2 * time.Hour)
	s.fakes.checkInstance = func(CheckInstanceInput) (CheckInstanceResult, error) {
		return CheckInstanceResult{CurrentVersion: "9.0.0", Mandatory: true, Held: s.env.Now().Before(opensAt)}, nil
	}
	in := movedByRollout
	in.From = primaryStart.Add(days(14))
	var move *updateOutcome
	s.at(primaryStart.Add(time.Hour), func() { move = s.update(UpdateMove, in) })

	res, err := s.run()
	require.NoError(t, err)

	require.NotNil(t, move)
	require.True(t, move.accepted, "refused: %v", move.rejected)
	require.NoError(t, move.err)
	assert.Equal(t, in.From, move.result.Primary.Start.UTC(), "the answer shows the new primary")
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, in.From, res.Attempts[0].Started.UTC(), "runs at the new primary start, not when the gate opened")
	require.Len(t, s.fakes.moves, 1)
	assert.Equal(t, BookSlotsFromInput{
		WorkflowID: scenarioWorkflowID, InstanceID: "inst-1", Region: "eu-central", OfferedVersion: "9.2.0", TargetVersion: "9.2.0",
		From: in.From, SecondaryMinGap: 24 * time.Hour, Until: release92.PeriodEnd,
	}, s.fakes.moves[0])
	assertLean(t, s.fakes)
	assert.Equal(t, []string{actionScheduled, actionMoved, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.Contains(t, s.fakes.noticeKinds(), NoticeMoved)
	moved := s.fakes.commits[1]
	assert.Equal(t, in.RequestedBy, moved.Transition.Actor)
	assert.Equal(t, string(actor.ChannelRollout), moved.Transition.Channel)
	assert.Equal(t, "primary 2026-04-29T01:00:00Z, secondary 2026-05-06T01:00:00Z: wave 1 held after failures", moved.Transition.Detail)
	assert.Equal(t, StatusScheduled, moved.Transition.Snapshot.Status, "a move is no approval")
	assert.NotEmpty(t, moved.Reminders, "the reminders still due before the new slot are queued")
}

// An approved update that is moved keeps its approval and runs at the
// new slot without another one.
func TestMoveKeepsAnApproval(t *testing.T) {
	s := newLeanScenario(t)
	s.at(scenarioStart.Add(days(5)), func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	in := movedByRollout
	in.From = primaryStart.Add(days(3))
	var move *updateOutcome
	s.at(primaryStart.Add(-days(1)), func() { move = s.update(UpdateMove, in) })

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, move.err)
	assert.Equal(t, StatusApproved, move.result.Status)
	assert.Equal(t, adminListed, move.result.ApprovedBy)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, in.From, res.Attempts[0].Started.UTC())
}

// Moves the state, the time or the signature does not allow are refused
// by the validator, each saying why; nothing is booked.
func TestMoveRefusals(t *testing.T) {
	at := scenarioStart.Add(days(10))
	for _, tt := range []struct {
		name  string
		input func(s *scenario) any
		want  string
	}{
		{"from in the past", func(*scenario) any {
			in := movedByRollout
			in.From = at.Add(-time.Hour)
			return in
		}, "from 2026-01-15T00:00:00Z leaves the admins less notice than 0d (now 2026-01-15T01:00:00Z); move the update to 2026-01-15T01:01:00Z or later"},
		{"from before the current primary", func(*scenario) any {
			in := movedByRollout
			in.From = primaryStart.Add(-days(2))
			return in
		}, "the primary slot already starts at 2026-04-15T01:00:00Z, at or after from 2026-04-13T01:00:00Z: nothing to move"},
		{"from after the release period", func(*scenario) any {
			in := movedByRollout
			in.From = release92.PeriodEnd.Add(-days(1))
			return in
		}, "leaves no room in the release period of 9.2.0"},
		{"nobody named", func(*scenario) any { return MoveInput{From: primaryStart, Assertion: "not checked before the name"} }, "requestedBy is empty"},
		{"signed through the portal", func(s *scenario) any {
			in := movedByRollout
			in.From = primaryStart
			in.Assertion = mustSign(t, testSigner, actor.Claims{Actor: in.RequestedBy, Channel: actor.ChannelPortalSession,
				WorkflowID: scenarioWorkflowID, Action: actor.ActionMove, IssuedAt: s.env.Now()})
			return in
		}, "an update is moved by a rollout or an operator (channel rollout or operator-cli), not through portal-session"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newLeanScenario(t)
			var move *updateOutcome
			s.at(at, func() { move = s.update(UpdateMove, tt.input(s)) })
			_, err := s.run()
			require.NoError(t, err)
			require.NotNil(t, move)
			require.Error(t, move.rejected)
			assert.Contains(t, move.rejected.Error(), tt.want)
			assert.Empty(t, s.fakes.moves)
		})
	}
}

// An update that waits for a late Reschedule (not approved at its slot)
// is the admins' to reschedule: a rollout does not move it.
func TestMoveRefusedAfterNotApproved(t *testing.T) {
	s := newLeanScenario(t)
	in := movedByRollout
	in.From = primaryStart.Add(days(3))
	var move *updateOutcome
	s.at(primaryStart.Add(time.Hour), func() { move = s.update(UpdateMove, in) })

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusNotApproved, res.Status)
	require.Error(t, move.rejected)
	assert.Equal(t, "the update is NotApproved; only an update waiting for its slot (Scheduled or Approved) is moved", move.rejected.Error())
}
