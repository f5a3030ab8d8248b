package workflows

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// The tests' workers trust one portal key (testSigner's); testOperator is
// the operator the tests' SetAdmins come from.
var testSigner, trustingTestKeys = newTestKeys("portal-test")

const testOperator = "olga@provider.example"

func newTestKeys(keyID string) (*actor.Signer, ServiceUpdates) {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return actor.NewSigner(keyID, private), ServiceUpdates{Trusted: actor.NewVerifier(map[string]ed25519.PublicKey{keyID: public})}
}

// signed gives an Update without an assertion the one the portal
// (Approve, Reschedule: the admin through a session), the operator CLI
// (SetAdmins) or a rollout (Supersede) would sign for workflowID at at. Other arguments are
// returned as they are.
func signed(t testing.TB, workflowID, name string, arg any, at time.Time) any {
	claims := actor.Claims{Channel: actor.ChannelPortalSession, WorkflowID: workflowID, IssuedAt: at}
	switch in := arg.(type) {
	case ApproveInput:
		if in.Assertion == "" {
			claims.Actor, claims.Action = in.Admin, actor.ActionApprove
			in.Assertion = mustSign(t, testSigner, claims)
		}
		return in
	case RescheduleInput:
		if in.Assertion == "" {
			claims.Actor, claims.Action = in.Admin, actor.ActionReschedule
			in.Assertion = mustSign(t, testSigner, claims)
		}
		return in
	case SupersedeInput:
		if in.Assertion == "" {
			claims.Actor, claims.Channel, claims.Action = in.RequestedBy, actor.ChannelRollout, actor.ActionSupersede
			in.Assertion = mustSign(t, testSigner, claims)
		}
		return in
	case MoveInput:
		if in.Assertion == "" {
			claims.Actor, claims.Channel, claims.Action = in.RequestedBy, actor.ChannelRollout, actor.ActionMove
			in.Assertion = mustSign(t, testSigner, claims)
		}
		return in
	case SetAdminsInput:
		if in.Assertion == "" {
			claims.Actor, claims.Operator, claims.Channel, claims.Action = testOperator, testOperator, actor.ChannelOperatorCLI, actor.ActionSetAdmins
			in.Assertion = mustSign(t, testSigner, claims)
		}
		return in
	}
	return arg
}

// mustSign signs c; t may be nil where no test is at hand (a worker's
// goroutine), and a failure then panics.
func mustSign(t testing.TB, s *actor.Signer, c actor.Claims) string {
	assertion, err := s.Sign(c)
	if err != nil {
		if t == nil {
			panic(err)
		}
		t.Fatalf("sign %+v: %v", c, err)
	}
	return assertion
}
