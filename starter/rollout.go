package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/starter/internal/progress"
	"github.com/svcupdate/svcupdate/workflows"
)

func newRolloutCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout --version V [--concurrency N] [--dry-run]",
		Short: "book slots and start an update for every eligible instance",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	version := fs.String("version", "", "the release to roll out (required)")
	concurrency := fs.Int("concurrency", 16, "how many instances are booked and started at once")
	dryRun := fs.Bool("dry-run", false, "print the plan; book nothing, start nothing")
	format := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "version"); err != nil {
			return err
		}
		return runRollout(cmd.Context(), e, *version, *concurrency, *dryRun, *format)
	}
	return cmd
}

func runRollout(ctx context.Context, e *env, version string, concurrency int, dryRun bool, format outputFormat) error {
	if concurrency < 1 || concurrency > 1000 {
		return cli.Usagef("rollout: --concurrency %d is out of range (accepted: 1 to 1000)", concurrency)
	}
	summary, err := rollout(ctx, e, releasePlan{
		Version:             version,
		Concurrency:         concurrency,
		DryRun:              dryRun,
		ReminderOffsets:     e.cfg.ReminderOffsets,
		WindowLength:        e.cfg.UpdateWindow,
		SecondaryMinGap:     e.cfg.SecondaryMinGap,
		MinNotice:           e.cfg.MinNotice,
		RescheduleMinNotice: e.cfg.RescheduleMinNotice,
		Output:              format,
	})
	if err != nil {
		return err
	}
	if n := summary.count(outcomeFailed); n > 0 {
		return fmt.Errorf("rollout of %s: %d instance(s) failed (listed above); run it again to retry them", version, n)
	}
	return nil
}

// releasePlan is what one rollout does.
type releasePlan struct {
	Version     string
	Concurrency int
	DryRun      bool
	// The schedule of every update started, from the configuration
	// (REMINDER_OFFSETS, UPDATE_WINDOW, SECONDARY_MIN_GAP, MIN_NOTICE,
	// RESCHEDULE_MIN_NOTICE) or the demo.
	ReminderOffsets     []time.Duration
	WindowLength        time.Duration
	SecondaryMinGap     time.Duration
	MinNotice           time.Duration // least time from now to a booked primary
	RescheduleMinNotice time.Duration // carried in each update's input
	// Output is how the summary is printed (zero: text).
	Output outputFormat
	// Instances limits the rollout to these instance IDs (the demo's own);
	// nil means the whole fleet.
	Instances map[string]bool
	// SlotsFrom is the earliest slot start booked; zero means now. The demo
	// sets it to its own first slot so slots of an earlier, interrupted
	// demo run are not taken.
	SlotsFrom time.Time
}

// outcome is what happened to one candidate.
type outcome int

const (
	outcomeStarted outcome = iota
	outcomeAlreadyRunning
	outcomeNotEligible
	outcomeNoCapacity
	outcomeFailed
	// outcomeHeld: another open update (of another version) holds the
	// instance; nothing was booked.
	outcomeHeld
	outcomePlanned // dry run: would be booked and started
	// outcomeNotAttempted: the rollout was interrupted before this
	// candidate; a re-run takes it up.
	outcomeNotAttempted
	outcomeCount
)

var outcomeNames = [outcomeCount]string{
	outcomeStarted:        "started",
	outcomeAlreadyRunning: "already running",
	outcomeNotEligible:    "not eligible",
	outcomeNoCapacity:     "no capacity",
	outcomeFailed:         "failed",
	outcomeHeld:           "held",
	outcomePlanned:        "would start",
	outcomeNotAttempted:   "not attempted",
}

// candidateResult is one candidate's outcome and why.
type candidateResult struct {
	InstanceID string
	Outcome    outcome
	Detail     string
	// HeldBy is the open update that holds the instance (outcomeHeld):
	// its workflow ID, target, whether it is mandatory, its status.
	HeldBy store.Holder
	// Superseded is the older update the rollout superseded to start
	// this one (outcomeStarted), if any.
	Superseded store.Holder
}

// outcomeSummary counts outcomes and keeps the reasons worth reading.
type outcomeSummary struct {
	mu      sync.Mutex
	counts  [outcomeCount]int
	details []candidateResult // failures, held, no capacity, dry-run plans
}

func (s *outcomeSummary) add(r candidateResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[r.Outcome]++
	switch {
	case r.Outcome == outcomeFailed, r.Outcome == outcomeHeld, r.Outcome == outcomeNoCapacity, r.Outcome == outcomePlanned,
		r.Superseded.WorkflowID != "":
		s.details = append(s.details, r)
	}
}

func (s *outcomeSummary) count(o outcome) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[o]
}

// write prints one line per noteworthy candidate, then the counts.
func (s *outcomeSummary) write(w io.Writer, version string, dryRun bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.details {
		fmt.Fprintf(w, "  %-32s %-12s %s\n", d.InstanceID, outcomeNames[d.Outcome], d.Detail)
	}
	total := 0
	var parts []string
	for o := range outcomeCount {
		if (dryRun && o == outcomeStarted) || (!dryRun && o == outcomePlanned) || o == outcomeNotAttempted {
			continue // a dry run starts nothing; a real one plans nothing
		}
		total += s.counts[o]
		parts = append(parts, fmt.Sprintf("%s %d", outcomeNames[o], s.counts[o]))
	}
	verb := "rollout"
	if dryRun {
		verb = "dry run (nothing booked, nothing started)"
	}
	interrupted := ""
	if n := s.counts[outcomeNotAttempted]; n > 0 {
		total += n
		interrupted = fmt.Sprintf("; interrupted before %d (not attempted): run rollout again to continue", n)
	}
	fmt.Fprintf(w, "%s of %s, %d candidate(s): %s%s\n", verb, version, total, strings.Join(parts, ", "), interrupted)
}

// rollout books slots for and starts the update of every eligible
// candidate, Concurrency at a time, and prints the summary.
func rollout(ctx context.Context, e *env, plan releasePlan) (*outcomeSummary, error) {
	pool, err := e.postgres(ctx)
	if err != nil {
		return nil, err
	}
	st := store.New(pool)
	candidates, err := st.RolloutCandidates(ctx, plan.Version)
	if err != nil {
		return nil, fmt.Errorf("find the candidates for %s: %w", plan.Version, err)
	}
	if plan.Instances != nil {
		kept := candidates[:0]
		for _, c := range candidates {
			if plan.Instances[c.Instance.ID] {
				kept = append(kept, c)
			}
		}
		candidates = kept
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return nil, err
	}

	bar := progress.New(e.stderr, "rollout "+plan.Version, len(candidates))
	summary := &outcomeSummary{}
	starter := &updateStarter{store: st, client: c, taskQueue: e.cfg.TaskQueue, plan: plan,
		requestedBy: "rollout of " + plan.Version + " by " + e.clientOptions().Identity}
	// Sandboxes take the earliest slots: every sandbox is booked before the
	// first production instance.
	for _, wave := range kindWaves(candidates) {
		var g errgroup.Group
		g.SetLimit(plan.Concurrency)
		for _, candidate := range wave {
			if ctx.Err() != nil {
				// Interrupted (Ctrl-C): start nothing more, count the rest.
				summary.add(candidateResult{InstanceID: candidate.Instance.ID, Outcome: outcomeNotAttempted})
				continue
			}
			g.Go(func() error {
				summary.add(starter.start(ctx, candidate))
				bar.Add(1)
				return nil
			})
		}
		_ = g.Wait() // every goroutine returns nil; outcomes are in the summary
	}
	bar.Finish()
	if plan.Output == jsonOutput {
		if err := writeJSON(e.stdout, summary.document(plan.Version, plan.DryRun)); err != nil {
			return summary, err
		}
	} else {
		summary.write(e.stdout, plan.Version, plan.DryRun)
	}
	if err := ctx.Err(); err != nil {
		return summary, fmt.Errorf("rollout interrupted; run it again to continue: %w", err)
	}
	return summary, nil
}

// updateStarter starts the update of one candidate.
type updateStarter struct {
	store     *store.Store
	client    client.Client
	taskQueue string
	plan      releasePlan
	// requestedBy names the rollout in the audit row of an update it
	// supersedes.
	requestedBy string
}

// start books and starts the update of one candidate; its line names the
// older update superseded on the way, if any.
func (s *updateStarter) start(ctx context.Context, cand store.RolloutCandidate) candidateResult {
	result := s.bookAndStart(ctx, cand)
	if result.Superseded.WorkflowID != "" {
		result.Detail = strings.TrimPrefix(result.Detail+"; superseded "+result.Superseded.String(), "; ")
	}
	return result
}

func (s *updateStarter) bookAndStart(ctx context.Context, cand store.RolloutCandidate) candidateResult {
	result := candidateResult{InstanceID: cand.Instance.ID}
	if ctx.Err() != nil {
		result.Outcome = outcomeNotAttempted // waited for a turn while interrupted
		return result
	}
	if cand.Eligibility == workflows.EligibilityNone {
		result.Outcome, result.Detail = outcomeNotEligible, "runs "+cand.CurrentVersion
		return result
	}
	id := workflows.WorkflowID(cand.Instance.ID, s.plan.Version)
	// An update that exists, running or closed, is never booked again: a
	// closed one has released its slots and must not take new ones.
	if _, err := s.client.DescribeWorkflow(ctx, id, ""); err == nil {
		result.Outcome = outcomeAlreadyRunning
		return result
	} else if ctx.Err() != nil {
		result.Outcome = outcomeNotAttempted // nothing booked, nothing started
		return result
	} else if !isNotFound(err) {
		result.Outcome, result.Detail = outcomeFailed, "look up "+id+": "+err.Error()
		return result
	}
	if s.plan.DryRun {
		h, found, err := s.store.OpenUpdate(ctx, cand.Instance.ID)
		if err != nil {
			result.Outcome, result.Detail = outcomeFailed, err.Error()
			return result
		}
		heldByOther := found && h.WorkflowID != id
		if heldByOther && !supersedable(h) {
			return held(result, h)
		}
		result.Outcome = outcomePlanned
		result.Detail = fmt.Sprintf("%s %s in %s, %s → %s, %s", cand.Instance.Kind, cand.Instance.Name, cand.Instance.Region,
			cand.CurrentVersion, s.plan.Version, cand.Eligibility)
		if heldByOther {
			result.Detail += "; supersedes " + h.String() + " if it accepts"
		}
		return result
	}
	input, superseded, err := s.book(ctx, cand)
	result.Superseded = superseded
	var heldErr *store.HeldError
	var refused *notSupersededError
	switch {
	case errors.Is(err, store.ErrNoCapacity):
		result.Outcome, result.Detail = outcomeNoCapacity, err.Error()
		return result
	case errors.Is(err, store.ErrNotEligible):
		result.Outcome, result.Detail = outcomeNotEligible, err.Error()
		return result
	case errors.As(err, &refused):
		result = held(result, refused.holder)
		result.Detail += "; not superseded: " + refused.reason.Error()
		return result
	case errors.As(err, &heldErr):
		return held(result, heldErr.Holder)
	case err != nil && ctx.Err() != nil:
		// Interrupted while booking: the transaction may have committed, and
		// no workflow was asked to start, so any bookings are surely unowned.
		result.Outcome = outcomeNotAttempted
		if _, abandonErr := s.store.AbandonUpdate(context.WithoutCancel(ctx), cand.Instance.ID, s.plan.Version); abandonErr != nil {
			result.Outcome, result.Detail = outcomeFailed, "interrupted while booking slots, and releasing them failed: "+abandonErr.Error()
		}
		return result
	case err != nil:
		result.Outcome, result.Detail = outcomeFailed, "book slots: "+err.Error()
		return result
	}
	input.ReminderOffsets = s.plan.ReminderOffsets
	if input.WindowLength == 0 {
		input.WindowLength = s.plan.WindowLength
	}
	input.SecondaryMinGap = s.plan.SecondaryMinGap
	input.RescheduleMinNotice = s.plan.RescheduleMinNotice
	// Defaults are resolved here, once: the workflow carries them for life.
	input = input.WithDefaults()
	_, err = s.client.ExecuteWorkflow(ctx, startOptions(id, s.taskQueue, input), workflows.WorkflowType, input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		result.Outcome = outcomeAlreadyRunning // a concurrent rollout started it
	case err != nil:
		failed := s.afterFailedStart(ctx, cand, id, err)
		failed.Superseded = result.Superseded
		return failed
	default:
		result.Outcome = outcomeStarted
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
func (s *updateStarter) afterFailedStart(ctx context.Context, cand store.RolloutCandidate, id string, startErr error) candidateResult {
	result := candidateResult{InstanceID: cand.Instance.ID}
	checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startCheckTimeout)
	defer cancel()
	_, err := s.client.DescribeWorkflow(checkCtx, id, "")
	switch {
	case err == nil:
		// The start went through; only its answer was lost.
		result.Outcome = outcomeStarted
		return result
	case !isNotFound(err):
		result.Outcome = outcomeFailed
		result.Detail = fmt.Sprintf("start %s: %v; whether it started is unknown (look-up: %v), so its slots are kept: run rollout again to settle it",
			id, startErr, err)
		return result
	}
	result.Outcome, result.Detail = outcomeFailed, "start "+id+": "+startErr.Error()
	if ctx.Err() != nil {
		result.Outcome, result.Detail = outcomeNotAttempted, ""
	}
	// No workflow holds the reservations and the instance: give them back.
	if _, abandonErr := s.store.AbandonUpdate(checkCtx, cand.Instance.ID, s.plan.Version); abandonErr != nil {
		result.Outcome = outcomeFailed
		result.Detail = "start " + id + ": " + startErr.Error() + "; releasing its slots failed too: " + abandonErr.Error()
	}
	return result
}

// held is the outcome of a candidate whose instance another open update
// holds, which the rollout could not or must not supersede: it says which
// update stands in the way.
func held(result candidateResult, h store.Holder) candidateResult {
	result.Outcome, result.HeldBy = outcomeHeld, h
	result.Detail = "held by open update " + h.String()
	return result
}

// startOptions starts an update once per (instance, version), ever: a
// second rollout is refused by Temporal rather than starting a duplicate.
func startOptions(id, taskQueue string, in workflows.Input) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                taskQueue,
		WorkflowIDReusePolicy:                    enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
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

// kindWaves splits the candidates (sandboxes first, as RolloutCandidates
// orders them) into runs of one kind.
func kindWaves(candidates []store.RolloutCandidate) [][]store.RolloutCandidate {
	var waves [][]store.RolloutCandidate
	for i, c := range candidates {
		if i == 0 || c.Instance.Kind != candidates[i-1].Instance.Kind {
			waves = append(waves, nil)
		}
		waves[len(waves)-1] = append(waves[len(waves)-1], c)
	}
	return waves
}

func isNotFound(err error) bool {
	var notFound *serviceerror.NotFound
	return errors.As(err, &notFound)
}
