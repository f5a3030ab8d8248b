package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/workflows"
)

func newListCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--version V] [--status S]",
		Short: "list updates from Temporal visibility, with counts per status",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	version := fs.String("version", "", "only updates targeting this version")
	status := fs.String("status", "", "only updates in this status: "+statusNames())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runList(cmd.Context(), e, *version, *status) }
	return cmd
}

func runList(ctx context.Context, e *env, version, status string) error {
	filter := updateFilter{TargetVersion: version}
	if status != "" {
		s, err := parseStatus(status)
		if err != nil {
			return err
		}
		filter.Status = s
	}
	if _, err := filter.query(); err != nil {
		return err // a bad value is reported before connecting
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return err
	}
	updates, err := listUpdates(ctx, c, e.cfg.TemporalNamespace, filter)
	if err != nil {
		return err
	}
	return renderList(e.stdout, updates)
}

// parseStatus accepts a status name in any letter case.
func parseStatus(value string) (workflows.Status, error) {
	for _, s := range workflows.AllStatuses {
		if strings.EqualFold(string(s), value) {
			return s, nil
		}
	}
	return "", cli.Usagef("list: --status %q is not a status (accepted: %s)", value, statusNames())
}

func statusNames() string {
	names := make([]string, len(workflows.AllStatuses))
	for i, s := range workflows.AllStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// renderList writes the updates as a table, oldest scheduled first, then
// the count in every status that occurs.
func renderList(w io.Writer, updates []updateSummary) error {
	if len(updates) == 0 {
		_, err := fmt.Fprintln(w, "no updates match")
		return err
	}
	updates = slices.Clone(updates)
	slices.SortFunc(updates, func(a, b updateSummary) int {
		if c := a.ScheduledStart.Compare(b.ScheduledStart); c != 0 {
			return c
		}
		return strings.Compare(a.InstanceID, b.InstanceID)
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tTENANT\tTARGET\tSTATUS\tMANDATORY\tSCHEDULED (UTC)\tWORKFLOW")
	for _, u := range updates {
		mandatory := "no"
		if u.Mandatory {
			mandatory = "yes"
		}
		scheduled := "-"
		if !u.ScheduledStart.IsZero() {
			scheduled = u.ScheduledStart.UTC().Format(utcLayout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			u.InstanceID, u.TenantID, u.TargetVersion, u.Status, mandatory, scheduled, executionName(u.Execution))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s\n", statusCounts(updates))
	return err
}

// statusCounts reads "3 updates: Scheduled 1, Succeeded 2", statuses in
// lifecycle order; a status the search attribute does not carry (a
// workflow terminated before its first transition) counts as "unknown".
func statusCounts(updates []updateSummary) string {
	counts := map[workflows.Status]int{}
	for _, u := range updates {
		counts[u.Status]++
	}
	var parts []string
	for _, s := range workflows.AllStatuses {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
			delete(counts, s)
		}
	}
	unknown := 0
	for _, n := range counts {
		unknown += n
	}
	if unknown > 0 {
		parts = append(parts, fmt.Sprintf("unknown %d", unknown))
	}
	noun := "updates"
	if len(updates) == 1 {
		noun = "update"
	}
	return fmt.Sprintf("%d %s: %s", len(updates), noun, strings.Join(parts, ", "))
}

// executionName is Temporal's short name of an execution status (Running,
// Completed, Terminated, ...).
func executionName(s enums.WorkflowExecutionStatus) string {
	if s == enums.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED {
		return "-"
	}
	return s.String()
}
