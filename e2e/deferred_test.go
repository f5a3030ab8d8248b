package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/activities/sendgrid/sendgridtest"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestRolloutAnnouncesBeforeTheFirstTask rolls out a release whose slots
// are days away, as the worker's Rollout workflow does it: each update's
// first task is deferred until the rollout's starts are done, yet its
// announcement is queued as it starts and every admin gets the email; an
// admin's approval in the meantime runs the workflow at once.
func TestRolloutAnnouncesBeforeTheFirstTask(t *testing.T) {
	testkit.ClearConfigEnv(t)
	temporalClient, dbURL := devtest.StartForPrograms(t)
	mail := sendgridtest.NewServer(t)
	for name, value := range map[string]string{
		"SENDGRID_HOST": mail.Config().Host, "SENDGRID_API_KEY": mail.Config().APIKey,
		"MIN_NOTICE": "1h", "SECONDARY_MIN_GAP": "1h",
	} {
		t.Setenv(name, value)
	}
	w := startWorker(t, []string{"METRICS_ADDR=", "LOG_LEVEL=warn"})
	w.waitUntilPolling(t, temporalClient)
	mustRun(t, "migrate")
	mustRun(t, "setup")

	now := time.Now().UTC().Truncate(time.Second)
	schedule := calendar{periodStart: now, primary: now.Add(48 * time.Hour), secondary: now.Add(72 * time.Hour),
		periodEnd: now.Add(30 * 24 * time.Hour), window: 12 * time.Hour}
	fleet := testFleet()
	fleet = []fleetInstance{fleet[0], fleet[4]} // acme-prod (two admins) and hooli-prod
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(schedule.fleetFile(t, fleet)))
	mustRun(t, "load", fleetPath)
	if out := mustRun(t, "rollout", "--version", targetVersion); !strings.Contains(out, "started 2,") {
		t.Fatalf("the rollout did not start both updates:\n%s", out)
	}

	ctx := context.Background()
	db := connectDB(t, dbURL)
	for _, in := range fleet {
		id := workflows.WorkflowID(in.id, targetVersion)
		d, err := temporalClient.DescribeWorkflow(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		info := d.RawResponse.GetWorkflowExecutionInfo()
		if deferred := info.GetExecutionTime().AsTime().Sub(info.GetStartTime().AsTime()); deferred < 30*time.Second {
			t.Errorf("%s: first task deferred %v, want until the rollout's starts are done (a minute at least)", id, deferred)
		}
		// Queued as the update started, before its first task was due.
		var queuedAt time.Time
		if err := db.QueryRow(ctx, `SELECT created_at FROM notice_queue WHERE workflow_id = $1 AND kind = $2`,
			id, string(workflows.NoticeScheduled)).Scan(&queuedAt); err != nil {
			t.Fatalf("%s: no scheduled notice queued: %v", id, err)
		}
		if due := info.GetExecutionTime().AsTime(); !queuedAt.Before(due) {
			t.Errorf("%s: announcement queued at %v, not before the first task (due %v)", id, queuedAt, due)
		}
	}
	admins := map[string]bool{}
	for _, in := range fleet {
		for _, a := range in.admins {
			admins[a] = false
		}
	}
	testkit.WaitFor(t, 2*time.Minute, "every admin's scheduled email accepted", func() (bool, string) {
		for _, r := range mail.Accepted() {
			if r.CustomArgs["notice"] == string(workflows.NoticeScheduled) {
				for _, p := range r.Personalizations {
					for _, to := range p.To {
						admins[to.Email] = true
					}
				}
			}
		}
		var missing []string
		for a, told := range admins {
			if !told {
				missing = append(missing, a)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not told yet: %v", missing)
	})

	acme := fleet[0]
	out := mustRun(t, "approve", "--instance", acme.id, "--admin", acme.admins[0], "--version", targetVersion, "--note", "before its first task")
	if !strings.Contains(out, string(workflows.StatusApproved)) {
		t.Errorf("approve:\n%s", out)
	}
	id := workflows.WorkflowID(acme.id, targetVersion)
	view := queryStatus(t, ctx, temporalClient, id)
	if view.Status != workflows.StatusApproved || len(view.Notices) == 0 || view.Notices[0].Kind != workflows.NoticeScheduled {
		t.Errorf("after the approval: status %s, notices %+v; want Approved, announced first", view.Status, view.Notices)
	}
	if d, err := temporalClient.DescribeWorkflow(ctx, id, ""); err != nil || d.Status != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("%s after the approval: %v (%v), want running", id, d, err)
	}
	var scheduledRows int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE workflow_id = $1 AND action = 'scheduled'`, id).Scan(&scheduledRows); err != nil {
		t.Fatal(err)
	}
	if scheduledRows != 1 {
		t.Errorf("%d scheduled audit rows, want one: the workflow's own announcement writes nothing after the rollout's", scheduledRows)
	}
}
