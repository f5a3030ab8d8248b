package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// RolloutActivities are the Rollout workflow's side effects: the waves
// and their gates in Postgres, and the batches that book and start
// ServiceUpdates through the Temporal client.
type RolloutActivities struct {
	Store     *store.Store
	Client    client.Client
	TaskQueue string // where the ServiceUpdates run
	// StartRate (ROLLOUT_START_RATE) bounds the updates started per
	// second by this worker, over every batch it runs.
	StartRate *rate.Limiter
	// Concurrency is how many candidates of a batch are in flight at once.
	Concurrency int
	// Signer signs the Supersede a batch sends to an older update that
	// holds a candidate (the worker's ACTION_SIGNING_KEY); nil reports
	// such candidates held.
	Signer *actor.Signer
}

// Register registers every rollout activity under its contract name.
func (a *RolloutActivities) Register(r worker.ActivityRegistry) {
	r.RegisterActivityWithOptions(a.PlanWaves, activity.RegisterOptions{Name: workflows.ActivityPlanWaves})
	r.RegisterActivityWithOptions(a.StartBatch, activity.RegisterOptions{Name: workflows.ActivityStartBatch})
	r.RegisterActivityWithOptions(a.WaveReport, activity.RegisterOptions{Name: workflows.ActivityWaveReport})
	r.RegisterActivityWithOptions(a.SetWaveState, activity.RegisterOptions{Name: workflows.ActivitySetWaveState})
	r.RegisterActivityWithOptions(a.AlertOperators, activity.RegisterOptions{Name: workflows.ActivityAlertOperators})
	r.RegisterActivityWithOptions(a.CancelWaves, activity.RegisterOptions{Name: workflows.ActivityCancelWaves})
	r.RegisterActivityWithOptions(a.MoveWaves, activity.RegisterOptions{Name: workflows.ActivityMoveWaves})
}

// PlanWaves cuts the fleet into the rollout's waves.
func (a *RolloutActivities) PlanWaves(ctx context.Context, in workflows.PlanWavesInput) (workflows.PlanWavesResult, error) {
	waves, err := a.Store.PlanWaves(ctx, in.Version, in.Waves)
	return workflows.PlanWavesResult{Waves: waves}, activityError(err)
}

// StartBatch books and starts the updates of the next page of a wave's
// candidates that the rollout has not started yet, each recorded as a
// member of the wave once its workflow exists. A retried batch reads its
// page again from Postgres, without the members recorded meanwhile.
func (a *RolloutActivities) StartBatch(ctx context.Context, in workflows.StartBatchInput) (workflows.StartBatchResult, error) {
	res := workflows.StartBatchResult{Outcomes: map[string]int{}, Next: in.After}
	page, err := a.Store.RolloutPage(ctx, in.Version, in.After, in.Through, in.Limit)
	if err != nil {
		return res, activityError(err)
	}
	res.Exhausted = len(page) < in.Limit
	if len(page) > 0 {
		last := page[len(page)-1].Instance
		res.Next = workflows.RolloutKey{Production: last.Kind == fleet.KindProduction, InstanceID: last.ID}
	}
	starter := &launch.Starter{Store: a.Store, Client: a.Client, TaskQueue: a.TaskQueue, RequestedBy: in.RequestedBy, Signer: a.Signer, Plan: launch.Plan{
		Version: in.Version, DryRun: in.DryRun, ReminderOffsets: in.Schedule.ReminderOffsets, WindowLength: in.Schedule.WindowLength,
		SecondaryMinGap: in.Schedule.SecondaryMinGap, MinNotice: in.Schedule.MinNotice,
		RescheduleMinNotice: in.Schedule.RescheduleMinNotice, SlotsFrom: in.SlotsFrom, FirstTasksAt: in.FirstTasksAt,
	}}
	var mu sync.Mutex
	var members []string // started, recorded together once the batch ends
	var g errgroup.Group
	g.SetLimit(max(a.Concurrency, 1))
	for i, cand := range page {
		if err := a.StartRate.Wait(ctx); err != nil {
			// Cancelled (the retry reads the page again), or the rate
			// leaves no room for more before the activity's deadline:
			// the next batch takes up from the last candidate tried.
			res.Exhausted = false
			res.Next = in.After
			if i > 0 {
				last := page[i-1].Instance
				res.Next = workflows.RolloutKey{Production: last.Kind == fleet.KindProduction, InstanceID: last.ID}
			}
			break
		}
		g.Go(func() error {
			r := starter.Start(ctx, cand)
			mu.Lock()
			defer mu.Unlock()
			if !in.DryRun && (r.Outcome == launch.Started || r.Outcome == launch.AlreadyRunning) {
				members = append(members, cand.Instance.ID)
			}
			res.Outcomes[r.Outcome.String()]++
			res.Processed++
			if r.PrimaryStart.After(res.LastStart) {
				res.LastStart = r.PrimaryStart
			}
			if r.Detail != "" && len(res.Details) < 20 {
				res.Details = append(res.Details, r.Line())
			}
			activity.RecordHeartbeat(ctx, res.Processed)
			return nil
		})
	}
	_ = g.Wait() // every candidate's outcome is in res
	// Recorded even when the batch was cancelled: these updates exist.
	// Should this fail, the retry meets them again and counts them as
	// already running.
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordMembersTimeout)
	defer cancel()
	if err := a.Store.AddRolloutMembers(recordCtx, in.Version, in.Wave, members); err != nil {
		return res, activityError(err)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// recordMembersTimeout bounds recording a batch's started updates.
const recordMembersTimeout = 30 * time.Second

// WaveReport counts each wave's started updates by status.
func (a *RolloutActivities) WaveReport(ctx context.Context, in workflows.WaveReportInput) (workflows.WaveReportResult, error) {
	waves, err := a.Store.WaveReport(ctx, in.Version)
	return workflows.WaveReportResult{Waves: waves}, activityError(err)
}

// SetWaveState sets the gate of waves.
func (a *RolloutActivities) SetWaveState(ctx context.Context, in workflows.SetWaveStateInput) error {
	return activityError(a.Store.SetWaveState(ctx, in.Version, in.Waves, in.State))
}

// operatorsAudience addresses an in-product alert to the provider's
// operators rather than to an instance's admins.
const operatorsAudience = "operators"

// alertPaused is the kind of the operators' alert that a rollout paused.
const alertPaused = "rollout-paused"

// AlertOperators writes the in-product alert that a rollout paused at a
// wave; writing it again changes nothing.
func (a *RolloutActivities) AlertOperators(ctx context.Context, in workflows.AlertOperatorsInput) error {
	activity.GetLogger(ctx).Warn("Rollout paused", "version", in.Version, "wave", in.Wave, "message", in.Message)
	kind := fmt.Sprintf("%s-wave-%d", alertPaused, in.Wave)
	if in.Move > 0 {
		kind += fmt.Sprintf("-move-%d", in.Move)
	}
	return activityError(a.Store.AddAlert(ctx, store.Alert{
		WorkflowID: workflows.RolloutID(in.Version), Kind: kind, SlotStart: in.At,
		Audience: operatorsAudience, Message: in.Message, CreatedAt: time.Now(),
	}))
}

// CancelWaves cancels the updates of the given waves: each closes as
// Cancelled, gives its slots back and tells its admins. An update closed
// already is skipped.
func (a *RolloutActivities) CancelWaves(ctx context.Context, in workflows.CancelWavesInput) (workflows.CancelWavesResult, error) {
	var res workflows.CancelWavesResult
	ids, err := a.Store.WaveMembers(ctx, in.Version, in.Waves)
	if err != nil {
		return res, activityError(err)
	}
	for _, id := range ids {
		err := a.Client.CancelWorkflow(ctx, id, "")
		switch {
		case err == nil:
			res.Cancelled++
		case !launch.IsNotFound(err): // not found: closed already
			return res, fmt.Errorf("cancel %s: %w", id, err)
		}
		activity.RecordHeartbeat(ctx, res.Cancelled)
	}
	return res, nil
}

// MoveWaves sends each waiting update of the given waves a signed Move to
// the earliest free slots from in.From, wave after wave: a wave's from
// the last primary of the wave before, so the waves keep their order.
// Updates already at or after that time stay; a retry finds the moved
// ones there and moves only the rest.
func (a *RolloutActivities) MoveWaves(ctx context.Context, in workflows.MoveWavesInput) (workflows.MoveWavesResult, error) {
	var res workflows.MoveWavesResult
	from := in.From
	for _, wave := range in.Waves {
		members, err := a.Store.WaitingMembers(ctx, in.Version, wave)
		if err != nil {
			return res, activityError(err)
		}
		last := from
		var mu sync.Mutex
		var g errgroup.Group
		g.SetLimit(max(a.Concurrency, 1))
		for i, m := range members {
			if !m.PrimaryStart.Before(from) {
				res.Kept++
				last = latest(last, m.PrimaryStart)
				continue
			}
			if err := a.StartRate.Wait(ctx); err != nil {
				// Cancelled, or the wait would outlast the activity: the
				// rest stay where they are, and say so.
				mu.Lock()
				untried := 0
				for _, rest := range members[i:] {
					if rest.PrimaryStart.Before(from) {
						untried++
					}
				}
				res.NotMoved += untried
				res.Details = append(res.Details, fmt.Sprintf("%d updates of wave %d not tried: %v", untried, wave, err))
				mu.Unlock()
				break
			}
			g.Go(func() error {
				view, err := launch.Move(ctx, a.Client, a.Signer, m.WorkflowID, workflows.MoveInput{From: from, RequestedBy: in.RequestedBy, Reason: in.Reason})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.NotMoved++
					if len(res.Details) < 20 {
						res.Details = append(res.Details, fmt.Sprintf("%s: not moved: %v", m.WorkflowID, err))
					}
				} else {
					res.Moved++
					last = latest(last, view.Primary.Start)
				}
				activity.RecordHeartbeat(ctx, res.Moved+res.NotMoved)
				return nil
			})
		}
		_ = g.Wait() // every update's outcome is in res
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.LastStart = latest(res.LastStart, last)
		from = last.Add(time.Second)
	}
	activity.GetLogger(ctx).Info("Waves moved", "version", in.Version, "waves", in.Waves, "from", in.From,
		"moved", res.Moved, "kept", res.Kept, "notMoved", res.NotMoved, "lastStart", res.LastStart)
	return res, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
