package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestDemoFleetParses renders the embedded demo fleet and parses it like
// any fleet file, and checks that its compressed schedule lets every
// scripted step happen: the slots start within minutes, the rescheduled
// pair keeps the secondary gap, and the period covers every window.
func TestDemoFleetParses(t *testing.T) {
	now := time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)
	run := newDemoRun("t1", now)
	fl, err := run.fleet()
	if err != nil {
		t.Fatalf("the demo fleet is refused: %v", err)
	}
	if len(fl.Instances) != len(demoCast) {
		t.Fatalf("%d instances, want %d", len(fl.Instances), len(demoCast))
	}
	for i, m := range demoCast {
		if got, want := fl.Instances[i].ID, run.instanceID(m.instance); got != want {
			t.Errorf("instance %d is %s, want %s", i, got, want)
		}
	}
	release := fl.Releases[len(fl.Releases)-1]
	if release.Version != demoVersion || len(release.Slots) != len(demoRegions)*demoSlotsPerRegion {
		t.Fatalf("release %s with %d slots, want %s with %d", release.Version, len(release.Slots), demoVersion, len(demoRegions)*demoSlotsPerRegion)
	}
	for _, s := range release.Slots {
		if lead := s.Start.Sub(now); lead < time.Minute || lead > 5*time.Minute {
			t.Errorf("slot %s starts %s after the run starts, want within minutes", s.Start, lead)
		}
		if s.End().After(release.PeriodEnd) {
			t.Errorf("slot %s ends after the release period (%s)", s.Start, release.PeriodEnd)
		}
	}
	if gap := run.slot(2).Sub(run.slot(1).Add(demoWindow)); gap < demoSecondaryGap {
		t.Errorf("the reschedule's secondary starts %s after its primary window, want at least %s", gap, demoSecondaryGap)
	}
	if first := run.slot(0).Sub(now); first < demoReminderOffsets[0] {
		t.Errorf("the first slot is %s out, so the %s reminder is never sent", first, demoReminderOffsets[0])
	}
}

func TestDemoSimulatedFailuresAreAValidWorkerSetting(t *testing.T) {
	run := newDemoRun("t2", time.Now())
	t.Setenv("SIMULATED_FAILURES", run.simulatedFailures())
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("the worker would refuse SIMULATED_FAILURES=%s: %v", run.simulatedFailures(), err)
	}
	for _, m := range demoCast {
		id := run.instanceID(m.instance)
		// The primary attempt fails for approve-then-fail only, and no
		// secondary does, so the demo shows a fallback success.
		want := config.FailingAttempts("")
		if m.action == demoApproveThenFail {
			want = config.FailPrimary
		}
		if got := cfg.SimulatedFailures[id]; got != want {
			t.Errorf("%s: SIMULATED_FAILURES fails %q, want %q", id, got, want)
		}
	}
}

func TestRenderDemoTable(t *testing.T) {
	primary, err := workflows.NewWindow(time.Date(2026, 11, 23, 13, 2, 0, 0, time.UTC), time.Date(2026, 11, 23, 13, 2, 45, 0, time.UTC), "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	rows := []demoRow{{
		view: workflows.StatusView{
			InstanceID: "contoso-prod-t3", CurrentVersion: "9.1.0", TargetVersion: "9.2.0", Status: workflows.StatusFallbackScheduled,
			Primary:  primary,
			Attempts: []workflows.Attempt{{Slot: workflows.SlotPrimary, Outcome: workflows.OutcomeFailed}, {Slot: workflows.SlotSecondary}},
			Notices:  []workflows.NoticeRecord{{Kind: workflows.NoticeScheduled}, {Kind: workflows.NoticeFallback}},
		},
		execution: enums.WORKFLOW_EXECUTION_STATUS_RUNNING,
	}}
	var out bytes.Buffer
	renderDemoTable(&out, rows, time.Date(2026, 11, 23, 13, 3, 0, 0, time.UTC))
	text := out.String()
	for _, want := range []string{
		"13:03:00 UTC", demoWebUI, "INSTANCE", "contoso-prod-t3", "9.1.0 → 9.2.0", "FallbackScheduled",
		"Mon 23 Nov 2026 14:02 CET", "primary:failed, secondary:running", "fallback (2 sent)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo table lacks %q:\n%s", want, text)
		}
	}
}
