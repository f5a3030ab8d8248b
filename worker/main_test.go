package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/buildinfo"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/deployment"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/schemas"
	"github.com/svcupdate/svcupdate/workflows"
)

// lockedBuffer collects the worker's log while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRun runs the worker in the background and returns its result.
func startRun(ctx context.Context, stderr io.Writer) <-chan error {
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, io.Discard, stderr) }()
	return done
}

// runningWorker is run started by a test in the background, its log
// captured.
type runningWorker struct {
	ctx    context.Context // run's context, cancelled by stop
	logs   *lockedBuffer
	cancel context.CancelFunc
	done   <-chan error
}

// startWorker starts run; the test stops it with stop, or by ending.
func startWorker(t *testing.T) *runningWorker {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := &lockedBuffer{}
	return &runningWorker{ctx: ctx, logs: logs, cancel: cancel, done: startRun(ctx, logs)}
}

// stop cancels run's context and returns what run returns, failing the
// test if that takes longer than within.
func (w *runningWorker) stop(t *testing.T, within time.Duration) error {
	t.Helper()
	w.cancel()
	return waitForRun(t, w.done, within)
}

func waitForRun(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("run did not return within %s", within)
		return nil
	}
}

// workerOnDevServer starts a dev server and a fresh database and points
// the worker's configuration at them, everything else cleared and no
// metrics endpoint; tests set what they need on top.
func workerOnDevServer(t *testing.T) *devtest.Server {
	t.Helper()
	server := devtest.Start(t)
	testkit.ClearConfigEnv(t)
	server.SetProgramEnv(t)
	t.Setenv("DATABASE_URL", pgtest.NewDatabase(t))
	t.Setenv("METRICS_ADDR", "")
	return server
}

// probeTaskQueue is where the tests' own worker runs the probe workflows.
const probeTaskQueue = "worker-test-probe"

// startProbes runs probe (executorProbe or executorProbeWithRetries) on a
// worker of the test's own until the test ends.
func startProbes(t *testing.T, server *devtest.Server, probe any) {
	t.Helper()
	probes := worker.New(server.Client(), probeTaskQueue, worker.Options{})
	probes.RegisterWorkflow(probe)
	if err := probes.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probes.Stop)
}

// probeUpdate is an update of instanceID from 9.1.0 to 9.2.0 in its primary
// slot, with an hour of the window left.
func probeUpdate(instanceID string) workflows.ApplyUpdateInput {
	return workflows.ApplyUpdateInput{
		InstanceID: instanceID, TenantID: "acme", CurrentVersion: "9.1.0", TargetVersion: "9.2.0",
		Attempt: workflows.SlotPrimary, WindowEnd: time.Now().Add(time.Hour),
	}
}

// runProbe starts probe on in through the probe worker.
func runProbe(ctx context.Context, t *testing.T, server *devtest.Server, probe any, in workflows.ApplyUpdateInput) client.WorkflowRun {
	t.Helper()
	run, err := server.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: probeTaskQueue}, probe, in)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// waitForExecutorStarted waits until a worker has picked up the update's
// ApplyUpdate activity.
func waitForExecutorStarted(ctx context.Context, t *testing.T, server *devtest.Server, update client.WorkflowRun, what string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, what, func() (bool, string) {
		desc, err := server.Client().DescribeWorkflow(ctx, update.GetID(), update.GetRunID())
		if err != nil {
			return false, err.Error()
		}
		for _, pending := range desc.RawResponse.GetPendingActivities() {
			if pending.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
				return true, ""
			}
		}
		return false, "no ApplyUpdate started"
	})
}

// executorProbe runs ApplyUpdate on the executor's task queue the way the
// ServiceUpdate workflow does, so the test reaches the worker's executor
// without depending on the whole lifecycle.
func executorProbe(ctx workflow.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           workflows.ExecutorTaskQueue,
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var res workflows.ApplyUpdateResult
	err := workflow.ExecuteActivity(ctx, workflows.ActivityApplyUpdate, in).Get(ctx, &res)
	return res, err
}

// executorProbeWithRetries is executorProbe with the workflow's kind of
// retry policy: an attempt interrupted by a stopping worker runs again.
func executorProbeWithRetries(ctx workflow.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           workflows.ExecutorTaskQueue,
		StartToCloseTimeout: time.Hour,
		// A stopping worker may not get to report the cancelled attempt;
		// the heartbeat timeout is then what hands it to the next worker.
		HeartbeatTimeout: 3 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        100 * time.Millisecond,
			NonRetryableErrorTypes: []string{workflows.ErrTypeUpdateFailed},
		},
	})
	var res workflows.ApplyUpdateResult
	err := workflow.ExecuteActivity(ctx, workflows.ActivityApplyUpdate, in).Get(ctx, &res)
	return res, err
}

// prometheusValue is how the metrics pipeline writes a tag value (tally's
// Prometheus sanitizer turns '-' into '_').
func prometheusValue(s string) string { return strings.ReplaceAll(s, "-", "_") }

func TestWorkerServesMetricsRunsTheExecutorAndStopsCleanly(t *testing.T) {
	server := workerOnDevServer(t)
	metricsAddr := testkit.FreeAddress(t)
	t.Setenv("METRICS_ADDR", metricsAddr)
	t.Setenv("CONNECT_TIMEOUT", "30s")
	t.Setenv("WORKER_STOP_TIMEOUT", "5s")
	t.Setenv("SIMULATED_DURATION", "100ms")
	t.Setenv("SIMULATED_FAILURES", "acme-broken:all")
	// An OTLP/HTTP collector that counts the trace exports it receives.
	var traceExports atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.ContentLength != 0 {
			traceExports.Add(1)
		}
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

	running := startWorker(t)
	ctx, logs := running.ctx, running.logs

	metricsURL := "http://" + metricsAddr + "/metrics"
	var body string
	testkit.WaitFor(t, 60*time.Second, "both workers reported by the SDK on /metrics", func() (bool, string) {
		var err error
		if body, err = testkit.Scrape(metricsURL); err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, `task_queue="`+prometheusValue(workflows.TaskQueue)+`"`) &&
			strings.Contains(body, `task_queue="`+prometheusValue(workflows.ExecutorTaskQueue)+`"`) &&
			strings.Contains(body, "temporal_worker_start_total"), body
	})
	if !strings.Contains(body, "temporal_request_total") {
		t.Errorf("the SDK's request counter is missing from /metrics")
	}
	if !strings.Contains(body, `svcupdate_build_info{commit="`) {
		t.Errorf("build_info is missing from /metrics")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		testkit.WaitFor(t, 10*time.Second, path+" answering 200", func() (bool, string) {
			resp, err := http.Get("http://" + metricsAddr + path)
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, resp.Status
		})
	}

	// Run the executor through the worker: one update that succeeds, one
	// that SIMULATED_FAILURES fails.
	startProbes(t, server, executorProbe)
	input := probeUpdate("acme-prod")
	update := func(in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
		var res workflows.ApplyUpdateResult
		return res, runProbe(ctx, t, server, executorProbe, in).Get(ctx, &res)
	}
	res, err := update(input)
	if err != nil || res.Output != "simulated update of acme-prod from 9.1.0 to 9.2.0 done in 100ms" {
		t.Errorf("simulated update through the worker: %+v, %v", res, err)
	}
	input.InstanceID, input.Attempt = "acme-broken", workflows.SlotSecondary
	_, err = update(input)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeUpdateFailed {
		t.Errorf("a failing simulated update returned %v, want an %s error", err, workflows.ErrTypeUpdateFailed)
	}
	testkit.WaitFor(t, 10*time.Second, "executor durations on /metrics", func() (bool, string) {
		var err error
		if body, err = testkit.Scrape(metricsURL); err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, "svcupdate_executor_duration_seconds_count") &&
			strings.Contains(body, `outcome="`+workflows.OutcomeSucceeded+`"`) &&
			strings.Contains(body, `outcome="`+workflows.OutcomeFailed+`"`), body
	})

	testkit.WaitFor(t, 10*time.Second, "spans of the updates at the OTLP collector", func() (bool, string) {
		return traceExports.Load() > 0, "no trace export yet"
	})
	if err := running.stop(t, 30*time.Second); err != nil {
		t.Fatalf("run after cancellation: %v\n%s", err, logs)
	}
	for _, want := range []string{"Worker stopped", "taskQueue=" + workflows.TaskQueue, "taskQueue=" + workflows.ExecutorTaskQueue} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if conn, err := net.DialTimeout("tcp", metricsAddr, time.Second); err == nil {
		conn.Close()
		t.Error("the metrics endpoint still listens after run returned")
	}
}

// An update still running when the worker stops is cancelled after
// EXECUTOR_STOP_TIMEOUT and retried by the next worker: nothing is lost.
func TestWorkerStopLeavesAnUnfinishedUpdateToTheNextWorker(t *testing.T) {
	server := workerOnDevServer(t)
	t.Setenv("EXECUTOR_STOP_TIMEOUT", "500ms")
	t.Setenv("SIMULATED_DURATION", "1h")

	startProbes(t, server, executorProbeWithRetries)

	first := startWorker(t)
	ctx := context.Background()
	update := runProbe(ctx, t, server, executorProbeWithRetries, probeUpdate("acme-prod"))
	waitForExecutorStarted(ctx, t, server, update, "the first worker running the update")
	if err := first.stop(t, 30*time.Second); err != nil {
		t.Fatalf("first worker: %v", err)
	}

	// The next worker finishes quickly; the update must complete there.
	t.Setenv("SIMULATED_DURATION", "100ms")
	second := startWorker(t)
	var res workflows.ApplyUpdateResult
	if err := update.Get(ctx, &res); err != nil {
		t.Fatalf("the update did not complete on the second worker: %v", err)
	}
	if !strings.HasSuffix(res.Output, "done in 100ms") {
		t.Errorf("the update completed as %q, not on the second worker", res.Output)
	}
	if err := second.stop(t, 30*time.Second); err != nil {
		t.Fatalf("second worker: %v", err)
	}
}

// A rolling deploy stops workers while updates run: the executor waits
// EXECUTOR_STOP_TIMEOUT for them, however short WORKER_STOP_TIMEOUT is.
func TestWorkerStopLetsARunningUpdateFinish(t *testing.T) {
	server := workerOnDevServer(t)
	t.Setenv("WORKER_STOP_TIMEOUT", "100ms")
	t.Setenv("EXECUTOR_STOP_TIMEOUT", "30s")
	t.Setenv("SIMULATED_DURATION", "2s")

	startProbes(t, server, executorProbe)

	running := startWorker(t)
	ctx := context.Background()
	// One attempt only: an update cut short fails the probe.
	update := runProbe(ctx, t, server, executorProbe, probeUpdate("acme-prod"))
	waitForExecutorStarted(ctx, t, server, update, "the worker running the update")
	if err := running.stop(t, 30*time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
	// The worker is gone: only an update it finished while stopping is done.
	getCtx, cancelGet := context.WithTimeout(ctx, 5*time.Second)
	defer cancelGet()
	var res workflows.ApplyUpdateResult
	if err := update.Get(getCtx, &res); err != nil || !strings.HasSuffix(res.Output, "done in 2s") {
		t.Fatalf("the update running when the worker stopped ended as %+v, %v; want it finished", res, err)
	}
}

// A provider running its own executor sets EXECUTOR=none: this worker then
// leaves the executor's task queue to the provider's worker alone.
func TestWorkerWithoutExecutorLeavesItsQueueToAnother(t *testing.T) {
	server := workerOnDevServer(t)
	t.Setenv("EXECUTOR", "none")

	running := startWorker(t)
	ctx, logs := running.ctx, running.logs
	pollers := func(taskQueue string, kind enumspb.TaskQueueType) []string {
		desc, err := server.Client().DescribeTaskQueue(ctx, taskQueue, kind)
		if err != nil {
			return nil
		}
		var identities []string
		for _, p := range desc.GetPollers() {
			identities = append(identities, p.GetIdentity())
		}
		return identities
	}
	testkit.WaitFor(t, 60*time.Second, "the worker polling its own task queue", func() (bool, string) {
		return len(pollers(workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)) > 0 &&
			strings.Contains(logs.String(), "Worker polling"), logs.String()
	})

	const providerIdentity = "provider-executor"
	provider := worker.New(server.Client(), workflows.ExecutorTaskQueue, worker.Options{Identity: providerIdentity})
	provider.RegisterActivityWithOptions(func(ctx context.Context, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
		return workflows.ApplyUpdateResult{Output: "updated by the provider"}, nil
	}, activity.RegisterOptions{Name: workflows.ActivityApplyUpdate})
	if err := provider.Start(); err != nil {
		t.Fatal(err)
	}
	defer provider.Stop()
	startProbes(t, server, executorProbe)
	for i := range 3 {
		run := runProbe(ctx, t, server, executorProbe, probeUpdate(fmt.Sprintf("acme-%d", i)))
		var res workflows.ApplyUpdateResult
		if err := run.Get(ctx, &res); err != nil || res.Output != "updated by the provider" {
			t.Errorf("update %d: %+v, %v; want it run by the provider's executor", i, res, err)
		}
	}
	if identities := pollers(workflows.ExecutorTaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY); len(identities) != 1 || identities[0] != providerIdentity {
		t.Errorf("pollers of %s: %q, want the provider's worker only", workflows.ExecutorTaskQueue, identities)
	}

	if err := running.stop(t, 30*time.Second); err != nil {
		t.Fatalf("run: %v\n%s", err, logs)
	}
	if strings.Contains(logs.String(), "TaskQueue="+workflows.ExecutorTaskQueue) || strings.Contains(logs.String(), "Updates are simulated") {
		t.Errorf("a worker without executor polled the executor queue or warned of simulated updates:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "No executor in this worker (EXECUTOR=none)") {
		t.Errorf("the log does not say this worker hosts no executor:\n%s", logs)
	}
}

// The simulated executor, the default for make run, reports success without
// updating anything: a worker running it says so at start.
func TestWorkerWarnsThatUpdatesAreSimulated(t *testing.T) {
	for _, tt := range []struct {
		executor string
		warns    bool
	}{
		{"", true}, // the default
		{"command", false},
		{"none", false},
	} {
		t.Run("EXECUTOR="+tt.executor, func(t *testing.T) {
			testkit.ClearConfigEnv(t)
			if tt.executor != "" {
				t.Setenv("EXECUTOR", tt.executor)
				t.Setenv("EXECUTOR_COMMAND", "true")
			}
			t.Setenv("DATABASE_URL", "postgres://postgres@"+testkit.FreeAddress(t)+"/svcupdate?sslmode=disable")
			t.Setenv("METRICS_ADDR", "")
			t.Setenv("CONNECT_TIMEOUT", "10m")

			running := startWorker(t)
			logs := running.logs
			// The warning, if any, comes before the worker connects.
			testkit.WaitFor(t, 30*time.Second, "the worker waiting for Postgres", func() (bool, string) {
				return strings.Contains(logs.String(), `msg="Waiting to connect" target=postgres server="Postgres at `), logs.String()
			})
			if err := running.stop(t, 10*time.Second); err != nil {
				t.Fatalf("run: %v", err)
			}
			warning := lineStarting(logs.String(), "level=WARN msg=\"Updates are simulated")
			if tt.warns && !strings.Contains(warning, "set EXECUTOR=command or none in production") {
				t.Errorf("no WARN that updates are simulated:\n%s", logs)
			}
			if !tt.warns && warning != "" {
				t.Errorf("EXECUTOR=%s warns that updates are simulated: %s", tt.executor, warning)
			}
		})
	}
}

// lineStarting returns the first line of text that contains fragment
// after its time stamp, or "".
func lineStarting(text, fragment string) string {
	for line := range strings.Lines(text) {
		if strings.Contains(line, " "+fragment) {
			return line
		}
	}
	return ""
}

func TestWorkerWaitsForTemporalThenGivesUp(t *testing.T) {
	testkit.ClearConfigEnv(t)
	address := testkit.FreeAddress(t)
	t.Setenv("TEMPORAL_ADDRESS", address)
	t.Setenv("DATABASE_URL", pgtest.NewDatabase(t))
	t.Setenv("METRICS_ADDR", "")
	t.Setenv("CONNECT_TIMEOUT", "3s")

	logs := &lockedBuffer{}
	started := time.Now()
	err := waitForRun(t, startRun(context.Background(), logs), 30*time.Second)
	if err == nil {
		t.Fatal("run succeeded without a Temporal server")
	}
	want := "Temporal at " + address + " (namespace default) not ready within 3s (CONNECT_TIMEOUT)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if took := time.Since(started); took < 3*time.Second {
		t.Errorf("gave up after %s, before CONNECT_TIMEOUT", took)
	}
	if !strings.Contains(logs.String(), `msg="Waiting to connect" target=temporal server="Temporal at `+address) {
		t.Errorf("the log does not say what it waits for:\n%s", logs)
	}
	if code := cli.ExitCode(program, err, io.Discard); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}

func TestWorkerStopsWhileWaitingForPostgres(t *testing.T) {
	testkit.ClearConfigEnv(t)
	t.Setenv("DATABASE_URL", "postgres://postgres@"+testkit.FreeAddress(t)+"/svcupdate?sslmode=disable")
	t.Setenv("METRICS_ADDR", "")
	t.Setenv("CONNECT_TIMEOUT", "10m")
	t.Setenv("LOG_FORMAT", "json")

	running := startWorker(t)
	logs := running.logs
	testkit.WaitFor(t, 30*time.Second, "the worker waiting for Postgres", func() (bool, string) {
		return strings.Contains(logs.String(), `"msg":"Waiting to connect","target":"postgres","server":"Postgres at 127.0.0.1:`), logs.String()
	})
	if err := running.stop(t, 10*time.Second); err != nil {
		t.Errorf("run stopped while waiting returned %v, want a clean stop", err)
	}
	for line := range strings.Lines(logs.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["msg"] == nil || entry["level"] == nil {
			t.Errorf("LOG_FORMAT=json wrote %q (%v)", line, err)
		}
	}
}

func TestWorkerWaitsForTheSchemaThenGoesOn(t *testing.T) {
	testkit.ClearConfigEnv(t)
	databaseURL := pgtest.NewEmptyDatabase(t)
	t.Setenv("DATABASE_URL", databaseURL)
	t.Setenv("TEMPORAL_ADDRESS", testkit.FreeAddress(t))
	t.Setenv("METRICS_ADDR", "")
	t.Setenv("CONNECT_TIMEOUT", "10m")

	running := startWorker(t)
	ctx, logs := running.ctx, running.logs
	testkit.WaitFor(t, 30*time.Second, "the worker waiting for the schema", func() (bool, string) {
		return strings.Contains(logs.String(), "run `starter migrate`"), logs.String()
	})
	if _, err := schemas.Migrate(ctx, databaseURL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the worker going on to Temporal once migrated", func() (bool, string) {
		return strings.Contains(logs.String(), `msg="Waiting to connect" target=temporal`), logs.String()
	})
	if err := running.stop(t, 10*time.Second); err != nil {
		t.Errorf("run stopped while waiting returned %v, want a clean stop", err)
	}
}

func TestWorkerRejectsABadValueInOneLine(t *testing.T) {
	testkit.ClearConfigEnv(t)
	t.Setenv("EXECUTOR", "ansible")
	err := run(context.Background(), nil, io.Discard, io.Discard)
	var stderr bytes.Buffer
	if code := cli.ExitCode(program, err, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2 (error %v)", code, err)
	}
	if want := "worker: invalid EXECUTOR=\"ansible\" (accepted: simulated, command or none)\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

func TestWorkerRejectsArguments(t *testing.T) {
	testkit.ClearConfigEnv(t)
	for _, args := range [][]string{{"extra"}, {"-verbose"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if code := cli.ExitCode(program, err, &stderr); code != 2 {
			t.Errorf("%q: exit code %d, want 2 (error %v)", args, code, err)
		}
		if lines := strings.Count(stderr.String(), "\n"); lines != 1 || stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, stderr %q; want one line on stderr only", args, stdout.String(), stderr.String())
		}
	}
}

// /readyz says what the worker waits for until it polls, and fails when
// Postgres stops answering.
func TestReadinessFollowsTheWorker(t *testing.T) {
	h := newHealth()
	ctx := context.Background()
	if err := h.ready(ctx); err == nil || err.Error() != "connecting to Postgres" {
		t.Errorf("ready before connecting: %v", err)
	}
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	server := devtest.Start(t)
	c := server.Client()
	h.pool.Store(pool)
	h.temporal.Store(&c)
	h.setStage("starting the workers")
	if err := h.ready(ctx); err == nil || err.Error() != "starting the workers" {
		t.Errorf("ready before polling: %v", err)
	}
	h.polled(true)
	if err := h.ready(ctx); err != nil {
		t.Errorf("ready while polling: %v", err)
	}
	pool.Close()
	if err := h.ready(ctx); err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("ready with Postgres gone: %v", err)
	}
	h.polled(false)
	if err := h.ready(ctx); err == nil || err.Error() != "stopping" {
		t.Errorf("ready while stopping: %v", err)
	}
}

func TestWorkerHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"-h"}, &stdout, io.Discard)
	if !errors.Is(err, flag.ErrHelp) || cli.ExitCode(program, err, io.Discard) != 0 {
		t.Fatalf("-h returned %v, want flag.ErrHelp and exit 0", err)
	}
	for _, v := range config.Variables() {
		if !strings.Contains(stdout.String(), "\n"+v.Name+" ") {
			t.Errorf("-h does not list %s:\n%s", v.Name, stdout.String())
		}
	}
}

// A worker pointed at a database of another deployment than its namespace's
// refuses to start instead of failing that fleet's notices.
func TestWorkerRefusesAnotherDeploymentsDatabase(t *testing.T) {
	server := workerOnDevServer(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := deployment.Bind(ctx, server.Client(), "default", store.New(pool)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONNECT_TIMEOUT", "30s")
	err = waitForRun(t, startRun(ctx, io.Discard), time.Minute)
	if !errors.Is(err, deployment.ErrMismatch) {
		t.Errorf("run with another deployment's database: %v, want %v", err, deployment.ErrMismatch)
	}
}

func TestWorkerVersion(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"--version"}, &stdout, io.Discard)
	if cli.ExitCode(program, err, io.Discard) != 0 {
		t.Fatalf("--version returned %v, want exit 0", err)
	}
	if want := program + " " + buildinfo.Read().String() + "\n"; stdout.String() != want {
		t.Errorf("--version printed %q, want %q", stdout.String(), want)
	}
}
