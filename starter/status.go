package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

const (
	// utcLayout renders a moment in UTC beside its local rendering
	// (workflows.LocalTimeLayout).
	utcLayout = "2006-01-02 15:04 UTC"
)

func newStatusCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status --instance I [--version V] [-o text|json]",
		Short: "show one update (by default the instance's latest, running or closed): status, windows, attempts, notices",
		Args:  maxArgs(0),
	}
	instance := cmd.Flags().String("instance", "", "instance ID (required)")
	version := cmd.Flags().String("version", "", "version the update was started for (default: the instance's latest update, running or closed)")
	format := outputFlag(cmd)
	asJSON := cmd.Flags().Bool("json", false, "the same as -o json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "instance"); err != nil {
			return err
		}
		if *asJSON {
			*format = jsonOutput
		}
		return runStatus(cmd.Context(), e, *instance, *version, *format)
	}
	return cmd
}

// viewJSON is `status -o json`: the Status query's answer and whether
// the workflow still runs (execution: Running, Completed, ...).
type viewJSON struct {
	workflows.StatusView
	Execution string `json:"execution"`
	// Recorded: the state as Postgres recorded it, as the workflow has
	// not run its first task yet.
	Recorded bool `json:"recorded,omitempty"`
}

func runStatus(ctx context.Context, e *env, instance, version string, format outputFormat) error {
	c, err := e.temporal(ctx)
	if err != nil {
		return err
	}
	id, execution, err := latestUpdate(ctx, e, c, instance, version)
	if err != nil {
		return err
	}
	pool, err := e.postgres(ctx)
	if err != nil {
		return err
	}
	db := store.New(pool)
	view, recorded, err := updateView(ctx, c, db, id)
	if err != nil {
		return err
	}
	// The query names no admin (anyone who may query reads it); operators
	// read the admins from Postgres, which holds them.
	recipients, err := db.Recipients(ctx, view.InstanceID)
	if err != nil {
		return fmt.Errorf("read the admins of %s: %w", view.InstanceID, err)
	}
	view.Admins = recipients.Admins
	view = withDeliveries(ctx, e, view)
	if format == jsonOutput {
		return writeJSON(e.stdout, viewJSON{StatusView: view, Execution: executionName(execution), Recorded: recorded})
	}
	if version == "" {
		state := "running"
		if execution != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			state = "closed (" + executionName(execution) + ")"
		}
		fmt.Fprintf(e.stdout, "Latest update of %s: %s, %s\n\n", instance, id, state)
	}
	if recorded {
		fmt.Fprintf(e.stdout, "As recorded in Postgres: the workflow has not run its first task yet (a rollout defers it until its starts are done).\n\n")
	}
	return renderStatus(e.stdout, view)
}

// updateView is the live state of update id, from its Status query; for
// a workflow that has not run its first task yet (a rollout defers it),
// which cannot answer, the state its announcement recorded (recorded).
func updateView(ctx context.Context, c client.Client, s *store.Store, id string) (view workflows.StatusView, recorded bool, err error) {
	answer, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	var notReady *serviceerror.WorkflowNotReady
	switch {
	case errors.As(err, &notReady):
		view, err = s.RecordedView(ctx, id)
		if err != nil {
			return view, false, fmt.Errorf("%s has not run its first task yet, and its recorded state cannot be read: %w", id, err)
		}
		return view, true, nil
	case err != nil:
		return view, false, fmt.Errorf("query %s: %w", id, err)
	}
	if err := answer.Get(&view); err != nil {
		return view, false, fmt.Errorf("decode the status of %s: %w", id, err)
	}
	return view, false, nil
}

// latestUpdate names the update of instance that status shows: the one of
// version when given, else the instance's running update, else the one it
// started last; with its execution status.
func latestUpdate(ctx context.Context, e *env, c client.Client, instance, version string) (string, enums.WorkflowExecutionStatus, error) {
	if version != "" {
		id := workflows.WorkflowID(instance, version)
		desc, err := c.DescribeWorkflow(ctx, id, "")
		if err != nil {
			if launch.IsNotFound(err) {
				return "", 0, fmt.Errorf("instance %s has no update to %s (starter list --instance %s shows its updates)", instance, version, instance)
			}
			return "", 0, fmt.Errorf("describe %s: %w", id, err)
		}
		return id, desc.Status, nil
	}
	updates, err := listUpdates(ctx, c, e.cfg.TemporalNamespace, updateFilter{InstanceID: instance})
	if err != nil {
		return "", 0, err
	}
	var running, latest []updateSummary
	for _, u := range updates {
		if u.Execution == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			running = append(running, u)
		}
		if len(latest) == 0 || u.Started.After(latest[0].Started) {
			latest = []updateSummary{u}
		}
	}
	switch {
	case len(running) > 1:
		ids := make([]string, len(running))
		for i, u := range running {
			ids[i] = u.WorkflowID
		}
		return "", 0, fmt.Errorf("instance %s has %d running updates (%s): pass --version", instance, len(running), strings.Join(ids, ", "))
	case len(running) == 1:
		return running[0].WorkflowID, running[0].Execution, nil
	case len(latest) == 1:
		return latest[0].WorkflowID, latest[0].Execution, nil
	}
	return "", 0, fmt.Errorf("instance %s has no update (starter list shows every update; is the instance ID right?)", instance)
}

// renderStatus writes a StatusView for a person: every moment in the
// instance's time zone with UTC beside it.
func renderStatus(w io.Writer, v workflows.StatusView) error {
	loc := zoneOf(v)
	at := func(t time.Time) string { return formatMoment(t, loc) }

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	row("Instance", "%s (%s), tenant %s", v.InstanceID, v.InstanceName, v.TenantID)
	row("Workflow", "%s", v.WorkflowID)
	version := fmt.Sprintf("%s → %s", v.CurrentVersion, v.TargetVersion)
	if v.OfferedVersion != "" && v.OfferedVersion != v.TargetVersion {
		version += fmt.Sprintf(" (offered %s)", v.OfferedVersion)
	}
	if v.Mandatory {
		version += ", mandatory"
	} else {
		version += ", needs an admin's approval"
	}
	row("Update", "%s", version)
	row("Status", "%s", v.Status)
	if v.ApprovedBy != "" {
		row("Approved", "by %s, %s", v.ApprovedBy, at(v.ApprovedAt))
	}
	row("Primary", "%s", formatWindow(v.Primary))
	row("Secondary", "%s", formatWindow(v.Secondary))
	if !v.ReleasePeriod.PeriodEnd.IsZero() {
		row("Release period", "%s until %s", at(v.ReleasePeriod.PeriodStart), at(v.ReleasePeriod.PeriodEnd))
	}
	if len(v.Admins) > 0 {
		row("Admins", "%s", strings.Join(v.Admins, ", "))
	} else {
		row("Admins", "%d", v.AdminCount)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		for _, line := range lines {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	var attempts []string
	for _, a := range v.Attempts {
		line := fmt.Sprintf("%s slot, started %s", a.Slot, at(a.Started))
		if !a.Finished.IsZero() {
			line += fmt.Sprintf(", finished %s", at(a.Finished))
		}
		if a.Outcome != "" {
			line += ": " + a.Outcome
		}
		if a.Error != "" {
			line += " (" + a.Error + ")"
		}
		attempts = append(attempts, line)
	}
	section("Attempts", attempts)
	section("Notices sent", noticeLines(v.Notices, at))
	section("Upcoming notices", noticeLines(v.Upcoming, at))
	return nil
}

func noticeLines(notices []workflows.NoticeRecord, at func(time.Time) string) []string {
	lines := make([]string, 0, len(notices))
	for _, n := range notices {
		line := fmt.Sprintf("%-14s %s", n.Kind, at(n.At))
		switch {
		case n.Queued && n.Error != "":
			line += " — queued, retrying: " + n.Error
		case n.Queued:
			line += " — queued"
		case n.Error != "":
			line += " — not delivered: " + n.Error
		}
		lines = append(lines, line)
	}
	return lines
}

// zoneOf returns the instance's time zone, UTC when the view names none or
// one this machine does not know.
func zoneOf(v workflows.StatusView) *time.Location {
	loc, err := time.LoadLocation(v.Primary.TimeZone)
	if err != nil || v.Primary.TimeZone == "" {
		return time.UTC
	}
	return loc
}

// formatMoment renders t in loc with UTC beside it.
func formatMoment(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", t.In(loc).Format(workflows.LocalTimeLayout), t.UTC().Format(utcLayout))
}

// formatWindow renders a window in the instance's zone with UTC beside it.
func formatWindow(win workflows.Window) string {
	if win.Start.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s – %s (%s – %s)", win.LocalStart, win.LocalEnd,
		win.Start.UTC().Format(utcLayout), win.End.UTC().Format(utcLayout))
}
