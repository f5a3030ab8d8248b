package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// release1 is the commit of the first landed release, whose workflow code
// production runs: the updates its programs started must be finished by
// every later worker. Move it to a newer release once no update started
// before that release is still open.
const release1 = "330f2b1ee883cea9fc7890ba2af32d3e159fc4b7"

// The upgrade test's compressed calendar, counted from the fleet file's
// writing. The failing instance's region has early slots: its primary
// attempt fails under the release-1 worker, and its secondary slot opens
// after the upgrade. The other region's slots, and the reminder before
// them, come after the upgrade too.
const (
	upgradeWindow      = 20 * time.Second
	upgradeGap         = 5 * time.Second
	upgradeReminder    = 30 * time.Second
	earlyPrimaryLead   = 25 * time.Second
	earlySecondaryLead = 70 * time.Second
	latePrimaryLead    = 90 * time.Second
	lateSecondaryLead  = latePrimaryLead + upgradeWindow + upgradeGap
	upgradeSlack       = 5 * time.Second // after the last window, before the period ends
	// upgradeDeadline bounds the lifecycles from the fleet file's writing;
	// the last update should close about latePrimaryLead after it.
	upgradeDeadline = 3 * time.Minute
	// replayTimeout bounds the new worker's first answer for an update.
	replayTimeout = 30 * time.Second
	// simulatedDuration is how long each simulated update takes.
	simulatedDuration = time.Second
)

// upgradeCalendar is the run's calendar: the late region's slots and the
// release period in calendar, the early region's slots beside it.
type upgradeCalendar struct {
	calendar
	earlyPrimary, earlySecondary time.Time
}

func newUpgradeCalendar(now time.Time) upgradeCalendar {
	start := now.UTC().Truncate(time.Second)
	return upgradeCalendar{
		calendar: calendar{
			periodStart: start,
			primary:     start.Add(latePrimaryLead),
			secondary:   start.Add(lateSecondaryLead),
			periodEnd:   start.Add(lateSecondaryLead + upgradeWindow + upgradeSlack),
			window:      upgradeWindow,
		},
		earlyPrimary:   start.Add(earlyPrimaryLead),
		earlySecondary: start.Add(earlySecondaryLead),
	}
}

// earlyRegion is the region of the update that falls back before the
// upgrade.
const earlyRegion = "amer"

func (c upgradeCalendar) slotsIn(region string) (primary, secondary time.Time) {
	if region == earlyRegion {
		return c.earlyPrimary, c.earlySecondary
	}
	return c.primary, c.secondary
}

// inFlight is an update of the upgrade test: where it must wait when the
// release-1 worker stops, and how the new worker must finish it.
type inFlight struct {
	fleetInstance
	pausedStatus   workflows.Status
	pausedAttempts []string             // "slot:outcome"
	pausedUpcoming workflows.NoticeKind // a notice still due at the upgrade; empty: none asked for
}

func upgradeFleet() []inFlight {
	reminder := workflows.ReminderKind(upgradeReminder)
	n := func(kinds ...workflows.NoticeKind) []workflows.NoticeKind { return kinds }
	return []inFlight{
		{
			fleetInstance: fleetInstance{
				id: "acme-prod", tenant: "acme", kind: "production", region: "emea", timeZone: "Europe/Berlin", version: "9.1.0",
				admins: []string{"ann@acme.example"}, users: []string{"staff@acme.example"},
				approve:    true,
				wantStatus: workflows.StatusSucceeded, wantAttempts: []string{"primary:succeeded"}, wantVersion: targetVersion,
				wantNotices: n(workflows.NoticeScheduled, workflows.NoticeConfirmed, reminder, workflows.NoticeDayOf,
					workflows.NoticeInProgress, workflows.NoticeSucceeded),
			},
			pausedStatus: workflows.StatusApproved, pausedUpcoming: reminder,
		},
		{
			// Its reminder is due before its workflow starts, so it gets none.
			fleetInstance: fleetInstance{
				id: "initech-prod", tenant: "initech", kind: "production", region: earlyRegion, timeZone: "America/Chicago", version: "9.1.0",
				admins: []string{"ian@initech.example"}, users: []string{"ops@initech.example"},
				approve: true, failing: []workflows.SlotRole{workflows.SlotPrimary},
				wantStatus: workflows.StatusSucceeded, wantAttempts: []string{"primary:failed", "secondary:succeeded"}, wantVersion: targetVersion,
				wantNotices: n(workflows.NoticeScheduled, workflows.NoticeConfirmed, workflows.NoticeDayOf, workflows.NoticeInProgress,
					workflows.NoticeFallback, workflows.NoticeInProgress, workflows.NoticeSucceeded),
			},
			pausedStatus: workflows.StatusFallbackScheduled, pausedAttempts: []string{"primary:failed"},
		},
		{
			// Two versions behind: mandatory, runs without an approval.
			fleetInstance: fleetInstance{
				id: "globex-sandbox", tenant: "globex", kind: "sandbox", region: "emea", timeZone: "Asia/Tokyo", version: "9.0.0",
				admins: []string{"gina@globex.example"}, users: []string{"dev@globex.example"},
				wantStatus: workflows.StatusSucceeded, wantAttempts: []string{"primary:succeeded"}, wantVersion: targetVersion,
				wantNotices: n(workflows.NoticeScheduled, reminder, workflows.NoticeDayOf, workflows.NoticeInProgress, workflows.NoticeSucceeded),
			},
			pausedStatus: workflows.StatusScheduled, pausedUpcoming: reminder,
		},
	}
}

// TestUpgradeInFlight proves that a deploy of the working tree finishes
// the updates release 1 started. The release-1 programs (built from their
// commit) migrate, load a fleet, roll it out and run the updates on a
// compressed clock until they wait mid-lifecycle: one approved and waiting
// for its reminder, one fallen back after a failed primary attempt and
// waiting for its secondary slot, one mandatory and waiting for its
// primary. The release-1 worker then stops; the working tree's starter
// migrates, and its worker must finish every update as release 1 would
// have, without a workflow task failing on the histories release 1 wrote.
func TestUpgradeInFlight(t *testing.T) {
	began := time.Now()
	release := testkit.BuildAtCommit(t, release1, "./worker", "./starter")
	testkit.Build(t, "./worker")
	testkit.Build(t, "./starter")
	t.Logf("release-1 and current programs built in %s", time.Since(began).Round(time.Second))

	testkit.ClearConfigEnv(t)
	server := devtest.Start(t)
	temporalClient := server.Client()
	server.SetProgramEnv(t)
	dbURL := pgtest.NewEmptyDatabase(t)
	sendgrid := newFakeSendGrid(t, sendGridKey)
	fleet := upgradeFleet()
	for name, value := range map[string]string{
		"DATABASE_URL":      dbURL,
		"REMINDER_OFFSETS":  fmt.Sprintf("%s,0s", upgradeReminder),
		"UPDATE_WINDOW":     upgradeWindow.String(),
		"SECONDARY_MIN_GAP": upgradeGap.String(),
		"CONNECT_TIMEOUT":   "30s",
	} {
		t.Setenv(name, value)
	}
	var failing []string
	for _, in := range fleet {
		for _, role := range in.failing {
			failing = append(failing, in.id+":"+string(role))
		}
	}
	workerEnv := func() []string {
		return []string{
			"EXECUTOR=simulated",
			"SIMULATED_DURATION=" + simulatedDuration.String(),
			"SIMULATED_FAILURES=" + strings.Join(failing, ","),
			"SENDGRID_API_KEY=" + sendGridKey,
			"SENDGRID_HOST=" + sendgrid.server.URL,
			"MAIL_FROM=svcupdate e2e <updates@svcupdate.example>",
			"METRICS_ADDR=" + testkit.FreeAddress(t),
			"WORKER_STOP_TIMEOUT=5s",
			"EXECUTOR_STOP_TIMEOUT=5s",
		}
	}

	// Release 1 starts the updates.
	releaseStarter := func(args ...string) string { return mustRunBinary(t, release["./starter"], args...) }
	releaseStarter("migrate")
	releaseStarter("setup")
	releaseWorker := startWorkerBinary(t, "release-1 worker", release["./worker"], workerEnv())
	releaseWorker.waitUntilPolling(t, temporalClient)

	schedule := newUpgradeCalendar(time.Now())
	ctx, cancel := context.WithDeadline(context.Background(), schedule.periodStart.Add(upgradeDeadline))
	defer cancel()
	instances := make([]fleetInstance, len(fleet))
	for i, in := range fleet {
		instances[i] = in.fleetInstance
	}
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(schedule.fleetFileWithSlots(t, instances, schedule.slotsIn)))
	releaseStarter("load", fleetPath)
	wantSummary := fmt.Sprintf("started %d, already running 0, not eligible 0, no capacity 0, failed 0", len(fleet))
	if out := releaseStarter("rollout", "--version", targetVersion); !strings.Contains(out, wantSummary) {
		t.Fatalf("release-1 rollout, want %q:\n%s", wantSummary, out)
	}
	for _, in := range fleet {
		if in.approve {
			out := releaseStarter("approve", "--instance", in.id, "--admin", in.admins[0], "--version", targetVersion, "--note", "upgrade test")
			if !strings.Contains(out, string(workflows.StatusApproved)) {
				t.Fatalf("release-1 approve %s:\n%s", in.id, out)
			}
		}
	}
	if time.Now().After(schedule.earlyPrimary) {
		t.Fatalf("the approvals ended at %s, after the early primary slot opened (%s): the machine is too slow for the compressed clock",
			time.Now().UTC().Format(time.RFC3339), schedule.earlyPrimary.Format(time.RFC3339))
	}

	// Every update waits on a timer, nothing in flight: the moment to deploy.
	reminderAt := schedule.primary.Add(-upgradeReminder)
	testkit.WaitFor(t, time.Until(reminderAt), "every update to wait mid-lifecycle under the release-1 worker", func() (bool, string) {
		for _, in := range fleet {
			if why := pausedAsPlanned(ctx, temporalClient, in); why != "" {
				return false, why
			}
		}
		return true, ""
	})
	releaseWorker.stop(t)
	if time.Now().After(reminderAt) {
		t.Fatalf("the release-1 worker stopped at %s, after the reminders were due (%s): the machine is too slow for the compressed clock",
			time.Now().UTC().Format(time.RFC3339), reminderAt.Format(time.RFC3339))
	}
	upgradedAt := time.Now()

	// The deploy: the new schema on top of release 1's, then the new worker.
	mustRun(t, "migrate")
	mustRun(t, "setup")
	newWorker := startWorkerBinary(t, "new worker", testkit.Build(t, "./worker"), workerEnv())
	newWorker.waitUntilPolling(t, temporalClient)
	t.Logf("upgraded %s after the fleet file was written; the new worker polls %s later",
		upgradedAt.Sub(schedule.periodStart).Round(time.Second), time.Since(upgradedAt).Round(100*time.Millisecond))
	// Only the new worker runs: its answers replay release 1's histories.
	for _, in := range fleet {
		id := workflows.WorkflowID(in.id, targetVersion)
		var view workflows.StatusView
		testkit.WaitFor(t, replayTimeout, "the new worker to answer the Status query of "+id, func() (bool, string) {
			failOnWorkflowTaskFailures(t, ctx, temporalClient, newWorker, fleet)
			var err error
			view, err = tryQueryStatus(ctx, temporalClient, id)
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if got := attemptsOf(view); len(got) < len(in.pausedAttempts) || !slices.Equal(got[:len(in.pausedAttempts)], in.pausedAttempts) {
			t.Errorf("the new worker says %s had attempts %v, want %v first, as release 1 recorded", id, got, in.pausedAttempts)
		}
	}

	waitUntilClosed(t, ctx, temporalClient, newWorker, fleet)
	t.Logf("every update closed %s after the fleet file was written", time.Since(schedule.periodStart).Round(time.Second))
	for _, in := range fleet {
		id := workflows.WorkflowID(in.id, targetVersion)
		var result workflows.Result
		if err := temporalClient.GetWorkflow(ctx, id, "").Get(ctx, &result); err != nil {
			t.Fatalf("the result of %s: %v", id, err)
		}
		if result.Status != in.wantStatus || result.FinalVersion != in.wantVersion {
			t.Errorf("%s closed as %s on %s, want %s on %s", id, result.Status, result.FinalVersion, in.wantStatus, in.wantVersion)
		}
		if !checkUpgradedView(t, in.fleetInstance, deliveredView(t, dbURL, queryStatus(t, ctx, temporalClient, id))) {
			logHistory(t, ctx, temporalClient, id)
		}
	}
	failOnWorkflowTaskFailures(t, ctx, temporalClient, newWorker, fleet)
	checkDatabase(t, dbURL, instances)
	checkUpgradeEmails(t, instances, sendgrid.sent())
	newWorker.stop(t)
	t.Logf("upgrade test took %s", time.Since(began).Round(time.Second))
}

// pausedAsPlanned says why the update of in does not (yet) wait where the
// plan has it wait at the upgrade, or "" once it does: on a timer, no
// activity in flight, with the planned status, attempts and next notice.
func pausedAsPlanned(ctx context.Context, c client.Client, in inFlight) string {
	id := workflows.WorkflowID(in.id, targetVersion)
	describe, err := c.DescribeWorkflow(ctx, id, "")
	if err != nil {
		return fmt.Sprintf("describe %s: %v", id, err)
	}
	if describe.Status != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return fmt.Sprintf("%s is %s, want it running", id, describe.Status)
	}
	if pending := describe.RawResponse.GetPendingActivities(); len(pending) > 0 {
		return fmt.Sprintf("%s runs activity %s", id, pending[0].GetActivityType().GetName())
	}
	view, err := tryQueryStatus(ctx, c, id)
	if err != nil {
		return err.Error()
	}
	attempts := attemptsOf(view)
	switch {
	case view.Status != in.pausedStatus || !slices.Equal(attempts, in.pausedAttempts):
		return fmt.Sprintf("%s is %s after attempts %v, want %s after %v", id, view.Status, attempts, in.pausedStatus, in.pausedAttempts)
	case in.pausedUpcoming != "" && !slices.ContainsFunc(view.Upcoming, func(n workflows.NoticeRecord) bool { return n.Kind == in.pausedUpcoming }):
		return fmt.Sprintf("%s has upcoming notices %v, want %s among them", id, view.Upcoming, in.pausedUpcoming)
	}
	return ""
}

func attemptsOf(view workflows.StatusView) []string {
	var attempts []string
	for _, a := range view.Attempts {
		attempts = append(attempts, string(a.Slot)+":"+a.Outcome)
	}
	return attempts
}

// waitUntilClosed waits until every update of fleet has closed.
func waitUntilClosed(t *testing.T, ctx context.Context, c client.Client, w *workerProcess, fleet []inFlight) {
	t.Helper()
	testkit.WaitFor(t, left(ctx), "the new worker to close every update", func() (bool, string) {
		failOnWorkflowTaskFailures(t, ctx, c, w, fleet)
		var open []string
		for _, in := range fleet {
			id := workflows.WorkflowID(in.id, targetVersion)
			describe, err := c.DescribeWorkflow(ctx, id, "")
			if err != nil {
				return false, fmt.Sprintf("describe %s: %v", id, err)
			}
			switch status := describe.Status; status {
			case enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
				open = append(open, id)
			case enums.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			default:
				logHistory(t, ctx, c, id)
				t.Fatalf("%s closed as %s, want it completed", id, status)
			}
		}
		if len(open) > 0 {
			return false, "still running: " + strings.Join(open, ", ")
		}
		return true, ""
	})
}

// workflowTaskFailedLog is what the SDK logs when a worker fails a
// workflow task, the only trace a failed replay for a query leaves.
const workflowTaskFailedLog = "Failed to process workflow task"

// failOnWorkflowTaskFailures fails the test at once when w failed a
// workflow task or a history of fleet holds a failed one: a workflow the
// new code cannot replay (non-determinism, a panic) never moves on, so
// waiting longer would only hide the first failure, which says why.
func failOnWorkflowTaskFailures(t *testing.T, ctx context.Context, c client.Client, w *workerProcess, fleet []inFlight) {
	t.Helper()
	var failures []string
	for line := range strings.Lines(w.log()) {
		if strings.Contains(line, workflowTaskFailedLog) {
			failures = append(failures, "the "+w.name+" logged: "+strings.TrimSpace(line))
			break // the first is the cause; the retries repeat it
		}
	}
	for _, in := range fleet {
		id := workflows.WorkflowID(in.id, targetVersion)
		events := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for events.HasNext() {
			event, err := events.Next()
			if err != nil {
				t.Fatalf("read the history of %s: %v", id, err)
			}
			if attrs := event.GetWorkflowTaskFailedEventAttributes(); attrs != nil {
				logHistory(t, ctx, c, id)
				failures = append(failures, fmt.Sprintf("%s event %d: %s: %s", id, event.GetEventId(), attrs.GetCause(), attrs.GetFailure().GetMessage()))
			}
		}
	}
	if len(failures) > 0 {
		t.Fatalf("workflow tasks failed after the upgrade (the new code does not replay release 1's histories, or panics on them):\n%s",
			strings.Join(failures, "\n"))
	}
}

// checkUpgradedView compares the new code's Status answer for a closed
// update with the expectations and reports whether it met them.
func checkUpgradedView(t *testing.T, in fleetInstance, view workflows.StatusView) bool {
	t.Helper()
	ok := true
	fail := func(format string, args ...any) {
		t.Helper()
		ok = false
		t.Errorf(format, args...)
	}
	if view.Status != in.wantStatus {
		fail("%s: Status query says %s, want %s", in.id, view.Status, in.wantStatus)
	}
	if got := attemptsOf(view); !slices.Equal(got, in.wantAttempts) {
		fail("%s: attempts %v, want %v", in.id, got, in.wantAttempts)
	}
	checkClosedNotices(view, in.id, in.wantNotices, fail)
	if want := workflows.MaskEmail(in.admins[0]); in.approve && view.ApprovedBy != want {
		fail("%s: approved by %q, want %q (masked in the Status query)", in.id, view.ApprovedBy, want)
	}
	return ok
}

// checkUpgradeEmails checks that SendGrid got each notice that has an
// email once across the upgrade: none lost, none sent again by the new
// worker.
func checkUpgradeEmails(t *testing.T, fleet []fleetInstance, mails []fakeMail) {
	t.Helper()
	sent := map[string]bool{}
	got := map[string][]workflows.NoticeKind{}
	for _, m := range mails {
		key := m.WorkflowID + " " + string(m.Kind) + " " + m.SlotStart
		if sent[key] {
			t.Errorf("notice %s of %s for the slot at %s sent twice", m.Kind, m.WorkflowID, m.SlotStart)
		}
		sent[key] = true
		got[m.InstanceID] = append(got[m.InstanceID], m.Kind)
	}
	for _, in := range fleet {
		var want []workflows.NoticeKind
		for _, k := range in.wantNotices {
			if k != workflows.NoticeInProgress { // status and alert only
				want = append(want, k)
			}
		}
		if g, w := sortedKinds(got[in.id]), sortedKinds(want); !slices.Equal(g, w) {
			t.Errorf("emails about %s: %v, want %v", in.id, g, w)
		}
	}
}
