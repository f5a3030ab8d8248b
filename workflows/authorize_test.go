package workflows

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// claimsAt is what the portal signs for an admin's action on the
// scenario's workflow at at.
func claimsAt(admin, action string, at time.Time) actor.Claims {
	return actor.Claims{Actor: admin, Channel: actor.ChannelPortalSession, WorkflowID: scenarioWorkflowID, Action: action, IssuedAt: at}
}

// Every admin Update whose assertion does not prove an admin of the
// instance acting now, on this workflow, is refused by the validator:
// nothing changes, nothing is written, and a legitimate Approve still
// goes through afterwards.
func TestUnprovenAdminActionsAreRefused(t *testing.T) {
	s := newScenario(t)
	impostor, _ := newTestKeys("portal-test") // the trusted key ID, another key
	rogue, _ := newTestKeys("rogue")
	at := scenarioStart.Add(days(2))
	approve := func(signer *actor.Signer, admin string, c actor.Claims) ApproveInput {
		return ApproveInput{Admin: admin, Assertion: mustSign(t, signer, c)}
	}
	removedAdmin := "ops@acme.example"
	refusals := []struct {
		name  string
		input func() any
		want  string
	}{
		{"unsigned", func() any { return ApproveInput{Admin: adminTyped} }, "carries no signed assertion"},
		{"forged: another key under the trusted key ID", func() any {
			return approve(impostor, adminTyped, claimsAt(adminTyped, actor.ActionApprove, at))
		}, "signature does not verify"},
		{"signed by a key the worker does not trust", func() any {
			return approve(rogue, adminTyped, claimsAt(adminTyped, actor.ActionApprove, at))
		}, `signed with key "rogue", which this worker does not trust`},
		{"for another workflow", func() any {
			c := claimsAt(adminTyped, actor.ActionApprove, at)
			c.WorkflowID = WorkflowID("inst-2", "9.2.0")
			return approve(testSigner, adminTyped, c)
		}, "is for workflow service-update:inst-2:9.2.0"},
		{"for another action", func() any {
			return approve(testSigner, adminTyped, claimsAt(adminTyped, actor.ActionReschedule, at))
		}, "allows reschedule, not approve"},
		{"stale", func() any {
			return approve(testSigner, adminTyped, claimsAt(adminTyped, actor.ActionApprove, at.Add(-actor.DefaultMaxAge-time.Minute)))
		}, "old); sign the action again"},
		{"signed for another admin than the request names", func() any {
			return approve(testSigner, adminTyped, claimsAt(removedAdmin, actor.ActionApprove, at))
		}, `acts as "admin@acme.example" but its assertion was signed for "ops@acme.example"`},
		{"signed for someone who is no admin", func() any {
			return approve(testSigner, "mallory@evil.example", claimsAt("mallory@evil.example", actor.ActionApprove, at))
		}, `"mallory@evil.example" is not an admin of instance inst-1`},
		{"an admin removed by SetAdmins", func() any {
			return approve(testSigner, removedAdmin, claimsAt(removedAdmin, actor.ActionApprove, at))
		}, `"ops@acme.example" is not an admin of instance inst-1`},
		{"SetAdmins through the portal", func() any {
			c := claimsAt(adminTyped, actor.ActionSetAdmins, at)
			return SetAdminsInput{Admins: []string{"mallory@evil.example"}, Assertion: mustSign(t, testSigner, c)}
		}, "admins are set by an operator from the fleet in Postgres (channel operator-cli), not through portal-session"},
		{"SetAdmins unsigned", func() any { return SetAdminsInput{Admins: []string{"mallory@evil.example"}} }, "carries no signed assertion"},
	}
	var removal *updateOutcome
	s.at(scenarioStart.Add(days(1)), func() {
		removal = s.update(UpdateSetAdmins, SetAdminsInput{Admins: []string{adminListed}})
	})
	outcomes := make([]*updateOutcome, len(refusals))
	s.at(at, func() {
		for i, r := range refusals {
			name := UpdateApprove
			if _, ok := r.input().(SetAdminsInput); ok {
				name = UpdateSetAdmins
			}
			outcomes[i] = s.updateAsIs(name, r.input())
		}
	})
	var afterRefusals StatusView
	var transitionsAfterRefusals int
	s.at(at.Add(time.Hour), func() {
		afterRefusals = s.status()
		transitionsAfterRefusals = len(s.fakes.actions())
	})
	var legit *updateOutcome
	s.at(at.Add(2*time.Hour), func() { legit = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })

	res, err := s.run()
	require.NoError(t, err)
	require.NoError(t, removal.err)
	removed := s.fakes.transitions[1]
	assert.Equal(t, []string{actionAdminsChanged, testOperator, testOperator, string(actor.ChannelOperatorCLI)},
		[]string{removed.Action, removed.Actor, removed.Operator, removed.Channel}, "SetAdmins is recorded as the operator's own")
	for i, r := range refusals {
		o := outcomes[i]
		if assert.Error(t, o.rejected, r.name) {
			assert.Contains(t, o.rejected.Error(), r.want, r.name)
		}
		assert.False(t, o.accepted, "%s: accepted", r.name)
	}
	assert.Equal(t, StatusScheduled, afterRefusals.Status, "refused Updates change nothing")
	assert.Empty(t, afterRefusals.Approvals)
	assert.Equal(t, []string{actionScheduled, actionAdminsChanged}, s.fakes.actions()[:transitionsAfterRefusals],
		"nothing written for a refused Update")
	require.NoError(t, legit.err)
	assert.Equal(t, StatusApproved, legit.result.Status)
	assert.Equal(t, StatusSucceeded, res.Status)
}

// An assertion is good for one Update: sent again, even seconds later and
// by the same admin, it is refused, whether the first one was accepted in
// an earlier workflow task (validator) or in the same one (handler).
func TestReplayedAssertionIsRefused(t *testing.T) {
	s := newScenario(t)
	at := scenarioStart.Add(days(2))
	twice := ApproveInput{Admin: adminTyped, Assertion: mustSign(t, testSigner, claimsAt(adminTyped, actor.ActionApprove, at))}
	var sameTask [2]*updateOutcome
	s.at(at, func() {
		sameTask[0] = s.updateAsIs(UpdateApprove, twice)
		sameTask[1] = s.updateAsIs(UpdateApprove, twice)
	})
	moveAt := at.Add(time.Hour)
	later := primaryStart.Add(days(3))
	move := RescheduleInput{Admin: adminTyped, PrimaryStart: later, SecondaryStart: later.Add(days(2)),
		Assertion: mustSign(t, testSigner, claimsAt(adminTyped, actor.ActionReschedule, moveAt))}
	var first, again *updateOutcome
	s.at(moveAt, func() { first = s.updateAsIs(UpdateReschedule, move) })
	s.at(moveAt.Add(time.Minute), func() { again = s.updateAsIs(UpdateReschedule, move) })

	_, err := s.run()
	require.NoError(t, err)
	used := 0
	for _, o := range sameTask {
		if o.completed && o.err == nil {
			used++
		} else if refusal := refusalOf(o); assert.Error(t, refusal) {
			assert.Contains(t, refusal.Error(), "was used before; each action is signed anew")
		}
	}
	assert.Equal(t, 1, used, "one of two Approves with one assertion")
	require.NoError(t, first.err)
	require.Error(t, again.rejected)
	assert.Contains(t, again.rejected.Error(), "was used before; each action is signed anew")
	assert.Equal(t, []string{actionApproved, actionRescheduled}, approvalActions(s.status()))
}

// refusalOf is the validator's refusal of an Update, or the handler's.
func refusalOf(o *updateOutcome) error {
	if o.rejected != nil {
		return o.rejected
	}
	return o.err
}

func approvalActions(v StatusView) []string {
	var actions []string
	for _, a := range v.Approvals {
		actions = append(actions, a.Action)
	}
	return actions
}

// An operator acting for an admin is recorded with both names: the admin
// as the actor, the operator beside them, the channel operator-cli.
func TestOperatorActingForAnAdminIsRecordedSo(t *testing.T) {
	s := newScenario(t)
	at := scenarioStart.Add(days(2))
	c := claimsAt(adminTyped, actor.ActionApprove, at)
	c.Operator, c.Channel = testOperator, actor.ChannelOperatorCLI
	var approve *updateOutcome
	s.at(at, func() {
		approve = s.updateAsIs(UpdateApprove, ApproveInput{Admin: adminTyped, Assertion: mustSign(t, testSigner, c)})
	})
	_, err := s.run()
	require.NoError(t, err)
	require.NoError(t, approve.err)
	var approved RecordTransitionInput
	for _, tr := range s.fakes.transitions {
		if tr.Action == actionApproved {
			approved = tr
		}
	}
	assert.Equal(t, adminListed, approved.Actor)
	assert.Equal(t, testOperator, approved.Operator)
	assert.Equal(t, string(actor.ChannelOperatorCLI), approved.Channel)
	want := Approval{By: adminListed, Operator: testOperator, At: at, Action: actionApproved, Channel: string(actor.ChannelOperatorCLI)}
	assert.Equal(t, []Approval{want}, approve.result.Approvals)
}

// A worker that trusts no key accepts no admin action, and says why.
func TestWorkerWithoutTrustedKeysRefusesEveryAdminAction(t *testing.T) {
	s := newScenarioTrusting(t, ServiceUpdates{})
	var approve *updateOutcome
	s.at(scenarioStart.Add(days(2)), func() { approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	_, err := s.run()
	require.NoError(t, err)
	require.Error(t, approve.rejected)
	assert.Contains(t, approve.rejected.Error(), "this worker trusts no signing key (ACTION_TRUSTED_KEYS is empty)")
}

// During a rotation the worker trusts the old and the new key: an admin's
// action signed with either is accepted, and once the old key is dropped
// its assertions are refused.
func TestRotationAcceptsBothKeysThenOnlyTheNew(t *testing.T) {
	oldPublic, oldPrivate, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	newPublic, newPrivate, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	oldSigner, newSigner := actor.NewSigner("ops-2026-05", oldPrivate), actor.NewSigner("ops-2026-11", newPrivate)
	both := ServiceUpdates{Trusted: actor.NewVerifier(map[string]ed25519.PublicKey{"ops-2026-05": oldPublic, "ops-2026-11": newPublic})}
	onlyNew := ServiceUpdates{Trusted: actor.NewVerifier(map[string]ed25519.PublicKey{"ops-2026-11": newPublic})}
	at := scenarioStart.Add(days(2))
	approveWith := func(s *actor.Signer) ApproveInput {
		return ApproveInput{Admin: adminTyped, Assertion: mustSign(t, s, claimsAt(adminTyped, actor.ActionApprove, at))}
	}
	for _, tc := range []struct {
		name    string
		trusted ServiceUpdates
		signer  *actor.Signer
		refusal string
	}{
		{"old key while both are trusted", both, oldSigner, ""},
		{"new key while both are trusted", both, newSigner, ""},
		{"new key after the rotation", onlyNew, newSigner, ""},
		{"old key after the rotation", onlyNew, oldSigner, `signed with key "ops-2026-05", which this worker does not trust (trusted: ops-2026-11)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenarioTrusting(t, tc.trusted)
			var approve *updateOutcome
			s.at(at, func() { approve = s.updateAsIs(UpdateApprove, approveWith(tc.signer)) })
			_, err := s.run()
			require.NoError(t, err)
			if tc.refusal == "" {
				require.NoError(t, approve.rejected)
				require.NoError(t, approve.err)
				assert.Equal(t, StatusApproved, approve.result.Status)
				return
			}
			require.Error(t, approve.rejected)
			assert.Contains(t, approve.rejected.Error(), tc.refusal)
		})
	}
}
