// Package launch books the slots of one rollout candidate and starts its
// ServiceUpdate workflow, idempotently: the Rollout workflow's activities
// do it in batches, and the demo does it for its own few instances.
package launch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// Plan is what every start of one rollout shares.
type Plan struct {
	Version string
	DryRun  bool
	// The schedule of every update started, from the configuration
	// (REMINDER_OFFSETS, UPDATE_WINDOW, SECONDARY_MIN_GAP, MIN_NOTICE,
	// RESCHEDULE_MIN_NOTICE) or the demo.
	ReminderOffsets     []time.Duration
	WindowLength        time.Duration
	SecondaryMinGap     time.Duration
	MinNotice           time.Duration // least time from now to a booked primary
	RescheduleMinNotice time.Duration // carried in each update's input
	// SlotsFrom is the earliest slot start booked; zero means now. A
	// wave's slots start after the wave before it; the demo's after an
	// earlier, interrupted demo run.
	SlotsFrom time.Time
	// FirstTasksAt, when set, defers each update's first workflow task
	// until then (a start delay; firstTaskDelay), so a rollout's starts
	// do not wait behind first tasks that only arm the slot's timer.
	// Zero runs the first task at once.
	FirstTasksAt time.Time
}

// Outcome is what happened to one candidate.
type Outcome int

const (
	Started Outcome = iota
	AlreadyRunning
	NotEligible
	NoCapacity
	Failed
	// Held: another open update (of another version) holds the instance;
	// nothing was booked.
	Held
	Planned // dry run: would be booked and started
	// NotAttempted: interrupted before this candidate; a re-run takes it up.
	NotAttempted
	OutcomeCount
)

var outcomeNames = [OutcomeCount]string{
	Started:        "started",
	AlreadyRunning: "already running",
	NotEligible:    "not eligible",
	NoCapacity:     "no capacity",
	Failed:         "failed",
	Held:           "held",
	Planned:        "would start",
	NotAttempted:   "not attempted",
}

func (o Outcome) String() string { return outcomeNames[o] }

// Result is one candidate's outcome and why.
type Result struct {
	InstanceID string
	Outcome    Outcome
	Detail     string
	// HeldBy is the open update that holds the instance (Held): its
	// workflow ID, target, whether it is mandatory, its status.
	HeldBy store.Holder
	// Superseded is the older update the rollout superseded to start
	// this one (Started), if any.
	Superseded store.Holder
	// PrimaryStart is the primary slot booked (Started).
	PrimaryStart time.Time
}

// Line is the result as a rollout keeps it among its details:
// "<instance> <outcome>: <detail>".
func (r Result) Line() string { return fmt.Sprintf("%s %s: %s", r.InstanceID, r.Outcome, r.Detail) }

// ParseLine reads a Line back; ok is false for a line of another shape.
func ParseLine(line string) (r Result, ok bool) {
	id, rest, found := strings.Cut(line, " ")
	if !found {
		return r, false
	}
	for o := range OutcomeCount {
		if detail, found := strings.CutPrefix(rest, o.String()+": "); found {
			return Result{InstanceID: id, Outcome: o, Detail: detail}, true
		}
	}
	return r, false
}

// Starter starts the update of one candidate at a time; it is safe for
// concurrent use.
type Starter struct {
	Store     *store.Store
	Client    client.Client
	TaskQueue string
	Plan      Plan
	// RequestedBy names the rollout in the audit row of an update it
	// supersedes.
	RequestedBy string
	// Signer signs the Supersede sent to an older update that holds a
	// candidate (ACTION_SIGNING_KEY); without one, such a candidate is
	// reported held and nothing is superseded.
	Signer *actor.Signer
}

// Start books and starts the update of one candidate; its detail names
// the older update superseded on the way, if any.
func (s *Starter) Start(ctx context.Context, cand store.RolloutCandidate) Result {
	result := s.bookAndStart(ctx, cand)
	if result.Superseded.WorkflowID != "" {
		result.Detail = strings.TrimPrefix(result.Detail+"; superseded "+result.Superseded.String(), "; ")
	}
	return result
}

func (s *Starter) bookAndStart(ctx context.Context, cand store.RolloutCandidate) Result {
	result := Result{InstanceID: cand.Instance.ID}
	if ctx.Err() != nil {
		result.Outcome = NotAttempted // waited for a turn while interrupted
		return result
	}
	if cand.Eligibility == workflows.EligibilityNone {
		result.Outcome, result.Detail = NotEligible, "runs "+cand.CurrentVersion
		return result
	}
	id := workflows.WorkflowID(cand.Instance.ID, s.Plan.Version)
	// An update that exists, running or closed, is never booked again: a
	// closed one has released its slots and must not take new ones.
	// Postgres says which closed, so a rollout asks Temporal nothing per
	// instance; an open one is booked again (its own slots, reused) and
	// its start refused, which alreadyStarted settles.
	if cand.Closed {
		result.Outcome = AlreadyRunning
		return result
	}
	if s.Plan.DryRun {
		return s.plan(ctx, cand, id)
	}
	input, superseded, err := s.book(ctx, cand)
	result.Superseded = superseded
	var heldErr *store.HeldError
	var refused *notSupersededError
	switch {
	case errors.Is(err, store.ErrNoCapacity):
		result.Outcome, result.Detail = NoCapacity, err.Error()
		return result
	case errors.Is(err, store.ErrNotEligible):
		result.Outcome, result.Detail = NotEligible, err.Error()
		return result
	case errors.As(err, &refused):
		result = HeldResult(result, refused.holder)
		result.Detail += "; not superseded: " + refused.reason.Error()
		return result
	case errors.As(err, &heldErr):
		return HeldResult(result, heldErr.Holder)
	case err != nil && ctx.Err() != nil:
		// Interrupted while booking: the transaction may have committed, and
		// no workflow was asked to start, so any bookings are surely unowned.
		result.Outcome = NotAttempted
		if _, abandonErr := s.Store.AbandonUpdate(context.WithoutCancel(ctx), cand.Instance.ID, s.Plan.Version); abandonErr != nil {
			result.Outcome, result.Detail = Failed, "interrupted while booking slots, and releasing them failed: "+abandonErr.Error()
		}
		return result
	case err != nil:
		result.Outcome, result.Detail = Failed, "book slots: "+err.Error()
		return result
	}
	input.ReminderOffsets = s.Plan.ReminderOffsets
	if input.WindowLength == 0 {
		input.WindowLength = s.Plan.WindowLength
	}
	input.SecondaryMinGap = s.Plan.SecondaryMinGap
	input.RescheduleMinNotice = s.Plan.RescheduleMinNotice
	// Defaults are resolved here, once: the workflow carries them for life.
	input = input.WithDefaults()
	result.PrimaryStart = input.PrimaryStart
	options := StartOptions(id, s.TaskQueue, input)
	if delay := firstTaskDelay(s.Plan.FirstTasksAt, input.PrimaryStart, time.Now()); delay > 0 {
		// Deferred, the first task cannot run eagerly in this worker.
		options.StartDelay, options.EnableEagerStart = delay, false
	}
	run, err := s.Client.ExecuteWorkflow(ctx, options, workflows.WorkflowType, input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		return s.alreadyStarted(ctx, cand, id, result)
	case err != nil:
		failed := s.afterFailedStart(ctx, cand, id, err)
		failed.Superseded, failed.PrimaryStart = result.Superseded, result.PrimaryStart
		return failed
	}
	result.Outcome = Started
	firstTask := "when its first task runs"
	if options.StartDelay > 0 {
		firstTask += ", at " + time.Now().Add(options.StartDelay).UTC().Format(time.RFC3339)
	}
	commit, err := workflows.AnnouncementCommit(input, id, run.GetRunID(), time.Now())
	if err != nil {
		result.Detail = fmt.Sprintf("started, but its workflow refuses its input (%v): it gives its slots back and fails %s", err, firstTask)
		return result
	}
	if err := s.announce(ctx, commit); err != nil {
		result.Detail = fmt.Sprintf("started, but its announcement is not queued yet (%v): the update queues it itself %s", err, firstTask)
	}
	return result
}

// announce queues an update's announcement, its first transition, as
// the workflow's first task would, so its admins are told as the rollout
// goes, whenever that task runs. The commit carries the run's key, which
// the workflow's own commit of it uses too, so that one writes nothing
// after this; should this fail, it is the one that writes it. An
// interrupted rollout still announces what it started.
func (s *Starter) announce(ctx context.Context, commit workflows.CommitTransitionInput) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startCheckTimeout)
	defer cancel()
	_, err := s.Store.CommitTransition(ctx, commit.IdempotencyKey, commit)
	return err
}

// firstTaskLead is how long before its primary start a deferred first
// task runs at the latest, so the workflow is awake well before its slot.
const firstTaskLead = time.Hour

// firstTaskDelay is the start delay of an update whose primary starts at
// primaryStart, started at now, when first tasks are deferred until
// firstTasksAt (zero: not deferred): never past firstTaskLead before the
// primary start, and zero when that is already behind.
func firstTaskDelay(firstTasksAt, primaryStart, now time.Time) time.Duration {
	if firstTasksAt.IsZero() {
		return 0
	}
	until := firstTasksAt
	if latest := primaryStart.Add(-firstTaskLead); latest.Before(until) {
		until = latest
	}
	return max(until.Sub(now), 0)
}

// plan is a dry run's answer for a candidate with no update yet.
func (s *Starter) plan(ctx context.Context, cand store.RolloutCandidate, id string) Result {
	result := Result{InstanceID: cand.Instance.ID}
	h, found, err := s.Store.OpenUpdate(ctx, cand.Instance.ID)
	if err != nil {
		result.Outcome, result.Detail = Failed, err.Error()
		return result
	}
	heldByOther := found && h.WorkflowID != id
	if heldByOther && !supersedable(h) {
		return HeldResult(result, h)
	}
	result.Outcome = Planned
	result.Detail = fmt.Sprintf("%s %s in %s, %s → %s, %s", cand.Instance.Kind, cand.Instance.Name, cand.Instance.Region,
		cand.CurrentVersion, s.Plan.Version, cand.Eligibility)
	if heldByOther {
		result.Detail += "; supersedes " + h.String() + " if it accepts"
	}
	return result
}

// alreadyStarted settles a start that Temporal refused because the
// update exists though Postgres holds it open: running, it keeps the
// slots, which are its own; closed without recording it (terminated),
// it must not hold them.
func (s *Starter) alreadyStarted(ctx context.Context, cand store.RolloutCandidate, id string, result Result) Result {
	result.Outcome = AlreadyRunning
	checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startCheckTimeout)
	defer cancel()
	d, err := s.Client.DescribeWorkflow(checkCtx, id, "")
	switch {
	case err != nil:
		result.Detail = fmt.Sprintf("exists, but its state is unknown (look-up: %v), so the slots just booked are kept: run rollout again to settle it", err)
	case d.Status != enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
		if _, err := s.Store.AbandonUpdate(checkCtx, cand.Instance.ID, s.Plan.Version); err != nil {
			result.Outcome, result.Detail = Failed, "closed before it recorded anything, and releasing the slots just booked failed: "+err.Error()
		}
	}
	return result
}

// startCheckTimeout bounds the look-up after a failed start; it runs on
// a fresh context, so an interrupted rollout still finds out.
const startCheckTimeout = 10 * time.Second

// afterFailedStart settles a start that returned startErr. A cancelled,
// timed-out or unanswered request may still have started the workflow,
// which then owns the slots, so they are released only when the server
// says the workflow does not exist. Slots kept in doubt are safe: a
// re-run's booking reuses them for the same update.
func (s *Starter) afterFailedStart(ctx context.Context, cand store.RolloutCandidate, id string, startErr error) Result {
	result := Result{InstanceID: cand.Instance.ID}
	checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startCheckTimeout)
	defer cancel()
	_, err := s.Client.DescribeWorkflow(checkCtx, id, "")
	switch {
	case err == nil:
		// The start went through; only its answer was lost.
		result.Outcome = Started
		return result
	case !IsNotFound(err):
		result.Outcome = Failed
		result.Detail = fmt.Sprintf("start %s: %v; whether it started is unknown (look-up: %v), so its slots are kept: run rollout again to settle it",
			id, startErr, err)
		return result
	}
	result.Outcome, result.Detail = Failed, "start "+id+": "+startErr.Error()
	if ctx.Err() != nil {
		result.Outcome, result.Detail = NotAttempted, ""
	}
	// No workflow holds the reservations and the instance: give them back.
	if _, abandonErr := s.Store.AbandonUpdate(checkCtx, cand.Instance.ID, s.Plan.Version); abandonErr != nil {
		result.Outcome = Failed
		result.Detail = "start " + id + ": " + startErr.Error() + "; releasing its slots failed too: " + abandonErr.Error()
	}
	return result
}

// HeldResult is the outcome of a candidate whose instance another open
// update holds, which the rollout could not or must not supersede: it
// says which update stands in the way.
func HeldResult(result Result, h store.Holder) Result {
	result.Outcome, result.HeldBy = Held, h
	result.Detail = "held by open update " + h.String()
	return result
}

// StartOptions starts an update once per (instance, version), ever: a
// second rollout is refused by Temporal rather than starting a duplicate.
func StartOptions(id, taskQueue string, in workflows.Input) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                taskQueue,
		WorkflowIDReusePolicy:                    enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		// A first task that is not deferred (the demo's, a slot within
		// the hour) runs right in a starting worker instead of queueing
		// behind every other start; elsewhere it is dispatched as usual.
		EnableEagerStart: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrUpdateStatus.ValueSet(string(workflows.StatusScheduled)),
			workflows.SearchAttrInstanceID.ValueSet(in.Instance.ID),
			workflows.SearchAttrTenantID.ValueSet(in.Instance.TenantID),
			workflows.SearchAttrTargetVersion.ValueSet(in.TargetVersion),
			workflows.SearchAttrScheduledStart.ValueSet(in.PrimaryStart),
			workflows.SearchAttrMandatory.ValueSet(in.Mandatory),
		),
		StaticSummary: workflows.Summary(in.Instance, in.CurrentVersion, in.TargetVersion, in.Mandatory),
	}
}

// IsNotFound reports whether err is the server saying the workflow does
// not exist.
func IsNotFound(err error) bool {
	var notFound *serviceerror.NotFound
	return errors.As(err, &notFound)
}

// bookParams is the booking of cand under the plan: slots after SlotsFrom
// (the wave before ends there) and at least MinNotice from now, whichever
// is later; floored says SlotsFrom decided.
func (s *Starter) bookParams(cand store.RolloutCandidate) (p store.BookRolloutSlotsParams, floored bool) {
	p = store.BookRolloutSlotsParams{
		InstanceID: cand.Instance.ID, Version: s.Plan.Version, SecondaryMinGap: s.Plan.SecondaryMinGap,
		Now: time.Now(), MinNotice: s.Plan.MinNotice,
	}
	if s.Plan.SlotsFrom.After(p.Now.Add(p.MinNotice)) {
		p.Now, p.MinNotice = s.Plan.SlotsFrom, 0
		return p, true
	}
	return p, false
}
