package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// shellExecutor runs script with sh; $1 is arg. Its leases are in a
// database of the test's own.
func shellExecutor(t *testing.T, script, arg string) *CommandExecutor {
	t.Helper()
	return &CommandExecutor{Argv: []string{"sh", "-c", script, "sh", arg}, KillGrace: 100 * time.Millisecond, Leases: store.New(pgtest.NewPool(t))}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID reads a PID the test script wrote to dir/name.
func readPID(t *testing.T, dir, name string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("the command did not write its %s PID: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("%s PID %q: %v", name, raw, err)
	}
	return pid
}

// processGone reports whether pid no longer runs: it does not exist,
// or it is a zombie waiting for a reaper that is not the executor's business.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

func TestCommandExecutorPassesTheUpdateButNotTheWorkerConfiguration(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	t.Setenv("SENDGRID_API_KEY", "SG.secret")
	t.Setenv("PGPASSWORD", "hunter2")
	t.Setenv("EXECUTOR_TEST_INHERITED", "kept")
	t.Setenv("EXECUTOR_TEST_NOT_LISTED", "leaked")
	windowEnd := time.Date(2030, 3, 29, 13, 0, 0, 0, time.UTC)
	script := `for v in INSTANCE_ID TENANT_ID CURRENT_VERSION TARGET_VERSION ATTEMPT WINDOW_END WORKFLOW_ID; do
		eval "echo $v=\$$v"
	done
	echo "SENDGRID_API_KEY=${SENDGRID_API_KEY:-unset} PGPASSWORD=${PGPASSWORD:-unset} EXECUTOR_TEST_INHERITED=$EXECUTOR_TEST_INHERITED EXECUTOR_TEST_NOT_LISTED=${EXECUTOR_TEST_NOT_LISTED:-unset}"
	echo "a warning on stderr" >&2`
	executor := shellExecutor(t, script, "")
	executor.PassEnv = []string{"EXECUTOR_TEST_INHERITED"}
	res, err := env.run(executor, applyInput(windowEnd))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"INSTANCE_ID=acme-prod",
		"TENANT_ID=acme",
		"CURRENT_VERSION=9.1.0",
		"TARGET_VERSION=9.2.0",
		"ATTEMPT=primary",
		"WINDOW_END=2030-03-29T13:00:00Z",
		"WORKFLOW_ID=" + workflows.WorkflowID("acme-prod", "9.2.0"),
		"SENDGRID_API_KEY=unset PGPASSWORD=unset EXECUTOR_TEST_INHERITED=kept EXECUTOR_TEST_NOT_LISTED=unset",
		"a warning on stderr",
	}, "\n")
	if res.Output != want {
		t.Errorf("output:\n%s\nwant:\n%s", res.Output, want)
	}
	if got := env.durations(workflows.SlotPrimary, workflows.OutcomeSucceeded); got != 1 {
		t.Errorf("recorded %d succeeded primary durations, want 1", got)
	}
}

// The worker's own /proc is out of the command's reach: the worker is
// non-dumpable, and a worker running as root runs the command as another
// user (EXECUTOR_USER), since root reads any process's /proc.
func TestCommandExecutorCannotReadTheWorkersProc(t *testing.T) {
	if err := HideWorkerFromPrograms(); err != nil {
		t.Fatal(err)
	}
	env := newApplyEnv(t, worker.Options{})
	t.Setenv("SENDGRID_API_KEY", "SG.secret")
	script := `if cat /proc/$PPID/environ >/dev/null 2>&1; then echo "worker environ readable"; else echo "worker environ unreadable"; fi
	echo "uid $(id -u)"`
	executor := shellExecutor(t, script, "")
	wantUID := os.Geteuid()
	if wantUID == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		executor.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		wantUID = uid
	}
	res, err := env.run(executor, applyInput(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("worker environ unreadable\nuid %d", wantUID); res.Output != want {
		t.Errorf("output:\n%s\nwant:\n%s", res.Output, want)
	}
}

func TestCommandExecutorFailsForGoodOnNonZeroExit(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	in := applyInput(time.Now().Add(time.Hour))
	in.Attempt = workflows.SlotSecondary
	_, err := env.run(shellExecutor(t, `for i in $(seq 1 30); do echo "line $i"; done; exit 3`, ""), in)
	appErr := appError(t, err)
	if appErr.Type() != workflows.ErrTypeUpdateFailed || !appErr.NonRetryable() {
		t.Errorf("error type %q, non-retryable %v; want %q, non-retryable", appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeUpdateFailed)
	}
	var tail []string
	for i := 11; i <= 30; i++ {
		tail = append(tail, fmt.Sprintf("line %d", i))
	}
	want := "update command exited with status 3: " + strings.Join(tail, "\n")
	if appErr.Message() != want || appErr.Unwrap() != nil {
		t.Errorf("message:\n%s\nwant:\n%s\n(cause %v, want none)", appErr.Message(), want, appErr.Unwrap())
	}
	if got := env.durations(workflows.SlotSecondary, workflows.OutcomeFailed); got != 1 {
		t.Errorf("recorded %d failed secondary durations, want 1", got)
	}
}

// A command still running as its window ends gets SIGTERM EXECUTOR_KILL_GRACE
// before the end, so that even one ignoring SIGTERM is killed, with all it
// started, by the end and not a grace period past it.
func TestCommandExecutorIsGoneByTheWindowEnd(t *testing.T) {
	const (
		ignoreTerm = `trap '' TERM
	sleep 1000 & echo $! > "$1/child"
	echo $$ > "$1/leader"
	echo "updating"
	wait`
		exitOnTerm = `sleep 1000 & echo $! > "$1/child"
	echo $$ > "$1/leader"
	echo "updating"
	wait`
	)
	for _, tt := range []struct {
		name        string
		script      string
		window      time.Duration // from the start of the activity to the window's end
		grace       time.Duration
		earliest    time.Duration // the activity returns no earlier
		latest      time.Duration // and no later
		wantStopped string
	}{
		// SIGTERM at 800ms is ignored, SIGKILL at 1.6s: gone at the end,
		// where stopping at the end would have taken until 2.4s.
		{"ignoring SIGTERM, killed at the end", ignoreTerm, 1600 * time.Millisecond, 800 * time.Millisecond,
			1600 * time.Millisecond, 2000 * time.Millisecond, "stopped 800ms before its end (EXECUTOR_KILL_GRACE)"},
		// SIGTERM at 800ms ends it then, well before the window does.
		{"exiting on SIGTERM, gone a grace before the end", exitOnTerm, 1600 * time.Millisecond, 800 * time.Millisecond,
			800 * time.Millisecond, 1200 * time.Millisecond, "stopped 800ms before its end (EXECUTOR_KILL_GRACE)"},
		// With less time left than the grace, the command still gets the
		// time that is left rather than being stopped as it starts.
		{"less time left than the grace, stopped at the end", exitOnTerm, 400 * time.Millisecond, 2 * time.Second,
			400 * time.Millisecond, 1400 * time.Millisecond, "stopped at its end"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newApplyEnv(t, worker.Options{})
			dir := t.TempDir()
			executor := shellExecutor(t, tt.script, dir)
			executor.KillGrace = tt.grace
			started := time.Now()
			_, err := env.run(executor, applyInput(started.Add(tt.window)))
			took := time.Since(started)
			if err == nil {
				t.Fatal("a command running past its window succeeded")
			}
			// Not retryable: a retry could start just before the window
			// closes and outlive it.
			appErr := appError(t, err)
			if appErr.Type() != workflows.ErrTypeWindowElapsed || !appErr.NonRetryable() {
				t.Errorf("error type %q, non-retryable %v; want a non-retryable %s", appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeWindowElapsed)
			}
			if msg := appErr.Message(); !strings.Contains(msg, "update window ends at") || !strings.Contains(msg, tt.wantStopped) ||
				!strings.HasSuffix(msg, "last output:\nupdating") {
				t.Errorf("message %q does not say the command was %s, with its output", msg, tt.wantStopped)
			}
			if took < tt.earliest || took > tt.latest {
				t.Errorf("returned after %s, want between %s and %s (window %s, kill grace %s)", took, tt.earliest, tt.latest, tt.window, tt.grace)
			}
			for _, name := range []string{"leader", "child"} {
				// SIGKILL is sent before ApplyUpdate returns; the kernel
				// takes a moment to end a process it did not wait for.
				pid := readPID(t, dir, name)
				waitFor(t, time.Second, name+" process gone", func() bool { return processGone(pid) })
			}
			if got := env.durations(workflows.SlotPrimary, workflows.OutcomeWindowElapsed); got != 1 {
				t.Errorf("recorded %d window-elapsed durations, want 1", got)
			}
		})
	}
}

func TestStopTime(t *testing.T) {
	start := time.Date(2030, 3, 29, 1, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name            string
		windowEnd, want time.Time
		grace           time.Duration
	}{
		{"grace before the end", start.Add(12 * time.Hour), start.Add(12*time.Hour - 10*time.Second), 10 * time.Second},
		{"less left than the grace", start.Add(5 * time.Second), start.Add(5 * time.Second), 10 * time.Second},
		{"exactly the grace left", start.Add(10 * time.Second), start.Add(10 * time.Second), 10 * time.Second},
	} {
		if got := stopTime(start, tt.windowEnd, tt.grace); !got.Equal(tt.want) {
			t.Errorf("%s: stop at %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestCommandExecutorStopsTheCommandOnCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := newApplyEnv(t, worker.Options{BackgroundActivityContext: ctx})
	dir := t.TempDir()
	script := `sleep 1000 & echo $! > "$1/child"; echo $$ > "$1/leader"; wait`
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(dir, "leader")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err := env.run(shellExecutor(t, script, dir), applyInput(time.Now().Add(time.Hour)))
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("error %v, want a cancellation", err)
	}
	for _, name := range []string{"leader", "child"} {
		pid := readPID(t, dir, name)
		waitFor(t, 5*time.Second, name+" process gone", func() bool { return processGone(pid) })
	}
	if got := env.durations(workflows.SlotPrimary, workflows.OutcomeCancelled); got != 1 {
		t.Errorf("recorded %d cancelled durations, want 1", got)
	}
}

func TestCommandExecutorHeartbeatsWhileTheCommandRuns(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	var listened sync.WaitGroup
	listened.Add(1)
	var once sync.Once
	env.SetOnActivityHeartbeatListener(func(info *activity.Info, details converter.EncodedValues) {
		once.Do(listened.Done)
	})
	release := filepath.Join(t.TempDir(), "release")
	// The command runs until the test has seen three heartbeats.
	script := `echo "waiting for release"; while [ ! -e "$1" ]; do sleep 0.02; done; echo "released"`
	executor := shellExecutor(t, script, release)
	executor.HeartbeatEvery = leaseEvery
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for len(env.heartbeats.snapshot()) < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.WriteFile(release, nil, 0o600); err != nil {
			t.Error(err)
		}
	}()
	res, err := env.run(executor, applyInput(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Output != "waiting for release\nreleased" {
		t.Errorf("output %q", res.Output)
	}
	beats := env.heartbeats.snapshot()
	if len(beats) < 3 {
		t.Fatalf("%d heartbeats while the command ran, want at least 3", len(beats))
	}
	// The progress a retry reads: the lease's fence and when the command
	// started.
	last := beats[len(beats)-1]
	if last.LastOutput != "waiting for release" || last.Elapsed == "" || last.Phase != phaseUpdate || last.Fence <= 0 || last.CommandStarted.IsZero() {
		t.Errorf("last heartbeat %+v does not carry the phase, the fence, the command's start, the elapsed time and the output so far", last)
	}
	listened.Wait()
}

func TestCommandExecutorDoesNotStartAfterTheWindow(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := env.run(shellExecutor(t, `touch "$1"`, marker), applyInput(time.Now().Add(-time.Minute)))
	if err == nil || !strings.Contains(err.Error(), "it ended before the attempt started") {
		t.Fatalf("error %v, want the window to have ended", err)
	}
	if appErr := appError(t, err); appErr.Type() != workflows.ErrTypeWindowElapsed || !appErr.NonRetryable() {
		t.Errorf("error type %q, non-retryable %v; want a non-retryable %s", appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeWindowElapsed)
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("the command ran after its window")
	}
}

func TestOutputTail(t *testing.T) {
	var tail outputTail
	for i := 1; i <= outputLines+5; i++ {
		fmt.Fprintf(&tail, "line %d\r\n", i)
	}
	// An unfinished line counts, and one line cannot grow past its bound.
	fmt.Fprint(&tail, strings.Repeat("x", 2*outputMaxLineBytes))
	lines := strings.Split(tail.String(), "\n")
	if len(lines) != outputLines {
		t.Fatalf("kept %d lines, want %d", len(lines), outputLines)
	}
	if lines[0] != "line 7" || lines[len(lines)-2] != "line 25" {
		t.Errorf("kept lines %q ... %q, want line 7 ... line 25", lines[0], lines[len(lines)-2])
	}
	if last := lines[len(lines)-1]; len(last) != outputMaxLineBytes || tail.lastLine() != last {
		t.Errorf("unfinished line kept as %d bytes (lastLine %d), want %d", len(last), len(tail.lastLine()), outputMaxLineBytes)
	}
}
