package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/workflows"
)

const (
	// utcLayout renders a moment in UTC beside its local rendering
	// (workflows.LocalTimeLayout).
	utcLayout = "2006-01-02 15:04 UTC"
)

func newStatusCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status --instance I [--version V] [--json]",
		Short: "show one update: status, windows, attempts, notices",
		Args:  maxArgs(0),
	}
	instance, version := updateTargetFlags(cmd)
	asJSON := cmd.Flags().Bool("json", false, "print the Status query's answer as JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "instance"); err != nil {
			return err
		}
		return runStatus(cmd.Context(), e, *instance, *version, *asJSON)
	}
	return cmd
}

func runStatus(ctx context.Context, e *env, instance, version string, asJSON bool) error {
	c, id, err := connectToUpdate(ctx, e, instance, version)
	if err != nil {
		return err
	}
	answer, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		return fmt.Errorf("query %s: %w", id, err)
	}
	var view workflows.StatusView
	if err := answer.Get(&view); err != nil {
		return fmt.Errorf("decode the status of %s: %w", id, err)
	}
	view = withDeliveries(ctx, e, view)
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	return renderStatus(e.stdout, view)
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
	row("Admins", "%s", strings.Join(v.Admins, ", "))
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
