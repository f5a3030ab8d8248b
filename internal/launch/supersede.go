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

// holderAnswerTimeout bounds the wait for a Supersede's answer, which comes
// once the update has recorded its new status.
const holderAnswerTimeout = 2 * time.Minute

// supersede sends the Supersede Update to the open update h and waits for
// its answer: accepted, h has closed as Superseded in Postgres and given
// its slots back.
func (s *Starter) supersede(ctx context.Context, h store.Holder) error {
	if s.Signer == nil {
		return errors.New("ACTION_SIGNING_KEY is not set, so the Supersede cannot be signed; set it (starter keys generate) and trust its key in the workers")
	}
	assertion, err := s.Signer.Sign(actor.Claims{
		Actor: s.RequestedBy, Channel: actor.ChannelRollout, WorkflowID: h.WorkflowID, Action: actor.ActionSupersede, IssuedAt: time.Now(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, holderAnswerTimeout)
	defer cancel()
	handle, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   h.WorkflowID,
		UpdateName:   workflows.UpdateSupersede,
		Args:         []any{workflows.SupersedeInput{TargetVersion: s.Plan.Version, RequestedBy: s.RequestedBy, Assertion: assertion}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = handle.Get(ctx, nil)
	}
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &appErr):
		return fmt.Errorf("%s refused by %s: %s", workflows.UpdateSupersede, h.WorkflowID, appErr.Message())
	case IsNotFound(err):
		return fmt.Errorf("%s: no such workflow, or it has closed", h.WorkflowID)
	}
	return fmt.Errorf("%s on %s: %w", workflows.UpdateSupersede, h.WorkflowID, err)
}
