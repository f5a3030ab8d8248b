package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/query/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/workflows"
)

// finishingRollout is a Rollout's run as the starter sees it when it asks
// for another walk while the run is finishing: its queries answer the
// walk before (Done) until the run takes the signal (answers) or closes.
type finishingRollout struct {
	client.Client
	mu      sync.Mutex
	queries int
	// takesWalkAt: the query from which the run answers the new walk; 0:
	// it never takes it and closes instead after closesAt queries.
	takesWalkAt, closesAt int
}

func (f *finishingRollout) QueryWorkflowWithOptions(context.Context, *client.QueryWorkflowWithOptionsRequest) (*client.QueryWorkflowWithOptionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	p := workflows.RolloutProgress{Phase: workflows.PhaseDone, Rescans: 1, ScanDone: true, Candidates: 6, Processed: 5,
		Outcomes: map[string]int{"started": 5}}
	if f.takesWalkAt > 0 && f.queries >= f.takesWalkAt {
		p.Rescans, p.Processed, p.Outcomes = 2, 0, map[string]int{"started": 0}
	}
	return &client.QueryWorkflowWithOptionsResponse{QueryResult: progressValue{p}}, nil
}

func (f *finishingRollout) DescribeWorkflow(context.Context, string, string) (*client.WorkflowExecutionDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	status := enums.WORKFLOW_EXECUTION_STATUS_RUNNING
	if f.closesAt > 0 && f.queries >= f.closesAt {
		status = enums.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}
	return &client.WorkflowExecutionDescription{WorkflowExecutionMetadata: client.WorkflowExecutionMetadata{Status: status}}, nil
}

type progressValue struct{ p workflows.RolloutProgress }

func (v progressValue) HasValue() bool { return true }
func (v progressValue) Get(ptr any) error {
	*ptr.(*workflows.RolloutProgress) = v.p
	return nil
}

type startedRun struct{ client.WorkflowRun }

func (startedRun) GetRunID() string { return "run-1" }

// follow waits for the walk it asked for: a run that answers Done for the
// walk before is still finishing, not done with ours.
func TestFollowWaitsForTheWalkItAskedFor(t *testing.T) {
	var stderr bytes.Buffer
	e := &env{stdout: &bytes.Buffer{}, stderr: &stderr}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	takes := &finishingRollout{takesWalkAt: 3}
	p, err := follow(ctx, e, takes, "rollout:9.2.0", 1, startedRun{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Rescans != 2 || p.Outcomes["started"] != 0 {
		t.Errorf("follow returned walk %d (started %d), want the new walk 2 (started 0)", p.Rescans, p.Outcomes["started"])
	}

	// A run that closes without taking the walk ends the wait too.
	closes := &finishingRollout{closesAt: 3}
	p, err = follow(ctx, e, closes, "rollout:9.2.0", 1, startedRun{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Rescans != 1 || closes.queries < 3 {
		t.Errorf("follow returned walk %d after %d queries, want walk 1 once the run closed", p.Rescans, closes.queries)
	}
}

// stuckRollout is a Rollout's run that answers one progress, or refuses
// the query because it closed with status; its Get returns runErr.
type stuckRollout struct {
	client.Client
	progress workflows.RolloutProgress
	status   enums.WorkflowExecutionStatus // non-zero: the query is refused
}

func (s stuckRollout) QueryWorkflowWithOptions(_ context.Context, req *client.QueryWorkflowWithOptionsRequest) (*client.QueryWorkflowWithOptionsResponse, error) {
	if s.status != enums.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED && req.QueryRejectCondition == enums.QUERY_REJECT_CONDITION_NOT_COMPLETED_CLEANLY {
		return &client.QueryWorkflowWithOptionsResponse{QueryRejected: &query.QueryRejected{Status: s.status}}, nil
	}
	return &client.QueryWorkflowWithOptionsResponse{QueryResult: progressValue{s.progress}}, nil
}

type failedRun struct {
	client.WorkflowRun
	err error
}

func (failedRun) GetRunID() string                 { return "run-1" }
func (r failedRun) Get(context.Context, any) error { return r.err }

// A run that failed (here: its release is not loaded) would answer its
// last progress, a walk that never ends; follow ends with the run's error.
func TestFollowEndsWithTheErrorOfAFailedRun(t *testing.T) {
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	failed := stuckRollout{
		progress: workflows.RolloutProgress{Phase: workflows.PhaseStarting, Rescans: 1},
		status:   enums.WORKFLOW_EXECUTION_STATUS_FAILED,
	}
	runErr := errors.New(`release "9.2.1" does not exist; load it with the fleet file first`)
	_, err := follow(ctx, e, failed, "rollout:9.2.1", -1, failedRun{err: runErr})
	if !errors.Is(err, runErr) {
		t.Fatalf("follow returned %v, want the run's error %q", err, runErr)
	}
}

// Attaching to a paused rollout stops following it (it takes up the walk
// only once resumed) and says why.
func TestFollowStopsAtAPausedRollout(t *testing.T) {
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	paused := stuckRollout{progress: workflows.RolloutProgress{Phase: workflows.PhasePaused, Rescans: 1, ScanDone: true,
		Paused: "wave 2 held: 9 of 120 updates of the waves before it failed (budget 5.0%)"}}
	p, err := follow(ctx, e, paused, "rollout:9.2.0", 1, startedRun{})
	if !errors.Is(err, errRolloutPaused) || p.Paused == "" {
		t.Fatalf("follow returned %v with pause %q, want errRolloutPaused and the pause's reason", err, p.Paused)
	}
}

// The flags of a new rollout are refused beside a steering command, which
// would ignore them: --abort --dry-run must not abort the real rollout.
func TestSteeringRefusesStartFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags rolloutFlags
		want  string
	}{
		{"abort dry run", rolloutFlags{abort: true, dryRun: true}, "--abort steers the running rollout and takes no --dry-run"},
		{"pause with waves", rolloutFlags{pause: true, wavesSet: true, maxFailureSet: true}, "takes no --max-failure, --waves"},
		{"resume with a reason", rolloutFlags{resume: true, reason: "fixed"}, "--resume steers the running rollout and takes no --reason (accepted with it: --version, --move-to)"},
		{"abort as JSON", rolloutFlags{abort: true, format: jsonOutput}, "takes no -o json"},
		{"a start with a reason", rolloutFlags{reason: "why not"}, "give it with --pause or --abort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.flags.version, tc.flags.waves, tc.flags.maxFailure = "9.2.0", defaultWaves, defaultMaxFailure
			// No Temporal client: a refusal asks nothing of the server.
			err := runRollout(context.Background(), &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}, tc.flags)
			if !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runRollout = %v, want a usage error saying %q", err, tc.want)
			}
		})
	}
	if err := refuseStartFlags(rolloutFlags{abort: true, reason: "bad build"}); err != nil {
		t.Errorf("--abort --reason refused: %v", err)
	}
}

// A running rollout keeps its waves and budget: attaching with others is
// refused, naming what it runs with; the same ones, or none, attach.
func TestAttachRefusesOtherWavesOrBudget(t *testing.T) {
	running := workflows.RolloutProgress{WavePercents: []int{5, 25, 100}, MaxFailure: 0.02}
	in := workflows.RolloutInput{Version: "9.2.0", Waves: []int{100}, MaxFailure: 0.05}
	if err := refuseOtherPlan(running, in, rolloutFlags{}); err != nil {
		t.Errorf("attaching without --waves or --max-failure refused: %v", err)
	}
	err := refuseOtherPlan(running, in, rolloutFlags{wavesSet: true})
	if !isUsage(err) || !strings.Contains(err.Error(), "running with --waves 5%,25%,100% --max-failure 2%") {
		t.Errorf("attaching with other waves: %v, want a usage error naming the running waves and budget", err)
	}
	same := workflows.RolloutInput{Version: "9.2.0", Waves: []int{5, 25, 100}, MaxFailure: 0.02}
	if err := refuseOtherPlan(running, same, rolloutFlags{wavesSet: true, maxFailureSet: true}); err != nil {
		t.Errorf("attaching with the running waves and budget refused: %v", err)
	}
	if err := refuseOtherPlan(workflows.RolloutProgress{}, same, rolloutFlags{maxFailureSet: true}); err == nil {
		t.Error("a budget given to a rollout whose workers do not report theirs was accepted")
	}
}

func TestReattachCommandSpellsOutTheRolloutsPlan(t *testing.T) {
	for _, tc := range []struct {
		in   workflows.RolloutInput
		want string
	}{
		{workflows.RolloutInput{Version: "9.2.0", Waves: []int{100}, MaxFailure: 0.05}, "starter rollout --version 9.2.0"},
		{workflows.RolloutInput{Version: "9.2.0", Waves: []int{5, 25, 100}, MaxFailure: 0.07, DryRun: true},
			"starter rollout --version 9.2.0 --waves 5%,25%,100% --max-failure 7% --dry-run"},
	} {
		if got := reattachCommand(tc.in); got != tc.want {
			t.Errorf("reattachCommand(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func isUsage(err error) bool {
	var usage *cli.UsageError
	return errors.As(err, &usage)
}
