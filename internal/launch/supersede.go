package launch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// A rollout of a newer release meets instances still held by an open
// update of an older one. An optional update that has not started is
// asked to give way (the Supersede Update) and the newer one is booked
// after its answer; a mandatory or started one is reported and skipped,
// never overlapped.

// book books the candidate's slots. When the instance is held by an open
// update that may be superseded (supersedable), the rollout asks it to
// give way, waits for its answer and books again; superseded names it
// then. A holder that refuses comes back as a *notSupersededError.
func (s *Starter) book(ctx context.Context, cand store.RolloutCandidate) (in workflows.Input, superseded store.Holder, err error) {
	params, floored := s.bookParams(cand)
	in, err = s.Store.BookRolloutSlots(ctx, params)
	if floored && errors.Is(err, store.ErrNoCapacity) {
		// No room after the wave before: the earliest slot MinNotice
		// allows, which the gate may find before that wave's outcome.
		params.Now, params.MinNotice = time.Now(), s.Plan.MinNotice
		in, err = s.Store.BookRolloutSlots(ctx, params)
	}
	var heldErr *store.HeldError
	if !errors.As(err, &heldErr) || !supersedable(heldErr.Holder) {
		return in, superseded, err
	}
	if refusal := s.supersede(ctx, heldErr.Holder); refusal != nil {
		return in, superseded, &notSupersededError{holder: heldErr.Holder, reason: refusal}
	}
	superseded = heldErr.Holder
	in, err = s.Store.BookRolloutSlots(ctx, params)
	return in, superseded, err
}

// notSupersededError: the open update holding the instance did not give
// way (refused, or did not answer); reason says why.
type notSupersededError struct {
	holder store.Holder
	reason error
}

func (e *notSupersededError) Error() string {
	return "held by open update " + e.holder.String() + "; not superseded: " + e.reason.Error()
}

// supersedable reports whether an open update may be asked to give way to
// a newer one: only an optional update that has not started. Whether the
// rollout's release is newer than its target is for its validator to say,
// against the releases it was offered.
func supersedable(h store.Holder) bool {
	return !h.Mandatory && (h.Status == workflows.StatusScheduled || h.Status == workflows.StatusApproved)
}

// holderAnswerTimeout bounds the wait for the answer of a signed Update
// (Supersede, Move), which comes once the update has recorded its new
// status.
const holderAnswerTimeout = 2 * time.Minute

// supersede sends the Supersede Update to the open update h and waits for
// its answer: accepted, h has closed as Superseded in Postgres and given
// its slots back.
func (s *Starter) supersede(ctx context.Context, h store.Holder) error {
	return signedUpdate(ctx, s.Client, s.Signer, h.WorkflowID, workflows.UpdateSupersede, actor.ActionSupersede, s.RequestedBy,
		func(assertion string) any {
			return workflows.SupersedeInput{TargetVersion: s.Plan.Version, RequestedBy: s.RequestedBy, Assertion: assertion}
		}, nil)
}

// Move sends the Move Update to the update workflowID, signed for
// in.RequestedBy on the rollout's channel, and returns its answer: the
// update with its new slots.
func Move(ctx context.Context, c client.Client, signer *actor.Signer, workflowID string, in workflows.MoveInput) (workflows.StatusView, error) {
	var view workflows.StatusView
	err := signedUpdate(ctx, c, signer, workflowID, workflows.UpdateMove, actor.ActionMove, in.RequestedBy,
		func(assertion string) any { in.Assertion = assertion; return in }, &view)
	return view, err
}

// signedUpdate sends the Update name to workflowID with the argument
// build makes around an assertion signed for by (action, rollout
// channel), waits up to holderAnswerTimeout for its answer and reads it
// into result (nil: not read). A refusal comes back as the workflow's
// own message.
func signedUpdate(ctx context.Context, c client.Client, signer *actor.Signer, workflowID, name, action, by string, build func(assertion string) any, result any) error {
	if signer == nil {
		return fmt.Errorf("ACTION_SIGNING_KEY is not set, so the %s cannot be signed; set it (starter keys generate) and trust its key in the workers", name)
	}
	assertion, err := signer.Sign(actor.Claims{
		Actor: by, Channel: actor.ChannelRollout, WorkflowID: workflowID, Action: action, IssuedAt: time.Now(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, holderAnswerTimeout)
	defer cancel()
	handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   name,
		Args:         []any{build(assertion)},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = handle.Get(ctx, result)
	}
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &appErr):
		return fmt.Errorf("%s refused by %s: %s", name, workflowID, appErr.Message())
	case IsNotFound(err):
		return fmt.Errorf("%s: no such workflow, or it has closed", workflowID)
	}
	return fmt.Errorf("%s on %s: %w", name, workflowID, err)
}
