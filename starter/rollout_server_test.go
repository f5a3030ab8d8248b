package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/starter/internal/demo"
	"github.com/svcupdate/svcupdate/workflows"
)

// unreliableStartClient is the dev server's client with the start (and
// optionally the look-up after it) failing the way a lost connection or a
// Ctrl-C makes them fail.
type unreliableStartClient struct {
	client.Client
	mu       sync.Mutex
	starts   int
	start    func(n int, ctx context.Context, opts client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
	describe func(ctx context.Context, id string) (*client.WorkflowExecutionDescription, error)
}

func (u *unreliableStartClient) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error) {
	u.mu.Lock()
	u.starts++
	n := u.starts
	u.mu.Unlock()
	return u.start(n, ctx, opts, workflow, args...)
}

func (u *unreliableStartClient) DescribeWorkflow(ctx context.Context, id, runID string) (*client.WorkflowExecutionDescription, error) {
	if u.describe != nil {
		return u.describe(ctx, id)
	}
	return u.Client.DescribeWorkflow(ctx, id, runID)
}

// rolloutFixture is a dev server with the search attributes registered and
// a database holding the demo fleet.
type rolloutFixture struct {
	server client.Client
	pool   *pgxpool.Pool
	cfg    config.Config
	run    demo.Run
}

func newRolloutFixture(t *testing.T) rolloutFixture {
	t.Helper()
	return newRolloutFixtureAt(t, time.Now())
}

// newRolloutFixtureAt is newRolloutFixture with the demo's calendar
// starting at start: its slots a few minutes after it.
func newRolloutFixtureAt(t *testing.T, start time.Time) rolloutFixture {
	t.Helper()
	server := devtest.Start(t, workflows.SearchAttributeKeys...)
	dbURL := pgtest.NewDatabase(t)
	server.SetProgramEnv(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("SECONDARY_MIN_GAP", demo.SecondaryGap.String())
	devtest.SetActionKeys(t) // the rollout signs its Supersedes; the fixture's worker trusts them
	run := demo.NewRun("ro", start)
	data, err := run.FleetFile()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, path, string(data))
	mustRun(t, "load", path)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	pool := openTestPool(t, dbURL)
	return rolloutFixture{server: server.Client(), pool: pool, cfg: cfg, run: run}
}

// rollout runs a rollout of the demo version through c, with the output in out.
func (f rolloutFixture) rollout(ctx context.Context, c client.Client, out *bytes.Buffer, concurrency int, instances ...string) (*outcomeSummary, error) {
	// The env is not closed: the pool is the fixture's and c wraps the server's client.
	e := &env{cfg: f.cfg, stdout: out, stderr: out, temporalClient: c, pool: f.pool}
	plan := releasePlan{Concurrency: concurrency, Plan: launch.Plan{
		Version:         demo.Version,
		ReminderOffsets: f.cfg.ReminderOffsets, WindowLength: f.cfg.UpdateWindow, SecondaryMinGap: demo.SecondaryGap,
	}}
	if instances != nil {
		plan.Instances = map[string]bool{}
		for _, id := range instances {
			plan.Instances[id] = true
		}
	}
	return rollout(ctx, e, plan)
}

func (f rolloutFixture) bookings(t *testing.T, instanceID string) int {
	t.Helper()
	rows, err := store.New(f.pool).Bookings(context.Background(), instanceID, demo.Version)
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

// TestRolloutInterruptedWhileAStartWasAnswered interrupts a rollout (as
// Ctrl-C does) while the server starts the first workflow, so the start
// returns a cancellation although the workflow exists. Its slots stay
// booked, it counts as started, nothing more is started, and the rest are
// counted as not attempted rather than failed one line each.
func TestRolloutInterruptedWhileAStartWasAnswered(t *testing.T) {
	f := newRolloutFixture(t)
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	var startedID string
	c := &unreliableStartClient{Client: f.server}
	c.start = func(n int, ctx context.Context, opts client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error) {
		if n > 1 {
			t.Errorf("start %d (%s) after the interrupt", n, opts.ID)
			return nil, ctx.Err()
		}
		if _, err := f.server.ExecuteWorkflow(context.WithoutCancel(ctx), opts, workflow, args...); err != nil {
			t.Errorf("start %s: %v", opts.ID, err) // not Fatal: this runs in the rollout's goroutine
			return nil, err
		}
		startedID = opts.ID
		interrupt()
		return nil, serviceerror.NewCanceled(context.Canceled.Error())
	}

	var out bytes.Buffer
	summary, err := f.rollout(ctx, c, &out, 1)
	t.Log(out.String())
	if err == nil || !strings.Contains(err.Error(), "rollout interrupted; run it again to continue") {
		t.Errorf("error = %v, want the interruption", err)
	}
	if got := summary.count(launch.Started); got != 1 {
		t.Errorf("started %d, want the one whose answer was lost", got)
	}
	if got := summary.count(launch.Failed); got != 0 {
		t.Errorf("failed %d, want 0", got)
	}
	// Six candidates: one started, the others not attempted (or found not
	// eligible before the interrupt).
	notAttempted := summary.count(launch.NotAttempted)
	if notAttempted < 4 || notAttempted+summary.count(launch.NotEligible) != 5 {
		t.Errorf("not attempted %d, not eligible %d: want the five others between them", notAttempted, summary.count(launch.NotEligible))
	}
	text := out.String()
	if strings.Contains(text, "canceled") || strings.Contains(text, "failed  ") {
		t.Errorf("the summary reports failures for an interrupt:\n%s", text)
	}
	if want := "interrupted before " + strconv.Itoa(notAttempted) + " (not attempted): run rollout again to continue\n"; !strings.Contains(text, want) {
		t.Errorf("summary lacks %q:\n%s", want, text)
	}
	if startedID == "" {
		t.Fatal("no start was attempted")
	}
	if _, err := f.server.DescribeWorkflow(context.Background(), startedID, ""); err != nil {
		t.Fatalf("describe %s: %v", startedID, err)
	}
	instanceID := strings.Split(startedID, ":")[1]
	if n := f.bookings(t, instanceID); n != 2 {
		t.Errorf("%s has %d bookings after its workflow started, want its primary and secondary", instanceID, n)
	}
}

// TestRolloutReleasesSlotsOnlyWhenTheStartSurelyFailed fails the start of
// one instance's update without starting it: when the server then says the
// workflow does not exist, its slots are released; when the look-up fails
// too, they are kept (a re-run reuses them) and the line says why.
func TestRolloutReleasesSlotsOnlyWhenTheStartSurelyFailed(t *testing.T) {
	f := newRolloutFixture(t)
	unavailable := func(int, context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
		return nil, serviceerror.NewUnavailable("connection reset")
	}

	notStarted := f.run.InstanceID("contoso-prod")
	var out bytes.Buffer
	summary, err := f.rollout(context.Background(), &unreliableStartClient{Client: f.server, start: unavailable}, &out, 1, notStarted)
	if err != nil {
		t.Fatal(err)
	}
	if summary.count(launch.Failed) != 1 || !strings.Contains(out.String(), "start "+workflows.WorkflowID(notStarted, demo.Version)+": connection reset") {
		t.Errorf("a refused start:\n%s", out.String())
	}
	if n := f.bookings(t, notStarted); n != 0 {
		t.Errorf("%s keeps %d bookings although its workflow does not exist", notStarted, n)
	}
	if h, found, err := store.New(f.pool).OpenUpdate(context.Background(), notStarted); err != nil || found {
		t.Errorf("%s is still held by %+v (%v) although its workflow does not exist", notStarted, h, err)
	}

	unknown := f.run.InstanceID("fabrikam-prod")
	out.Reset()
	lookUpFails := &unreliableStartClient{Client: f.server, start: unavailable}
	lookUpFails.describe = func(ctx context.Context, id string) (*client.WorkflowExecutionDescription, error) {
		return nil, serviceerror.NewUnavailable("connection reset")
	}
	summary, err = f.rollout(context.Background(), lookUpFails, &out, 1, unknown)
	if err != nil {
		t.Fatal(err)
	}
	if summary.count(launch.Failed) != 1 || !strings.Contains(out.String(), "whether it started is unknown") ||
		!strings.Contains(out.String(), "its slots are kept: run rollout again to settle it") {
		t.Errorf("a start in doubt:\n%s", out.String())
	}
	if n := f.bookings(t, unknown); n != 2 {
		t.Errorf("%s has %d bookings after a start in doubt, want both kept", unknown, n)
	}
	if h, found, err := store.New(f.pool).OpenUpdate(context.Background(), unknown); err != nil || !found || h.WorkflowID != workflows.WorkflowID(unknown, demo.Version) {
		t.Errorf("%s held by %+v, %t (%v) after a start in doubt; want its own update to keep it", unknown, h, found, err)
	}
}

// TestRolloutReportsAnInstanceHeldByAnotherUpdate meets an instance whose
// mandatory update of another version is still open, which is never
// superseded: the dry run and the rollout both name that update, nothing
// is booked and no workflow is started.
func TestRolloutReportsAnInstanceHeldByAnotherUpdate(t *testing.T) {
	f := newRolloutFixture(t)
	ctx := context.Background()
	instance := f.run.InstanceID("contoso-prod")
	holderID := workflows.WorkflowID(instance, "9.1.0")
	if _, err := store.New(f.pool).RecordTransition(ctx, "held/1", workflows.RecordTransitionInput{
		Actor: "ben.ops@contoso.example", Channel: workflows.ChannelUpdate, Action: "approved", From: workflows.StatusScheduled,
		Snapshot: workflows.StatusView{
			WorkflowID: holderID, InstanceID: instance, TenantID: "contoso", CurrentVersion: "9.0.0",
			OfferedVersion: "9.1.0", TargetVersion: "9.1.0", Status: workflows.StatusApproved, Mandatory: true,
			Primary: workflows.Window{Start: f.run.Slot(0)}, Secondary: workflows.Window{Start: f.run.Slot(1)},
		},
	}); err != nil {
		t.Fatal(err)
	}
	wantLine := "held by open update " + holderID + " (Approved, mandatory)"

	e := &env{cfg: f.cfg, temporalClient: f.server, pool: f.pool}
	for _, dryRun := range []bool{true, false} {
		var out bytes.Buffer
		e.stdout, e.stderr = &out, &out
		summary, err := rollout(ctx, e, releasePlan{Concurrency: 1, Instances: map[string]bool{instance: true}, Plan: launch.Plan{
			Version: demo.Version, DryRun: dryRun, SecondaryMinGap: demo.SecondaryGap,
			ReminderOffsets: f.cfg.ReminderOffsets, WindowLength: f.cfg.UpdateWindow,
		}})
		if err != nil {
			t.Fatal(err)
		}
		if summary.count(launch.Held) != 1 || !strings.Contains(out.String(), instance) || !strings.Contains(out.String(), wantLine) {
			t.Errorf("dry run %t: want %s %q:\n%s", dryRun, instance, wantLine, out.String())
		}
	}
	if n := f.bookings(t, instance); n != 0 {
		t.Errorf("%s has %d bookings for %s although another update holds it", instance, n, demo.Version)
	}
	if _, err := f.server.DescribeWorkflow(ctx, workflows.WorkflowID(instance, demo.Version), ""); !launch.IsNotFound(err) {
		t.Errorf("the %s update of a held instance was started (describe: %v)", demo.Version, err)
	}
}

// TestRolloutHonoursTheMinimumNotice rolls out with MIN_NOTICE and
// RESCHEDULE_MIN_NOTICE set: the first slot, too close, is not booked as
// primary, the workflow's input carries the reschedule notice, and when no
// slot is far enough the instance's line says so.
func TestRolloutHonoursTheMinimumNotice(t *testing.T) {
	f := newRolloutFixture(t)
	ctx := context.Background()
	var started []workflows.Input
	var mu sync.Mutex
	c := &unreliableStartClient{Client: f.server}
	c.start = func(_ int, ctx context.Context, opts client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error) {
		mu.Lock()
		started = append(started, args[0].(workflows.Input))
		mu.Unlock()
		return f.server.ExecuteWorkflow(ctx, opts, workflow, args...)
	}
	e := &env{cfg: f.cfg, temporalClient: c, pool: f.pool}
	plan := releasePlan{Concurrency: 1, Instances: map[string]bool{f.run.InstanceID("contoso-prod"): true}, Plan: launch.Plan{
		Version: demo.Version, SecondaryMinGap: demo.SecondaryGap,
		ReminderOffsets: f.cfg.ReminderOffsets, WindowLength: f.cfg.UpdateWindow,
		// The demo's slots start 2, 3 and 4 minutes after the fixture's run.
		MinNotice: time.Until(f.run.Slot(1)) - 10*time.Second, RescheduleMinNotice: 42 * time.Minute,
	}}
	var out bytes.Buffer
	e.stdout, e.stderr = &out, &out
	if _, err := rollout(ctx, e, plan); err != nil {
		t.Fatal(err)
	}
	if len(started) != 1 {
		t.Fatalf("started %d updates, want 1:\n%s", len(started), out.String())
	}
	in := started[0]
	if !in.PrimaryStart.Equal(f.run.Slot(1)) || in.RescheduleMinNotice != 42*time.Minute {
		t.Errorf("input: primary %s, reschedule notice %s; want %s (the first slot is too close) and 42m", in.PrimaryStart, in.RescheduleMinNotice, f.run.Slot(1))
	}

	out.Reset()
	plan.MinNotice = time.Hour
	plan.Instances = map[string]bool{f.run.InstanceID("fabrikam-prod"): true}
	summary, err := rollout(ctx, e, plan)
	if err != nil {
		t.Fatal(err)
	}
	if summary.count(launch.NoCapacity) != 1 || !strings.Contains(out.String(), "no free slot of 9.2.0 in amer starts after ") ||
		!strings.Contains(out.String(), " UTC (MIN_NOTICE 1h)") {
		t.Errorf("no slot an hour out:\n%s", out.String())
	}
}

// TestRolloutMeetsAnUpdateNotRecordedYet starts an update that has not
// run (no worker runs it), so Postgres holds only the rollout's claim and
// the announcement it queued: a second rollout is refused by Temporal and counts it
// as already running, its slots kept; once it is terminated without
// recording anything, a third gives its slots and its hold back.
func TestRolloutMeetsAnUpdateNotRecordedYet(t *testing.T) {
	f := newRolloutFixture(t)
	ctx := context.Background()
	instance := f.run.InstanceID("contoso-prod")
	id := workflows.WorkflowID(instance, demo.Version)
	var out bytes.Buffer
	summary, err := f.rollout(ctx, f.server, &out, 1, instance)
	if err != nil || summary.count(launch.Started) != 1 {
		t.Fatalf("first rollout (%v):\n%s", err, out.String())
	}

	out.Reset()
	summary, err = f.rollout(ctx, f.server, &out, 1, instance)
	if err != nil || summary.count(launch.AlreadyRunning) != 1 || summary.count(launch.Started) != 0 {
		t.Fatalf("rollout over the running update (%v):\n%s", err, out.String())
	}
	if n := f.bookings(t, instance); n != 2 {
		t.Errorf("%s has %d bookings while its update runs, want its primary and secondary", instance, n)
	}

	if err := f.server.TerminateWorkflow(ctx, id, "", "closed before its first transition"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	summary, err = f.rollout(ctx, f.server, &out, 1, instance)
	if err != nil || summary.count(launch.AlreadyRunning) != 1 || summary.count(launch.Started) != 0 {
		t.Fatalf("rollout over the closed update (%v):\n%s", err, out.String())
	}
	if n := f.bookings(t, instance); n != 0 {
		t.Errorf("%s keeps %d bookings for an update that closed, want none:\n%s", instance, n, out.String())
	}
	if h, found, err := store.New(f.pool).OpenUpdate(ctx, instance); err != nil || found {
		t.Errorf("%s is still held by %+v (%v) although its update closed", instance, h, err)
	}
	var queued int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM notice_queue WHERE workflow_id = $1 AND state = 'queued'`, id).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if queued != 0 {
		t.Errorf("%d notices of the closed update are still queued, want every one withdrawn", queued)
	}
}

// TestRolloutDefersTheFirstTaskAndAnnounces starts an update whose first
// task a rollout defers: its history holds only its start, yet its
// announcement and reminders are queued, and status shows the state
// Postgres recorded for it.
func TestRolloutDefersTheFirstTaskAndAnnounces(t *testing.T) {
	f := newRolloutFixtureAt(t, time.Now().Add(3*time.Hour))
	ctx := context.Background()
	instance := f.run.InstanceID("contoso-prod")
	id := workflows.WorkflowID(instance, demo.Version)
	var out bytes.Buffer
	e := &env{cfg: f.cfg, stdout: &out, stderr: &out, temporalClient: f.server, pool: f.pool}
	firstTasksAt := time.Now().Add(2 * time.Hour)
	summary, err := rollout(ctx, e, releasePlan{Concurrency: 1, Instances: map[string]bool{instance: true}, Plan: launch.Plan{
		Version: demo.Version, ReminderOffsets: f.cfg.ReminderOffsets, WindowLength: f.cfg.UpdateWindow,
		SecondaryMinGap: demo.SecondaryGap, FirstTasksAt: firstTasksAt,
	}})
	if err != nil || summary.count(launch.Started) != 1 {
		t.Fatalf("rollout (%v):\n%s", err, out.String())
	}

	d, err := f.server.DescribeWorkflow(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	info := d.RawResponse.GetWorkflowExecutionInfo()
	if info.GetHistoryLength() != 1 {
		t.Errorf("history of %d events, want only the start while the first task waits", info.GetHistoryLength())
	}
	if runs := info.GetExecutionTime().AsTime(); runs.Before(firstTasksAt.Add(-time.Minute)) || runs.After(firstTasksAt.Add(time.Minute)) {
		t.Errorf("first task due %v, want about %v", runs, firstTasksAt)
	}
	rows, err := f.pool.Query(ctx, `SELECT kind FROM notice_queue WHERE workflow_id = $1 AND state = 'queued' ORDER BY due_at`, id)
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(kinds) == 0 || kinds[0] != string(workflows.NoticeScheduled) {
		t.Errorf("queued %v, want the scheduled notice first", kinds)
	}
	if audit, err := store.New(f.pool).AuditLog(ctx, id); err != nil || len(audit) != 1 || audit[0].Action != "scheduled" {
		t.Errorf("audit log %+v (%v), want the scheduled row", audit, err)
	}

	out.Reset()
	if err := runStatus(ctx, e, instance, demo.Version, textOutput); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"As recorded in Postgres", string(workflows.StatusScheduled), "scheduled"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, out.String())
		}
	}
}

// TestRolloutReportsAnAnnouncementNotQueued: when Postgres refuses the
// announcement after the update started, the update counts as started
// and its line says that its first task will queue the announcement.
func TestRolloutReportsAnAnnouncementNotQueued(t *testing.T) {
	f := newRolloutFixtureAt(t, time.Now().Add(3*time.Hour))
	ctx := context.Background()
	instance := f.run.InstanceID("contoso-prod")
	if _, err := f.pool.Exec(ctx, `ALTER TABLE notice_queue RENAME TO notice_queue_away`); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := f.pool.Exec(ctx, `ALTER TABLE notice_queue_away RENAME TO notice_queue`); err != nil {
			t.Error(err)
		}
	}()
	var out bytes.Buffer
	e := &env{cfg: f.cfg, stdout: &out, stderr: &out, temporalClient: f.server, pool: f.pool}
	summary, err := rollout(ctx, e, releasePlan{Concurrency: 1, Instances: map[string]bool{instance: true}, Plan: launch.Plan{
		Version: demo.Version, ReminderOffsets: f.cfg.ReminderOffsets, WindowLength: f.cfg.UpdateWindow,
		SecondaryMinGap: demo.SecondaryGap, FirstTasksAt: time.Now().Add(time.Hour),
	}})
	if err != nil || summary.count(launch.Started) != 1 {
		t.Fatalf("rollout (%v):\n%s", err, out.String())
	}
	if want := "started, but its announcement is not queued yet"; !strings.Contains(out.String(), want) ||
		!strings.Contains(out.String(), "the update queues it itself when its first task runs, at ") {
		t.Errorf("the rollout does not say %q and when the update queues it:\n%s", want, out.String())
	}
}
