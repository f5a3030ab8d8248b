package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// rolloutHistoryLimit is the history length at which a rollout continues
// as new (before the server suggests it): a rollout of a million
// instances stays a few thousand events per run.
const rolloutHistoryLimit = 2000

// gateLead is how long before a wave's first slot the rollout decides its
// gate, so its first updates find the gate decided at their instance check.
const gateLead = 5 * time.Minute

// reportInterval is how often a waiting rollout refreshes its counts by
// status from Postgres for the Progress query.
const reportInterval = time.Hour

// maxDetails bounds the failures and plans a rollout keeps to show.
const maxDetails = 50

// Rollout books and starts the updates of a release in batches, sandboxes
// first and then production wave by wave, each wave's slots after the
// last one's; then, at each production wave's first slot, it opens the
// wave if the waves before it failed less than MaxFailure, and otherwise
// holds it, alerts the operators and waits for Resume or Abort.
func Rollout(ctx workflow.Context, in RolloutInput) (RolloutProgress, error) {
	r, err := newRollout(ctx, in)
	if err != nil {
		return RolloutProgress{}, err
	}
	return r.run(ctx)
}

type rollout struct {
	in     RolloutInput
	st     RolloutState
	logger log.Logger
	rescan workflow.ReceiveChannel
	// holding: decide is holding a wave (its gate may not be written yet).
	holding bool
}

func newRollout(ctx workflow.Context, in RolloutInput) (*rollout, error) {
	if in.Version == "" || in.BatchSize < 1 || in.MaxFailure < 0 || in.MaxFailure > 1 || len(in.Waves) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("rollout input refused: version %q, batch size %d, max failure %v, waves %v (accepted: a version, batch size ≥ 1, max failure 0 to 1, at least one wave)",
				in.Version, in.BatchSize, in.MaxFailure, in.Waves), ErrTypeInvalidInput, nil)
	}
	r := &rollout{in: in, logger: log.With(workflow.GetLogger(ctx), "version", in.Version)}
	if in.State != nil {
		r.st = *in.State
		r.in.State = nil
	} else {
		r.st = RolloutState{Outcomes: map[string]int{}, StartedAt: workflow.Now(ctx), ScanStartedAt: workflow.Now(ctx), Rescans: 1}
	}
	r.rescan = workflow.GetSignalChannel(ctx, SignalRescan)
	if in.State == nil {
		// The starter signals with the start: the first walk is the one asked.
		for r.rescan.ReceiveAsync(nil) {
		}
	}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (RolloutProgress, error) { return r.progress(ctx), nil }); err != nil {
		return nil, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePause, func(ctx workflow.Context, in PauseInput) (RolloutProgress, error) {
		r.st.Paused = fmt.Sprintf("paused by %s: %s", in.By, in.Reason)
		return r.progress(ctx), nil
	}, workflow.UpdateHandlerOptions{Validator: func(in PauseInput) error { return r.refuseWhenClosed(in.By) }}); err != nil {
		return nil, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateResume, func(ctx workflow.Context, in ResumeInput) (RolloutProgress, error) {
		r.st.Paused = ""
		r.st.MoveTo, r.st.ResumedBy = in.MoveTo.UTC(), in.By
		return r.progress(ctx), nil
	}, workflow.UpdateHandlerOptions{Validator: func(in ResumeInput) error {
		if err := r.refuseWhenClosed(in.By); err != nil {
			return err
		}
		if r.st.Paused == "" {
			return errors.New("the rollout is not paused; nothing to resume")
		}
		return r.refuseMove(ctx, in.MoveTo)
	}}); err != nil {
		return nil, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateAbort, func(ctx workflow.Context, in AbortInput) (RolloutProgress, error) {
		r.st.Aborted = true
		r.st.Paused = fmt.Sprintf("aborted by %s: %s", in.By, in.Reason)
		return r.progress(ctx), nil
	}, workflow.UpdateHandlerOptions{Validator: func(in AbortInput) error { return r.refuseWhenClosed(in.By) }}); err != nil {
		return nil, err
	}
	return r, nil
}

// refuseWhenClosed is every command's validator: it names who asks, and
// the rollout still has waves to decide.
func (r *rollout) refuseWhenClosed(by string) error {
	switch {
	case by == "":
		return errors.New("say who asks (by)")
	case r.st.Aborted:
		return errors.New("the rollout was aborted")
	}
	return nil
}

func (r *rollout) run(ctx workflow.Context) (RolloutProgress, error) {
	r.upsertPhase(ctx)
	if r.st.Waves == nil {
		var plan PlanWavesResult
		if err := workflow.ExecuteActivity(r.shortOptions(ctx), ActivityPlanWaves, PlanWavesInput{Version: r.in.Version, Waves: r.in.Waves}).Get(ctx, &plan); err != nil {
			return RolloutProgress{}, err
		}
		r.st.Waves = plan.Waves
	}
	for {
		if err := r.walk(ctx); err != nil || r.st.Aborted {
			return r.progress(ctx), err
		}
		if r.in.DryRun {
			return r.progress(ctx), nil
		}
		done, err := r.gateWaves(ctx)
		if err != nil || done && (r.st.Aborted || r.rescan.Len() == 0) {
			if err == nil && !r.st.Aborted && patched(ctx, changeRolloutDonePhase) {
				r.upsertPhase(ctx) // Done, for the Web UI's search
			}
			return r.progress(ctx), err
		}
		// A re-run's Rescan came as the last wave opened: walk again.
		r.drainRescans(ctx)
	}
}

// walk books and starts every candidate left, a batch at a time, wave by
// wave; a rescan asked meanwhile walks again from the start.
func (r *rollout) walk(ctx workflow.Context) error {
	for r.st.Scanned < r.st.Rescans {
		if r.st.Paused != "" {
			r.upsertPhase(ctx)
			if err := workflow.Await(ctx, func() bool { return r.st.Paused == "" || r.st.Aborted }); err != nil {
				return err
			}
			r.upsertPhase(ctx)
		}
		if r.st.Aborted {
			return r.abort(ctx)
		}
		if r.st.WaveIndex >= len(r.st.Waves) {
			r.st.Scanned++
			if r.st.Scanned < r.st.Rescans {
				r.restartWalk(ctx)
			}
			continue
		}
		wave := r.st.Waves[r.st.WaveIndex]
		var res StartBatchResult
		err := workflow.ExecuteActivity(r.batchOptions(ctx), ActivityStartBatch, StartBatchInput{
			Version: r.in.Version, Wave: wave.Wave, After: r.st.Cursor, Through: wave.Last, Limit: r.in.BatchSize,
			SlotsFrom: r.st.SlotsFrom, Schedule: r.in.Schedule, DryRun: r.in.DryRun, RequestedBy: r.in.RequestedBy,
			FirstTasksAt: r.firstTasksAt(workflow.Now(ctx)),
		}).Get(ctx, &res)
		if err != nil {
			return err
		}
		r.take(res)
		if res.Exhausted {
			// The next wave's slots start after this wave's last primary.
			r.st.WaveIndex, r.st.Cursor = r.st.WaveIndex+1, wave.Last
			last := r.st.WaveLastStart
			if reported := r.reportedLastStart(wave.Wave); reported.After(last) && patched(ctx, changeRescanSlotsFloor) {
				// A rescan started few or none of the wave: its members
				// from earlier walks set the floor.
				last = reported
			}
			if last.After(r.st.SlotsFrom) {
				r.st.SlotsFrom = last.Add(time.Second)
			}
		}
		r.drainRescans(ctx)
		if err := r.continueAsNewIfLong(ctx); err != nil {
			return err
		}
	}
	r.upsertPhase(ctx)
	return nil
}

// reportedLastStart is the latest primary of wave's members at the last
// report from Postgres; zero before the first.
func (r *rollout) reportedLastStart(wave int) time.Time {
	for _, w := range r.st.Reports {
		if w.Wave == wave {
			return w.LastStart
		}
	}
	return time.Time{}
}

// take adds a batch's outcomes and keeps the wave's latest primary.
func (r *rollout) take(res StartBatchResult) {
	//workflowcheck:ignore sums, in any order the same
	for k, n := range res.Outcomes {
		r.st.Outcomes[k] += n
	}
	r.st.ScanProcessed += res.Processed
	r.st.Cursor = res.Next
	if res.LastStart.After(r.st.WaveLastStart) {
		r.st.WaveLastStart = res.LastStart
	}
	r.st.Details = append(r.st.Details, res.Details...)
	if over := len(r.st.Details) - maxDetails; over > 0 {
		r.st.Details = r.st.Details[over:]
	}
}

// drainRescans takes the Rescan signals received: during a walk one
// more walk follows it; otherwise a walk starts from the top.
func (r *rollout) drainRescans(ctx workflow.Context) {
	for r.rescan.ReceiveAsync(nil) {
		if r.st.Scanned < r.st.Rescans {
			r.st.Rescans = r.st.Scanned + 2
			continue
		}
		r.st.Rescans = r.st.Scanned + 1
		r.restartWalk(ctx)
	}
}

func (r *rollout) restartWalk(ctx workflow.Context) {
	r.st.WaveIndex, r.st.Cursor, r.st.ScanProcessed, r.st.SlotsFrom, r.st.WaveLastStart = 0, RolloutKey{}, 0, time.Time{}, time.Time{}
	r.st.Outcomes, r.st.Details = map[string]int{}, nil // each walk reports its own
	r.st.ScanStartedAt = workflow.Now(ctx)
}

func (r *rollout) report(ctx workflow.Context) error {
	var res WaveReportResult
	if err := workflow.ExecuteActivity(r.shortOptions(ctx), ActivityWaveReport, WaveReportInput{Version: r.in.Version}).Get(ctx, &res); err != nil {
		return err
	}
	// Empty, not nil, when no wave has members: nil means not reported yet.
	r.st.Reports = res.Waves
	if r.st.Reports == nil {
		r.st.Reports = []WaveReport{}
	}
	return nil
}

// continueAsNewIfLong carries the state into a fresh run once the
// history grows long, after every Update handler has answered.
func (r *rollout) continueAsNewIfLong(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	if !info.GetContinueAsNewSuggested() && info.GetCurrentHistoryLength() < rolloutHistoryLimit {
		return nil
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	r.drainRescans(ctx)
	next := r.in
	st := r.st
	st.Outcomes = maps.Clone(r.st.Outcomes)
	next.State = &st
	return workflow.NewContinueAsNewError(ctx, RolloutWorkflowType, next)
}

// phase is where the rollout stands, from its state.
func (r *rollout) phase() RolloutPhase {
	switch {
	case r.st.Aborted:
		return PhaseAborted
	case r.st.Paused != "":
		return PhasePaused
	case r.st.Scanned < r.st.Rescans:
		return PhaseStarting
	case r.in.DryRun:
		return PhaseDone // a dry run plans and ends
	}
	if _, pending := r.nextGate(); pending || r.st.Reports == nil {
		return PhaseWaiting
	}
	return PhaseDone
}

func (r *rollout) upsertPhase(ctx workflow.Context) {
	err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrRolloutPhase.ValueSet(string(r.phase())), SearchAttrTargetVersion.ValueSet(r.in.Version))
	if err != nil {
		r.logger.Warn("Search attributes not updated", "error", err)
	}
}

func (r *rollout) progress(ctx workflow.Context) RolloutProgress {
	p := RolloutProgress{
		Version: r.in.Version, Phase: r.phase(), DryRun: r.in.DryRun, Processed: r.st.ScanProcessed,
		ScanDone: r.st.Scanned >= r.st.Rescans, Rescans: r.st.Rescans, Outcomes: maps.Clone(r.st.Outcomes),
		ByStatus: map[Status]int{}, Waves: r.st.Reports, Paused: r.st.Paused, Details: r.st.Details, MovingTo: cmp.Or(r.st.Moving, r.st.MoveTo),
		WavePercents: r.in.Waves, MaxFailure: r.in.MaxFailure, Candidates: r.candidates(),
	}
	for _, w := range r.st.Reports {
		//workflowcheck:ignore sums, in any order the same
		for s, n := range w.ByStatus {
			p.ByStatus[s] += n
		}
	}
	if next, ok := r.nextGate(); ok {
		p.CurrentWave, p.ETA = next.Wave, next.FirstStart
	} else if r.st.WaveIndex < len(r.st.Waves) {
		p.CurrentWave = r.st.Waves[r.st.WaveIndex].Wave
	}
	if left, ok := r.walkLeft(workflow.Now(ctx)); ok && !p.ScanDone {
		p.ETA = workflow.Now(ctx).Add(left)
	}
	return p
}

// walkLeft is how long the walk in progress should still take at the
// rate it has gone so far; ok is false before its first batch.
func (r *rollout) walkLeft(now time.Time) (left time.Duration, ok bool) {
	if r.st.ScanProcessed == 0 {
		return 0, false
	}
	elapsed := now.Sub(r.st.ScanStartedAt)
	return time.Duration(float64(elapsed) * float64(max(r.candidates()-r.st.ScanProcessed, 0)) / float64(r.st.ScanProcessed)), true
}

func (r *rollout) candidates() int {
	n := 0
	for _, w := range r.st.Waves {
		n += w.Size
	}
	return n
}

// Bounds of the deferral of the first tasks of the updates a batch starts.
const (
	minFirstTaskDeferral = time.Minute
	maxFirstTaskDeferral = 24 * time.Hour
)

// firstTasksAt is when the updates the next batch starts run their first
// task: as long after their start as the whole walk should take (at its
// rate so far, a quarter more), at least minFirstTaskDeferral and at most
// maxFirstTaskDeferral. The cluster then spends the walk on starts, each
// update announced as it starts (launch.Starter.announce), and the first
// tasks, which only arm the slots' timers, follow the walk at the pace of
// its starts rather than all at once.
func (r *rollout) firstTasksAt(now time.Time) time.Time {
	deferral := minFirstTaskDeferral
	if left, ok := r.walkLeft(now); ok {
		walk := now.Sub(r.st.ScanStartedAt) + left
		deferral = max(deferral, walk+walk/4)
	}
	return now.Add(min(deferral, maxFirstTaskDeferral))
}

func (r *rollout) shortOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumInterval: time.Minute, NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeInvalidInput}},
	})
}

// batchOptions: a batch heartbeats after each candidate; a retry takes
// up where Postgres says the batch got to.
func (r *rollout) batchOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumInterval: time.Minute, NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeInvalidInput}},
	})
}
