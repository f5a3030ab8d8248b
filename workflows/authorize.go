package workflows

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// ServiceUpdates is the ServiceUpdate workflow as a worker registers it:
// with the public keys whose assertions its admin Updates must carry
// (ACTION_TRUSTED_KEYS). They reach the workflow code here, never through
// its input or history, so replacing them needs only a worker restart.
type ServiceUpdates struct {
	// Trusted verifies every Approve, Reschedule and SetAdmins; nil trusts
	// no key, so every one is refused.
	Trusted *actor.Verifier
}

// ServiceUpdate takes one instance to one target version: it announces the
// schedule, reminds the admins, takes approvals and reschedules as Temporal
// Updates, runs the update in its primary window, falls back to the
// secondary one, and reports every step. DESIGN.md, "The ServiceUpdate
// workflow", is the specification; run follows it step by step.
func (s ServiceUpdates) ServiceUpdate(ctx workflow.Context, in Input) (Result, error) {
	w, err := setup(ctx, in, s.Trusted)
	if err != nil {
		return Result{}, err
	}
	return w.run(ctx)
}

// authorize is the validators' check of who acts: the assertion verifies
// with a trusted key, allows action on this workflow, is fresh, and was
// not accepted before. It is pure (workflow.Now, no I/O), as a validator
// must be; whether the actor may act is left to the caller.
func (w *serviceUpdate) authorize(ctx workflow.Context, assertion, action string) (actor.Claims, error) {
	if w.trusted == nil {
		return actor.Claims{}, errors.New("this worker trusts no signing key (ACTION_TRUSTED_KEYS is empty), so it accepts no admin action; ask an operator to configure it")
	}
	// Verify is pure: an Ed25519 check and a JSON decode into a struct;
	// the JWT library's clock-based claim checks are off (it judges age by
	// Now, given here).
	want := actor.Expect{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Action: action, Now: workflow.Now(ctx)}
	claims, err := w.trusted.Verify(assertion, want) //workflowcheck:ignore
	if err != nil {
		return actor.Claims{}, err
	}
	if _, used := w.nonces[claims.Nonce]; used {
		return actor.Claims{}, fmt.Errorf("the assertion (nonce %s) was used before; each action is signed anew", claims.Nonce)
	}
	return claims, nil
}

// authorizeAdmin is authorize for an admin's own decision (Approve,
// Reschedule): the request acts as the admin the assertion names, who is
// an admin of the instance now.
func (w *serviceUpdate) authorizeAdmin(ctx workflow.Context, assertion, action, admin string) error {
	claims, err := w.authorize(ctx, assertion, action)
	if err != nil {
		return err
	}
	if !strings.EqualFold(strings.TrimSpace(admin), strings.TrimSpace(claims.Actor)) {
		return fmt.Errorf("the request acts as %q but its assertion was signed for %q", admin, claims.Actor)
	}
	return w.checkAdmin(claims.Actor)
}

// authorizeAdminList is authorize for SetAdmins: admin lists come from
// Postgres, which operators load, so only an operator sets them (channel
// operator-cli), on its own authority or for an admin of the instance.
func (w *serviceUpdate) authorizeAdminList(ctx workflow.Context, assertion string) error {
	claims, err := w.authorize(ctx, assertion, actor.ActionSetAdmins)
	if err != nil {
		return err
	}
	if claims.Channel != actor.ChannelOperatorCLI {
		return fmt.Errorf("admins are set by an operator from the fleet in Postgres (channel %s), not through %s", actor.ChannelOperatorCLI, claims.Channel)
	}
	if claims.Actor == claims.Operator {
		return nil
	}
	return w.checkAdmin(claims.Actor)
}

// acting is who acts in an accepted Update, as its audit row names them.
type acting struct {
	actor    string
	operator string // set when an operator acted for the actor
	channel  string
}

// admit takes an accepted Update's assertion before the handler's first
// blocking call: it spends the nonce, so the assertion is never accepted
// again, and says who acts. Two Updates with one assertion can both pass
// their validators in one workflow task; the second is refused here.
// Updates accepted before assertions existed carry none: admin acts as
// itself through a plain Temporal Update, as it always did.
func (w *serviceUpdate) admit(assertion, admin string) (acting, error) {
	if assertion == "" {
		return acting{actor: admin, channel: ChannelUpdate}, nil
	}
	claims, err := actor.Read(assertion) //workflowcheck:ignore (pure: a JSON decode into a struct)
	if err != nil {
		return acting{}, err
	}
	if _, used := w.nonces[claims.Nonce]; used {
		return acting{}, fmt.Errorf("the assertion (nonce %s) was used before; each action is signed anew", claims.Nonce)
	}
	w.nonces[claims.Nonce] = struct{}{}
	return acting{actor: claims.Actor, operator: claims.Operator, channel: string(claims.Channel)}, nil
}
