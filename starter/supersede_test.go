package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/starter/internal/demo"
	"github.com/svcupdate/svcupdate/workflows"
)

// startWorker runs the ServiceUpdate workflow with the real store and
// notice activities (outbox mode: nothing is sent) on the fixture's
// server until the test ends; no executor, as no slot comes due.
func (f rolloutFixture) startWorker(t *testing.T) {
	t.Helper()
	st := store.New(f.pool)
	notifier, err := activities.NewNotifier(st, sendgrid.Config{From: f.cfg.MailFrom})
	if err != nil {
		t.Fatal(err)
	}
	updates := worker.New(f.server, f.cfg.TaskQueue, worker.Options{})
	updates.RegisterWorkflowWithOptions(workflows.ServiceUpdates{Trusted: f.cfg.ActionTrustedKeys.Verifier}.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	(&activities.StoreActivities{Store: st}).Register(updates)
	notifier.Register(updates)
	admin := worker.New(f.server, workflows.AdminTaskQueue, worker.Options{DisableWorkflowWorker: true})
	(&activities.StoreActivities{Store: st}).Register(admin)
	for _, w := range []worker.Worker{updates, admin} {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
}

// holdWith records an open update of 9.1.0 on instance, as its workflow's
// first transition would, without a workflow.
func (f rolloutFixture) holdWith(t *testing.T, instance string, status workflows.Status, mandatory bool) string {
	t.Helper()
	id := workflows.WorkflowID(instance, "9.1.0")
	if _, err := store.New(f.pool).RecordTransition(context.Background(), "held/"+instance, workflows.RecordTransitionInput{
		Actor: workflows.ActorSystem, Channel: workflows.ChannelWorkflow, Action: "scheduled", From: workflows.StatusScheduled,
		Snapshot: workflows.StatusView{
			WorkflowID: id, InstanceID: instance, TenantID: "t", CurrentVersion: "9.0.0",
			OfferedVersion: "9.1.0", TargetVersion: "9.1.0", Status: status, Mandatory: mandatory,
			Primary: workflows.Window{Start: f.run.Slot(1)}, Secondary: workflows.Window{Start: f.run.Slot(2)},
		},
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRolloutSupersedesAnOlderOptionalUpdate rolls 9.2.0 out to instances
// still held by an open 9.1.0 update. The optional one that has not
// started, a running workflow, is asked to give way: it closes as
// Superseded (its row, notice and slots given back), and the 9.2.0 update
// is booked and started after its answer. A mandatory holder and a started
// one are reported and skipped, never overlapped; a holder that does not
// answer is reported with the reason.
func TestRolloutSupersedesAnOlderOptionalUpdate(t *testing.T) {
	f := newRolloutFixture(t)
	f.startWorker(t)
	ctx := context.Background()
	st := store.New(f.pool)

	optional := f.run.InstanceID("fabrikam-sandbox") // on 9.0.0: 9.1.0 was optional when it was rolled out
	instance, err := st.Instance(ctx, optional)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	holderIn := workflows.Input{
		Instance: instance, Admins: []string{"fay.admin@fabrikam.example"}, CurrentVersion: "9.0.0", TargetVersion: "9.1.0",
		PrimaryStart: f.run.Slot(1), SecondaryStart: f.run.Slot(2), WindowLength: 45 * time.Second,
		SecondaryMinGap: demo.SecondaryGap, ReminderOffsets: []time.Duration{0},
		Releases: []workflows.ReleaseOption{{Version: "9.1.0", PeriodStart: now.Add(-time.Hour), PeriodEnd: now.Add(time.Hour)}},
	}.WithDefaults()
	holderID := workflows.WorkflowID(optional, "9.1.0")
	holder, err := f.server.ExecuteWorkflow(ctx, launch.StartOptions(holderID, f.cfg.TaskQueue, holderIn), workflows.WorkflowType, holderIn)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the 9.1.0 update of "+optional+" to record its hold", func() (bool, string) {
		h, found, err := st.OpenUpdate(ctx, optional)
		if err != nil {
			return false, err.Error()
		}
		return found && h.WorkflowID == holderID, fmt.Sprintf("held by %q (found %t)", h.WorkflowID, found)
	})

	mandatory := f.run.InstanceID("contoso-prod")
	mandatoryID := f.holdWith(t, mandatory, workflows.StatusScheduled, true)
	started := f.run.InstanceID("contoso-sandbox")
	startedID := f.holdWith(t, started, workflows.StatusInProgress, false)
	silent := f.run.InstanceID("fabrikam-prod") // held by a row whose workflow is gone
	silentID := f.holdWith(t, silent, workflows.StatusApproved, false)

	var out bytes.Buffer
	e := &env{cfg: f.cfg, stdout: &out, stderr: &out, temporalClient: f.server, pool: f.pool}
	if _, err := rollout(ctx, e, releasePlan{Concurrency: 1, Instances: map[string]bool{optional: true},
		Plan: launch.Plan{Version: demo.Version, DryRun: true, SecondaryMinGap: demo.SecondaryGap}}); err != nil {
		t.Fatal(err)
	}
	if want := "; supersedes " + holderID + " (Scheduled) if it accepts\n"; !strings.Contains(out.String(), want) {
		t.Errorf("dry run lacks %q:\n%s", want, out.String())
	}

	// Without a signing key nothing is superseded: the holder is reported.
	out.Reset()
	unsigned := *e
	unsigned.cfg.ActionSigningKey = actor.SigningKey{}
	summary, err := rollout(ctx, &unsigned, releasePlan{Concurrency: 1, Instances: map[string]bool{optional: true},
		Plan: launch.Plan{Version: demo.Version, SecondaryMinGap: demo.SecondaryGap, ReminderOffsets: f.cfg.ReminderOffsets, WindowLength: f.cfg.UpdateWindow}})
	if err != nil {
		t.Fatal(err)
	}
	if summary.count(launch.Held) != 1 || !strings.Contains(out.String(), "not superseded: ACTION_SIGNING_KEY is not set, so the Supersede cannot be signed") {
		t.Errorf("a rollout without a signing key:\n%s", out.String())
	}
	if h, found, err := st.OpenUpdate(ctx, optional); err != nil || !found || h.WorkflowID != holderID {
		t.Fatalf("%s held by %+v, %t (%v) after an unsigned rollout; want %s still", optional, h, found, err, holderID)
	}

	out.Reset()
	summary, err = f.rollout(ctx, f.server, &out, 2, optional, mandatory, started, silent)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if summary.count(launch.Started) != 1 || summary.count(launch.Held) != 3 {
		t.Errorf("started %d, held %d; want 1 and 3", summary.count(launch.Started), summary.count(launch.Held))
	}
	if want := "started      superseded " + holderID + " (Scheduled)"; !strings.Contains(text, want) {
		t.Errorf("summary lacks %q", want)
	}

	// The holder closed as Superseded, naming the release that replaced it.
	var res workflows.Result
	closed, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := holder.Get(closed, &res); err != nil || res.Status != workflows.StatusSuperseded {
		t.Fatalf("the 9.1.0 update ended %+v, %v; want Superseded", res, err)
	}
	value, err := f.server.QueryWorkflow(ctx, holderID, "", workflows.QueryStatus)
	var view workflows.StatusView
	if err == nil {
		err = value.Get(&view)
	}
	if err != nil || view.SupersededBy != demo.Version {
		t.Fatalf("the superseded update's view: %+v, %v", view, err)
	}
	if last := view.Notices[len(view.Notices)-1]; last.Kind != workflows.NoticeSuperseded || last.Error != "" {
		t.Errorf("last notice of %s: %+v, want the superseded one, sent", holderID, last)
	}
	audit, err := st.AuditLog(ctx, holderID)
	if err != nil {
		t.Fatal(err)
	}
	if last := audit[len(audit)-1]; last.Action != "superseded" || last.StatusAfter != workflows.StatusSuperseded ||
		!strings.HasPrefix(last.Actor, "rollout of 9.2.0 by starter@") {
		t.Errorf("last audit row of %s: %+v, want superseded, by the rollout", holderID, last)
	}

	// The new update holds the instance, with its slots.
	newID := workflows.WorkflowID(optional, demo.Version)
	if h, found, err := st.OpenUpdate(ctx, optional); err != nil || !found || h.WorkflowID != newID {
		t.Errorf("%s held by %+v, %t (%v); want %s", optional, h, found, err, newID)
	}
	if n := f.bookings(t, optional); n != 2 {
		t.Errorf("%s has %d bookings for %s, want 2", optional, n, demo.Version)
	}
	if _, err := f.server.DescribeWorkflow(ctx, newID, ""); err != nil {
		t.Errorf("the %s update of %s was not started: %v", demo.Version, optional, err)
	}

	// The others keep their holder; nothing of 9.2.0 is booked or started.
	for instance, line := range map[string]string{
		mandatory: "held by open update " + mandatoryID + " (Scheduled, mandatory)\n",
		started:   "held by open update " + startedID + " (InProgress)\n",
		silent:    "held by open update " + silentID + " (Approved); not superseded: " + silentID + ": no such workflow",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("summary lacks %q", line)
		}
		if n := f.bookings(t, instance); n != 0 {
			t.Errorf("%s has %d bookings although another update holds it", instance, n)
		}
		if _, err := f.server.DescribeWorkflow(ctx, workflows.WorkflowID(instance, demo.Version), ""); !launch.IsNotFound(err) {
			t.Errorf("the %s update of held %s was started (describe: %v)", demo.Version, instance, err)
		}
	}
}
