package main

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

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

func (f *finishingRollout) QueryWorkflow(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	p := workflows.RolloutProgress{Phase: workflows.PhaseDone, Rescans: 1, ScanDone: true, Candidates: 6, Processed: 5,
		Outcomes: map[string]int{"started": 5}}
	if f.takesWalkAt > 0 && f.queries >= f.takesWalkAt {
		p.Rescans, p.Processed, p.Outcomes = 2, 0, map[string]int{"started": 0}
	}
	return progressValue{p}, nil
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
