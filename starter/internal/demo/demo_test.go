package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestFleetParses renders the embedded demo fleet and parses it like
// any fleet file, and checks that its compressed schedule lets every
// scripted step happen: the slots start within minutes, the rescheduled
// pair keeps the secondary gap, and the period covers every window.
func TestFleetParses(t *testing.T) {
	now := time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)
	run := NewRun("t1", now)
	fl, err := run.Fleet()
	if err != nil {
		t.Fatalf("the demo fleet is refused: %v", err)
	}
	if len(fl.Instances) != len(Cast) {
		t.Fatalf("%d instances, want %d", len(fl.Instances), len(Cast))
	}
	for i, m := range Cast {
		if got, want := fl.Instances[i].ID, run.InstanceID(m.Instance); got != want {
			t.Errorf("instance %d is %s, want %s", i, got, want)
		}
	}
	release := fl.Releases[len(fl.Releases)-1]
	if release.Version != Version || len(release.Slots) != len(regions)*slotsPerRegion {
		t.Fatalf("release %s with %d slots, want %s with %d", release.Version, len(release.Slots), Version, len(regions)*slotsPerRegion)
	}
	for _, s := range release.Slots {
		if lead := s.Start.Sub(now); lead < time.Minute || lead > 5*time.Minute {
			t.Errorf("slot %s starts %s after the run starts, want within minutes", s.Start, lead)
		}
		if s.End().After(release.PeriodEnd) {
			t.Errorf("slot %s ends after the release period (%s)", s.Start, release.PeriodEnd)
		}
	}
	if gap := run.Slot(2).Sub(run.Slot(1).Add(window)); gap < SecondaryGap {
		t.Errorf("the reschedule's secondary starts %s after its primary window, want at least %s", gap, SecondaryGap)
	}
	if first := run.Slot(0).Sub(now); first < ReminderOffsets[0] {
		t.Errorf("the first slot is %s out, so the %s reminder is never sent", first, ReminderOffsets[0])
	}
}

func TestSimulatedFailuresAreAValidWorkerSetting(t *testing.T) {
	run := NewRun("t2", time.Now())
	t.Setenv("SIMULATED_FAILURES", run.SimulatedFailures())
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("the worker would refuse SIMULATED_FAILURES=%s: %v", run.SimulatedFailures(), err)
	}
	for _, m := range Cast {
		id := run.InstanceID(m.Instance)
		// The primary attempt fails for approve-then-fail only, and no
		// secondary does, so the demo shows a fallback success.
		want := config.FailingAttempts("")
		if m.Action == ApproveThenFail {
			want = config.FailPrimary
		}
		if got := cfg.SimulatedFailures[id]; got != want {
			t.Errorf("%s: SIMULATED_FAILURES fails %q, want %q", id, got, want)
		}
	}
}

func TestRenderTable(t *testing.T) {
	primary, err := workflows.NewWindow(time.Date(2026, 11, 23, 13, 2, 0, 0, time.UTC), time.Date(2026, 11, 23, 13, 2, 45, 0, time.UTC), "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	rows := []Row{{
		View: workflows.StatusView{
			InstanceID: "contoso-prod-t3", CurrentVersion: "9.1.0", TargetVersion: "9.2.0", Status: workflows.StatusFallbackScheduled,
			Primary:  primary,
			Attempts: []workflows.Attempt{{Slot: workflows.SlotPrimary, Outcome: workflows.OutcomeFailed}, {Slot: workflows.SlotSecondary}},
			Notices:  []workflows.NoticeRecord{{Kind: workflows.NoticeScheduled}, {Kind: workflows.NoticeFallback}},
		},
		Execution: enums.WORKFLOW_EXECUTION_STATUS_RUNNING,
	}}
	var out bytes.Buffer
	RenderTable(&out, rows, time.Date(2026, 11, 23, 13, 3, 0, 0, time.UTC))
	text := out.String()
	for _, want := range []string{
		"13:03:00 UTC", WebUI, "INSTANCE", "contoso-prod-t3", "9.1.0 → 9.2.0", "FallbackScheduled",
		"Mon 23 Nov 2026 14:02 CET", "primary:failed, secondary:running", "fallback (2 sent)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo table lacks %q:\n%s", want, text)
		}
	}
}
