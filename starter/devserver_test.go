package main

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/time/rate"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/internal/store"

	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/starter/internal/demo"
	"github.com/svcupdate/svcupdate/workflows"
)

// mustRun runs the starter and fails the test on an error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runStarter(t, args...)
	if err != nil {
		t.Fatalf("starter %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// TestOperatorCommandsAgainstServers drives setup, migrate, load and
// rollout against a real dev server and Postgres: each is idempotent, a
// bad fleet file writes nothing, a dry run starts nothing, and a second
// rollout starts nothing new. (Workflows run in the end-to-end test; here
// a worker runs only the Rollout, so the updates stay Scheduled.)
func TestOperatorCommandsAgainstServers(t *testing.T) {
	c, dbURL := devtest.StartForPrograms(t)
	ctx := context.Background()

	out := mustRun(t, "setup")
	for _, key := range workflows.SearchAttributeKeys {
		if !strings.Contains(out, "registered search attribute "+key.GetName()+"\n") {
			t.Errorf("first setup did not register %s:\n%s", key.GetName(), out)
		}
	}
	if out := mustRun(t, "setup"); !strings.Contains(out, "already registered") {
		t.Errorf("second setup: %q", out)
	}
	t.Run("namespace missing", func(t *testing.T) {
		t.Setenv("TEMPORAL_NAMESPACE", "not-created")
		t.Setenv("CONNECT_TIMEOUT", "1s")
		_, _, err := runStarter(t, "setup")
		if err == nil || !strings.Contains(err.Error(), "namespace not-created did not answer within 1s (CONNECT_TIMEOUT)") {
			t.Errorf("setup in a missing namespace: %v", err)
		}
	})
	if out := mustRun(t, "migrate"); out != "schema up to date\n" {
		t.Errorf("migrate on a migrated database: %q", out)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `{"releases": [{"version": "9.2.0", "name": "x", "order": 1}],
		"tenants": [{"id": "acme", "name": "Acme"}],
		"instances": [{"id": "acme-prod", "tenant": "nobody", "name": "Acme", "kind": "prod", "region": "emea",
		               "timeZone": "Mars/Olympus", "version": "9.2.0", "admins": ["not an address"]}]}`)
	_, errOut, err := runStarter(t, "load", bad)
	if err == nil || !strings.Contains(err.Error(), "nothing was loaded") {
		t.Fatalf("a bad fleet file was not refused: %v", err)
	}
	if problems := strings.Count(errOut, bad+": instances[0]."); problems < 4 {
		t.Errorf("want every problem on its own line (tenant, kind, timeZone, admins), got:\n%s", errOut)
	}
	if n := countRows(t, dbURL, "releases"); n != 0 {
		t.Errorf("a refused file wrote %d releases", n)
	}

	run := demo.NewRun("it", time.Now())
	data, err := run.FleetFile()
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "fleet.json")
	writeFile(t, good, string(data))
	out = mustRun(t, "load", good)
	if !strings.Contains(out, "instances  6         0        0") {
		t.Errorf("load report:\n%s", out)
	}

	// The demo fleet's slots are a minute apart and start in two minutes.
	t.Setenv("SECONDARY_MIN_GAP", demo.SecondaryGap.String())
	t.Setenv("MIN_NOTICE", "0s")
	startRolloutWorker(t, c, dbURL)
	// A release not loaded fails the Rollout's run: the command ends with
	// the run's error instead of following a walk that never comes.
	if _, _, err := runStarter(t, "rollout", "--version", "9.9.9"); err == nil || !strings.Contains(err.Error(), `release "9.9.9" does not exist`) {
		t.Errorf("rollout of a release not loaded: %v, want the run's error naming it", err)
	}
	out = mustRun(t, "rollout", "--version", demo.Version, "--dry-run")
	if !strings.Contains(out, "would start 5") || !strings.Contains(out, "not eligible 1") {
		t.Errorf("dry run:\n%s", out)
	}
	if n := countRows(t, dbURL, "slot_bookings"); n != 0 {
		t.Errorf("a dry run booked %d slots", n)
	}
	if n := countWorkflows(t, c); n != 0 {
		t.Errorf("a dry run started %d workflows", n)
	}

	out = mustRun(t, "rollout", "--version", demo.Version)
	if !strings.Contains(out, "started 5, already running 0, not eligible 1, no capacity 0, failed 0") {
		t.Errorf("first rollout:\n%s", out)
	}
	if n := countRows(t, dbURL, "slot_bookings"); n != 10 {
		t.Errorf("%d slot bookings after starting 5 updates, want a primary and a secondary each", n)
	}
	out = mustRun(t, "rollout", "--version", demo.Version)
	if !strings.Contains(out, "started 0, already running 0, not eligible 1") || !strings.Contains(out, "5 started by an earlier walk") {
		t.Errorf("second rollout:\n%s", out)
	}
	if n := countRows(t, dbURL, "slot_bookings"); n != 10 {
		t.Errorf("%d slot bookings after a second rollout, want the same 10", n)
	}

	// Visibility is eventually consistent: wait for the five starts.
	testkit.WaitFor(t, 30*time.Second, "the five starts to be listed", func() (bool, string) {
		n := countWorkflows(t, c)
		return n >= 5, fmt.Sprintf("%d listed", n)
	})
	out = mustRun(t, "list", "--version", demo.Version, "--status", "scheduled")
	if !strings.Contains(out, "5 updates: Scheduled 5") {
		t.Errorf("list:\n%s", out)
	}
	for _, m := range demo.Cast {
		listed := strings.Contains(out, run.InstanceID(m.Instance)+" ")
		if listed == (m.Action == demo.AlreadyCurrent) {
			t.Errorf("%s listed = %v:\n%s", run.InstanceID(m.Instance), listed, out)
		}
	}
	checkReadCommandsAsJSON(t, run)
	desc, err := c.DescribeWorkflow(ctx, workflows.WorkflowID(run.InstanceID("contoso-prod"), demo.Version), "")
	if err != nil {
		t.Fatal(err)
	}
	if summary, _ := desc.GetStaticSummary(); summary != run.InstanceID("contoso-prod")+": 9.1.0 → 9.2.0, needs approval" {
		t.Errorf("Web UI summary = %q", summary)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func countRows(t *testing.T, dbURL, table string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// startRolloutWorker runs the Rollout workflow and its activities on the
// updates' task queue, and nothing else.
func startRolloutWorker(t *testing.T, c client.Client, dbURL string) {
	t.Helper()
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	registerRollout(w, c, store.New(openTestPool(t, dbURL)))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

// registerRollout registers the Rollout workflow and its activities, as
// the worker does, without a start rate limit.
func registerRollout(w worker.Worker, c client.Client, st *store.Store) {
	w.RegisterWorkflowWithOptions(workflows.Rollout, workflow.RegisterOptions{Name: workflows.RolloutWorkflowType})
	(&activities.RolloutActivities{Store: st, Client: c, TaskQueue: workflows.TaskQueue,
		StartRate: rate.NewLimiter(rate.Inf, 1), Concurrency: 4}).Register(w)
}

func countWorkflows(t *testing.T, c client.Client) int64 {
	t.Helper()
	resp, err := c.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Query: "WorkflowType = '" + workflows.WorkflowType + "'",
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCount()
}

// checkReadCommandsAsJSON runs the read commands of the operator test with
// -o json and the list filters, against the rolled-out demo fleet: five
// Scheduled updates, two of tenant contoso.
func checkReadCommandsAsJSON(t *testing.T, run demo.Run) {
	t.Helper()
	var rows []updateJSON
	for line := range strings.SplitSeq(strings.TrimSpace(mustRun(t, "list", "--version", demo.Version, "-o", "json")), "\n") {
		var row updateJSON
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("list -o json line %q: %v", line, err)
		}
		rows = append(rows, row)
	}
	mandatory := 0
	for _, r := range rows {
		if r.Mandatory {
			mandatory++
		}
	}
	if len(rows) != 5 || rows[0].Execution != "Running" || rows[0].Status != "Scheduled" {
		t.Errorf("list -o json = %+v", rows)
	}
	if out := mustRun(t, "list", "--version", demo.Version, "--limit", "2", "-o", "json"); strings.Count(out, "\n") != 2 {
		t.Errorf("list --limit 2 printed:\n%s", out)
	}
	out := mustRun(t, "list", "--tenant", "contoso")
	if !strings.Contains(out, run.InstanceID("contoso-prod")+" ") || strings.Contains(out, "fabrikam") {
		t.Errorf("list --tenant contoso:\n%s", out)
	}
	for flag, want := range map[string]int{"--mandatory": mandatory, "--mandatory=false": 5 - mandatory} {
		var count countJSON
		if err := json.Unmarshal([]byte(mustRun(t, "list", flag, "--count", "-o", "json")), &count); err != nil {
			t.Fatal(err)
		}
		if count.Total != int64(want) || count.Statuses["Scheduled"] != int64(want) || count.Statuses["unknown"] != 0 {
			t.Errorf("list %s --count -o json = %+v, want %d Scheduled", flag, count, want)
		}
	}
	if out := mustRun(t, "list", "--count"); out != "5 updates: Scheduled 5\n" {
		t.Errorf("list --count = %q", out)
	}

	var slots slotsJSON
	if err := json.Unmarshal([]byte(mustRun(t, "slots", "--version", demo.Version, "-o", "json")), &slots); err != nil {
		t.Fatal(err)
	}
	if slots.Version != demo.Version || slots.Booked != 10 || len(slots.Mismatches) != 0 || len(slots.Slots) == 0 {
		t.Errorf("slots -o json = %+v", slots)
	}
	var plan rolloutJSON
	if err := json.Unmarshal([]byte(mustRun(t, "rollout", "--version", demo.Version, "--dry-run", "-o", "json")), &plan); err != nil {
		t.Fatal(err)
	}
	// The five started are skipped from Postgres, not looked up again.
	if !plan.DryRun || plan.Counts["already-running"] != 0 || plan.Counts["would-start"] != 0 || plan.Counts["not-eligible"] != 1 {
		t.Errorf("rollout --dry-run -o json = %+v", plan)
	}
	data, err := run.FleetFile()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, path, string(data))
	var loaded loadJSON
	if err := json.Unmarshal([]byte(mustRun(t, "load", path, "-o", "json")), &loaded); err != nil {
		t.Fatal(err)
	}
	if loaded.Instances.Unchanged != 6 || len(loaded.AdminsChanged) != 0 {
		t.Errorf("second load -o json = %+v", loaded)
	}
}
