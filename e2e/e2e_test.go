package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// The end-to-end test's release and its compressed clock. Every eligible
// instance gets the first slot as primary and the second as secondary; the
// reminder comes 20 s before the primary start and the day-of notice at it.
// The unapproved update closes at the period's end, which bounds the run.
// The window's length (updateWindow) depends on the server the suite runs on.
const (
	targetVersion  = "9.2.0"
	firstSlotLead  = 35 * time.Second // from the fleet file's writing to the first slot
	secondaryGap   = 5 * time.Second
	reminderOffset = 20 * time.Second
	periodSlack    = 5 * time.Second // after the second window, before the period ends
	// lifecycleDeadline bounds the whole lifecycle from the fleet file's writing;
	// it leaves minutes to spare on a loaded machine.
	lifecycleDeadline = 4 * time.Minute
	// settleTimeout bounds the wait for eventually consistent views (Temporal
	// visibility, the metrics reporter) once every update has closed.
	settleTimeout = 30 * time.Second
	sendGridKey   = "SG.e2e-test-key"
	// failExit is the update command's exit status for a failing attempt.
	failExit = 3
)

// fleetInstance is one instance of the fleet, what the test does with its
// update and what it must end as.
type fleetInstance struct {
	id, tenant, kind, region, timeZone, version string
	admins, users, extra                        []string
	approve                                     bool                 // an admin approves after the rollout
	failing                                     []workflows.SlotRole // attempts the update command fails

	wantStatus   workflows.Status // empty: not eligible, no workflow
	wantAttempts []string         // "slot:outcome"
	wantNotices  []workflows.NoticeKind
	wantVersion  string // the instance's version in Postgres at the end
}

func testFleet() []fleetInstance {
	reminder := workflows.ReminderKind(reminderOffset)
	announced := []workflows.NoticeKind{workflows.NoticeScheduled, reminder}
	approvedRun := append(slices.Clone(announced), workflows.NoticeConfirmed, workflows.NoticeDayOf, workflows.NoticeInProgress)
	with := func(base []workflows.NoticeKind, more ...workflows.NoticeKind) []workflows.NoticeKind {
		return append(slices.Clone(base), more...)
	}
	return []fleetInstance{
		{
			id: "acme-prod", tenant: "acme", kind: "production", region: "emea", timeZone: "Europe/Berlin", version: "9.1.0",
			admins: []string{"ann@acme.example", "bob@acme.example"}, users: []string{"staff@acme.example"}, extra: []string{"changes@acme.example"},
			approve:    true,
			wantStatus: workflows.StatusSucceeded, wantAttempts: []string{"primary:succeeded"},
			wantNotices: with(approvedRun, workflows.NoticeSucceeded), wantVersion: targetVersion,
		},
		{
			// Two versions behind: mandatory, runs without an approval.
			id: "globex-sandbox", tenant: "globex", kind: "sandbox", region: "apac", timeZone: "Asia/Tokyo", version: "9.0.0",
			admins: []string{"gina@globex.example"}, users: []string{"dev@globex.example"},
			wantStatus: workflows.StatusSucceeded, wantAttempts: []string{"primary:succeeded"},
			wantNotices: with(announced, workflows.NoticeDayOf, workflows.NoticeInProgress, workflows.NoticeSucceeded), wantVersion: targetVersion,
		},
		{
			id: "initech-prod", tenant: "initech", kind: "production", region: "emea", timeZone: "Europe/London", version: "9.1.0",
			admins: []string{"ian@initech.example"}, users: []string{"ops@initech.example"}, extra: []string{"cab@initech.example"},
			approve: true, failing: []workflows.SlotRole{workflows.SlotPrimary},
			wantStatus: workflows.StatusSucceeded, wantAttempts: []string{"primary:failed", "secondary:succeeded"},
			wantNotices: with(approvedRun, workflows.NoticeFallback, workflows.NoticeInProgress, workflows.NoticeSucceeded), wantVersion: targetVersion,
		},
		{
			id: "umbrella-prod", tenant: "umbrella", kind: "production", region: "apac", timeZone: "Australia/Sydney", version: "9.1.0",
			admins: []string{"uma@umbrella.example"}, users: []string{"lab@umbrella.example"},
			approve: true, failing: []workflows.SlotRole{workflows.SlotPrimary, workflows.SlotSecondary},
			wantStatus: workflows.StatusFailed, wantAttempts: []string{"primary:failed", "secondary:failed"},
			wantNotices: with(approvedRun, workflows.NoticeFallback, workflows.NoticeInProgress, workflows.NoticeFailed), wantVersion: "9.1.0",
		},
		{
			// Never approved; also the target of the refused admin actions.
			id: "hooli-prod", tenant: "hooli", kind: "production", region: "emea", timeZone: "America/New_York", version: "9.1.0",
			admins: []string{"hank@hooli.example"}, extra: []string{"it@hooli.example"},
			wantStatus:  workflows.StatusNotApproved,
			wantNotices: with(announced, workflows.NoticeNotApproved), wantVersion: "9.1.0",
		},
		{
			id: "acme-sandbox", tenant: "acme", kind: "sandbox", region: "emea", timeZone: "Europe/Berlin", version: targetVersion,
			admins: []string{"ann@acme.example"}, wantVersion: targetVersion,
		},
	}
}

// calendar is the compressed calendar of one run.
type calendar struct {
	periodStart, primary, secondary, periodEnd time.Time
	window                                     time.Duration // of every slot
}

func newCalendar(now time.Time) calendar {
	start := now.UTC().Truncate(time.Second)
	primary := start.Add(firstSlotLead)
	secondary := primary.Add(updateWindow + secondaryGap)
	return calendar{
		periodStart: start,
		primary:     primary,
		secondary:   secondary,
		periodEnd:   secondary.Add(updateWindow + periodSlack),
		window:      updateWindow,
	}
}

// fleetFile renders the fleet file: three releases (n-2, n-1, n), the two
// slots in every region the instances live in, and the instances.
func (s calendar) fleetFile(t *testing.T, instances []fleetInstance) []byte {
	t.Helper()
	return s.fleetFileWithSlots(t, instances, func(string) (primary, secondary time.Time) { return s.primary, s.secondary })
}

// fleetFileWithSlots is fleetFile with each region's two slots chosen by
// slotsIn; the release period is the calendar's.
func (s calendar) fleetFileWithSlots(t *testing.T, instances []fleetInstance, slotsIn func(region string) (primary, secondary time.Time)) []byte {
	t.Helper()
	type slot struct {
		Region   string `json:"region"`
		Start    string `json:"start"`
		Window   string `json:"window"`
		Capacity int    `json:"capacity"`
	}
	type release struct {
		Version     string `json:"version"`
		Name        string `json:"name"`
		Order       int    `json:"order"`
		PeriodStart string `json:"periodStart,omitempty"`
		PeriodEnd   string `json:"periodEnd,omitempty"`
		Slots       []slot `json:"slots,omitempty"`
	}
	type tenant struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	type instance struct {
		ID              string   `json:"id"`
		Tenant          string   `json:"tenant"`
		Name            string   `json:"name"`
		Kind            string   `json:"kind"`
		Region          string   `json:"region"`
		TimeZone        string   `json:"timeZone"`
		Version         string   `json:"version"`
		Admins          []string `json:"admins"`
		Users           []string `json:"users"`
		ExtraRecipients []string `json:"extraRecipients"`
	}
	newest := release{
		Version: targetVersion, Name: "Winter '27", Order: 3,
		PeriodStart: s.periodStart.Format(time.RFC3339), PeriodEnd: s.periodEnd.Format(time.RFC3339),
	}
	var (
		tenants []tenant
		list    []instance
		regions []string
	)
	for _, in := range instances {
		if !slices.Contains(regions, in.region) {
			regions = append(regions, in.region)
			primary, secondary := slotsIn(in.region)
			for _, start := range []time.Time{primary, secondary} {
				newest.Slots = append(newest.Slots, slot{Region: in.region, Start: start.Format(time.RFC3339), Window: s.window.String(), Capacity: 10})
			}
		}
		if !slices.ContainsFunc(tenants, func(t tenant) bool { return t.ID == in.tenant }) {
			tenants = append(tenants, tenant{ID: in.tenant, Name: strings.ToUpper(in.tenant[:1]) + in.tenant[1:]})
		}
		list = append(list, instance{
			ID: in.id, Tenant: in.tenant, Name: in.id, Kind: in.kind, Region: in.region, TimeZone: in.timeZone, Version: in.version,
			Admins: in.admins, Users: in.users, ExtraRecipients: in.extra,
		})
	}
	data, err := json.MarshalIndent(map[string]any{
		"releases": []release{
			{Version: "9.0.0", Name: "Spring '26", Order: 1},
			{Version: "9.1.0", Name: "Summer '26", Order: 2},
			newest,
		},
		"tenants":   tenants,
		"instances": list,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestEndToEnd runs the product as an operator does: a worker process
// (command executor, SendGrid at a fake endpoint), a real Temporal dev
// server and Postgres, and the starter's commands, on a clock compressed
// to about a minute and a half. It proves each lifecycle path ends as
// DESIGN.md says, that refused admin actions change nothing, that a second
// rollout starts nothing, that every email is sent once to its audience,
// and that `starter list` (visibility) agrees with the database.
func TestEndToEnd(t *testing.T) { runEndToEnd(t, nil) }

// runEndToEnd is TestEndToEnd with midLifecycle, when not nil, run once
// every update is scheduled and approved and before the first reminder is
// due; the run must still end as expected.
func runEndToEnd(t *testing.T, midLifecycle func(ctx context.Context, c client.Client, workflowIDs []string)) {
	began := time.Now()
	testkit.ClearConfigEnv(t)
	temporalClient, dbURL := devtest.StartForPrograms(t)
	sendgrid := newFakeSendGrid(t, sendGridKey)
	fleet := testFleet()

	// Shared by the starter and the worker.
	for name, value := range map[string]string{
		"REMINDER_OFFSETS":  fmt.Sprintf("%s,0s", reminderOffset),
		"UPDATE_WINDOW":     updateWindow.String(),
		"SECONDARY_MIN_GAP": secondaryGap.String(),
		// The compressed clock's slots start within minutes.
		"MIN_NOTICE":            "0s",
		"RESCHEDULE_MIN_NOTICE": "0s",
		"CONNECT_TIMEOUT":       "30s",
	} {
		t.Setenv(name, value)
	}
	command, err := filepath.Abs(filepath.Join("testdata", "update-command.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var failing []string
	for _, in := range fleet {
		for _, role := range in.failing {
			failing = append(failing, in.id+":"+string(role))
		}
	}
	metricsAddr := testkit.FreeAddress(t)
	svcWorker := startWorker(t, []string{
		"EXECUTOR=command",
		"EXECUTOR_COMMAND='" + command + "'",
		"EXECUTOR_KILL_GRACE=2s",
		"SENDGRID_API_KEY=" + sendGridKey,
		"SENDGRID_HOST=" + sendgrid.server.URL,
		"MAIL_FROM=svcupdate e2e <updates@svcupdate.example>",
		"METRICS_ADDR=" + metricsAddr,
		"WORKER_STOP_TIMEOUT=5s",
		"EXECUTOR_STOP_TIMEOUT=5s",
		// Read by the update command only; not a worker variable.
		"E2E_FAILING_ATTEMPTS=" + strings.Join(failing, " "),
		"EXECUTOR_PASS_ENV=E2E_FAILING_ATTEMPTS",
	})
	svcWorker.waitUntilPolling(t, temporalClient)

	mustRun(t, "migrate")
	mustRun(t, "setup")

	// The clock starts when the fleet file is written.
	schedule := newCalendar(time.Now())
	ctx, cancel := context.WithDeadline(context.Background(), schedule.periodStart.Add(lifecycleDeadline))
	defer cancel()
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(schedule.fleetFile(t, fleet)))
	if out := mustRun(t, "load", fleetPath); !strings.Contains(out, fmt.Sprintf("instances  %d ", len(fleet))) {
		t.Errorf("load report does not count %d new instances:\n%s", len(fleet), out)
	}

	eligible := 0
	for _, in := range fleet {
		if in.wantStatus != "" {
			eligible++
		}
	}
	wantSummary := fmt.Sprintf("started %d, already running 0, not eligible %d, no capacity 0, failed 0", eligible, len(fleet)-eligible)
	if out := mustRun(t, "rollout", "--version", targetVersion); !strings.Contains(out, wantSummary) {
		t.Fatalf("first rollout, want %q:\n%s", wantSummary, out)
	}
	// Reminders already due when a workflow starts are skipped by design;
	// this run expects every workflow to have started before its first one.
	if reminderAt := schedule.primary.Add(-reminderOffset); time.Now().After(reminderAt) {
		t.Fatalf("the rollout ended at %s, after the %s reminder was due (%s): the machine is too slow for the compressed clock",
			time.Now().UTC().Format(time.RFC3339), reminderOffset, reminderAt.Format(time.RFC3339))
	}
	bookings := countRows(t, dbURL, "slot_bookings")
	if bookings != 2*eligible {
		t.Errorf("%d slot bookings after the rollout, want a primary and a secondary for each of %d updates", bookings, eligible)
	}

	for _, in := range fleet {
		if !in.approve {
			continue
		}
		admin := in.admins[len(in.admins)-1]
		out := mustRun(t, "approve", "--instance", in.id, "--admin", admin, "--version", targetVersion, "--note", "e2e")
		if !strings.Contains(out, workflows.WorkflowID(in.id, targetVersion)+": "+workflows.UpdateApprove+" accepted") ||
			!strings.Contains(out, string(workflows.StatusApproved)) || !strings.Contains(out, "by "+admin) {
			t.Errorf("approve %s:\n%s", in.id, out)
		}
	}

	// Refused admin actions: the validator's words, an error (a non-zero
	// exit), and the update left exactly as it was.
	refused := fleet[slices.IndexFunc(fleet, func(in fleetInstance) bool { return in.wantStatus == workflows.StatusNotApproved })]
	refusedID := workflows.WorkflowID(refused.id, targetVersion)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{
			"secondary inside the primary window",
			[]string{"reschedule", "--instance", refused.id, "--admin", refused.admins[0], "--version", targetVersion,
				"--primary", schedule.primary.Format(time.RFC3339), "--secondary", schedule.primary.Add(updateWindow / 2).Format(time.RFC3339)},
			fmt.Sprintf("Reschedule refused by %s: secondary start %s is too early: it must be at or after %s",
				refusedID, schedule.primary.Add(updateWindow/2).Format(time.RFC3339), schedule.primary.Add(updateWindow+secondaryGap).Format(time.RFC3339)),
		},
		{
			"approval by someone who is not an admin",
			[]string{"approve", "--instance", refused.id, "--admin", "mallory@hooli.example", "--version", targetVersion},
			fmt.Sprintf(`Approve refused by %s: "mallory@hooli.example" is not an admin of instance %s`, refusedID, refused.id),
		},
	} {
		out, _, err := runStarter(t, tc.args...)
		if err == nil {
			t.Errorf("%s was accepted:\n%s", tc.name, out)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
		var failed *starterFailed
		if errors.As(err, &failed) && failed.status == 2 {
			t.Errorf("%s: reported as a command-line mistake (exit status 2), want a refusal (exit status 1): %v", tc.name, err)
		}
	}
	view := queryStatus(t, ctx, temporalClient, refusedID)
	if view.Status != workflows.StatusScheduled || view.ApprovedBy != "" || !view.Primary.Start.Equal(schedule.primary) {
		t.Errorf("refused actions changed %s: status %s, approved by %q, primary %s", refusedID, view.Status, view.ApprovedBy, view.Primary.Start)
	}

	if out := mustRun(t, "rollout", "--version", targetVersion); !strings.Contains(out,
		fmt.Sprintf("started 0, already running 0, not eligible %d", len(fleet)-eligible)) || !strings.Contains(out, fmt.Sprintf("%d started by an earlier walk", eligible)) {
		t.Errorf("second rollout started something:\n%s", out)
	}
	if n := countRows(t, dbURL, "slot_bookings"); n != bookings {
		t.Errorf("%d slot bookings after the second rollout, want the same %d", n, bookings)
	}

	if midLifecycle != nil {
		var ids []string
		for _, in := range fleet {
			if in.wantStatus != "" {
				ids = append(ids, workflows.WorkflowID(in.id, targetVersion))
			}
		}
		midLifecycle(ctx, temporalClient, ids)
	}

	// Wait for every update to close (a long poll, not a sleep) and check
	// how it ended.
	for _, in := range fleet {
		id := workflows.WorkflowID(in.id, targetVersion)
		if in.wantStatus == "" {
			if _, err := temporalClient.DescribeWorkflow(ctx, id, ""); !isNotFound(err) {
				t.Errorf("%s is not eligible, yet describing %s returned %v", in.id, id, err)
			}
			continue
		}
		var result workflows.Result
		if err := temporalClient.GetWorkflow(ctx, id, "").Get(ctx, &result); err != nil {
			t.Fatalf("%s did not close with a result by %s: %v", id, schedule.periodStart.Add(lifecycleDeadline).Format(time.RFC3339), err)
		}
		if result.Status != in.wantStatus || result.FinalVersion != in.wantVersion {
			t.Errorf("%s closed as %s on %s, want %s on %s", id, result.Status, result.FinalVersion, in.wantStatus, in.wantVersion)
		}
		view := deliveredView(t, dbURL, queryStatus(t, ctx, temporalClient, id))
		if !checkStatusView(t, in, view, command) {
			logHistory(t, ctx, temporalClient, id)
		}
	}
	// A refused Update is rejected by the validator and leaves no event.
	history := temporalClient.GetWorkflowHistory(ctx, refusedID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for history.HasNext() {
		event, err := history.Next()
		if err != nil {
			t.Fatalf("read the history of %s: %v", refusedID, err)
		}
		switch event.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED, enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
			enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED, enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
			t.Errorf("the refused admin actions left event %d %s in the history of %s", event.GetEventId(), event.GetEventType(), refusedID)
		}
	}
	t.Logf("every update closed %s after the fleet file was written (period end at %s)",
		time.Since(schedule.periodStart).Round(time.Second), schedule.periodEnd.Sub(schedule.periodStart))

	checkDatabase(t, dbURL, fleet)
	mails := sendgrid.sent()
	checkEmails(t, dbURL, schedule, fleet, mails)
	// Visibility and the metrics reporter lag a little behind the close.
	settle, cancelSettle := context.WithTimeout(ctx, settleTimeout)
	defer cancelSettle()
	checkListAgreesWithDatabase(t, settle, dbURL)
	checkMetrics(t, settle, "http://"+metricsAddr+"/metrics", fleet, len(mails))
	checkDeployMetrics(t, "http://"+metricsAddr+"/metrics")

	svcWorker.stop(t)
	t.Logf("end-to-end run took %s", time.Since(began).Round(time.Second))
}

// checkStatusView compares the Status query's answer with the
// expectations and reports whether it met them.
func checkStatusView(t *testing.T, in fleetInstance, view workflows.StatusView, command string) bool {
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
	var attempts []string
	for _, a := range view.Attempts {
		attempts = append(attempts, string(a.Slot)+":"+a.Outcome)
		switch a.Outcome {
		case workflows.OutcomeFailed:
			// The command's exit status and its output reach the operator.
			for _, want := range []string{
				fmt.Sprintf("update command exited with status %d", failExit),
				fmt.Sprintf("updating %s from %s to %s (%s attempt", in.id, in.version, targetVersion, a.Slot),
				fmt.Sprintf("simulated failure of the %s attempt of %s", a.Slot, in.id),
			} {
				if !strings.Contains(a.Error, want) {
					fail("%s: the %s attempt's error lacks %q (from %s): %q", in.id, a.Slot, want, command, a.Error)
				}
			}
		case workflows.OutcomeSucceeded:
			if a.Error != "" {
				fail("%s: the succeeded %s attempt carries an error: %q", in.id, a.Slot, a.Error)
			}
		}
	}
	if !slices.Equal(attempts, in.wantAttempts) {
		fail("%s: attempts %v, want %v", in.id, attempts, in.wantAttempts)
	}
	checkClosedNotices(view, in.id, in.wantNotices, fail)
	if want := workflows.MaskEmail(in.admins[len(in.admins)-1]); in.approve && view.ApprovedBy != want {
		fail("%s: approved by %q, want %q (masked in the Status query)", in.id, view.ApprovedBy, want)
	}
	return ok
}

// logHistory logs the events of a workflow that did not end as expected:
// the order of activities, timers and Updates shows what raced.
func logHistory(t *testing.T, ctx context.Context, c client.Client, workflowID string) {
	t.Helper()
	events := c.GetWorkflowHistory(ctx, workflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var lines []string
	for events.HasNext() {
		event, err := events.Next()
		if err != nil {
			t.Logf("history of %s: %v", workflowID, err)
			return
		}
		line := fmt.Sprintf("%3d %s %s", event.GetEventId(), event.GetEventTime().AsTime().Format("15:04:05.000"), event.GetEventType())
		switch {
		case event.GetActivityTaskScheduledEventAttributes() != nil:
			line += " " + event.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case event.GetWorkflowExecutionUpdateAcceptedEventAttributes() != nil:
			line += " " + event.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest().GetInput().GetName()
		case event.GetWorkflowTaskFailedEventAttributes() != nil:
			attrs := event.GetWorkflowTaskFailedEventAttributes()
			line += fmt.Sprintf(" %s: %s", attrs.GetCause(), attrs.GetFailure().GetMessage())
		case event.GetWorkflowTaskTimedOutEventAttributes() != nil:
			line += " " + event.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType().String()
		}
		lines = append(lines, line)
	}
	t.Logf("history of %s:\n%s", workflowID, strings.Join(lines, "\n"))
}

// checkClosedNotices checks the notices of a closed update's Status view:
// each delivered, the kinds wanted (as a set: approval and reminder race
// by design) and nothing still upcoming.
func checkClosedNotices(view workflows.StatusView, id string, want []workflows.NoticeKind, fail func(string, ...any)) {
	var kinds []workflows.NoticeKind
	for _, n := range view.Notices {
		kinds = append(kinds, n.Kind)
		if n.Error != "" {
			fail("%s: notice %s was not delivered: %s", id, n.Kind, n.Error)
		}
	}
	if got, wanted := sortedKinds(kinds), sortedKinds(want); !slices.Equal(got, wanted) {
		fail("%s: notices %v, want %v", id, kinds, wanted)
	}
	if len(view.Upcoming) != 0 {
		fail("%s closed with notices still upcoming: %v", id, view.Upcoming)
	}
}

func sortedKinds(kinds []workflows.NoticeKind) []workflows.NoticeKind {
	sorted := slices.Clone(kinds)
	slices.Sort(sorted)
	return sorted
}

// checkDatabase compares the instances' versions and the updates
// projection with the expectations.
func checkDatabase(t *testing.T, dbURL string, fleet []fleetInstance) {
	t.Helper()
	conn := connectDB(t, dbURL)
	for _, in := range fleet {
		var version string
		if err := conn.QueryRow(context.Background(), "SELECT current_version FROM instances WHERE id = $1", in.id).Scan(&version); err != nil {
			t.Fatalf("read the version of %s: %v", in.id, err)
		}
		if version != in.wantVersion {
			t.Errorf("%s runs %s in Postgres, want %s", in.id, version, in.wantVersion)
		}
		var status string
		var attempts int
		err := conn.QueryRow(context.Background(), "SELECT status, attempts FROM updates WHERE instance_id = $1 AND offered_version = $2",
			in.id, targetVersion).Scan(&status, &attempts)
		switch {
		case in.wantStatus == "" && err == pgx.ErrNoRows:
		case in.wantStatus == "":
			t.Errorf("%s is not eligible, yet the updates projection has a row (%s) or failed: %v", in.id, status, err)
		case err != nil:
			t.Errorf("read the update of %s: %v", in.id, err)
		case workflows.Status(status) != in.wantStatus || attempts != len(in.wantAttempts):
			t.Errorf("updates projection of %s: %s after %d attempt(s), want %s after %d", in.id, status, attempts, in.wantStatus, len(in.wantAttempts))
		}
	}
	checkReservationsGivenBack(t, conn)
}

// checkReservationsGivenBack checks the bookkeeping of capacity once every
// update has closed: each slot's booked count equals the reservations open
// updates hold (store.CheckBookings), and every close gave its
// reservations back, so nothing is booked any more.
func checkReservationsGivenBack(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	mismatches, err := store.New(conn).CheckBookings(context.Background(), "")
	if err != nil {
		t.Fatalf("check the bookings: %v", err)
	}
	for _, m := range mismatches {
		t.Errorf("slot bookkeeping: %+v", m)
	}
	var booked int
	if err := conn.QueryRow(context.Background(), "SELECT coalesce(sum(booked), 0) FROM slots").Scan(&booked); err != nil {
		t.Fatalf("read the booked counts: %v", err)
	}
	if booked != 0 {
		t.Errorf("%d reservations are still booked after every update closed, want 0", booked)
	}
}

// checkEmails checks the mail SendGrid received: one request per notice
// that has an email, never two for the same outbox key (workflow, kind,
// slot) read back from custom_args, each about the slot its kind concerns,
// each to the audience its kind addresses, each recorded as sent in the
// outbox.
func checkEmails(t *testing.T, dbURL string, schedule calendar, fleet []fleetInstance, mails []fakeMail) {
	t.Helper()
	byInstance := map[string]fleetInstance{}
	wantKinds := map[string][]workflows.NoticeKind{}
	for _, in := range fleet {
		byInstance[in.id] = in
		for _, k := range in.wantNotices {
			if k != workflows.NoticeInProgress { // status and alert only
				wantKinds[in.id] = append(wantKinds[in.id], k)
			}
		}
	}
	sent := map[string]string{} // outbox key -> message ID
	gotKinds := map[string][]workflows.NoticeKind{}
	for _, m := range mails {
		key := m.WorkflowID + " " + string(m.Kind) + " " + m.SlotStart
		if first, dup := sent[key]; dup {
			t.Errorf("notice %s of %s for the slot at %s sent twice (messages %s and %s)", m.Kind, m.WorkflowID, m.SlotStart, first, m.MessageID)
		}
		sent[key] = m.MessageID
		in, ok := byInstance[m.InstanceID]
		if !ok || m.WorkflowID != workflows.WorkflowID(m.InstanceID, targetVersion) || m.TargetVersion != targetVersion {
			t.Errorf("mail with unexpected custom_args: instance %q, workflow %q, version %q", m.InstanceID, m.WorkflowID, m.TargetVersion)
			continue
		}
		gotKinds[in.id] = append(gotKinds[in.id], m.Kind)

		slot := schedule.primary
		switch {
		case m.Kind == workflows.NoticeFallback, m.Kind == workflows.NoticeFailed,
			m.Kind == workflows.NoticeSucceeded && len(in.wantAttempts) > 1:
			slot = schedule.secondary
		}
		if m.SlotStart != slot.Format(time.RFC3339) {
			t.Errorf("%s of %s is about the slot at %s, want %s", m.Kind, in.id, m.SlotStart, slot.Format(time.RFC3339))
		}
		audience := append(slices.Clone(in.admins), in.extra...)
		if m.Kind == workflows.NoticeSucceeded {
			audience = append(slices.Clone(in.admins), in.users...)
		}
		if got, want := sortedStrings(m.Recipients), sortedStrings(audience); !slices.Equal(got, want) {
			t.Errorf("%s of %s went to %v, want %v", m.Kind, in.id, got, want)
		}
	}
	for _, in := range fleet {
		if got, want := sortedKinds(gotKinds[in.id]), sortedKinds(wantKinds[in.id]); !slices.Equal(got, want) {
			t.Errorf("emails about %s: %v, want %v", in.id, got, want)
		}
	}

	conn := connectDB(t, dbURL)
	rows, err := conn.Query(context.Background(),
		"SELECT workflow_id, kind, slot_start, state, coalesce(message_id, '') FROM notification_outbox")
	if err != nil {
		t.Fatal(err)
	}
	outbox := 0
	var (
		workflowID, kind, state, messageID string
		slotStart                          time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&workflowID, &kind, &slotStart, &state, &messageID}, func() error {
		outbox++
		key := workflowID + " " + kind + " " + slotStart.UTC().Format(time.RFC3339)
		if got, ok := sent[key]; state != "sent" || !ok || got != messageID {
			t.Errorf("outbox row %s: state %s, message %q; SendGrid got message %q", key, state, messageID, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if outbox != len(mails) {
		t.Errorf("%d outbox rows for %d mails sent", outbox, len(mails))
	}
}

func sortedStrings(s []string) []string {
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	return sorted
}

// checkListAgreesWithDatabase waits until `starter list` (visibility,
// eventually consistent) shows every update with the status the database's
// projection holds, and the same counts per status.
func checkListAgreesWithDatabase(t *testing.T, ctx context.Context, dbURL string) {
	t.Helper()
	conn := connectDB(t, dbURL)
	rows, err := conn.Query(ctx, "SELECT instance_id, status FROM updates WHERE offered_version = $1", targetVersion)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	var instance, status string
	if _, err := pgx.ForEachRow(rows, []any{&instance, &status}, func() error {
		want[instance] = status
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, s := range want {
		counts[s]++
	}
	var parts []string
	for _, s := range workflows.AllStatuses {
		if n := counts[string(s)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
	}
	wantCounts := fmt.Sprintf("%d updates: %s", len(want), strings.Join(parts, ", "))

	var out string
	testkit.WaitFor(t, left(ctx), "starter list to agree with the updates projection", func() (bool, string) {
		out = mustRun(t, "list", "--version", targetVersion)
		listed := map[string]string{}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, line := range lines[1:] {
			fields := strings.Fields(line)
			if len(fields) < 9 || fields[0] == "" {
				break // the blank line before the counts
			}
			listed[fields[0]] = fields[3]
			if execution := fields[len(fields)-1]; execution != "Completed" {
				return false, fmt.Sprintf("%s is %s in visibility:\n%s", fields[0], execution, out)
			}
		}
		if !maps.Equal(listed, want) || lines[len(lines)-1] != wantCounts {
			return false, fmt.Sprintf("want %v and %q, list says:\n%s", want, wantCounts, out)
		}
		return true, ""
	})
}

// checkMetrics waits until the worker's /metrics counts the closed
// updates by outcome as the fleet expects, and the emails SendGrid took.
func checkMetrics(t *testing.T, ctx context.Context, url string, fleet []fleetInstance, mailsSent int) {
	t.Helper()
	want := map[string]float64{}
	for _, in := range fleet {
		if in.wantStatus != "" {
			want[`svcupdate_updates_completed_total outcome="`+string(in.wantStatus)+`"`]++
		}
	}
	want[`svcupdate_notices_sent_total outcome="sent"`] = float64(mailsSent)
	testkit.WaitFor(t, left(ctx), "the worker's metrics to count the closed updates and the emails", func() (bool, string) {
		body, err := testkit.Scrape(url)
		if err != nil {
			return false, err.Error()
		}
		got := map[string]float64{}
		for line := range strings.Lines(body) {
			for key := range want {
				name, label, _ := strings.Cut(key, " ")
				if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
					continue
				}
				fields := strings.Fields(line)
				value, err := strconv.ParseFloat(fields[len(fields)-1], 64)
				if err != nil {
					return false, fmt.Sprintf("unreadable metric line %q", line)
				}
				got[key] += value
			}
		}
		if !maps.Equal(got, want) {
			return false, fmt.Sprintf("counted %v, want %v", got, want)
		}
		return true, ""
	})
}

func queryStatus(t *testing.T, ctx context.Context, c client.Client, workflowID string) workflows.StatusView {
	t.Helper()
	view, err := tryQueryStatus(ctx, c, workflowID)
	if err != nil {
		t.Fatal(err)
	}
	return view
}

// tryQueryStatus asks for a workflow's status once, giving up after a few
// seconds: a query sent while the worker holding the workflow stops waits
// for the server to route it elsewhere, so callers poll instead of failing.
func tryQueryStatus(ctx context.Context, c client.Client, workflowID string) (workflows.StatusView, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var view workflows.StatusView
	answer, err := c.QueryWorkflow(ctx, workflowID, "", workflows.QueryStatus)
	if err != nil {
		return view, fmt.Errorf("query %s: %w", workflowID, err)
	}
	if err := answer.Get(&view); err != nil {
		return view, fmt.Errorf("decode the status of %s: %w", workflowID, err)
	}
	return view, nil
}
