package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/starter/internal/demo"
	"github.com/svcupdate/svcupdate/workflows"
)

// startInProcessWorker runs the real workflow and activities (outbox mail, the
// simulated executor) against the test's servers until the test ends.
func startInProcessWorker(t *testing.T, c client.Client, dbURL string) {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	pool := openTestPool(t, dbURL)
	options := worker.Options{}
	updates := worker.New(c, cfg.TaskQueue, options)
	updates.RegisterWorkflowWithOptions(workflows.ServiceUpdates{Trusted: cfg.ActionTrustedKeys.Verifier}.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	st := store.New(pool)
	(&activities.StoreActivities{Store: st}).Register(updates)
	notifier, err := activities.NewNotifier(st, sendgrid.Config{Host: cfg.SendGridHost, From: cfg.MailFrom})
	if err != nil {
		t.Fatal(err)
	}
	notifier.Register(updates)
	executor, err := activities.NewExecutor(activities.ExecutorOptions{
		Kind:              cfg.Executor,
		SimulatedDuration: cfg.SimulatedDuration,
		SimulatedFailures: cfg.SimulatedFailures,
	})
	if err != nil {
		t.Fatal(err)
	}
	executorWorker := worker.New(c, workflows.ExecutorTaskQueue, worker.Options{DisableWorkflowWorker: true})
	activities.RegisterExecutor(executorWorker, executor)
	admin := worker.New(c, workflows.AdminTaskQueue, worker.Options{DisableWorkflowWorker: true})
	(&activities.StoreActivities{Store: st}).Register(admin)
	for _, w := range []worker.Worker{updates, executorWorker, admin} {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
}

// TestAdminCommands runs the admin and operator commands against a
// running update: a fleet load that changes admins reaches the running
// workflow, approve finds the instance's running update by itself, a
// refused Update exits non-zero with the workflow's reason, status renders
// in the instance's zone, and cancel closes the workflow.
func TestAdminCommands(t *testing.T) {
	c, dbURL := devtest.StartForPrograms(t)
	mustRun(t, "setup")
	t.Setenv("SECONDARY_MIN_GAP", demo.SecondaryGap.String())
	t.Setenv("MIN_NOTICE", "0s") // the demo's slots start in two minutes
	t.Setenv("RESCHEDULE_MIN_NOTICE", "0s")
	startInProcessWorker(t, c, dbURL)

	dir := t.TempDir()
	run := demo.NewRun("adm", time.Now())
	data, err := run.FleetFile()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fleet.json")
	writeFile(t, path, string(data))
	mustRun(t, "load", path)
	mustRun(t, "rollout", "--version", demo.Version)

	instance := run.InstanceID("contoso-prod")
	id := workflows.WorkflowID(instance, demo.Version)
	ctx := context.Background()
	if err := awaitNotice(ctx, c, id, workflows.NoticeScheduled); err != nil {
		t.Fatal(err)
	}

	// The fleet file gives contoso-prod a new admin; load tells its workflow.
	newAdmin := "carla.new@contoso.example"
	changed := strings.Replace(string(data), `"ben.ops@contoso.example"]`, `"ben.ops@contoso.example", "`+newAdmin+`"]`, 1)
	if changed == string(data) {
		t.Fatal("the demo fleet no longer lists ben.ops@contoso.example last among contoso-prod's admins")
	}
	writeFile(t, path, changed)
	out := mustRun(t, "load", path)
	if !strings.Contains(out, "admins changed on 1 instance(s)") || !strings.Contains(out, id+": admins now") {
		t.Errorf("load with a new admin:\n%s", out)
	}

	// The file drops ben.ops while Temporal is unreachable: Postgres changes,
	// the workflow does not, and a second load finds nothing to send. The
	// error names the command that sends what Postgres holds.
	removed := "ben.ops@contoso.example"
	withoutBen := strings.Replace(changed, `"`+removed+`", `, "", 1)
	if withoutBen == changed {
		t.Fatal("the changed fleet file no longer lists ben.ops@contoso.example before the new admin")
	}
	writeFile(t, path, withoutBen)
	serverAddress := os.Getenv("TEMPORAL_ADDRESS")
	t.Setenv("TEMPORAL_ADDRESS", testkit.FreeAddress(t))
	retry := "starter sync-admins --instance " + instance
	if _, _, err := runStarter(t, "load", path); err == nil || !strings.HasSuffix(err.Error(), "; tell them with: "+retry) {
		t.Fatalf("load with Temporal unreachable: %v, want it to end naming %q", err, retry)
	}
	t.Setenv("TEMPORAL_ADDRESS", serverAddress)
	if out := mustRun(t, "load", path); !strings.Contains(out, "admins changed on 0 instance(s)") {
		t.Errorf("second load of the same file:\n%s", out)
	}
	out = mustRun(t, strings.Fields(retry)[1:]...)
	if !strings.Contains(out, id+": admins now [ana.admin@contoso.example "+newAdmin+"]") ||
		!strings.Contains(out, "sync-admins, 1 instance(s): sent 1, closed meanwhile 0, failed 0") {
		t.Errorf("%s:\n%s", retry, out)
	}
	if _, _, err := runStarter(t, "approve", "--instance", instance, "--admin", removed); err == nil ||
		!strings.Contains(err.Error(), "Approve refused by "+id+": ") {
		t.Fatalf("approve by the removed admin after sync-admins: %v, want the workflow's refusal", err)
	}
	// Without --instance every running update is told; the demo rollout
	// started five.
	out = mustRun(t, "sync-admins", "--concurrency", "2")
	if !strings.Contains(out, id+": admins now ") || !strings.Contains(out, "sync-admins, 5 instance(s): sent 5, closed meanwhile 0, failed 0") {
		t.Errorf("sync-admins of every running update:\n%s", out)
	}

	_, _, err = runStarter(t, "approve", "--instance", instance, "--admin", "mallory@evil.example")
	if err == nil || !strings.Contains(err.Error(), "Approve refused by "+id+": ") {
		t.Fatalf("approve by a stranger: %v, want the workflow's refusal", err)
	}
	t.Log(err)
	// The same slots as the instance's local time reach the workflow too.
	local := func(at time.Time) string { return at.In(contosoZone(t)).Format("2006-01-02 15:04") }
	_, _, err = runStarter(t, "reschedule", "--instance", instance, "--admin", newAdmin,
		"--primary", local(run.Slot(1)), "--secondary", local(run.Slot(1)))
	if err == nil || !strings.Contains(err.Error(), "Reschedule refused by "+id+": ") {
		t.Fatalf("reschedule in local time with the secondary on the primary: %v, want the workflow's refusal", err)
	}

	// The starter signs every admin action: without a key it sends nothing,
	// and a key the worker does not trust is refused by the workflow.
	operatorKey := os.Getenv("ACTION_SIGNING_KEY")
	t.Setenv("ACTION_SIGNING_KEY", "")
	if _, _, err := runStarter(t, "approve", "--instance", instance, "--as", newAdmin); err == nil ||
		!strings.Contains(err.Error(), "ACTION_SIGNING_KEY is not set") {
		t.Fatalf("approve without a signing key: %v", err)
	}
	rogueKey, _, err := actor.GenerateKeyPair("rogue")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACTION_SIGNING_KEY", rogueKey)
	if _, _, err := runStarter(t, "approve", "--instance", instance, "--as", newAdmin); err == nil ||
		!strings.Contains(err.Error(), `signed with key "rogue", which this worker does not trust`) {
		t.Fatalf("approve signed with an untrusted key: %v", err)
	}
	t.Setenv("ACTION_SIGNING_KEY", operatorKey)

	out = mustRun(t, "approve", "--instance", instance, "--as", newAdmin)
	if !strings.Contains(out, "Approve accepted") || !strings.Contains(out, "Approved") || !strings.Contains(out, "by "+newAdmin) {
		t.Errorf("approve by the new admin:\n%s", out)
	}

	_, _, err = runStarter(t, "reschedule", "--instance", instance, "--admin", newAdmin,
		"--primary", run.Slot(1).Format(time.RFC3339), "--secondary", run.Slot(1).Format(time.RFC3339))
	if err == nil || !strings.Contains(err.Error(), "Reschedule refused by "+id+": ") {
		t.Fatalf("reschedule with the secondary on the primary: %v, want the workflow's refusal", err)
	}
	t.Log(err)

	out = mustRun(t, "status", "--instance", instance)
	for _, want := range []string{id, "Approved", "CET (", "UTC)", newAdmin, "Notices sent", "scheduled"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	var view workflows.StatusView
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--instance", instance, "--json")), &view); err != nil {
		t.Fatalf("status --json is not a StatusView: %v", err)
	}
	if view.WorkflowID != id || view.Status != workflows.StatusApproved || view.ApprovedBy != workflows.MaskEmail(newAdmin) ||
		!slices.Contains(view.Admins, newAdmin) {
		t.Errorf("status --json = %+v", view)
	}

	out = mustRun(t, "cancel", "--instance", instance, "--reason", "customer left")
	if !strings.Contains(out, "cancellation requested (customer left)") || !strings.Contains(out, "closed") {
		t.Errorf("cancel:\n%s", out)
	}
	if _, _, err := runStarter(t, "approve", "--instance", instance, "--admin", newAdmin); err == nil ||
		!strings.Contains(err.Error(), "has no running update") {
		t.Errorf("approve after cancel: %v, want no running update", err)
	}
	// status still finds the closed update, and says it is closed.
	if out := mustRun(t, "status", "--instance", instance); !strings.HasPrefix(out, "Latest update of "+instance+": "+id+", closed (") ||
		!strings.Contains(out, "Cancelled") {
		t.Errorf("status after cancel:\n%s", out)
	}
	var closed viewJSON
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--instance", instance, "-o", "json")), &closed); err != nil {
		t.Fatal(err)
	}
	if closed.Execution == "Running" || closed.Execution == "" || closed.Status != workflows.StatusCancelled {
		t.Errorf("status -o json after cancel: execution %s, status %s", closed.Execution, closed.Status)
	}
}

// contosoZone is the time zone of the demo's Contoso instances.
func contosoZone(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// openTestPool opens a pool on a test database, closed when the test ends.
func openTestPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
