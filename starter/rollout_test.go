package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

func TestRolloutSummaryCountsConcurrentOutcomes(t *testing.T) {
	summary := &outcomeSummary{}
	outcomes := map[launch.Outcome]int{
		launch.Started: 40, launch.AlreadyRunning: 7, launch.NotEligible: 5, launch.NoCapacity: 2, launch.Failed: 1, launch.Held: 3,
	}
	var wg sync.WaitGroup
	for outcome, n := range outcomes {
		for i := range n {
			wg.Go(func() {
				r := launch.Result{InstanceID: "i", Outcome: outcome}
				if outcome == launch.Failed {
					r.InstanceID, r.Detail = "initech-prod", "start service-update:initech-prod:9.2.0: unavailable"
				}
				if outcome == launch.NoCapacity && i == 0 {
					r.InstanceID, r.Detail = "acme-prod", "no slot pair with free capacity"
				}
				if outcome == launch.Held {
					r = launch.HeldResult(launch.Result{InstanceID: "globex-prod"}, store.Holder{
						WorkflowID: "service-update:globex-prod:9.1.0", OfferedVersion: "9.1.0", TargetVersion: "9.1.0", Status: workflows.StatusApproved,
					})
				}
				summary.add(r)
			})
		}
	}
	wg.Wait()
	for outcome, n := range outcomes {
		if got := summary.count(outcome); got != n {
			t.Errorf("%s: %d, want %d", outcome.String(), got, n)
		}
	}
	var out bytes.Buffer
	summary.write(&out, "9.2.0", false)
	text := out.String()
	for _, want := range []string{
		"initech-prod", "failed", "unavailable", "acme-prod", "no capacity",
		"globex-prod                      held         held by open update service-update:globex-prod:9.1.0 (Approved)\n",
		"rollout of 9.2.0, 58 candidate(s): started 40, already running 7, not eligible 5, no capacity 2, failed 1, held 3\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "would start") {
		t.Errorf("a real rollout's summary mentions the dry run:\n%s", text)
	}
}

func TestDryRunSummary(t *testing.T) {
	summary := &outcomeSummary{}
	summary.add(launch.Result{InstanceID: "acme-test", Outcome: launch.Planned, Detail: "sandbox Acme Test in emea, 9.1.0 → 9.2.0, optional"})
	summary.add(launch.Result{InstanceID: "acme-prod", Outcome: launch.AlreadyRunning})
	var out bytes.Buffer
	summary.write(&out, "9.2.0", true)
	text := out.String()
	for _, want := range []string{
		"acme-test", "sandbox Acme Test in emea, 9.1.0 → 9.2.0, optional",
		"dry run (nothing booked, nothing started) of 9.2.0, 2 candidate(s): already running 1, not eligible 0, no capacity 0, failed 0, held 0, would start 1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("dry-run summary lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "started 0") {
		t.Errorf("a dry run counts started updates:\n%s", text)
	}
}

func TestKindWavesPutSandboxesFirst(t *testing.T) {
	candidate := func(id, kind string) store.RolloutCandidate {
		return store.RolloutCandidate{Instance: workflows.Instance{ID: id, Kind: kind}}
	}
	waves := kindWaves([]store.RolloutCandidate{
		candidate("a-test", "sandbox"), candidate("b-test", "sandbox"), candidate("a-prod", "production"),
	})
	if len(waves) != 2 || len(waves[0]) != 2 || len(waves[1]) != 1 || waves[1][0].Instance.ID != "a-prod" {
		t.Errorf("waves = %+v, want [a-test b-test] [a-prod]", waves)
	}
	if waves := kindWaves(nil); len(waves) != 0 {
		t.Errorf("no candidates gave %d waves", len(waves))
	}
}

func TestStartOptions(t *testing.T) {
	in := workflows.Input{
		Instance:       workflows.Instance{ID: "contoso-prod", TenantID: "contoso", TimeZone: "Europe/Berlin"},
		CurrentVersion: "9.1.0",
		TargetVersion:  "9.2.0",
		Mandatory:      true,
		PrimaryStart:   time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC),
	}
	opts := launch.StartOptions("service-update:contoso-prod:9.2.0", "service-updates", in)
	if opts.WorkflowIDReusePolicy != enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE || !opts.WorkflowExecutionErrorWhenAlreadyStarted {
		t.Errorf("options allow a second start of the same update: %+v", opts)
	}
	if want := "contoso-prod: 9.1.0 → 9.2.0, mandatory"; opts.StaticSummary != want {
		t.Errorf("summary = %q, want %q", opts.StaticSummary, want)
	}
	sa := opts.TypedSearchAttributes
	// Every one but RolloutPhase, which only a Rollout carries.
	if want := len(workflows.SearchAttributeKeys) - 1; sa.Size() != want || sa.ContainsKey(workflows.SearchAttrRolloutPhase) {
		t.Errorf("%d search attributes set at start, want the %d of an update", sa.Size(), want)
	}
	if got, _ := sa.GetKeyword(workflows.SearchAttrUpdateStatus); got != string(workflows.StatusScheduled) {
		t.Errorf("UpdateStatus at start = %q", got)
	}
	if got, _ := sa.GetTime(workflows.SearchAttrScheduledStart); !got.Equal(in.PrimaryStart) {
		t.Errorf("ScheduledStart at start = %v", got)
	}
}

func TestParseMoveTo(t *testing.T) {
	now := time.Date(2027, 3, 1, 10, 17, 42, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2027-03-20T02:00:00+01:00": time.Date(2027, 3, 20, 1, 0, 0, 0, time.UTC),
		"2027-03-20 02:00":          time.Date(2027, 3, 20, 2, 0, 0, 0, time.UTC),
		"7d":                        time.Date(2027, 3, 8, 10, 18, 0, 0, time.UTC),
		"36h":                       time.Date(2027, 3, 2, 22, 18, 0, 0, time.UTC),
		"30s":                       time.Date(2027, 3, 1, 10, 19, 0, 0, time.UTC),
	} {
		got, err := parseMoveTo(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseMoveTo(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"next week", "-7d", "0d", "2027-13-01 02:00"} {
		if _, err := parseMoveTo(in, now); err == nil || !strings.Contains(err.Error(), "accepted: RFC 3339") {
			t.Errorf("parseMoveTo(%q): %v, want a refusal naming what is accepted", in, err)
		}
	}
}

// --move-to belongs to --resume, and a time it cannot read is refused
// before anything is asked of Temporal.
func TestRolloutMoveToRefusals(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "--version", "9.2.0", "--move-to", "7d"}, "rollout: --move-to moves a held wave as it is resumed; give it with --resume"},
		{[]string{"rollout", "--version", "9.2.0", "--resume", "--move-to", "soon"}, `rollout: --move-to "soon": not a time (accepted: RFC 3339`},
	} {
		_, _, err := runStarter(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("starter %s: %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}
