package activities

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"golang.org/x/time/rate"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// MoveWaves counts every waiting update of a wave: one already at or after
// the time is kept; ones the rate limit never let through are counted as
// not moved, with the reason, rather than left out (which would open the
// wave with them where they were).
func TestMoveWavesCountsUpdatesNotTried(t *testing.T) {
	ctx := context.Background()
	s := storetest.Load(t, pgtest.NewPool(t), storetest.Fleet(4, 5))
	var members []string
	for _, id := range []string{"inst-001", "inst-002", "inst-003"} {
		if _, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: id, Version: "9.2.0", Now: storetest.SlotStarts[0].Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		members = append(members, id)
	}
	if _, err := s.PlanWaves(ctx, "9.2.0", []int{100}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRolloutMembers(ctx, "9.2.0", 1, members); err != nil {
		t.Fatal(err)
	}
	// A limiter of burst 0 refuses every wait at once.
	acts := &RolloutActivities{Store: s, StartRate: rate.NewLimiter(1, 0), Concurrency: 4}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts.Register(env)

	// Every update's primary is slot 0: moving from slot 0 keeps them all.
	v, err := env.ExecuteActivity(workflows.ActivityMoveWaves, workflows.MoveWavesInput{Version: "9.2.0", Waves: []int{1}, From: storetest.SlotStarts[0]})
	if err != nil {
		t.Fatal(err)
	}
	var kept workflows.MoveWavesResult
	if err := v.Get(&kept); err != nil {
		t.Fatal(err)
	}
	if kept.Kept != 3 || kept.Moved != 0 || kept.NotMoved != 0 || !kept.LastStart.Equal(storetest.SlotStarts[0]) {
		t.Errorf("moving from their own slot: %+v, want all 3 kept", kept)
	}

	v, err = env.ExecuteActivity(workflows.ActivityMoveWaves, workflows.MoveWavesInput{Version: "9.2.0", Waves: []int{1}, From: storetest.SlotStarts[2]})
	if err != nil {
		t.Fatal(err)
	}
	var untried workflows.MoveWavesResult
	if err := v.Get(&untried); err != nil {
		t.Fatal(err)
	}
	if untried.NotMoved != 3 || untried.Moved != 0 || len(untried.Details) != 1 || !strings.HasPrefix(untried.Details[0], "3 updates of wave 1 not tried: ") {
		t.Errorf("with the rate limit refusing: %+v, want 3 not moved and why", untried)
	}
}

// A batch whose start rate leaves no room for all its page before the
// activity's deadline ends early and says where it got to, so the next
// batch takes up the rest rather than passing over them.
func TestStartBatchEndsWhereTheRateStoppedIt(t *testing.T) {
	ctx := context.Background()
	s := storetest.Load(t, pgtest.NewPool(t), storetest.Fleet(4, 5))
	if _, err := s.PlanWaves(ctx, "9.2.0", []int{100}); err != nil {
		t.Fatal(err)
	}
	// Two starts at once, then one an hour: past the activity's deadline.
	acts := &RolloutActivities{Store: s, StartRate: rate.NewLimiter(rate.Every(time.Hour), 2), Concurrency: 4}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetTestTimeout(time.Minute)
	acts.Register(env)
	through := workflows.RolloutKey{Production: true, InstanceID: "~"}
	v, err := env.ExecuteActivity(workflows.ActivityStartBatch, workflows.StartBatchInput{
		Version: "9.2.0", Wave: 1, Through: through, Limit: 4, DryRun: true, RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.StartBatchResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	page, err := s.RolloutPage(ctx, "9.2.0", workflows.RolloutKey{}, through, 4)
	if err != nil {
		t.Fatal(err)
	}
	second := page[1].Instance
	want := workflows.RolloutKey{Production: second.Kind == "production", InstanceID: second.ID}
	if res.Processed != 2 || res.Exhausted || res.Next != want {
		t.Errorf("batch stopped by the rate: processed %d, exhausted %v, next %+v; want 2 processed, not exhausted, next %+v",
			res.Processed, res.Exhausted, res.Next, want)
	}
}
