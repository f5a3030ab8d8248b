package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/duration"
)

// A rollout's gates: at each production wave's first slot (gateLead
// before it) the wave opens, or it is held and the rollout waits for its
// operators: Resume (run it, or first move it to later slots) or Abort.

// gateWaves decides the gate of each production wave at its first slot,
// in order. done: every wave is open, or the rollout aborted.
func (r *rollout) gateWaves(ctx workflow.Context) (done bool, err error) {
	for {
		if err := r.report(ctx); err != nil {
			return false, err
		}
		next, ok := r.nextGate()
		if !ok {
			return true, nil
		}
		// Wait for the wave's gate time, a rescan, a pause or an abort,
		// refreshing the counts at least every reportInterval.
		wait := next.FirstStart.Add(-gateLead).Sub(workflow.Now(ctx))
		if wait > 0 {
			if _, err := workflow.AwaitWithTimeout(ctx, min(wait, reportInterval), r.interrupted); err != nil {
				return false, err
			}
		}
		switch {
		case r.rescan.Len() > 0:
			r.drainRescans(ctx)
			r.upsertPhase(ctx)
			return false, nil
		case r.st.Aborted:
			return true, r.abort(ctx)
		case r.st.Paused != "" && wait > 0:
			// Paused before the gate: the wave stays pending, so its
			// updates wait too, until a Resume, an Abort or a rescan.
			r.upsertPhase(ctx)
			if err := workflow.Await(ctx, func() bool { return r.st.Paused == "" || r.st.Aborted || r.rescan.Len() > 0 }); err != nil {
				return false, err
			}
			r.upsertPhase(ctx)
			continue
		case wait > reportInterval:
			if err := r.continueAsNewIfLong(ctx); err != nil {
				return false, err
			}
			continue
		}
		if err := r.decide(ctx, next); err != nil {
			return false, err
		}
	}
}

// interrupted: an operator or a re-run asks the waiting rollout for
// something.
func (r *rollout) interrupted() bool {
	return r.rescan.Len() > 0 || r.st.Aborted || r.st.Paused != ""
}

// nextGate is the first wave whose gate is still pending and which has
// started updates.
func (r *rollout) nextGate() (WaveReport, bool) {
	for _, w := range r.st.Reports {
		if w.Wave > 0 && w.State != WaveOpen && w.State != WaveAborted && w.Members > 0 {
			return w, true
		}
	}
	return WaveReport{}, false
}

// decide opens the wave when the waves before it failed less than the
// budget and no operator paused the rollout; otherwise it holds the wave,
// alerts the operators and waits for Resume (open it) or Abort.
func (r *rollout) decide(ctx workflow.Context, wave WaveReport) error {
	failed, members := 0, 0
	for _, w := range r.st.Reports {
		if w.Wave < wave.Wave {
			failed, members = failed+w.Failed(), members+w.Members
		}
	}
	over := members > 0 && float64(failed) >= r.in.MaxFailure*float64(members)
	if over && failed == 0 && patched(ctx, changeZeroBudgetOpens) {
		over = false // a zero budget holds a wave only when an update before it failed
	}
	if over && r.st.Paused == "" {
		r.st.Paused = fmt.Sprintf("wave %d held: %d of %d updates of the waves before it failed (budget %.1f%%)",
			wave.Wave, failed, members, r.in.MaxFailure*100)
	}
	if r.st.Paused != "" {
		// From here a Resume may move the wave, even while its gate is
		// still being written.
		r.holding = true
		defer func() { r.holding = false }()
		if err := r.setGate(ctx, []int{wave.Wave}, WaveHeld); err != nil {
			return err
		}
		r.upsertPhase(ctx)
		if err := r.alert(ctx, wave, 0); err != nil {
			return err
		}
		if err := r.awaitResume(ctx, wave); err != nil || r.st.Aborted {
			return err
		}
		r.upsertPhase(ctx)
	}
	r.logger.Info("Wave open", "wave", wave.Wave, "failedBefore", failed, "startedBefore", members)
	return r.setGate(ctx, []int{wave.Wave}, WaveOpen)
}

// awaitResume waits, the wave held, until a Resume lets it run (at its
// slots, or first moved to later ones) or an Abort cancels it (then the
// waves not yet open are aborted). A move that leaves updates where they
// were keeps the wave held and alerts again; a Pause that came during a
// move keeps it held too.
func (r *rollout) awaitResume(ctx workflow.Context, wave WaveReport) error {
	for {
		if err := workflow.Await(ctx, func() bool { return r.st.Paused == "" || r.st.Aborted }); err != nil {
			return err
		}
		if r.st.Aborted {
			return r.abort(ctx)
		}
		if r.st.MoveTo.IsZero() {
			return nil
		}
		left, err := r.moveWaves(ctx, wave)
		switch {
		case err != nil:
			return err
		case r.st.Aborted:
			return r.abort(ctx)
		case r.st.Paused != "":
			continue // an operator paused while the updates moved
		case left == "":
			return nil
		}
		r.st.Paused = left
		if err := r.alert(ctx, wave, r.st.Moves); err != nil {
			return err
		}
	}
}

// alert tells the operators why the rollout paused at wave; move numbers
// the alert of a move that left updates behind (0: the wave was held), so
// each is written once.
func (r *rollout) alert(ctx workflow.Context, wave WaveReport, move int) error {
	r.logger.Warn("Rollout paused", "wave", wave.Wave, "reason", r.st.Paused)
	return workflow.ExecuteActivity(r.shortOptions(ctx), ActivityAlertOperators, AlertOperatorsInput{
		Version: r.in.Version, Wave: wave.Wave, At: wave.FirstStart, Move: move, Message: "rollout of " + r.in.Version + " " + r.st.Paused +
			"; resume, run or move, or abort it: starter rollout --version " + r.in.Version + " --resume [--move-to TIME] | --abort",
	}).Get(ctx, nil)
}

// moveWaves moves the updates of the held wave and of every later wave
// not yet open to slots from the time a Resume asked. left is empty when
// every update that waited moved (or was at or after that time already);
// otherwise it says how many stayed, for the rollout to pause again.
func (r *rollout) moveWaves(ctx workflow.Context, held WaveReport) (left string, err error) {
	// No older history holds a move: the marker dates this path.
	workflow.GetVersion(ctx, changeRolloutMove, 1, 1)
	from := r.st.MoveTo
	// Taken now: a Resume that comes during the move asks for a new one.
	r.st.MoveTo, r.st.Moving = time.Time{}, from
	defer func() { r.st.Moving = time.Time{} }()
	r.st.Moves++
	var waves []int
	for _, w := range r.st.Reports {
		if w.Wave >= held.Wave && w.State != WaveOpen && w.State != WaveAborted {
			waves = append(waves, w.Wave)
		}
	}
	var res MoveWavesResult
	err = workflow.ExecuteActivity(r.batchOptions(ctx), ActivityMoveWaves, MoveWavesInput{
		Version: r.in.Version, Waves: waves, From: from,
		RequestedBy: fmt.Sprintf("rollout of %s, resumed by %s", r.in.Version, r.st.ResumedBy),
		Reason:      fmt.Sprintf("wave %d held", held.Wave),
	}).Get(ctx, &res)
	if err != nil {
		return "", err
	}
	r.st.Details = append(r.st.Details, res.Details...)
	r.st.Details = append(r.st.Details, fmt.Sprintf("moved %d waiting updates of waves %v to slots from %s (last primary %s); %d already later, %d not moved",
		res.Moved, waves, from.Format(timeLayout), res.LastStart.UTC().Format(timeLayout), res.Kept, res.NotMoved))
	if over := len(r.st.Details) - maxDetails; over > 0 {
		r.st.Details = r.st.Details[over:]
	}
	r.logger.Info("Waves moved", "waves", waves, "from", from, "moved", res.Moved, "kept", res.Kept, "notMoved", res.NotMoved, "lastStart", res.LastStart)
	if err := r.report(ctx); err != nil {
		return "", err
	}
	if res.NotMoved == 0 {
		return "", nil
	}
	return fmt.Sprintf("wave %d held: %d updates of waves %v could not be moved to slots from %s (%d moved, %d already later; see the details); resume again with the same --move-to to move only what is left, or without it to run them where they are",
		held.Wave, res.NotMoved, waves, from.Format(timeLayout), res.Moved, res.Kept), nil
}

// abort cancels the updates of every wave not yet open.
func (r *rollout) abort(ctx workflow.Context) error {
	r.st.Aborted = true
	var waves []int
	for _, w := range r.st.Waves {
		open := false
		for _, rep := range r.st.Reports {
			open = open || rep.Wave == w.Wave && rep.State == WaveOpen
		}
		if !open && w.Wave > 0 {
			waves = append(waves, w.Wave)
		}
	}
	if err := r.setGate(ctx, waves, WaveAborted); err != nil {
		return err
	}
	r.upsertPhase(ctx)
	err := workflow.ExecuteActivity(r.batchOptions(ctx), ActivityCancelWaves, CancelWavesInput{
		Version: r.in.Version, Waves: waves, Reason: r.st.Paused,
	}).Get(ctx, nil)
	if err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

func (r *rollout) setGate(ctx workflow.Context, waves []int, state string) error {
	err := workflow.ExecuteActivity(r.shortOptions(ctx), ActivitySetWaveState, SetWaveStateInput{Version: r.in.Version, Waves: waves, State: state}).Get(ctx, nil)
	if err != nil {
		return err
	}
	for i := range r.st.Reports {
		for _, w := range waves {
			if r.st.Reports[i].Wave == w {
				r.st.Reports[i].State = state
			}
		}
	}
	return nil
}

// refuseMove says why a Resume cannot move the held wave to moveTo, or
// returns nil (also when no move is asked).
func (r *rollout) refuseMove(ctx workflow.Context, moveTo time.Time) error {
	if moveTo.IsZero() {
		return nil
	}
	if _, held := r.heldWave(); !held && !r.holding {
		return errors.New("no wave is held: a move takes a held wave's updates to later slots; resume without it")
	}
	if now, notice := workflow.Now(ctx), r.in.Schedule.MinNotice; !moveTo.After(now) || moveTo.Before(now.Add(notice)) {
		return fmt.Errorf("move to %s leaves the admins less notice than MIN_NOTICE (%s) from now (%s): move to %s or later",
			moveTo.UTC().Format(timeLayout), duration.FormatDays(notice), now.UTC().Format(timeLayout), now.Add(max(notice, time.Minute)).UTC().Format(timeLayout))
	}
	return nil
}

// heldWave is the wave whose gate is held, if one is.
func (r *rollout) heldWave() (WaveReport, bool) {
	for _, w := range r.st.Reports {
		if w.State == WaveHeld {
			return w, true
		}
	}
	return WaveReport{}, false
}
