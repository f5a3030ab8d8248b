//go:build benchscale

package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/svcupdate/svcupdate/activities/sendgrid/sendgridtest"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestScale is `make bench-scale`: BENCH_INSTANCES (default 10,000)
// instances through a rollout on a fresh dev server with the SendGrid
// test server, beside two baselines measured in the same run on identical
// fresh servers: the raw start rate of a one-timer workflow, and the rate
// at which one-timers get started and through their first task. It prints every
// figure; it fails only when the rollout does not start and announce
// every instance.
func TestScale(t *testing.T) {
	n := 10000
	if v := os.Getenv("BENCH_INSTANCES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			t.Fatalf("BENCH_INSTANCES=%q: want a whole number of at least 10", v)
		}
	}
	testkit.ClearConfigEnv(t)
	report := func(format string, args ...any) { fmt.Printf("bench-scale: "+format+"\n", args...) }
	if address := os.Getenv(devtest.ExternalAddressVariable); address != "" {
		report("instances %d; Temporal at %s, a fresh namespace per server (%s)", n, address, devtest.ExternalAddressVariable)
	} else {
		report("instances %d; dev servers' database: %s (%s)", n, cmp.Or(os.Getenv(devtest.DatabaseFileVariable), "memory"), devtest.DatabaseFileVariable)
	}

	temporalClient, _ := devtest.StartForPrograms(t)
	mail := sendgridtest.NewServer(t)
	t.Setenv("SENDGRID_HOST", mail.Config().Host)
	t.Setenv("SENDGRID_API_KEY", mail.Config().APIKey)
	w := startWorker(t, []string{"METRICS_ADDR=", "LOG_LEVEL=warn"})
	w.waitUntilPolling(t, temporalClient)
	mustRun(t, "migrate")
	mustRun(t, "setup")
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(scaleFleet(t, n)))
	mustRun(t, "load", fleetPath)
	cpuBefore := processCPU(t, w.cmd.Process.Pid)

	began := time.Now()
	out := mustRun(t, "rollout", "--version", targetVersion, "--waves", "5%,25%,100%")
	rolloutTime := time.Since(began)
	if !strings.Contains(out, fmt.Sprintf("started %d,", n)) {
		t.Fatalf("the rollout did not start %d updates:\n%s", n, out)
	}
	rolloutRate := float64(n) / rolloutTime.Seconds()
	report("rollout: %d started in %.1f s: %.1f workflows/s", n, rolloutTime.Seconds(), rolloutRate)

	testkit.WaitFor(t, time.Duration(n)*200*time.Millisecond+5*time.Minute, "every scheduled email accepted", func() (bool, string) {
		got := 0
		for _, r := range mail.Accepted() {
			if r.CustomArgs["notice"] == string(workflows.NoticeScheduled) {
				got++
			}
		}
		return got >= n, fmt.Sprintf("%d of %d", got, n)
	})
	announced := time.Since(began)
	announceRate := float64(n) / announced.Seconds()
	report("announced: every scheduled email accepted %.1f s after the rollout started: %.1f instances/s", announced.Seconds(), announceRate)
	waitFirstTasks(t, temporalClient, n)
	processed := time.Since(began)
	report("first tasks: all %d run %.1f s after the rollout started (deferred until its starts were done)", n, processed.Seconds())
	cpu := processCPU(t, w.cmd.Process.Pid) - cpuBefore
	report("worker: RSS %d MB after it processed %d open workflows; CPU %.1f s over %.1f s (%.0f%% of one core)",
		processRSS(t, w.cmd.Process.Pid)>>20, n, cpu.Seconds(), processed.Seconds(), 100*cpu.Seconds()/processed.Seconds())

	began = time.Now()
	out = mustRun(t, "rollout", "--version", targetVersion)
	report("re-run of the finished rollout: %.1f s", time.Since(began).Seconds())
	if !strings.Contains(out, "started 0,") {
		t.Errorf("the re-run started something:\n%s", out)
	}

	ctx := context.Background()
	one, err := temporalClient.DescribeWorkflow(ctx, workflows.WorkflowID(scaleInstanceID(0), targetVersion), "")
	if err != nil {
		t.Fatal(err)
	}
	ro, err := temporalClient.DescribeWorkflow(ctx, workflows.RolloutID(targetVersion), "")
	if err != nil {
		t.Fatal(err)
	}
	report("history: one update %d events, %d bytes so far (announced, waiting for its slot); the rollout's current run %d events",
		one.RawResponse.GetWorkflowExecutionInfo().GetHistoryLength(), one.RawResponse.GetWorkflowExecutionInfo().GetHistorySizeBytes(),
		ro.RawResponse.GetWorkflowExecutionInfo().GetHistoryLength())
	if os.Getenv("BENCH_SHOW_HISTORY") != "" {
		events := temporalClient.GetWorkflowHistory(ctx, workflows.WorkflowID(scaleInstanceID(0), targetVersion), "", false, 0)
		for events.HasNext() {
			e, err := events.Next()
			if err != nil {
				t.Fatal(err)
			}
			report("  event %d %s, %d bytes", e.EventId, e.EventType, proto.Size(e))
		}
	}

	// The baselines come last, each on a fresh server (on a cluster, in a
	// fresh namespace), so that nothing they leave behind runs beside the
	// rollout. They are rates: 10,000 workflows measure them well, and a
	// bigger fleet need not wait for as many more.
	baseline := min(n, 10000)
	rawRate, _ := oneTimerRates(t, baseline, worker.Options{})
	_, processedRate := oneTimerRates(t, baseline, worker.Options{WorkflowTaskPollerBehavior: worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{})})
	report("raw start rate of a one-timer workflow (%d of them): %.1f workflows/s", baseline, rawRate)
	report("one-timers started and through their first task, pollers scaled as svcupdate's worker does (%d of them): %.1f workflows/s (%.2f× raw)",
		baseline, processedRate, processedRate/rawRate)
	report("ratios: rollout %.2f× raw, %.2f× one-timers through their first task; announced %.2f× raw, %.2f× one-timers through their first task",
		rolloutRate/rawRate, rolloutRate/processedRate, announceRate/rawRate, announceRate/processedRate)
}

func scaleInstanceID(i int) string { return fmt.Sprintf("scale-%06d", i) }

// isScaleSandbox says which of scaleFleet's instances are sandboxes: one
// in a hundred.
func isScaleSandbox(i int) bool { return i%100 == 0 }

// waitFirstTasks waits until each of the n updates has run its first task
// (its history holds more than its start, and no workflow task is
// pending). The updates are described in the order the rollout started
// them (sandboxes, then production), 32 at a time, and a pass stops at
// the first still waiting: the first tasks follow the starts' order, so
// each update is described about once.
func waitFirstTasks(t *testing.T, c client.Client, n int) {
	var waiting []string
	for _, sandboxes := range []bool{true, false} {
		for i := range n {
			if isScaleSandbox(i) == sandboxes {
				waiting = append(waiting, workflows.WorkflowID(scaleInstanceID(i), targetVersion))
			}
		}
	}
	done := func(id string) (bool, error) {
		d, err := c.DescribeWorkflow(context.Background(), id, "")
		if err != nil {
			return false, err
		}
		return d.RawResponse.GetWorkflowExecutionInfo().GetHistoryLength() > 1 && d.RawResponse.GetPendingWorkflowTask() == nil, nil
	}
	testkit.WaitFor(t, time.Duration(n)*100*time.Millisecond+10*time.Minute, "every update through its first task", func() (bool, string) {
		for len(waiting) > 0 {
			chunk := waiting[:min(32, len(waiting))]
			finished := make([]bool, len(chunk))
			errs := make([]error, len(chunk))
			var wg sync.WaitGroup
			for i, id := range chunk {
				wg.Go(func() { finished[i], errs[i] = done(id) })
			}
			wg.Wait()
			var still []string
			for i, id := range chunk {
				if !finished[i] {
					still = append(still, id)
				}
			}
			if len(still) > 0 {
				waiting = append(still, waiting[len(chunk):]...)
				return false, fmt.Sprintf("%d of %d still waiting, %s first (%v)", len(waiting), n, waiting[0], errors.Join(errs...))
			}
			waiting = waiting[len(chunk):]
		}
		return true, ""
	})
}

// scaleFleet is n instances (one in a hundred a sandbox) one release
// behind, in one region whose daily slots, weeks away, each hold them all.
func scaleFleet(t *testing.T, n int) []byte {
	t.Helper()
	first := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 30)
	var slots []map[string]any
	for d := range 12 { // one a day: each wave takes the next, secondaries the later ones
		slots = append(slots, map[string]any{"region": "eu", "start": first.AddDate(0, 0, d).Format(time.RFC3339), "window": "12h", "capacity": n})
	}
	instances := make([]map[string]any, n)
	for i := range n {
		kind := "production"
		if isScaleSandbox(i) {
			kind = "sandbox"
		}
		id := scaleInstanceID(i)
		instances[i] = map[string]any{"id": id, "tenant": "scale", "name": id, "kind": kind, "region": "eu", "timeZone": "Europe/Berlin",
			"version": "9.1.0", "admins": []string{"admin@" + id + ".example"}, "users": []string{}}
	}
	data, err := json.Marshal(map[string]any{
		"releases": []map[string]any{
			{"version": "9.0.0", "name": "Spring '26", "order": 1},
			{"version": "9.1.0", "name": "Summer '26", "order": 2},
			{"version": targetVersion, "name": "Winter '27", "order": 3, "slots": slots,
				"periodStart": first.AddDate(0, 0, -1).Format(time.RFC3339), "periodEnd": first.AddDate(0, 0, 30).Format(time.RFC3339)},
		},
		"tenants":   []map[string]string{{"id": "scale", "name": "Scale Inc"}},
		"instances": instances,
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// oneTimer is the baseline: a workflow that starts one long timer. It
// counts its first tasks (never replayed here) in firstTasks.
func oneTimer(ctx workflow.Context) error {
	if !workflow.IsReplaying(ctx) {
		firstTasks.Add(1)
	}
	return workflow.Sleep(ctx, 30*24*time.Hour)
}

// firstTasks counts the one-timers that have run their first task.
var firstTasks atomic.Int64

// oneTimerRates starts n one-timer workflows, 32 at a time, on a fresh
// dev server with a worker of the given options running them. started is
// the raw start rate (the starts answered); processed counts until every
// workflow has also run its first task, as each update must before it is
// announced. With the SDK's two fixed pollers the first tasks trail the
// starts; with pollers that scale they keep up, and the starts slow down.
func oneTimerRates(t *testing.T, n int, options worker.Options) (started, processed float64) {
	server, err := devtest.StartServer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = server.Stop() }()
	c := server.Client()
	const queue = "bench-one-timer"
	wk := worker.New(c, queue, options)
	wk.RegisterWorkflow(oneTimer)
	if err := wk.Start(); err != nil {
		t.Fatal(err)
	}
	defer wk.Stop()
	firstTasks.Store(0)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed sync.Once
	var firstErr error
	began := time.Now()
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: fmt.Sprintf("one-timer-%d", i), TaskQueue: queue}, oneTimer); err != nil {
					// A refused start would make the rate a rate of refusals:
					// the baseline stops at the first.
					failed.Do(func() { firstErr = fmt.Errorf("start one-timer %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("the baseline stopped: %v", firstErr)
	}
	started = float64(n) / time.Since(began).Seconds()
	testkit.WaitFor(t, time.Duration(n)*100*time.Millisecond+time.Minute, "every one-timer through its first task", func() (bool, string) {
		got := firstTasks.Load()
		return got >= int64(n), fmt.Sprintf("%d of %d", got, n)
	})
	return started, float64(n) / time.Since(began).Seconds()
}

// processRSS reads a process's resident set in bytes.
func processRSS(t *testing.T, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for process %d", pid)
	return 0
}

// processCPU reads a process's user and system CPU time (clock ticks of
// 10 ms, as Linux reports them).
func processCPU(t *testing.T, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
