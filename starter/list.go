package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/workflows"
)

func newListCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--version V] [--status S] [--tenant T] [--mandatory] [--limit N] [--count] [-o text|json]",
		Short: "list updates from Temporal visibility as they arrive, newest first, with counts per status",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	version := fs.String("version", "", "only updates targeting this version")
	status := fs.String("status", "", "only updates in this status: "+statusNames())
	tenant := fs.String("tenant", "", "only updates of this tenant's instances")
	mandatory := fs.Bool("mandatory", false, "only mandatory updates; --mandatory=false: only optional ones")
	limit := fs.Int("limit", 0, "stop after this many updates (0: all)")
	count := fs.Bool("count", false, "print only the counts per status (one request per status, no listing)")
	format := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		filter := updateFilter{TargetVersion: *version, TenantID: *tenant}
		if cmd.Flags().Changed("mandatory") {
			filter.Mandatory = mandatory
		}
		if *status != "" {
			s, err := parseStatus(*status)
			if err != nil {
				return err
			}
			filter.Status = s
		}
		if *limit < 0 {
			return cli.Usagef("list: --limit %d is negative (accepted: 0 for all, or a positive number)", *limit)
		}
		if *count && *limit != 0 {
			return cli.Usagef("list: --count counts every update; it takes no --limit")
		}
		if _, err := filter.query(); err != nil {
			return err // a bad value is reported before connecting
		}
		c, err := e.temporal(cmd.Context())
		if err != nil {
			return err
		}
		if *count {
			return countList(cmd.Context(), e, c, filter, *format)
		}
		return streamList(cmd.Context(), e, c, filter, *limit, *format)
	}
	return cmd
}

// streamList prints the updates page by page as visibility returns them,
// then (in text) the counts per status.
func streamList(ctx context.Context, e *env, c client.Client, filter updateFilter, limit int, format outputFormat) error {
	w := &updateStream{w: e.stdout, format: format}
	err := eachUpdate(ctx, c, e.cfg.TemporalNamespace, filter, limit, w.add, w.flush)
	if err != nil {
		return err
	}
	return w.finish()
}

// countList prints how many updates the filter selects per status,
// counted by the server.
func countList(ctx context.Context, e *env, c client.Client, filter updateFilter, format outputFormat) error {
	doc := countJSON{Statuses: map[string]int64{}}
	count := func(f updateFilter) (int64, error) {
		query, err := f.query()
		if err != nil {
			return 0, err
		}
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: e.cfg.TemporalNamespace, Query: query})
		if err != nil {
			return 0, fmt.Errorf("count workflows (%s): %w", query, err)
		}
		return resp.GetCount(), nil
	}
	var err error
	if doc.Total, err = count(filter); err != nil {
		return err
	}
	known := int64(0)
	for _, s := range workflows.AllStatuses {
		n := int64(0)
		if filter.Status == "" || filter.Status == s {
			by := filter
			by.Status = s
			if n, err = count(by); err != nil {
				return err
			}
		}
		doc.Statuses[string(s)] = n
		known += n
	}
	doc.Statuses["unknown"] = doc.Total - known
	if format == jsonOutput {
		return writeJSON(e.stdout, doc)
	}
	_, err = fmt.Fprintln(e.stdout, countLine(doc))
	return err
}

// countLine reads "3 updates: Scheduled 1, Succeeded 2", statuses in
// lifecycle order, those with none left out.
func countLine(doc countJSON) string {
	var parts []string
	for _, s := range workflows.AllStatuses {
		if n := doc.Statuses[string(s)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
	}
	if n := doc.Statuses["unknown"]; n > 0 {
		parts = append(parts, fmt.Sprintf("unknown %d", n))
	}
	noun := "updates"
	if doc.Total == 1 {
		noun = "update"
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d %s", doc.Total, noun)
	}
	return fmt.Sprintf("%d %s: %s", doc.Total, noun, strings.Join(parts, ", "))
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

// updateStream prints updates as they stream in: a table flushed page by
// page and the counts at the end, or one JSON object a line.
type updateStream struct {
	w      io.Writer
	format outputFormat
	tw     *tabwriter.Writer
	counts countJSON
}

func (l *updateStream) add(u updateSummary) error {
	if l.counts.Statuses == nil {
		l.counts.Statuses = map[string]int64{}
	}
	l.counts.Total++
	if slices.Contains(workflows.AllStatuses, u.Status) {
		l.counts.Statuses[string(u.Status)]++
	} else {
		l.counts.Statuses["unknown"]++
	}
	if l.format == jsonOutput {
		return json.NewEncoder(l.w).Encode(newUpdateJSON(u))
	}
	if l.tw == nil {
		l.tw = tabwriter.NewWriter(l.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(l.tw, "INSTANCE\tTENANT\tTARGET\tSTATUS\tMANDATORY\tSCHEDULED (UTC)\tWORKFLOW")
	}
	mandatory := "no"
	if u.Mandatory {
		mandatory = "yes"
	}
	scheduled := "-"
	if !u.ScheduledStart.IsZero() {
		scheduled = u.ScheduledStart.UTC().Format(utcLayout)
	}
	status := cmp.Or(string(u.Status), "-")
	_, err := fmt.Fprintf(l.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
		u.InstanceID, u.TenantID, u.TargetVersion, status, mandatory, scheduled, executionName(u.Execution))
	return err
}

// flush writes the rows of one page.
func (l *updateStream) flush() error {
	if l.tw == nil {
		return nil
	}
	return l.tw.Flush()
}

// finish writes the counts (text only: JSON Lines carry rows alone).
func (l *updateStream) finish() error {
	if err := l.flush(); err != nil || l.format == jsonOutput {
		return err
	}
	if l.counts.Total == 0 {
		_, err := fmt.Fprintln(l.w, "no updates match")
		return err
	}
	_, err := fmt.Fprintf(l.w, "\n%s\n", countLine(l.counts))
	return err
}

// executionName is Temporal's short name of an execution status (Running,
// Completed, Terminated, ...).
func executionName(s enums.WorkflowExecutionStatus) string {
	if s == enums.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED {
		return "-"
	}
	return s.String()
}
