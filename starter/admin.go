package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/duration"
	"github.com/svcupdate/svcupdate/workflows"
)

func newApproveCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approve --instance I --admin EMAIL [--version V]",
		Short: "approve an instance's update as one of its admins",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	instance, version := updateTargetFlags(cmd)
	admin := fs.String("admin", "", "email of the approving admin (required)")
	note := fs.String("note", "", "a note kept in the audit log")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "instance", "admin"); err != nil {
			return err
		}
		return sendAdminUpdate(cmd.Context(), e, *instance, *version, workflows.UpdateApprove,
			workflows.ApproveInput{Admin: *admin, Note: *note})
	}
	return cmd
}

func newRescheduleCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reschedule --instance I --admin EMAIL --primary T --secondary T [--target V] [--version V]",
		Short: "move an update to other slots (RFC 3339 times), optionally to a later version",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	instance, version := updateTargetFlags(cmd)
	admin := fs.String("admin", "", "email of the admin moving the update (required)")
	var primary, secondary timeFlag
	fs.Var(&primary, "primary", "start of the new primary slot, RFC 3339 such as 2026-03-03T02:00:00+01:00 (required)")
	fs.Var(&secondary, "secondary", "start of the new secondary slot, RFC 3339 (required)")
	target := fs.String("target", "", "a later target version than the one offered (default: keep the current target)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "instance", "admin", "primary", "secondary"); err != nil {
			return err
		}
		return sendAdminUpdate(cmd.Context(), e, *instance, *version, workflows.UpdateReschedule, workflows.RescheduleInput{
			Admin:          *admin,
			PrimaryStart:   primary.t,
			SecondaryStart: secondary.t,
			TargetVersion:  *target,
		})
	}
	return cmd
}

// timeFlag is an RFC 3339 time flag; a bad value names the flag through the
// flag package and shows what is accepted.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Type() string { return "time" }

func (f *timeFlag) Set(value string) error {
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return errors.New("not an RFC 3339 time (accepted: such as 2026-03-03T02:00:00+01:00 or 2026-03-03T01:00:00Z)")
	}
	f.t = t
	return nil
}

var _ pflag.Value = (*timeFlag)(nil)

// sendAdminUpdate sends a Temporal Update to the instance's update, waits
// for its outcome and prints the resulting status; a refusal by the
// workflow's validator is returned as the error, in the validator's words.
func sendAdminUpdate(ctx context.Context, e *env, instance, version, updateName string, input any) error {
	c, id, err := connectToUpdate(ctx, e, instance, version)
	if err != nil {
		return err
	}
	view, err := executeUpdate(ctx, c, id, updateName, input)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %s accepted\n\n", id, updateName)
	return renderStatus(e.stdout, view)
}

// executeUpdate runs one Update to completion and returns the StatusView it
// answers with.
func executeUpdate(ctx context.Context, c client.Client, workflowID, updateName string, input any) (workflows.StatusView, error) {
	handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   updateName,
		Args:         []any{input},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var view workflows.StatusView
	if err == nil {
		err = handle.Get(ctx, &view)
	}
	if err != nil {
		return workflows.StatusView{}, updateError(workflowID, updateName, err)
	}
	return view, nil
}

// updateError words a failed Update: a refusal carries the workflow's own
// message; a closed or unknown workflow says so.
func updateError(workflowID, updateName string, err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return fmt.Errorf("%s refused by %s: %s", updateName, workflowID, appErr.Message())
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%s: no such workflow, or it has closed (starter list shows every update)", workflowID)
	}
	return fmt.Errorf("%s on %s: %w", updateName, workflowID, err)
}

func newCancelCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel --instance I [--version V] [--reason R]",
		Short: "cancel an update (its slots are released, admins told)",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	instance, version := updateTargetFlags(cmd)
	reason := fs.String("reason", "cancelled by an operator", "why, kept in the workflow's history")
	var wait time.Duration
	fs.Var(duration.NewValue(&wait, 30*time.Second), "wait", "how long to wait for the workflow to close (0: do not wait)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "instance"); err != nil {
			return err
		}
		return runCancel(cmd.Context(), e, *instance, *version, *reason, wait)
	}
	return cmd
}

func runCancel(ctx context.Context, e *env, instance, version, reason string, wait time.Duration) error {
	c, id, err := connectToUpdate(ctx, e, instance, version)
	if err != nil {
		return err
	}
	// The raw request carries the reason, which client.CancelWorkflow cannot.
	if _, err := c.WorkflowService().RequestCancelWorkflowExecution(ctx, &workflowservice.RequestCancelWorkflowExecutionRequest{
		Namespace:         e.cfg.TemporalNamespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id},
		Identity:          e.clientOptions().Identity,
		Reason:            reason,
	}); err != nil {
		return fmt.Errorf("cancel %s: %w", id, err)
	}
	fmt.Fprintf(e.stdout, "%s: cancellation requested (%s)\n", id, reason)
	if wait <= 0 {
		return nil
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var result workflows.Result
	err = c.GetWorkflow(waitCtx, id, "").Get(waitCtx, &result)
	var cancelled *temporal.CanceledError
	switch {
	case err == nil:
		fmt.Fprintf(e.stdout, "%s: closed, status %s\n", id, result.Status)
	case errors.As(err, &cancelled):
		fmt.Fprintf(e.stdout, "%s: closed as cancelled\n", id)
	case waitCtx.Err() != nil:
		fmt.Fprintf(e.stdout, "%s: still closing after %s; starter status --instance %s shows its progress\n", id, wait, instance)
	default:
		return fmt.Errorf("%s: %w", id, err)
	}
	return nil
}
