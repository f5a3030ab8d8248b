package main

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/workflows"
)

// demoFleetTemplate is the demo's fleet file; its times and instance IDs
// are filled in at each run.
//
//go:embed demo_fleet.json.tmpl
var demoFleetTemplate string

// The demo's release and its compressed clock: reminders at 90, 60 and 30
// seconds and at the slot, 45-second windows, three slots 2, 3 and 4
// minutes out, and a release period ending after 5 minutes, so the whole
// lifecycle plays out in about five minutes.
const (
	demoVersion        = "9.2.0"
	demoWindow         = 45 * time.Second
	demoSecondaryGap   = 15 * time.Second
	demoFirstSlot      = 2 * time.Minute
	demoSlotSpacing    = time.Minute
	demoSlotsPerRegion = 3
	demoPeriodEnd      = 5 * time.Minute
	demoRefresh        = 3 * time.Second
	demoWebUI          = "http://localhost:8233"
)

var (
	demoReminderOffsets = []time.Duration{90 * time.Second, 60 * time.Second, 30 * time.Second, 0}
	demoRegions         = []string{"emea", "amer", "apac"}
)

// demoAction is what the demo does with one instance's update.
type demoAction int

const (
	demoApprove         demoAction = iota // approved → Succeeded in the primary slot
	demoApproveThenFail                   // approved, primary fails → fallback → Succeeded
	demoMandatory                         // n-2: runs without approval
	demoReschedule                        // moved to the second and third slots → Succeeded
	demoLeaveUnapproved                   // never approved → NotApproved at the period's end
	demoAlreadyCurrent                    // already on the release: not eligible
)

// demoCast lists the demo fleet's instances (IDs without the run suffix)
// and what happens to each.
var demoCast = []struct {
	instance string
	admin    string
	action   demoAction
}{
	{"contoso-sandbox", "ana.admin@contoso.example", demoApprove},
	{"contoso-prod", "ben.ops@contoso.example", demoApproveThenFail},
	{"fabrikam-sandbox", "fay.admin@fabrikam.example", demoMandatory},
	{"fabrikam-prod", "fay.admin@fabrikam.example", demoReschedule},
	{"northwind-prod", "kenji.admin@northwind.example", demoLeaveUnapproved},
	{"northwind-sandbox", "kenji.admin@northwind.example", demoAlreadyCurrent},
}

// demoRun is one run of the demo: its ID suffixes the instance IDs so the
// workflow IDs of earlier runs, kept by the dev server, never collide.
type demoRun struct {
	id    string
	start time.Time // the release period's start; slots follow it
}

func (r demoRun) instanceID(base string) string { return base + "-" + r.id }

// slot returns the start of the i-th slot (0-based) of every region.
func (r demoRun) slot(i int) time.Time {
	return r.start.Add(demoFirstSlot + time.Duration(i)*demoSlotSpacing)
}

// simulatedFailures is the worker's SIMULATED_FAILURES for this run: the
// primary attempt of the instance meant to fall back fails.
func (r demoRun) simulatedFailures() string {
	var specs []string
	for _, m := range demoCast {
		if m.action == demoApproveThenFail {
			specs = append(specs, r.instanceID(m.instance)+":"+string(workflows.SlotPrimary))
		}
	}
	return strings.Join(specs, ",")
}

// fleetFile renders the demo fleet file of this run.
func (r demoRun) fleetFile() ([]byte, error) {
	tmpl, err := template.New("demo fleet").Option("missingkey=error").Parse(demoFleetTemplate)
	if err != nil {
		return nil, err
	}
	slots := make([]string, demoSlotsPerRegion)
	for i := range slots {
		slots[i] = r.slot(i).Format(time.RFC3339)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]any{
		"Run":         r.id,
		"PeriodStart": r.start.Format(time.RFC3339),
		"PeriodEnd":   r.start.Add(demoPeriodEnd).Format(time.RFC3339),
		"Regions":     demoRegions,
		"Slots":       slots,
		"Window":      demoWindow.String(),
	})
	return buf.Bytes(), err
}

// fleet parses the rendered demo fleet file like any other.
func (r demoRun) fleet() (*fleet.Fleet, error) {
	data, err := r.fleetFile()
	if err != nil {
		return nil, fmt.Errorf("render the demo fleet: %w", err)
	}
	fl, err := fleet.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("the demo fleet: %w", err)
	}
	return fl, nil
}

func newDemoRun(id string, now time.Time) demoRun {
	if id == "" {
		id = now.UTC().Format("150405")
	}
	return demoRun{id: id, start: now.UTC().Truncate(time.Second)}
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("demo")
	runID := fs.String("run", "", "suffix of this run's instance IDs (default: the time, HHMMSS UTC)")
	printFailures := fs.Bool("print-simulated-failures", false, "print the worker's SIMULATED_FAILURES for this run and exit")
	if err := parseFlags(fs, e, args, 0); err != nil {
		return err
	}
	if strings.ContainsAny(*runID, " :,'\"\\") {
		return usagef("demo: --run %q: use letters, digits and dashes", *runID)
	}
	run := newDemoRun(*runID, time.Now())
	if *printFailures {
		fmt.Fprintln(e.stdout, run.simulatedFailures())
		return nil
	}

	fmt.Fprintf(e.stdout, "svcupdate demo, run %s: release %s to a fleet of %d instances\n\n", run.id, demoVersion, len(demoCast))
	if err := runMigrate(ctx, e, nil); err != nil {
		return err
	}
	if err := runSetup(ctx, e, nil); err != nil {
		return err
	}
	fl, err := run.fleet()
	if err != nil {
		return err
	}
	if err := loadFleet(ctx, e, fl); err != nil {
		return err
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return err
	}

	only := map[string]bool{}
	for _, m := range demoCast {
		only[run.instanceID(m.instance)] = true
	}
	summary, err := rollout(ctx, e, rolloutPlan{
		Version:         demoVersion,
		Concurrency:     4,
		ReminderOffsets: demoReminderOffsets,
		SecondaryMinGap: demoSecondaryGap,
		Instances:       only,
		SlotsFrom:       run.slot(0).Add(-time.Second),
	})
	if err != nil {
		return err
	}
	if summary.count(outcomeFailed) > 0 {
		return fmt.Errorf("the demo rollout failed for %d instance(s)", summary.count(outcomeFailed))
	}
	fmt.Fprintln(e.stdout)

	var ids []string
	for _, m := range demoCast {
		id := workflows.WorkflowID(run.instanceID(m.instance), demoVersion)
		if m.action == demoAlreadyCurrent {
			continue
		}
		// Admins act on the scheduled email, as they would in life.
		if err := awaitNotice(ctx, c, id, workflows.NoticeScheduled); err != nil {
			return err
		}
		switch m.action {
		case demoApprove, demoApproveThenFail:
			if _, err := executeUpdate(ctx, c, id, workflows.UpdateApprove, workflows.ApproveInput{Admin: m.admin, Note: "approved by the demo"}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s approved %s\n", m.admin, run.instanceID(m.instance))
		case demoReschedule:
			input := workflows.RescheduleInput{Admin: m.admin, PrimaryStart: run.slot(1), SecondaryStart: run.slot(2)}
			if _, err := executeUpdate(ctx, c, id, workflows.UpdateReschedule, input); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s moved %s to %s (secondary %s)\n", m.admin, run.instanceID(m.instance),
				input.PrimaryStart.Format(time.TimeOnly+" UTC"), input.SecondaryStart.Format(time.TimeOnly+" UTC"))
		}
		ids = append(ids, id)
	}
	fmt.Fprintf(e.stdout, "\nWatch it in the Web UI: %s (namespace %s)\n\n", demoWebUI, e.cfg.TemporalNamespace)

	if err := watchDemo(ctx, e, c, ids, isTerminal(e.stdout)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nAll demo workflows closed.\n")
	fmt.Fprintf(e.stdout, "  Web UI:     %s/namespaces/%s/workflows\n", demoWebUI, e.cfg.TemporalNamespace)
	fmt.Fprintf(e.stdout, "  Find them:  bin/temporal workflow list --query \"%s = '%s'\"\n",
		workflows.SearchAttrUpdateStatus.GetName(), workflows.StatusSucceeded)
	fmt.Fprintf(e.stdout, "  One update: bin/starter status --instance %s --version %s\n", run.instanceID(demoCast[1].instance), demoVersion)
	fmt.Fprintf(e.stdout, "  All:        bin/starter list --version %s\n", demoVersion)
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

// demoRow is one workflow's line in the live table.
type demoRow struct {
	view      workflows.StatusView
	execution enums.WorkflowExecutionStatus
}

// watchDemo shows the demo's updates until every workflow has closed: a
// table redrawn in place on a terminal, otherwise one line per change.
func watchDemo(ctx context.Context, e *env, c client.Client, ids []string, redraw bool) error {
	last := map[string]string{}
	tick := time.NewTicker(demoRefresh)
	defer tick.Stop()
	for {
		rows, err := demoRows(ctx, c, ids)
		if err != nil {
			return err
		}
		if redraw {
			fmt.Fprint(e.stdout, "\033[H\033[2J") // cursor home, clear screen
			renderDemoTable(e.stdout, rows, time.Now())
		} else {
			for _, r := range rows {
				state := string(r.view.Status)
				if r.execution != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
					state += " (workflow closed)"
				}
				if last[r.view.WorkflowID] != state {
					fmt.Fprintf(e.stdout, "%s  %-32s %s\n", time.Now().UTC().Format(time.TimeOnly), r.view.InstanceID, state)
					last[r.view.WorkflowID] = state
				}
			}
		}
		if !slices.ContainsFunc(rows, func(r demoRow) bool { return r.execution == enums.WORKFLOW_EXECUTION_STATUS_RUNNING }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// demoRows queries every demo workflow's status and execution state.
func demoRows(ctx context.Context, c client.Client, ids []string) ([]demoRow, error) {
	rows := make([]demoRow, 0, len(ids))
	for _, id := range ids {
		desc, err := c.DescribeWorkflow(ctx, id, "")
		if err != nil {
			return nil, fmt.Errorf("describe %s: %w", id, err)
		}
		row := demoRow{execution: desc.Status}
		answer, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
		if err == nil {
			err = answer.Get(&row.view)
		}
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", id, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// renderDemoTable writes the live table: one line per update with its
// status, windows in the instance's zone, attempts and the latest notice.
func renderDemoTable(w io.Writer, rows []demoRow, now time.Time) {
	fmt.Fprintf(w, "svcupdate demo — %s UTC — Ctrl-C stops it — Web UI %s\n\n", now.UTC().Format(time.TimeOnly), demoWebUI)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tVERSION\tMANDATORY\tSTATUS\tPRIMARY (LOCAL)\tSECONDARY (LOCAL)\tATTEMPTS\tLATEST NOTICE")
	for _, r := range rows {
		v := r.view
		mandatory := "no"
		if v.Mandatory {
			mandatory = "yes"
		}
		var attempts []string
		for _, a := range v.Attempts {
			attempts = append(attempts, fmt.Sprintf("%s:%s", a.Slot, cmp.Or(a.Outcome, "running")))
		}
		notice := "-"
		if n := len(v.Notices); n > 0 {
			notice = fmt.Sprintf("%s (%d sent)", v.Notices[n-1].Kind, n)
		}
		fmt.Fprintf(tw, "%s\t%s → %s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.InstanceID, v.CurrentVersion, v.TargetVersion, mandatory,
			v.Status, v.Primary.LocalStart, v.Secondary.LocalStart, cmp.Or(strings.Join(attempts, ", "), "-"), notice)
	}
	tw.Flush()
}
