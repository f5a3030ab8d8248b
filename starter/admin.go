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

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/duration"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

func newApproveCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approve --instance I --as EMAIL [--version V]",
		Short: "approve an instance's update for one of its admins (signed with ACTION_SIGNING_KEY)",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	instance, version := updateTargetFlags(cmd)
	admin := adminFlag(cmd, "email of the approving admin, whom the operator acts for (required)")
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
		Use:   "reschedule --instance I --as EMAIL (--primary T --secondary T | --pick) [--target V] [--version V]",
		Short: "move an update to other slots (RFC 3339 or the instance's local time, or picked from the free ones) for one of its admins, optionally to a later version (signed)",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	instance, version := updateTargetFlags(cmd)
	admin := adminFlag(cmd, "email of the admin moving the update, whom the operator acts for (required)")
	var primary, secondary slotTime
	fs.Var(&primary, "primary", `start of the new primary slot: RFC 3339 such as 2026-03-03T02:00:00+01:00, or the instance's local time such as "2026-03-03 02:00" (required without --pick)`)
	fs.Var(&secondary, "secondary", "start of the new secondary slot, written as --primary (required without --pick)")
	pick := fs.Bool("pick", false, "choose both slots from the free ones offered, on a terminal")
	target := fs.String("target", "", "a later target version than the one offered (default: keep the current target)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		slots := []string{"primary", "secondary"}
		if *pick {
			slots = nil
		}
		if err := required(cmd, append([]string{"instance", "admin"}, slots...)...); err != nil {
			return err
		}
		if *pick && (cmd.Flags().Changed("primary") || cmd.Flags().Changed("secondary")) {
			return cli.Usagef("reschedule: --pick chooses both slots; give it without --primary and --secondary")
		}
		if *pick && !isTerminalInput(cmd.InOrStdin()) {
			return cli.Usagef("reschedule: --pick asks on a terminal; from a script give --primary and --secondary")
		}
		primaryStart, secondaryStart, err := rescheduleSlots(cmd, e, *instance, *target, *pick, &primary, &secondary)
		if err != nil {
			return err
		}
		return sendAdminUpdate(cmd.Context(), e, *instance, *version, workflows.UpdateReschedule, workflows.RescheduleInput{
			Admin:          *admin,
			PrimaryStart:   primaryStart,
			SecondaryStart: secondaryStart,
			TargetVersion:  *target,
		})
	}
	return cmd
}

// rescheduleSlots returns the starts of the new slots: picked from the
// free slots of the update's target (or --target), or the flags' times,
// a local time read in the instance's zone.
func rescheduleSlots(cmd *cobra.Command, e *env, instance, target string, pick bool, primary, secondary *slotTime) (time.Time, time.Time, error) {
	ctx := cmd.Context()
	if !pick && !primary.isLocal() && !secondary.isLocal() {
		return primary.t, secondary.t, nil // RFC 3339 needs no look-up
	}
	in, loc, err := instanceZone(ctx, e, instance)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if !pick {
		p, err := primary.resolve("primary", loc)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		s, err := secondary.resolve("secondary", loc)
		return p, s, err
	}
	if target == "" {
		pool, err := e.postgres(ctx)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		open, found, err := store.New(pool).OpenUpdate(ctx, instance)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if !found {
			return time.Time{}, time.Time{}, fmt.Errorf("instance %s has no open update to reschedule", instance)
		}
		target = open.TargetVersion
	}
	free, err := freeSlots(ctx, e, in, target, time.Now())
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Free slots of %s in %s, in %s:\n", target, in.Region, loc)
	return pickSlots(cmd.InOrStdin(), cmd.ErrOrStderr(), free, loc)
}

var _ pflag.Value = (*slotTime)(nil)

// sendAdminUpdate sends a Temporal Update to the instance's update, waits
// for its outcome and prints the resulting status; a refusal by the
// workflow's validator is returned as the error, in the validator's words.
func sendAdminUpdate(ctx context.Context, e *env, instance, version, updateName string, input any) error {
	c, id, err := connectToUpdate(ctx, e, instance, version)
	if err != nil {
		return err
	}
	if input, err = e.signed(id, input); err != nil {
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
