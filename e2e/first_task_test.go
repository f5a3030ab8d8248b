package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestApproveDeliveredWithTheFirstWorkflowTaskIsKept guards against a race
// the end-to-end run hit: an admin approves right after the rollout, before
// a worker has run the new workflow's first task. The Approve then arrives
// with that task; the SDK queues it until its handler is registered and
// runs it at registration (setup yields to it), before the main flow's
// first step. Before commit 70edfa4 that step, the "scheduled"
// announcement, set the status back to Scheduled: the approval was lost and
// the update declined at its slot although the admin had been sent the
// confirmation. Only a real server delivers an Update with the first
// workflow task; here no worker polls until the server has admitted the
// Approve, so it always does. The approval must hold in the worker that ran
// the workflow and in one that replays it.
func TestApproveDeliveredWithTheFirstWorkflowTaskIsKept(t *testing.T) {
	testkit.ClearConfigEnv(t)
	c, _ := devtest.StartForPrograms(t)
	mustRun(t, "setup")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const (
		queue    = "e2e-first-task"
		admin    = "ann@acme.example"
		updateID = "approve-before-the-first-workflow-task"
	)
	now := time.Now().UTC().Truncate(time.Second)
	in := workflows.Input{
		Instance:       workflows.Instance{ID: "acme-prod", Name: "Acme Production", TenantID: "acme", Kind: "production", Region: "emea", TimeZone: "Europe/Berlin"},
		Admins:         []string{admin},
		CurrentVersion: "9.1.0",
		TargetVersion:  targetVersion,
		PrimaryStart:   now.Add(time.Hour),
		SecondaryStart: now.Add(2 * time.Hour),
		Releases:       []workflows.ReleaseOption{{Version: targetVersion, PeriodStart: now, PeriodEnd: now.Add(4 * time.Hour)}},
		WindowLength:   10 * time.Minute,
	}
	id := workflows.WorkflowID(in.Instance.ID, in.TargetVersion)
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, workflows.WorkflowType, in); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	type outcome struct {
		view workflows.StatusView
		err  error
	}
	cfg, err := config.Load() // the keys StartForPrograms made
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := cfg.ActionSigningKey.Signer.Sign(actor.Claims{Actor: admin, Channel: actor.ChannelPortalLink,
		WorkflowID: id, Action: actor.ActionApprove, IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	approved := make(chan outcome, 1)
	go func() {
		var o outcome
		handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: id, UpdateID: updateID, UpdateName: workflows.UpdateApprove,
			Args: []any{workflows.ApproveInput{Admin: admin, Assertion: assertion}}, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if o.err = err; err == nil {
			o.err = handle.Get(ctx, &o.view)
		}
		approved <- o
	}()
	testkit.WaitFor(t, left(ctx), "the server to admit the Approve", func() (bool, string) {
		pollCtx, cancelPoll := context.WithTimeout(ctx, 2*time.Second)
		defer cancelPoll()
		_, err := c.WorkflowService().PollWorkflowExecutionUpdate(pollCtx, &workflowservice.PollWorkflowExecutionUpdateRequest{
			Namespace:  os.Getenv("TEMPORAL_NAMESPACE"), // set by StartForPrograms
			UpdateRef:  &updatepb.UpdateRef{WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id}, UpdateId: updateID},
			WaitPolicy: &updatepb.WaitPolicy{LifecycleStage: enums.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED},
		})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})

	first := startStubWorker(t, c, queue)

	o := <-approved
	if o.err != nil || o.view.Status != workflows.StatusApproved {
		t.Fatalf("Approve: status %s, error %v; want %s", o.view.Status, o.err, workflows.StatusApproved)
	}
	// Once the main flow has announced the schedule, the approval must
	// still stand, in this worker's cached workflow...
	testkit.WaitFor(t, left(ctx), "the scheduled notice of "+id, func() (bool, string) {
		view, err := tryQueryStatus(ctx, c, id)
		if err != nil {
			return false, err.Error()
		}
		for _, n := range view.Notices {
			if n.Kind == workflows.NoticeScheduled {
				return true, ""
			}
		}
		return false, fmt.Sprintf("notices so far: %v", view.Notices)
	})
	checkApproved := func(where string) {
		var view workflows.StatusView
		testkit.WaitFor(t, left(ctx), "the status of "+id+" "+where, func() (bool, string) {
			var err error
			view, err = tryQueryStatus(ctx, c, id)
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if view.Status != workflows.StatusApproved || view.ApprovedBy != workflows.MaskEmail(admin) {
			t.Errorf("%s, %s is %s (approved by %q), want %s by %s; notices in order: %v",
				where, id, view.Status, view.ApprovedBy, workflows.StatusApproved, admin, view.Notices)
		}
	}
	checkApproved("in the worker that ran it")
	// ...and in a worker that rebuilds it from its history, as any worker
	// does after a restart or a cache eviction.
	first.Stop()
	startStubWorker(t, c, queue)
	checkApproved("replayed by a new worker")
}

// startStubWorker runs ServiceUpdate on queue with the only activities it
// calls before its primary slot, RecordTransition and SendNotice, stubbed.
func startStubWorker(t *testing.T, c client.Client, queue string) worker.Worker {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	cfg, err := config.Load() // the keys StartForPrograms made
	if err != nil {
		t.Fatal(err)
	}
	w.RegisterWorkflowWithOptions(workflows.ServiceUpdates{Trusted: cfg.ActionTrustedKeys.Verifier}.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	w.RegisterActivityWithOptions(func(context.Context, workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
		return workflows.RecordTransitionResult{AuditID: 1}, nil
	}, activity.RegisterOptions{Name: workflows.ActivityRecordTransition})
	w.RegisterActivityWithOptions(func(context.Context, workflows.SendNoticeInput) (workflows.SendNoticeResult, error) {
		return workflows.SendNoticeResult{Recipients: 1}, nil
	}, activity.RegisterOptions{Name: workflows.ActivitySendNotice})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}
