package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/starter/internal/demo"
	"github.com/svcupdate/svcupdate/starter/internal/progress"
	"github.com/svcupdate/svcupdate/workflows"
)

func newDemoCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo [--run ID]",
		Short: "the demo behind `make run`: a small fleet through the whole lifecycle in minutes",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	runID := fs.String("run", "", "suffix of this run's instance IDs (default: the time, HHMMSS UTC)")
	printFailures := fs.Bool("print-simulated-failures", false, "print the worker's SIMULATED_FAILURES for this run and exit")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runDemo(cmd.Context(), e, *runID, *printFailures)
	}
	return cmd
}

func runDemo(ctx context.Context, e *env, runID string, printFailures bool) error {
	if strings.ContainsAny(runID, " :,'\"\\") {
		return cli.Usagef("demo: --run %q: use letters, digits and dashes", runID)
	}
	run := demo.NewRun(runID, time.Now())
	if printFailures {
		fmt.Fprintln(e.stdout, run.SimulatedFailures())
		return nil
	}

	fmt.Fprintf(e.stdout, "svcupdate demo, run %s: release %s to a fleet of %d instances\n\n", run.ID, demo.Version, len(demo.Cast))
	if err := runMigrate(ctx, e, false); err != nil {
		return err
	}
	if err := runSetup(ctx, e); err != nil {
		return err
	}
	fl, err := run.Fleet()
	if err != nil {
		return err
	}
	if err := applyFleet(ctx, e, fl, textOutput); err != nil {
		return err
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return err
	}

	only := map[string]bool{}
	for _, m := range demo.Cast {
		only[run.InstanceID(m.Instance)] = true
	}
	summary, err := rollout(ctx, e, releasePlan{
		Plan: launch.Plan{
			Version:         demo.Version,
			ReminderOffsets: demo.ReminderOffsets,
			SecondaryMinGap: demo.SecondaryGap,
			SlotsFrom:       run.Slot(0).Add(-time.Second),
			// MinNotice and RescheduleMinNotice stay zero: on the demo's
			// compressed clock the slots are minutes away.
		},
		Concurrency: 4,
		Instances:   only,
	})
	if err != nil {
		return err
	}
	if summary.count(launch.Failed) > 0 {
		return fmt.Errorf("the demo rollout failed for %d instance(s)", summary.count(launch.Failed))
	}
	fmt.Fprintln(e.stdout)

	var ids []string
	for _, m := range demo.Cast {
		id := workflows.WorkflowID(run.InstanceID(m.Instance), demo.Version)
		if m.Action == demo.AlreadyCurrent {
			continue
		}
		// Admins act on the scheduled email, as they would in life.
		if err := awaitNotice(ctx, c, id, workflows.NoticeScheduled); err != nil {
			return err
		}
		switch m.Action {
		case demo.Approve, demo.ApproveThenFail:
			input, err := e.signed(id, workflows.ApproveInput{Admin: m.Admin, Note: "approved by the demo"})
			if err != nil {
				return err
			}
			if _, err := executeUpdate(ctx, c, id, workflows.UpdateApprove, input); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s approved %s\n", m.Admin, run.InstanceID(m.Instance))
		case demo.Reschedule:
			input := workflows.RescheduleInput{Admin: m.Admin, PrimaryStart: run.Slot(1), SecondaryStart: run.Slot(2)}
			signed, err := e.signed(id, input)
			if err != nil {
				return err
			}
			if _, err := executeUpdate(ctx, c, id, workflows.UpdateReschedule, signed); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s moved %s to %s (secondary %s)\n", m.Admin, run.InstanceID(m.Instance),
				input.PrimaryStart.Format(time.TimeOnly+" UTC"), input.SecondaryStart.Format(time.TimeOnly+" UTC"))
		}
		ids = append(ids, id)
	}
	fmt.Fprintf(e.stdout, "\nWatch it in the Web UI: %s (namespace %s)\n\n", demo.WebUI, e.cfg.TemporalNamespace)

	if err := watchDemo(ctx, e, c, ids, progress.IsTerminal(e.stdout)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nAll demo workflows closed.\n")
	fmt.Fprintf(e.stdout, "  Web UI:     %s/namespaces/%s/workflows\n", demo.WebUI, e.cfg.TemporalNamespace)
	fmt.Fprintf(e.stdout, "  Find them:  bin/temporal workflow list --query \"%s = '%s'\"\n",
		workflows.SearchAttrUpdateStatus.GetName(), workflows.StatusSucceeded)
	fmt.Fprintf(e.stdout, "  One update: bin/starter status --instance %s --version %s\n", run.InstanceID(demo.Cast[1].Instance), demo.Version)
	fmt.Fprintf(e.stdout, "  All:        bin/starter list --version %s\n", demo.Version)
	return nil
}

// awaitNotice waits until the workflow id has sent a notice of kind.
func awaitNotice(ctx context.Context, c client.Client, id string, kind workflows.NoticeKind) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		answer, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
		var view workflows.StatusView
		if err == nil {
			err = answer.Get(&view)
		}
		if err == nil && slices.ContainsFunc(view.Notices, func(n workflows.NoticeRecord) bool { return n.Kind == kind }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s sent no %s notice within a minute (is the worker running? see .data/worker.log): %w", id, kind, ctx.Err())
		case <-poll.C:
		}
	}
}

// watchDemo shows the demo's updates until every workflow has closed: a
// table redrawn in place on a terminal, otherwise one line per change.
func watchDemo(ctx context.Context, e *env, c client.Client, ids []string, redraw bool) error {
	last := map[string]string{}
	tick := time.NewTicker(demo.Refresh)
	defer tick.Stop()
	for {
		rows, err := queryRows(ctx, c, ids)
		if err != nil {
			return err
		}
		if redraw {
			fmt.Fprint(e.stdout, "\033[H\033[2J") // cursor home, clear screen
			demo.RenderTable(e.stdout, rows, time.Now())
		} else {
			for _, r := range rows {
				state := string(r.View.Status)
				if r.Execution != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
					state += " (workflow closed)"
				}
				if last[r.View.WorkflowID] != state {
					fmt.Fprintf(e.stdout, "%s  %-32s %s\n", time.Now().UTC().Format(time.TimeOnly), r.View.InstanceID, state)
					last[r.View.WorkflowID] = state
				}
			}
		}
		if !slices.ContainsFunc(rows, func(r demo.Row) bool { return r.Execution == enums.WORKFLOW_EXECUTION_STATUS_RUNNING }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// queryRows queries every demo workflow's status and execution state.
func queryRows(ctx context.Context, c client.Client, ids []string) ([]demo.Row, error) {
	rows := make([]demo.Row, 0, len(ids))
	for _, id := range ids {
		desc, err := c.DescribeWorkflow(ctx, id, "")
		if err != nil {
			return nil, fmt.Errorf("describe %s: %w", id, err)
		}
		row := demo.Row{Execution: desc.Status}
		answer, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
		if err == nil {
			err = answer.Get(&row.View)
		}
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", id, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
