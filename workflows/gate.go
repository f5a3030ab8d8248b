package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// A rollout gates execution in waves: an update whose wave its Rollout has
// not opened (pending, held after too many failures, or aborted) waits at
// its slot's start until the gate opens, looking again every heldRecheck.
// An aborted wave's updates are cancelled by the Rollout meanwhile. The
// check is the instance check before each attempt, so any lifecycle path
// that checks the instance is gated the same way.

// heldRecheck is how often a held update reads its wave's gate again: an
// operator's Resume reaches it within this, at a cost of a timer and a
// local activity per wait in its history.
const heldRecheck = 15 * time.Minute

// awaitGate holds the update while check says its wave is not open,
// reading the gate again every heldRecheck (a Postgres that does not
// answer keeps it held), and returns the check that let it go. Cancelled
// while held (the rollout aborted), it returns the cancellation.
func (w *serviceUpdate) awaitGate(ctx workflow.Context, check CheckInstanceResult) (CheckInstanceResult, error) {
	if !check.Held || !patched(ctx, changeWaveGate) {
		return check, nil
	}
	w.held = true
	defer func() { w.held = false }()
	w.logger.Info("Held: the rollout has not opened this update's wave; waiting for its gate", "recheck", heldRecheck)
	for {
		if err := workflow.Sleep(ctx, heldRecheck); err != nil {
			return check, err
		}
		next, checked := w.readInstance(ctx)
		if checked && !next.Held {
			w.logger.Info("Wave open: the update goes ahead")
			return next, nil
		}
	}
}
