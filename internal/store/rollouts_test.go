package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// A rollout's waves: the sandboxes, then production cut at cumulative
// percentages; pages leave out the members started already; the gate of
// an instance's wave decides whether its check says Held.
func TestRolloutWavesPagesAndGates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(20, 20)) // sandboxes inst-000, inst-010; 18 production

	waves, err := s.PlanWaves(ctx, "9.2.0", []int{25, 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []workflows.RolloutWave{
		{Wave: 0, Size: 2, Last: workflows.RolloutKey{InstanceID: "inst-010"}},
		{Wave: 1, Size: 5, Last: workflows.RolloutKey{Production: true, InstanceID: "inst-005"}}, // 25% of 18, rounded up
		{Wave: 2, Size: 13, Last: workflows.RolloutKey{Production: true, InstanceID: "inst-019"}},
	}
	if !reflect.DeepEqual(waves, want) {
		t.Fatalf("waves = %+v\nwant %+v", waves, want)
	}

	page := func(after workflows.RolloutKey, wave int) []string {
		t.Helper()
		list, err := s.RolloutPage(ctx, "9.2.0", after, waves[wave].Last, 3)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range list {
			ids = append(ids, c.Instance.ID)
		}
		return ids
	}
	if got := page(workflows.RolloutKey{}, 0); !reflect.DeepEqual(got, []string{"inst-000", "inst-010"}) {
		t.Errorf("wave 0 = %v, want both sandboxes", got)
	}
	if got := page(waves[0].Last, 1); !reflect.DeepEqual(got, []string{"inst-001", "inst-002", "inst-003"}) {
		t.Errorf("wave 1, first page = %v", got)
	}

	// A closed update is marked so that it is never booked again; an
	// open one is not (its start settles it).
	if _, err := s.RecordTransition(ctx, "closed/1", transitionTo("inst-002", "9.2.0", workflows.StatusSucceeded)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTransition(ctx, "open/1", transitionTo("inst-003", "9.2.0", workflows.StatusApproved)); err != nil {
		t.Fatal(err)
	}
	closedPage, err := s.RolloutPage(ctx, "9.2.0", waves[0].Last, waves[1].Last, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range closedPage {
		if c.Closed != (c.Instance.ID == "inst-002") {
			t.Errorf("%s: closed = %t, want it only for the succeeded inst-002", c.Instance.ID, c.Closed)
		}
	}

	if _, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "inst-000", Version: "9.2.0", Now: storetest.PeriodStart}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		ids  []string
		wave int
	}{{[]string{"inst-000"}, 0}, {[]string{"inst-001"}, 1}, {[]string{"inst-001"}, 1}, {nil, 1}} { // recording twice changes nothing
		if err := s.AddRolloutMembers(ctx, "9.2.0", m.wave, m.ids); err != nil {
			t.Fatal(err)
		}
	}
	if got := page(workflows.RolloutKey{}, 0); !reflect.DeepEqual(got, []string{"inst-010"}) {
		t.Errorf("wave 0 after inst-000 started = %v, want only inst-010", got)
	}

	report, err := s.WaveReport(ctx, "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(report) != 1 || report[0].Wave != 0 || report[0].State != workflows.WaveOpen || report[0].Members != 1 ||
		report[0].ByStatus[workflows.StatusScheduled] != 1 || report[0].FirstStart.IsZero() {
		t.Errorf("report = %+v, want wave 0 open with one Scheduled update", report)
	}

	held := func(id string) bool {
		t.Helper()
		res, err := s.CheckInstance(ctx, workflows.CheckInstanceInput{InstanceID: id, TargetVersion: "9.2.0"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Held
	}
	if held("inst-000") || held("inst-002") {
		t.Error("an instance of an open wave, or of none, is held")
	}
	if !held("inst-001") {
		t.Error("an instance of a pending wave is not held")
	}
	if err := s.SetWaveState(ctx, "9.2.0", []int{1}, workflows.WaveOpen); err != nil {
		t.Fatal(err)
	}
	if held("inst-001") {
		t.Error("an instance of an opened wave is still held")
	}
	if _, err := s.PlanWaves(ctx, "9.2.0", []int{25, 100}); err != nil {
		t.Fatal(err)
	}
	if held("inst-001") {
		t.Error("planning again reset an opened gate")
	}
	if err := s.SetWaveState(ctx, "9.2.0", []int{1}, "closed"); !errors.Is(err, store.ErrInvalidRequest) {
		t.Errorf("an unknown gate state: %v, want ErrInvalidRequest", err)
	}
	ids, err := s.WaveMembers(ctx, "9.2.0", []int{1, 2})
	if err != nil || !reflect.DeepEqual(ids, []string{workflows.WorkflowID("inst-001", "9.2.0")}) {
		t.Errorf("members of waves 1 and 2 = %v, %v", ids, err)
	}

	// An aborted rollout's gates stay closed: a new rollout of the release
	// is refused rather than starting updates that would never run.
	if err := s.SetWaveState(ctx, "9.2.0", []int{2}, workflows.WaveAborted); err != nil {
		t.Fatal(err)
	}
	_, err = s.PlanWaves(ctx, "9.2.0", []int{25, 100})
	if !errors.Is(err, store.ErrInvalidRequest) || !strings.Contains(err.Error(), "the rollout of 9.2.0 was aborted (waves [2] cancelled)") {
		t.Errorf("planning an aborted rollout again: %v, want ErrInvalidRequest naming the aborted waves", err)
	}
}
