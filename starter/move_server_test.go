package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/time/rate"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestResumeMovesTheHeldWave: a failed sandbox update holds the production
// wave at its gate; `rollout --resume --move-to` then has the rollout's
// worker sign a Move for each waiting update of the wave. Each books the
// earliest free slots from that time in Postgres, records who moved it and
// queues a `moved` notice for its admins; the wave opens at its new slots.
func TestResumeMovesTheHeldWave(t *testing.T) {
	c, dbURL := devtest.StartForPrograms(t)
	mustRun(t, "setup")
	now := time.Now().UTC().Truncate(time.Minute)
	early := []time.Time{now.Add(4 * time.Minute), now.Add(5 * time.Minute)}
	later := []time.Time{now.Add(2 * time.Hour), now.Add(3 * time.Hour)}
	slot := func(start time.Time, window string) string {
		return fmt.Sprintf(`{"region": "emea", "start": %q, "window": %q, "capacity": 10}`, start.Format(time.RFC3339), window)
	}
	instance := func(id, kind string) string {
		return fmt.Sprintf(`{"id": %q, "tenant": "acme", "name": %q, "kind": %q, "region": "emea", "timeZone": "Europe/Berlin",
			"version": "9.1.0", "admins": ["ann@acme.example"]}`, id, id, kind)
	}
	fleetFile := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetFile, fmt.Sprintf(`{
		"releases": [
			{"version": "9.1.0", "name": "Autumn", "order": 1},
			{"version": "9.2.0", "name": "Spring", "order": 2, "periodStart": %q, "periodEnd": %q,
			 "slots": [%s, %s, %s, %s]}],
		"tenants": [{"id": "acme", "name": "Acme"}],
		"instances": [%s, %s, %s, %s]}`,
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(30*24*time.Hour).Format(time.RFC3339),
		slot(early[0], "1m"), slot(early[1], "1m"), slot(later[0], "1h"), slot(later[1], "1h"),
		instance("acme-sbx", "sandbox"), instance("acme-sbx-failed", "sandbox"), instance("acme-p1", "production"), instance("acme-p2", "production")))
	mustRun(t, "load", fleetFile)
	// The sandbox wave holds an update that failed (a rollout's earlier
	// walk started it): 1 of the wave's 2 fails, over the 5% budget.
	pool := openTestPool(t, dbURL)
	failedID := workflows.WorkflowID("acme-sbx-failed", "9.2.0")
	for _, stmt := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO rollout_waves (version, wave, state) VALUES ('9.2.0', 0, 'open')`, nil},
		{`INSERT INTO updates (workflow_id, instance_id, offered_version, target_version, current_version, mandatory, status, primary_start, secondary_start, snapshot)
		  VALUES ($1, 'acme-sbx-failed', '9.2.0', '9.2.0', '9.1.0', false, 'Failed', $2, $3, '{}')`, []any{failedID, early[0], early[1]}},
		{`INSERT INTO rollout_members (version, instance_id, wave, workflow_id) VALUES ('9.2.0', 'acme-sbx-failed', 0, $1)`, []any{failedID}},
	} {
		if _, err := pool.Exec(context.Background(), stmt.sql, stmt.args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MIN_NOTICE", "0s")
	t.Setenv("SECONDARY_MIN_GAP", "0s")
	startUpdatesWorker(t, c, dbURL)

	// The sandbox takes the first early slot; the production wave the
	// second, within the gate's lead: its gate is decided at once.
	mustRun(t, "rollout", "--version", "9.2.0")
	p := awaitRollout(t, c, "the production wave held", func(p workflows.RolloutProgress) bool { return p.Phase == workflows.PhasePaused })
	if !strings.Contains(p.Paused, "wave 1 held") {
		t.Fatalf("paused: %q, want wave 1 held", p.Paused)
	}

	// From the last slot no secondary fits in the release: nothing moves,
	// the wave stays held, the command says so and fails, and the
	// operators get a second alert.
	out, _, err := runStarter(t, "rollout", "--version", "9.2.0", "--resume", "--move-to", later[1].Format(time.RFC3339))
	if err == nil || !strings.Contains(err.Error(), "the rollout of 9.2.0 is still paused: wave 1 held: 2 updates of waves [1] could not be moved") ||
		!strings.Contains(out, "service-update:acme-p1:9.2.0: not moved: Move refused by service-update:acme-p1:9.2.0: from "+later[1].Format(time.RFC3339)+" leaves no room in the release period of 9.2.0") {
		t.Fatalf("a move with no room: %v\n%s", err, out)
	}
	rows, err := pool.Query(context.Background(), `SELECT kind FROM in_product_alerts WHERE workflow_id = $1 ORDER BY id`, workflows.RolloutID("9.2.0"))
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(alerts, " ") != "rollout-paused-wave-1 rollout-paused-wave-1-move-1" {
		t.Errorf("operators' alerts %q, want the hold's and the failed move's", alerts)
	}

	moveTo := later[0].Format(time.RFC3339)
	out = mustRun(t, "rollout", "--version", "9.2.0", "--resume", "--move-to", moveTo)
	if !strings.Contains(out, "wave 1: open, 2 updates from "+moveTo) || !strings.Contains(out, "moved 2 waiting updates of waves [1] to slots from "+moveTo) {
		t.Errorf("resume --move-to printed:\n%s\nwant wave 1 open from %s", out, moveTo)
	}
	st := store.New(pool)
	ctx := context.Background()
	for _, id := range []string{"acme-p1", "acme-p2"} {
		bookings, err := st.Bookings(ctx, id, "9.2.0")
		if err != nil {
			t.Fatal(err)
		}
		if len(bookings) != 2 || !bookings[0].Start.Equal(later[0]) || !bookings[1].Start.Equal(later[1]) {
			t.Errorf("%s bookings = %+v, want primary %s and secondary %s", id, bookings, later[0], later[1])
		}
		view := queryStatus(t, c, workflows.WorkflowID(id, "9.2.0"))
		if !view.Primary.Start.Equal(later[0]) || view.Status != workflows.StatusScheduled {
			t.Errorf("%s: %s with primary %s, want Scheduled at %s", id, view.Status, view.Primary.Start, later[0])
		}
	}
	var moved, notices int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'moved' AND actor LIKE 'rollout of 9.2.0, resumed by %' AND channel = $1`,
		string(actor.ChannelRollout)).Scan(&moved); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM notice_queue WHERE kind = 'moved'`).Scan(&notices); err != nil {
		t.Fatal(err)
	}
	if moved != 2 || notices != 2 {
		t.Errorf("%d moved audit rows and %d moved notices, want 2 each", moved, notices)
	}
	if sbx, err := st.Bookings(ctx, "acme-sbx", "9.2.0"); err == nil && len(sbx) > 0 && !sbx[0].Start.Equal(early[0]) {
		t.Errorf("the sandbox's open wave moved: %+v", sbx)
	}
}

// startUpdatesWorker runs the ServiceUpdate and Rollout workflows with the
// store and rollout activities, signing and trusting the test's keys, as
// the worker does (no notifier: the notices wait in the queue).
func startUpdatesWorker(t *testing.T, c client.Client, dbURL string) {
	t.Helper()
	signer, err := actor.ParseSigningKey(os.Getenv("ACTION_SIGNING_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := actor.ParseTrustedKeys(os.Getenv("ACTION_TRUSTED_KEYS"))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(openTestPool(t, dbURL))
	updates := worker.New(c, workflows.TaskQueue, worker.Options{})
	updates.RegisterWorkflowWithOptions(workflows.ServiceUpdates{Trusted: trusted}.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	updates.RegisterWorkflowWithOptions(workflows.Rollout, workflow.RegisterOptions{Name: workflows.RolloutWorkflowType})
	(&activities.StoreActivities{Store: st}).Register(updates)
	(&activities.RolloutActivities{Store: st, Client: c, TaskQueue: workflows.TaskQueue, Signer: signer,
		StartRate: rate.NewLimiter(rate.Inf, 1), Concurrency: 4}).Register(updates)
	admin := worker.New(c, workflows.AdminTaskQueue, worker.Options{DisableWorkflowWorker: true})
	(&activities.StoreActivities{Store: st}).Register(admin)
	for _, w := range []worker.Worker{updates, admin} {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
}

// awaitRollout polls the rollout of 9.2.0 until done says so.
func awaitRollout(t *testing.T, c client.Client, what string, done func(workflows.RolloutProgress) bool) workflows.RolloutProgress {
	t.Helper()
	var p workflows.RolloutProgress
	testkit.WaitFor(t, time.Minute, what, func() (bool, string) {
		var err error
		if p, err = queryProgress(context.Background(), c, workflows.RolloutID("9.2.0"), ""); err != nil {
			return false, err.Error()
		}
		return done(p), fmt.Sprintf("progress %+v", p)
	})
	return p
}

func queryStatus(t *testing.T, c client.Client, workflowID string) workflows.StatusView {
	t.Helper()
	v, err := c.QueryWorkflow(context.Background(), workflowID, "", workflows.QueryStatus)
	var view workflows.StatusView
	if err == nil {
		err = v.Get(&view)
	}
	if err != nil {
		t.Fatalf("status of %s: %v", workflowID, err)
	}
	return view
}
