package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// The fault tests run the command executor with fault-command.sh and
// fault-probe.sh (testdata/), kill executor workers with SIGKILL around the
// update runs and restart them, and check that no instance's update runs
// twice at once or after it succeeded, and that every update still ends as
// its scenario says.
const (
	faultSecondaryGap = 5 * time.Second
	faultRunSeconds   = "2"
	// faultIdleQueue is the task queue of the executor-only workers'
	// workflow side: nothing runs there, so killing them kills updates only.
	faultIdleQueue = "fault-executors-only"
)

// faultInstance is an instance of a fault test's fleet.
type faultInstance struct {
	id, region, version string
	approve             bool // on n-1: an admin approves; on n-2 the update is mandatory
}

func (in faultInstance) admin() string { return "admin@" + in.id + ".example" }

// faultFleetFile renders a fleet file with one primary and one secondary
// slot per region, the primaries at the given times.
func faultFleetFile(t *testing.T, instances []faultInstance, primaries map[string]time.Time, window time.Duration, periodStart, periodEnd time.Time) []byte {
	t.Helper()
	type slot struct {
		Region   string `json:"region"`
		Start    string `json:"start"`
		Window   string `json:"window"`
		Capacity int    `json:"capacity"`
	}
	var slots []slot
	for region, primary := range primaries {
		for _, start := range []time.Time{primary, primary.Add(window + faultSecondaryGap)} {
			slots = append(slots, slot{Region: region, Start: start.Format(time.RFC3339), Window: window.String(), Capacity: len(instances)})
		}
	}
	var list []map[string]any
	for _, in := range instances {
		list = append(list, map[string]any{
			"id": in.id, "tenant": "faulty", "name": in.id, "kind": "production", "region": in.region, "timeZone": "Europe/Berlin",
			"version": in.version, "admins": []string{in.admin()}, "users": []string{"staff@" + in.id + ".example"},
		})
	}
	data, err := json.MarshalIndent(map[string]any{
		"releases": []map[string]any{
			{"version": "9.0.0", "name": "Spring '26", "order": 1},
			{"version": "9.1.0", "name": "Summer '26", "order": 2},
			{"version": targetVersion, "name": "Winter '27", "order": 3, "slots": slots,
				"periodStart": periodStart.Format(time.RFC3339), "periodEnd": periodEnd.Format(time.RFC3339)},
		},
		"tenants":   []map[string]string{{"id": "faulty", "name": "Faulty Inc"}},
		"instances": list,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// faultEnv sets what the starter and the workers share and returns the
// worker settings of the command executor, which records its runs in dir.
func faultEnv(t *testing.T, window time.Duration, dir string, sendgrid *fakeSendGrid) (base, executor []string) {
	t.Helper()
	for name, value := range map[string]string{
		"REMINDER_OFFSETS":  "0s",
		"UPDATE_WINDOW":     window.String(),
		"SECONDARY_MIN_GAP": faultSecondaryGap.String(),
		"CONNECT_TIMEOUT":   "30s",
		// Slots here start seconds after the rollout; a minimum notice
		// (read by starters that have one) must not refuse them.
		"MIN_NOTICE": "1s",
	} {
		t.Setenv(name, value)
	}
	script := func(name string) string {
		path, err := filepath.Abs(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return "'" + path + "'"
	}
	base = []string{
		"SENDGRID_API_KEY=" + sendGridKey,
		"SENDGRID_HOST=" + sendgrid.server.URL,
		"MAIL_FROM=svcupdate faults <updates@svcupdate.example>",
		"METRICS_ADDR=",
		"WORKER_STOP_TIMEOUT=5s",
		"EXECUTOR_STOP_TIMEOUT=5s",
	}
	executor = append(base,
		"EXECUTOR=command",
		"EXECUTOR_COMMAND="+script("fault-command.sh"),
		"EXECUTOR_PROBE_COMMAND="+script("fault-probe.sh"),
		"EXECUTOR_KILL_GRACE=2s",
		// Read by the scripts only.
		"FAULT_DIR="+dir,
		"FAULT_RUN_SECONDS="+faultRunSeconds,
		"EXECUTOR_PASS_ENV=FAULT_DIR,FAULT_RUN_SECONDS",
	)
	return base, executor
}

// runEvent is a line of runs.log.
type runEvent struct {
	kind, instance string
	fence          int64
	worker, group  int
}

// runLog reads runs.log as it grows.
type runLog struct {
	path   string
	offset int64
	all    []runEvent
}

// next returns the events written since the last call.
func (l *runLog) next(t *testing.T) []runEvent {
	t.Helper()
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var events []runEvent
	reader := bufio.NewReader(f)
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			break // an unfinished line is read again next time
		}
		l.offset += int64(len(line))
		var e runEvent
		if _, err := fmt.Sscan(line, &e.kind, &e.instance, &e.fence, &e.worker, &e.group); err != nil {
			t.Fatalf("runs.log line %q: %v", line, err)
		}
		events = append(events, e)
	}
	l.all = append(l.all, events...)
	return events
}

// count returns how many events of kind the log holds for instance ("":
// any instance).
func (l *runLog) count(kind, instance string) int {
	n := 0
	for _, e := range l.all {
		if e.kind == kind && (instance == "" || e.instance == instance) {
			n++
		}
	}
	return n
}

// release lets the run under fence exit.
func release(t *testing.T, dir string, fence int64) {
	t.Helper()
	writeFile(t, filepath.Join(dir, fmt.Sprintf("release.%d", fence)), "")
}

// checkRunsOnce checks the runs from the outside: no run of an instance
// started after one of its runs had written the target version, and the
// command itself saw no concurrent or late run (duplicates.log). It
// returns the number of duplicates.
func checkRunsOnce(t *testing.T, dir string, runs *runLog) int {
	t.Helper()
	duplicates := 0
	finished := map[string]bool{}
	for _, e := range runs.all {
		switch {
		case e.kind == "start" && finished[e.instance]:
			duplicates++
			t.Errorf("%s: run under fence %d started after the update had finished", e.instance, e.fence)
		case e.kind == "done":
			finished[e.instance] = true
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "duplicates.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		duplicates++
		t.Errorf("the update command reports: %s", strings.TrimSpace(line))
	}
	return duplicates
}

// groupRunning reports whether a process of group pgid still runs
// (zombies do not count).
func groupRunning(pgid int) bool {
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" && fields[0] != "X" {
			return true
		}
	}
	return false
}

// processRunning reports whether pid runs and is not a zombie.
func processRunning(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// kill ends the worker with SIGKILL and waits until it is gone.
func (w *workerProcess) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL to the worker: %v", err)
	}
	<-w.exited
}

// The crash at completion (issue 8): the worker dies just as the update
// command finishes, before ApplyUpdate completes. Its retry probes, finds
// the target version and succeeds in the same window: Succeeded in the
// primary slot, the command run once, no fallback notice.
func TestCrashAtCompletion(t *testing.T) {
	began := time.Now()
	testkit.ClearConfigEnv(t)
	temporalClient, _ := devtest.StartForPrograms(t)
	sendgrid := newFakeSendGrid(t, sendGridKey)
	const window = 40 * time.Second
	dir := t.TempDir()
	_, executorEnv := faultEnv(t, window, dir, sendgrid)
	svcWorker := startWorker(t, executorEnv)
	svcWorker.waitUntilPolling(t, temporalClient)
	mustRun(t, "migrate")
	mustRun(t, "setup")

	instance := faultInstance{id: "crash-prod", region: "emea", version: "9.0.0"} // mandatory
	start := time.Now().UTC().Truncate(time.Second)
	primary := start.Add(20 * time.Second)
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(faultFleetFile(t, []faultInstance{instance}, map[string]time.Time{instance.region: primary}, window,
		start, primary.Add(3*window))))
	mustRun(t, "load", fleetPath)
	mustRun(t, "rollout", "--version", targetVersion)

	runs := &runLog{path: filepath.Join(dir, "runs.log")}
	var finished runEvent
	testkit.WaitFor(t, time.Until(primary.Add(window)), "the update command to finish", func() (bool, string) {
		for _, e := range runs.next(t) {
			if e.kind == "done" {
				finished = e
				return true, ""
			}
		}
		return false, "no run has written the new version yet"
	})
	if finished.worker != svcWorker.cmd.Process.Pid {
		t.Fatalf("the command's parent is %d, not the worker %d", finished.worker, svcWorker.cmd.Process.Pid)
	}
	killedAt := time.Now()
	svcWorker.kill(t)
	// The kernel ends the command with its worker; what the command
	// started lives on in its group until a worker of this host kills it.
	testkit.WaitFor(t, 5*time.Second, "the update command to die with its worker", func() (bool, string) {
		return !processRunning(finished.group), fmt.Sprintf("pid %d still runs", finished.group)
	})
	if !groupRunning(finished.group) {
		t.Fatal("nothing of the command's group outlived it: the test no longer shows orphans being killed")
	}
	restarted := startWorker(t, executorEnv)
	testkit.WaitFor(t, 30*time.Second, "the restarted worker to kill what the dead one left", func() (bool, string) {
		return !groupRunning(finished.group) && strings.Contains(restarted.log(), "Cleared the executor lease of a dead worker"),
			"the group still runs or the worker has not logged clearing the lease"
	})

	ctx, cancel := context.WithDeadline(context.Background(), primary.Add(3*window))
	defer cancel()
	id := workflows.WorkflowID(instance.id, targetVersion)
	var result workflows.Result
	if err := temporalClient.GetWorkflow(ctx, id, "").Get(ctx, &result); err != nil {
		t.Fatalf("%s did not close: %v", id, err)
	}
	recovered := time.Since(killedAt)
	view := queryStatus(t, ctx, temporalClient, id)
	var attempts []string
	for _, a := range view.Attempts {
		attempts = append(attempts, string(a.Slot)+":"+a.Outcome)
	}
	if result.Status != workflows.StatusSucceeded || result.FinalVersion != targetVersion || strings.Join(attempts, ",") != "primary:succeeded" {
		logHistory(t, ctx, temporalClient, id)
		t.Errorf("%s closed as %s on %s after attempts %v; want Succeeded on %s in the primary slot", id, result.Status, result.FinalVersion, attempts, targetVersion)
	}
	runs.next(t)
	if n := runs.count("start", instance.id); n != 1 {
		t.Errorf("the update command ran %d times, want once", n)
	}
	checkRunsOnce(t, dir, runs)
	probes, err := os.ReadFile(filepath.Join(dir, "probes.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(probes), fmt.Sprintf("before %s", instance.id)) || !strings.HasSuffix(strings.TrimSpace(string(probes)), targetVersion) {
		t.Errorf("the retry did not find the target version with the probe:\n%s", probes)
	}
	var kinds []workflows.NoticeKind
	for _, m := range sendgrid.sent() {
		kinds = append(kinds, m.Kind)
		if m.Kind == workflows.NoticeFallback || m.Kind == workflows.NoticeFailed {
			t.Errorf("a %s notice was sent for an update that succeeded", m.Kind)
		}
	}
	t.Logf("crash at completion: killed %s into the primary window; Succeeded %s later; command runs 1; emails %v; test took %s",
		killedAt.Sub(primary).Round(time.Second), recovered.Round(time.Second), kinds, time.Since(began).Round(time.Second))
}
