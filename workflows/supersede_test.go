package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/actor"
)

var rollout93 = SupersedeInput{TargetVersion: "9.3.0", RequestedBy: "rollout of 9.3.0 by starter@ops-1"}

// A rollout of a newer release supersedes an optional update that has not
// started: it closes as Superseded at once, gives its reservations back,
// records who asked and tells the admins; no reminder follows.
func TestSupersedeClosesAnOptionalUpdate(t *testing.T) {
	s := newScenario(t)
	supersededAt := scenarioStart.Add(days(20))
	var supersede *updateOutcome
	s.at(supersededAt, func() { supersede = s.update(UpdateSupersede, rollout93) })

	res, err := s.run()
	require.NoError(t, err)

	require.NotNil(t, supersede)
	require.True(t, supersede.accepted)
	require.NoError(t, supersede.err)
	assert.Equal(t, StatusSuperseded, supersede.result.Status, "the answer comes once the status is recorded")
	assert.Equal(t, "9.3.0", supersede.result.SupersededBy)
	assert.Equal(t, StatusSuperseded, res.Status)
	assert.Equal(t, "9.1.0", res.FinalVersion)
	assert.Equal(t, supersededAt, s.env.Now().UTC(), "closes at once")
	assert.Equal(t, map[string]int64{string(StatusSuperseded): 1}, s.completions())

	assert.Equal(t, kinds(NoticeScheduled, reminders(90), NoticeSuperseded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionSuperseded}, s.fakes.actions())
	row := s.fakes.lastTransition()
	assert.Equal(t, rollout93.RequestedBy, row.Actor)
	assert.Equal(t, ChannelOperator, row.Channel)
	assert.Equal(t, "superseded by the update to 9.3.0", row.Detail)
	assert.Equal(t, StatusSuperseded, row.Snapshot.Status)
	require.Len(t, s.fakes.releases, 1)
	assert.Greater(t, s.fakes.lastCall(ActivityReleaseSlots), s.fakes.lastCall(ActivityBookSlots))
	_, _, _, applies := s.fakes.counts()
	assert.Zero(t, applies)
}

// An update waiting for a late Reschedule (not approved, or failed in
// both slots) is superseded too, rather than wait for its release period
// to end.
func TestSupersedeEndsAWaitForALateReschedule(t *testing.T) {
	for _, tt := range []struct {
		name    string
		failing bool
		actions []string
	}{
		{name: "not approved", actions: []string{actionScheduled, actionNotApproved, actionSuperseded}},
		{name: "failed", failing: true, actions: []string{actionScheduled, actionApproved, actionStarted, actionFallback, actionStarted, actionFailed, actionSuperseded}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			if tt.failing {
				s.at(scenarioStart.Add(days(5)), func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
				s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
					return temporal.NewNonRetryableApplicationError("migration failed", ErrTypeUpdateFailed, nil)
				}
			}
			at := secondaryStart.Add(days(3))
			var supersede *updateOutcome
			s.at(at, func() { supersede = s.update(UpdateSupersede, rollout93) })

			res, err := s.run()
			require.NoError(t, err)
			require.NotNil(t, supersede, "the workflow closed before the Update came")
			require.NoError(t, supersede.err)
			assert.Equal(t, StatusSuperseded, res.Status)
			assert.Equal(t, at, s.env.Now().UTC(), "closes at once, not at the period's end")
			assert.Equal(t, tt.actions, s.fakes.actions())
		})
	}
}

// Supersede is refused, leaving no trace, for a mandatory update, once the
// update started, for a target that is not newer, without a name, and
// without an assertion of a rollout or an operator for that name that a
// trusted key signed.
func TestSupersedeRefusals(t *testing.T) {
	rogue, _ := newTestKeys("rogue")
	assertion := func(signer *actor.Signer, by string, channel actor.Channel) func(time.Time) string {
		return func(at time.Time) string {
			c := actor.Claims{Actor: by, Channel: channel, WorkflowID: scenarioWorkflowID, Action: actor.ActionSupersede, IssuedAt: at}
			if channel == actor.ChannelOperatorCLI {
				c.Operator = by
			}
			return mustSign(t, signer, c)
		}
	}
	unsigned := func(time.Time) string { return "" }
	tests := []struct {
		name      string
		mandatory bool
		at        time.Time
		in        SupersedeInput
		// sign, when set, makes the assertion sent as it is.
		sign func(at time.Time) string
		want string
	}{
		{name: "unsigned", at: scenarioStart.Add(days(1)), in: rollout93, sign: unsigned,
			want: "the request carries no signed assertion of who acts"},
		{name: "signed for another", at: scenarioStart.Add(days(1)), in: rollout93, sign: assertion(testSigner, "mallory", actor.ChannelRollout),
			want: `the request names "rollout of 9.3.0 by starter@ops-1" but its assertion was signed for "mallory"`},
		{name: "through the portal", at: scenarioStart.Add(days(1)), in: rollout93, sign: assertion(testSigner, rollout93.RequestedBy, actor.ChannelPortalSession),
			want: "an update is superseded by a rollout or an operator (channel rollout or operator-cli), not through portal-session"},
		{name: "untrusted key", at: scenarioStart.Add(days(1)), in: rollout93, sign: assertion(rogue, rollout93.RequestedBy, actor.ChannelRollout),
			want: `the assertion is signed with key "rogue", which this worker does not trust`},
		{name: "mandatory", mandatory: true, at: scenarioStart.Add(days(1)), in: rollout93,
			want: "the update to 9.2.0 is mandatory and is never superseded; roll the newer release out to instance inst-1 once it has closed"},
		{name: "started", at: primaryStart.Add(time.Hour), in: SupersedeInput{TargetVersion: "9.3.0", RequestedBy: "ops"},
			want: "the update started at 2026-04-15T01:00:00Z; it can no longer be superseded"},
		{name: "same version", at: scenarioStart.Add(days(1)), in: SupersedeInput{TargetVersion: "9.2.0", RequestedBy: "ops"},
			want: `target version "9.2.0" is not newer than this update's target 9.2.0; only an update to a later release supersedes it`},
		{name: "older unlisted version", at: scenarioStart.Add(days(1)), in: SupersedeInput{TargetVersion: "9.1.5", RequestedBy: "ops"},
			want: `target version "9.1.5" is not newer than this update's target 9.2.0`},
		{name: "nobody", at: scenarioStart.Add(days(1)), in: SupersedeInput{TargetVersion: "9.3.0", RequestedBy: " "},
			want: "requestedBy is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			s.in.Mandatory = tt.mandatory
			s.at(scenarioStart.Add(days(5)), func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
			// The primary attempt fails, so the update waits for its
			// secondary slot, started, when the Update comes.
			s.fakes.applyUpdate = primaryFails("migration failed")
			var supersede *updateOutcome
			s.at(tt.at, func() {
				if tt.sign == nil {
					supersede = s.update(UpdateSupersede, tt.in)
					return
				}
				in := tt.in
				in.Assertion = tt.sign(s.env.Now())
				supersede = s.updateAsIs(UpdateSupersede, in)
			})

			res, err := s.run()
			require.NoError(t, err)
			require.NotNil(t, supersede, "the workflow closed before the Update came")
			require.Error(t, supersede.rejected)
			assert.Contains(t, supersede.rejected.Error(), tt.want)
			assert.False(t, supersede.accepted)
			assert.NotEqual(t, StatusSuperseded, res.Status)
		})
	}
}

func TestNewerVersion(t *testing.T) {
	releases := []ReleaseOption{release92, release93}
	for _, tc := range []struct {
		version, current string
		want             bool
	}{
		{"9.3.0", "9.2.0", true},
		{"9.2.0", "9.3.0", false},
		{"9.2.0", "9.2.0", false},
		{"9.4.0", "9.3.0", true},  // unlisted: by semantic version
		{"9.10.0", "9.9.0", true}, // numerically, not as text
		{"9.2.0-rc.1", "9.2.0", false},
		{"not-a-version", "9.2.0", false},
	} {
		if got := NewerVersion(releases, tc.version, tc.current); got != tc.want {
			t.Errorf("NewerVersion(%s, %s) = %t, want %t", tc.version, tc.current, got, tc.want)
		}
	}
}
