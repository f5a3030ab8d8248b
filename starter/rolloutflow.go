package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/starter/internal/progress"
	"github.com/svcupdate/svcupdate/workflows"
)

// `starter rollout` starts the release's Rollout workflow in the workers
// (or asks the running one to walk the fleet again), follows it until
// every candidate is started or planned, and prints the summary; it also
// pauses, resumes and aborts it.

// rolloutBatchSize is how many candidates one batch activity books and
// starts: big enough that a batch's events are few per update, small
// enough that a retried batch redoes little.
const rolloutBatchSize = 500

func newRolloutCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout --version V [--waves 5%,25%,100%] [--max-failure 5%] [--dry-run] | --version V --pause|--resume [--move-to T]|--abort [--reason R]",
		Short: "start (or attach to) the release's Rollout workflow, which books and starts an update for every eligible instance in waves; or steer it",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	var f rolloutFlags
	fs.StringVar(&f.version, "version", "", "the release to roll out (required)")
	fs.StringVar(&f.waves, "waves", defaultWaves, "production waves after the sandboxes, cumulative percentages of production, such as 5%,25%,100%")
	fs.StringVar(&f.maxFailure, "max-failure", defaultMaxFailure, "a wave runs only if the updates of the waves before it failed less than this (0%: only if none failed)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan; book nothing, start nothing")
	fs.BoolVar(&f.pause, "pause", false, "pause the running rollout: no more starts, no wave opened")
	fs.BoolVar(&f.resume, "resume", false, "resume the paused rollout: open the held wave")
	fs.StringVar(&f.moveTo, "move-to", "", `with --resume: first move the held wave's waiting updates, and the later waves', to the earliest free slots from this time (RFC 3339, "2027-03-06 02:00" in UTC, or a time from now such as 7d), wave after wave`)
	fs.BoolVar(&f.abort, "abort", false, "abort the rollout: cancel the updates of every wave not yet open")
	fs.StringVar(&f.reason, "reason", "", "why (with --pause or --abort), recorded in the rollout")
	format := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "version"); err != nil {
			return err
		}
		f.format = *format
		f.wavesSet, f.maxFailureSet = cmd.Flags().Changed("waves"), cmd.Flags().Changed("max-failure")
		return runRollout(cmd.Context(), e, f)
	}
	return cmd
}

// rolloutFlags are the rollout command's flags.
type rolloutFlags struct {
	version, waves, maxFailure, reason, moveTo string
	dryRun, pause, resume, abort               bool
	format                                     outputFormat
	// Given on the command line, not left at their defaults: a running
	// rollout keeps its own, so they must match it.
	wavesSet, maxFailureSet bool
}

func runRollout(ctx context.Context, e *env, f rolloutFlags) error {
	waves, err := workflows.ParseWaves(f.waves)
	if err != nil {
		return cli.Usagef("rollout: --%v", err)
	}
	budget, err := parsePercent(f.maxFailure)
	if err != nil {
		return cli.Usagef("rollout: --max-failure %q: %v (accepted: a percentage from 0%% to 100%%, such as 5%%)", f.maxFailure, err)
	}
	if btoi(f.pause)+btoi(f.resume)+btoi(f.abort) > 1 {
		return cli.Usagef("rollout: give one of --pause, --resume, --abort")
	}
	if err := refuseStartFlags(f); err != nil {
		return err
	}
	var moveTo time.Time
	if f.moveTo != "" {
		if !f.resume {
			return cli.Usagef("rollout: --move-to moves a held wave as it is resumed; give it with --resume")
		}
		if moveTo, err = parseMoveTo(f.moveTo, time.Now()); err != nil {
			return cli.Usagef("rollout: --move-to %q: %v", f.moveTo, err)
		}
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return err
	}
	by := e.clientOptions().Identity
	switch {
	case f.pause:
		return steerRollout(ctx, e, c, f.version, workflows.UpdatePause, workflows.PauseInput{By: by, Reason: f.reason})
	case f.resume && !moveTo.IsZero():
		return resumeMoving(ctx, e, c, f.version, workflows.ResumeInput{By: by, MoveTo: moveTo})
	case f.resume:
		return steerRollout(ctx, e, c, f.version, workflows.UpdateResume, workflows.ResumeInput{By: by})
	case f.abort:
		return steerRollout(ctx, e, c, f.version, workflows.UpdateAbort, workflows.AbortInput{By: by, Reason: f.reason})
	}
	in := workflows.RolloutInput{
		Version: f.version, Waves: waves, MaxFailure: budget, DryRun: f.dryRun, BatchSize: rolloutBatchSize,
		RequestedBy: "rollout of " + f.version + " by " + by,
		Schedule: workflows.RolloutSchedule{
			ReminderOffsets: e.cfg.ReminderOffsets, WindowLength: e.cfg.UpdateWindow, SecondaryMinGap: e.cfg.SecondaryMinGap,
			MinNotice: e.cfg.MinNotice, RescheduleMinNotice: e.cfg.RescheduleMinNotice,
		},
	}
	return startAndFollow(ctx, e, c, in, f)
}

// refuseStartFlags refuses the flags of a new rollout beside a command
// that steers the running one, which would ignore them: --abort --dry-run
// must not abort the real rollout.
func refuseStartFlags(f rolloutFlags) error {
	var command, accepted string
	switch {
	case f.pause:
		command, accepted = "--pause", ", --reason"
	case f.resume:
		command, accepted = "--resume", ", --move-to"
	case f.abort:
		command, accepted = "--abort", ", --reason"
	case f.reason != "":
		return cli.Usagef("rollout: --reason says why a rollout is paused or aborted; give it with --pause or --abort")
	default:
		return nil
	}
	var ignored []string
	for flag, given := range map[string]bool{"--dry-run": f.dryRun, "--waves": f.wavesSet, "--max-failure": f.maxFailureSet,
		"-o json": f.format == jsonOutput, "--reason": f.resume && f.reason != ""} {
		if given {
			ignored = append(ignored, flag)
		}
	}
	if len(ignored) == 0 {
		return nil
	}
	sort.Strings(ignored)
	return cli.Usagef("rollout: %s steers the running rollout and takes no %s (accepted with it: --version%s)",
		command, strings.Join(ignored, ", "), accepted)
}

// rolloutWorkflowID: a dry run has an ID of its own, so it never disturbs
// the real rollout.
func rolloutWorkflowID(in workflows.RolloutInput) string {
	if in.DryRun {
		return workflows.RolloutID(in.Version) + ":dry-run"
	}
	return workflows.RolloutID(in.Version)
}

// startAndFollow starts the rollout, or signals the running one to walk
// the fleet again, and follows it until that walk is done.
func startAndFollow(ctx context.Context, e *env, c client.Client, in workflows.RolloutInput, f rolloutFlags) error {
	id := rolloutWorkflowID(in)
	// A running rollout's walks so far: the one asked now comes after.
	before := -1
	if !closedRun(ctx, c, id, "") {
		if p, err := queryProgress(ctx, c, id, ""); err == nil {
			if err := refuseOtherPlan(p, in, f); err != nil {
				return err
			}
			before = p.Rescans
		}
	}
	run, err := c.SignalWithStartWorkflow(ctx, id, workflows.SignalRescan, nil, client.StartWorkflowOptions{
		ID: id, TaskQueue: e.cfg.TaskQueue,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrTargetVersion.ValueSet(in.Version),
			workflows.SearchAttrRolloutPhase.ValueSet(string(workflows.PhaseStarting))),
		StaticSummary: fmt.Sprintf("rollout of %s: waves %v%% of production after the sandboxes, failure budget %.1f%%", in.Version, in.Waves, in.MaxFailure*100),
	}, workflows.RolloutWorkflowType, in)
	if err != nil {
		return fmt.Errorf("start the rollout of %s: %w", in.Version, err)
	}
	if before >= 0 {
		fmt.Fprintf(e.stderr, "rollout of %s is running: asked it to walk the fleet again for instances not started yet\n", in.Version)
	}
	p, err := follow(ctx, e, c, id, before, run)
	if ctx.Err() != nil {
		fmt.Fprintf(e.stderr, "\ndetached: the rollout goes on in the workers; reattach with: %s\n", reattachCommand(in))
		return nil
	}
	if errors.Is(err, errRolloutPaused) {
		printRollout(e.stdout, p)
		return fmt.Errorf("the rollout of %s is paused and starts nothing until it is resumed: %s\n"+
			"  resume it:  starter rollout --version %s --resume [--move-to T]\n  or abort it: starter rollout --version %s --abort --reason R",
			in.Version, p.Paused, in.Version, in.Version)
	}
	if err != nil {
		return err
	}
	if f.format == jsonOutput {
		if err := writeJSON(e.stdout, rolloutSummary(p).document(p.Version, p.DryRun)); err != nil {
			return err
		}
	} else {
		printRollout(e.stdout, p)
	}
	fmt.Fprintf(e.stderr, "follow the waves: %s (attaches), the Web UI (workflow %s), or\n  bin/temporal workflow query --workflow-id %s --type %s\n",
		reattachCommand(in), id, id, workflows.QueryProgress)
	if n := p.Outcomes[launch.Failed.String()]; n > 0 {
		return fmt.Errorf("rollout of %s: %d instance(s) failed (listed above); run it again to retry them", in.Version, n)
	}
	return nil
}

// refuseOtherPlan refuses --waves or --max-failure given to attach to a
// running rollout that runs with others: it keeps its own, and the
// operator would believe the new ones in force.
func refuseOtherPlan(running workflows.RolloutProgress, in workflows.RolloutInput, f rolloutFlags) error {
	wavesDiffer := f.wavesSet && !slices.Equal(running.WavePercents, in.Waves)
	budgetDiffers := f.maxFailureSet && (running.WavePercents == nil || running.MaxFailure != in.MaxFailure)
	if !wavesDiffer && !budgetDiffers {
		return nil
	}
	runs := "waves and failure budget its workers do not report"
	if running.WavePercents != nil {
		runs = fmt.Sprintf("--waves %s --max-failure %s", formatWaves(running.WavePercents), formatPercent(running.MaxFailure))
	}
	return cli.Usagef("rollout: the rollout of %s is running with %s, which it keeps; attach without --waves and --max-failure (or with its own), or abort it first",
		in.Version, runs)
}

// follow polls the rollout's progress until the walk after `before` is
// done, reporting on stderr: a bar on a terminal, a line every few
// seconds otherwise.
func follow(ctx context.Context, e *env, c client.Client, id string, before int, run client.WorkflowRun) (workflows.RolloutProgress, error) {
	// Polled often so that a quick walk (a re-run) ends quickly.
	const pollInterval = 250 * time.Millisecond
	var bar *progress.Reporter
	defer func() { bar.Finish() }()
	shown := 0
	runID := run.GetRunID()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		p, err := queryProgress(ctx, c, id, runID)
		if err == nil {
			// The run started or signalled has answered: from now on the
			// latest run, which it continues as new into.
			runID = ""
		}
		var rejected *runRejectedError
		switch {
		case err != nil && ctx.Err() != nil:
			return p, ctx.Err()
		case errors.As(err, &rejected) && rejected.status == enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
			runID = "" // the run started went on as new before it answered
		case errors.As(err, &rejected) || err != nil && closedRun(ctx, c, id, runID):
			// Closed otherwise than by completing (its last progress would
			// read as a walk still going, forever), or closed and not
			// answering: its result says how it ended.
			if runErr := run.Get(ctx, &p); runErr != nil {
				return p, fmt.Errorf("rollout %s: %w", id, runErr)
			}
			return p, nil
		case err != nil:
			// Not answering yet (its first task is still queued): ask again.
		case p.Rescans > before && p.ScanDone || p.Phase.Closed() && (before < 0 || closedRun(ctx, c, id, runID)):
			// A run signalled while finishing still reports the walk
			// before ours until it takes the signal or closes.
			bar.Add(p.Processed - shown)
			return p, nil
		case p.Phase == workflows.PhasePaused:
			// A paused rollout takes up the walk asked only once resumed.
			bar.Add(p.Processed - shown)
			return p, errRolloutPaused
		default:
			if bar == nil && p.Candidates > 0 {
				bar = progress.New(e.stderr, id, p.Candidates)
			}
			bar.Add(p.Processed - shown)
			shown = p.Processed
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-tick.C:
		}
	}
}

// closedRun reports whether the run (empty: the latest) has closed, or
// never existed.
func closedRun(ctx context.Context, c client.Client, id, runID string) bool {
	d, err := c.DescribeWorkflow(ctx, id, runID)
	return launch.IsNotFound(err) || err == nil && d.Status != enums.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// errRolloutPaused ends following a rollout that waits for an operator.
var errRolloutPaused = errors.New("the rollout is paused")

// runRejectedError is a progress query refused because the run closed
// otherwise than by completing: failed, terminated, cancelled, timed out
// or continued as new.
type runRejectedError struct{ status enums.WorkflowExecutionStatus }

func (e *runRejectedError) Error() string { return "the rollout's run closed as " + e.status.String() }

// queryProgress asks a rollout's run (empty: the latest) for its progress.
// A run that completed answers; one that closed otherwise is refused with
// a *runRejectedError, as its progress would read as unfinished.
func queryProgress(ctx context.Context, c client.Client, id, runID string) (workflows.RolloutProgress, error) {
	var p workflows.RolloutProgress
	res, err := c.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: id, RunID: runID, QueryType: workflows.QueryProgress,
		QueryRejectCondition: enums.QUERY_REJECT_CONDITION_NOT_COMPLETED_CLEANLY,
	})
	switch {
	case err != nil:
		return p, err
	case res.QueryRejected != nil:
		return p, &runRejectedError{status: res.QueryRejected.GetStatus()}
	}
	return p, res.QueryResult.Get(&p)
}

// printRollout prints the details worth reading, the outcome counts in
// the summary's words, and the waves.
func printRollout(w io.Writer, p workflows.RolloutProgress) {
	summary := rolloutSummary(p)
	for _, d := range p.Details {
		if _, ok := launch.ParseLine(d); !ok {
			fmt.Fprintf(w, "  %s\n", d) // the summary lists those it reads
		}
	}
	summary.write(w, p.Version, p.DryRun)
	if skipped := p.Candidates - p.Processed; p.ScanDone && !p.DryRun && skipped > 0 {
		fmt.Fprintf(w, "%d started by an earlier walk (skipped: Postgres lists them as started)\n", skipped)
	}
	fmt.Fprintf(w, "phase %s", p.Phase)
	if p.Paused != "" {
		fmt.Fprintf(w, " (%s)", p.Paused)
	}
	fmt.Fprintln(w)
	for _, wave := range p.Waves {
		fmt.Fprintf(w, "  wave %d: %s, %d updates from %s, %s\n", wave.Wave, wave.State, wave.Members,
			wave.FirstStart.UTC().Format(time.RFC3339), formatStatuses(wave.ByStatus))
	}
}

// rolloutSummary is the walk's outcome counts as the summary counts them,
// with the details the rollout kept (the last ones: it keeps a bounded
// number).
func rolloutSummary(p workflows.RolloutProgress) *outcomeSummary {
	summary := &outcomeSummary{}
	for o := range launch.OutcomeCount {
		summary.counts[o] = p.Outcomes[o.String()]
	}
	for _, line := range p.Details {
		if r, ok := launch.ParseLine(line); ok {
			summary.details = append(summary.details, r)
		}
	}
	return summary
}

func formatCounts(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

func formatStatuses(counts map[workflows.Status]int) string {
	m := make(map[string]int, len(counts))
	for s, n := range counts {
		m[string(s)] = n
	}
	return formatCounts(m)
}

// parsePercent reads "5%" (or "5") as 0.05.
func parsePercent(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || f < 0 || f > 100 {
		return 0, errors.New("not a percentage")
	}
	return f / 100, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// reattachCommand attaches to the rollout in: with its waves and budget
// spelled out when they are not the defaults, which a rollout closed
// meanwhile would otherwise be started again with.
func reattachCommand(in workflows.RolloutInput) string {
	command := "starter rollout --version " + in.Version
	if waves := formatWaves(in.Waves); waves != defaultWaves {
		command += " --waves " + waves
	}
	if budget := formatPercent(in.MaxFailure); budget != defaultMaxFailure {
		command += " --max-failure " + budget
	}
	if in.DryRun {
		command += " --dry-run"
	}
	return command
}

// The rollout flags' defaults, as the flags read them.
const (
	defaultWaves      = "100%"
	defaultMaxFailure = "5%"
)

// formatWaves writes waves as --waves reads them: 5%,25%,100%.
func formatWaves(waves []int) string {
	parts := make([]string, len(waves))
	for i, w := range waves {
		parts[i] = strconv.Itoa(w) + "%"
	}
	return strings.Join(parts, ",")
}

// formatPercent writes a share as --max-failure reads it: 0.05 as 5%.
func formatPercent(share float64) string {
	return strconv.FormatFloat(math.Round(share*100*1e6)/1e6, 'f', -1, 64) + "%"
}
