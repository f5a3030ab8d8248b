package activities

import (
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

func TestSimulatedExecutor(t *testing.T) {
	var failures config.SimulatedFailures
	if err := failures.Decode("acme-prod:primary,acme-test:all"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		instance string
		attempt  workflows.SlotRole
		window   time.Duration
		wantErr  string // empty: success
		outcome  string
	}{
		{"unlisted instance succeeds", "acme-dev", workflows.SlotPrimary, time.Hour, "", workflows.OutcomeSucceeded},
		{"primary failure", "acme-prod", workflows.SlotPrimary, time.Hour,
			"simulated update of acme-prod to 9.2.0 failed in the primary attempt", workflows.OutcomeFailed},
		{"primary-only failure spares the secondary", "acme-prod", workflows.SlotSecondary, time.Hour, "", workflows.OutcomeSucceeded},
		{"failure in every attempt", "acme-test", workflows.SlotSecondary, time.Hour,
			"simulated update of acme-test to 9.2.0 failed in the secondary attempt", workflows.OutcomeFailed},
		{"window shorter than the update", "acme-dev", workflows.SlotPrimary, 50 * time.Millisecond,
			"update window ends at", workflows.OutcomeWindowElapsed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newApplyEnv(t, worker.Options{})
			duration := 200 * time.Millisecond
			executor := &SimulatedExecutor{Duration: duration, Failures: failures, HeartbeatEvery: 20 * time.Millisecond}
			in := applyInput(time.Now().Add(tt.window))
			in.InstanceID, in.Attempt = tt.instance, tt.attempt
			started := time.Now()
			res, err := env.run(executor, in)
			took := time.Since(started)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("failed: %v", err)
			case tt.wantErr == "":
				if want := "simulated update of " + tt.instance + " from 9.1.0 to 9.2.0 done in 200ms"; res.Output != want {
					t.Errorf("output %q, want %q", res.Output, want)
				}
				if took < duration {
					t.Errorf("took %s, less than the simulated %s", took, duration)
				}
			case err == nil || !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			case tt.outcome == workflows.OutcomeFailed:
				appErr := appError(t, err)
				if appErr.Type() != workflows.ErrTypeUpdateFailed || !appErr.NonRetryable() {
					t.Errorf("failure type %q non-retryable %v, want non-retryable %s", appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeUpdateFailed)
				}
			}
			if len(env.heartbeats.snapshot()) == 0 {
				t.Error("the simulated executor never heartbeat")
			}
			if got := env.durations(tt.attempt, tt.outcome); got != 1 {
				t.Errorf("recorded %d %s durations, want 1", got, tt.outcome)
			}
		})
	}
}

// SIMULATED_FAILURES names the attempts that fail, per instance.
func TestSimulatedExecutorFails(t *testing.T) {
	var failures config.SimulatedFailures
	if err := failures.Decode("a:primary,b:secondary,c:all,"); err != nil {
		t.Fatal(err)
	}
	e := &SimulatedExecutor{Failures: failures}
	for _, tt := range []struct {
		instance string
		attempt  workflows.SlotRole
		want     bool
	}{
		{"a", workflows.SlotPrimary, true},
		{"a", workflows.SlotSecondary, false},
		{"b", workflows.SlotPrimary, false},
		{"b", workflows.SlotSecondary, true},
		{"c", workflows.SlotPrimary, true},
		{"c", workflows.SlotSecondary, true},
		{"d", workflows.SlotPrimary, false},
	} {
		if got := e.fails(tt.instance, tt.attempt); got != tt.want {
			t.Errorf("fails(%s, %s) = %v, want %v", tt.instance, tt.attempt, got, tt.want)
		}
	}
}
