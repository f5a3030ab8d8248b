package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/activity"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

// executorTestEnv is an activity environment that records every heartbeat
// the executor makes (the SDK's listener sees only the throttled ones sent
// to the server) and every metric.
type executorTestEnv struct {
	*testsuite.TestActivityEnvironment
	metrics    tally.TestScope
	heartbeats *executorHeartbeatRecorder
}

func newExecutorTestEnv(t *testing.T, options worker.Options) *executorTestEnv {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	metrics := tally.NewTestScope("", nil)
	suite.SetMetricsHandler(sdktally.NewMetricsHandler(metrics))
	recorder := &executorHeartbeatRecorder{}
	options.Interceptors = append(options.Interceptors, recorder)
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(options)
	return &executorTestEnv{TestActivityEnvironment: env, metrics: metrics, heartbeats: recorder}
}

// run registers e as ApplyUpdate and runs it with in.
func (env *executorTestEnv) run(e Executor, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
	RegisterExecutor(env, e)
	var res workflows.ApplyUpdateResult
	val, err := env.ExecuteActivity(workflows.ActivityApplyUpdate, in)
	if err != nil {
		return res, err
	}
	return res, val.Get(&res)
}

// durations returns how many executor durations were recorded for attempt
// and outcome.
func (env *executorTestEnv) durations(attempt workflows.SlotRole, outcome string) int {
	n := 0
	for _, timer := range env.metrics.Snapshot().Timers() {
		tags := timer.Tags()
		if timer.Name() == executorDurationMetric && tags["attempt"] == string(attempt) && tags["outcome"] == outcome {
			n += len(timer.Values())
		}
	}
	return n
}

type executorHeartbeatRecorder struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	beats []executorHeartbeat
}

func (r *executorHeartbeatRecorder) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	inbound := &executorHeartbeatInbound{recorder: r}
	inbound.Next = next
	return inbound
}

func (r *executorHeartbeatRecorder) snapshot() []executorHeartbeat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]executorHeartbeat(nil), r.beats...)
}

type executorHeartbeatInbound struct {
	interceptor.ActivityInboundInterceptorBase
	recorder *executorHeartbeatRecorder
}

func (i *executorHeartbeatInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	o := &executorHeartbeatOutbound{recorder: i.recorder}
	o.Next = outbound
	return i.Next.Init(o)
}

type executorHeartbeatOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	recorder *executorHeartbeatRecorder
}

func (o *executorHeartbeatOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	for _, d := range details {
		if beat, ok := d.(executorHeartbeat); ok {
			o.recorder.mu.Lock()
			o.recorder.beats = append(o.recorder.beats, beat)
			o.recorder.mu.Unlock()
		}
	}
	o.Next.RecordHeartbeat(ctx, details...)
}

func executorTestInput(windowEnd time.Time) workflows.ApplyUpdateInput {
	return workflows.ApplyUpdateInput{
		WorkflowID:     workflows.WorkflowID("acme-prod", "9.2.0"),
		InstanceID:     "acme-prod",
		TenantID:       "acme",
		CurrentVersion: "9.1.0",
		TargetVersion:  "9.2.0",
		Attempt:        workflows.SlotPrimary,
		WindowEnd:      windowEnd,
	}
}

// executorShell runs script with sh; $1 is arg.
func executorShell(script, arg string) *CommandExecutor {
	return &CommandExecutor{Argv: []string{"sh", "-c", script, "sh", arg}, KillGrace: 100 * time.Millisecond}
}

// executorWaitFor polls cond until it holds or the deadline passes.
func executorWaitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// executorReadPID reads a PID the test script wrote to dir/name.
func executorReadPID(t *testing.T, dir, name string) int {
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

// executorProcessGone reports whether pid no longer runs: it does not exist,
// or it is a zombie waiting for a reaper that is not the executor's business.
func executorProcessGone(pid int) bool {
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

func executorAppError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %v (%T) is not an application error", err, err)
	}
	return appErr
}

func TestCommandExecutorPassesTheUpdateButNotTheWorkerConfiguration(t *testing.T) {
	env := newExecutorTestEnv(t, worker.Options{})
	t.Setenv("SENDGRID_API_KEY", "SG.secret")
	t.Setenv("EXECUTOR_TEST_INHERITED", "kept")
	windowEnd := time.Date(2030, 3, 29, 13, 0, 0, 0, time.UTC)
	script := `for v in INSTANCE_ID TENANT_ID CURRENT_VERSION TARGET_VERSION ATTEMPT WINDOW_END WORKFLOW_ID; do
		eval "echo $v=\$$v"
	done
	echo "SENDGRID_API_KEY=${SENDGRID_API_KEY:-unset} EXECUTOR_TEST_INHERITED=$EXECUTOR_TEST_INHERITED"
	echo "a warning on stderr" >&2`
	res, err := env.run(executorShell(script, ""), executorTestInput(windowEnd))
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
		"SENDGRID_API_KEY=unset EXECUTOR_TEST_INHERITED=kept",
		"a warning on stderr",
	}, "\n")
	if res.Output != want {
		t.Errorf("output:\n%s\nwant:\n%s", res.Output, want)
	}
	if got := env.durations(workflows.SlotPrimary, workflows.OutcomeSucceeded); got != 1 {
		t.Errorf("recorded %d succeeded primary durations, want 1", got)
	}
}

func TestCommandExecutorFailsForGoodOnNonZeroExit(t *testing.T) {
	env := newExecutorTestEnv(t, worker.Options{})
	in := executorTestInput(time.Now().Add(time.Hour))
	in.Attempt = workflows.SlotSecondary
	_, err := env.run(executorShell(`for i in $(seq 1 30); do echo "line $i"; done; exit 3`, ""), in)
	appErr := executorAppError(t, err)
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
			env := newExecutorTestEnv(t, worker.Options{})
			dir := t.TempDir()
			executor := executorShell(tt.script, dir)
			executor.KillGrace = tt.grace
			started := time.Now()
			_, err := env.run(executor, executorTestInput(started.Add(tt.window)))
			took := time.Since(started)
			if err == nil {
				t.Fatal("a command running past its window succeeded")
			}
			appErr := executorAppError(t, err)
			if appErr.NonRetryable() {
				t.Error("the window error is non-retryable; the schedule-to-close timeout is what ends the attempt")
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
				pid := executorReadPID(t, dir, name)
				executorWaitFor(t, time.Second, name+" process gone", func() bool { return executorProcessGone(pid) })
			}
			if got := env.durations(workflows.SlotPrimary, workflows.OutcomeWindowElapsed); got != 1 {
				t.Errorf("recorded %d window-elapsed durations, want 1", got)
			}
		})
	}
}

func TestCommandStopTime(t *testing.T) {
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
		if got := commandStopTime(start, tt.windowEnd, tt.grace); !got.Equal(tt.want) {
			t.Errorf("%s: stop at %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestCommandExecutorStopsTheCommandOnCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := newExecutorTestEnv(t, worker.Options{BackgroundActivityContext: ctx})
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
	_, err := env.run(executorShell(script, dir), executorTestInput(time.Now().Add(time.Hour)))
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("error %v, want a cancellation", err)
	}
	for _, name := range []string{"leader", "child"} {
		pid := executorReadPID(t, dir, name)
		executorWaitFor(t, 5*time.Second, name+" process gone", func() bool { return executorProcessGone(pid) })
	}
	if got := env.durations(workflows.SlotPrimary, workflows.OutcomeCancelled); got != 1 {
		t.Errorf("recorded %d cancelled durations, want 1", got)
	}
}

func TestCommandExecutorHeartbeatsWhileTheCommandRuns(t *testing.T) {
	env := newExecutorTestEnv(t, worker.Options{})
	var listened sync.WaitGroup
	listened.Add(1)
	var once sync.Once
	env.SetOnActivityHeartbeatListener(func(info *activity.Info, details converter.EncodedValues) {
		once.Do(listened.Done)
	})
	release := filepath.Join(t.TempDir(), "release")
	// The command runs until the test has seen three heartbeats.
	script := `echo "waiting for release"; while [ ! -e "$1" ]; do sleep 0.02; done; echo "released"`
	executor := executorShell(script, release)
	executor.HeartbeatEvery = 20 * time.Millisecond
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for len(env.heartbeats.snapshot()) < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.WriteFile(release, nil, 0o600); err != nil {
			t.Error(err)
		}
	}()
	res, err := env.run(executor, executorTestInput(time.Now().Add(time.Hour)))
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
	last := beats[len(beats)-1]
	if last.LastOutput != "waiting for release" || last.Elapsed == "" {
		t.Errorf("last heartbeat %+v does not carry the elapsed time and the output so far", last)
	}
	listened.Wait()
}

func TestCommandExecutorDoesNotStartAfterTheWindow(t *testing.T) {
	env := newExecutorTestEnv(t, worker.Options{})
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := env.run(executorShell(`touch "$1"`, marker), executorTestInput(time.Now().Add(-time.Minute)))
	if err == nil || !strings.Contains(err.Error(), "update window ended") {
		t.Fatalf("error %v, want the window to have ended", err)
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("the command ran after its window")
	}
}

func TestExecutorsRejectInvalidInput(t *testing.T) {
	valid := executorTestInput(time.Now().Add(time.Hour))
	for _, tt := range []struct {
		name   string
		change func(*workflows.ApplyUpdateInput)
		want   string
	}{
		{"no instance", func(in *workflows.ApplyUpdateInput) { in.InstanceID = "" }, "no instance ID"},
		{"no target", func(in *workflows.ApplyUpdateInput) { in.TargetVersion = "" }, "no target version"},
		{"unknown attempt", func(in *workflows.ApplyUpdateInput) { in.Attempt = "tertiary" }, `attempt "tertiary" is not primary or secondary`},
		{"no window end", func(in *workflows.ApplyUpdateInput) { in.WindowEnd = time.Time{} }, "no window end"},
	} {
		for _, executor := range []Executor{executorShell("true", ""), &SimulatedExecutor{}} {
			t.Run(fmt.Sprintf("%s/%T", tt.name, executor), func(t *testing.T) {
				in := valid
				tt.change(&in)
				_, err := newExecutorTestEnv(t, worker.Options{}).run(executor, in)
				appErr := executorAppError(t, err)
				if appErr.Type() != workflows.ErrTypeInvalidInput || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), tt.want) {
					t.Errorf("error %q (type %s, non-retryable %v), want a non-retryable %s saying %q",
						appErr.Error(), appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeInvalidInput, tt.want)
				}
			})
		}
	}
}

func TestSimulatedExecutor(t *testing.T) {
	var failures config.SimulatedFailures
	if err := failures.Decode("acme-prod:primary,acme-test:all"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		instance string
		attempt  workflows.SlotRole
		window   time.Duration
		wantErr  string // empty: success
		outcome  string
	}{
		{"unlisted instance succeeds", "acme-dev", workflows.SlotPrimary, time.Hour, "", workflows.OutcomeSucceeded},
		{"primary failure", "acme-prod", workflows.SlotPrimary, time.Hour,
			"simulated update of acme-prod to 9.2.0 failed in the primary attempt", workflows.OutcomeFailed},
		{"primary-only failure spares the secondary", "acme-prod", workflows.SlotSecondary, time.Hour, "", workflows.OutcomeSucceeded},
		{"failure in every attempt", "acme-test", workflows.SlotSecondary, time.Hour,
			"simulated update of acme-test to 9.2.0 failed in the secondary attempt", workflows.OutcomeFailed},
		{"window shorter than the update", "acme-dev", workflows.SlotPrimary, 50 * time.Millisecond,
			"update window ended at", workflows.OutcomeWindowElapsed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newExecutorTestEnv(t, worker.Options{})
			duration := 200 * time.Millisecond
			executor := &SimulatedExecutor{Duration: duration, Failures: failures, HeartbeatEvery: 20 * time.Millisecond}
			in := executorTestInput(time.Now().Add(tt.window))
			in.InstanceID, in.Attempt = tt.instance, tt.attempt
			started := time.Now()
			res, err := env.run(executor, in)
			took := time.Since(started)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("failed: %v", err)
			case tt.wantErr == "":
				if want := "simulated update of " + tt.instance + " from 9.1.0 to 9.2.0 done in 200ms"; res.Output != want {
					t.Errorf("output %q, want %q", res.Output, want)
				}
				if took < duration {
					t.Errorf("took %s, less than the simulated %s", took, duration)
				}
			case err == nil || !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			case tt.outcome == workflows.OutcomeFailed:
				appErr := executorAppError(t, err)
				if appErr.Type() != workflows.ErrTypeUpdateFailed || !appErr.NonRetryable() {
					t.Errorf("failure type %q non-retryable %v, want non-retryable %s", appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeUpdateFailed)
				}
			}
			if len(env.heartbeats.snapshot()) == 0 {
				t.Error("the simulated executor never heartbeat")
			}
			if got := env.durations(tt.attempt, tt.outcome); got != 1 {
				t.Errorf("recorded %d %s durations, want 1", got, tt.outcome)
			}
		})
	}
}

func TestExecutorHeartbeatInterval(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{0, 10 * time.Second},
		{90 * time.Second, 30 * time.Second},
		{2 * time.Second, time.Second},
	} {
		if got := executorHeartbeatInterval(tt.timeout); got != tt.want {
			t.Errorf("interval for a %s heartbeat timeout = %s, want %s", tt.timeout, got, tt.want)
		}
	}
}

func TestNewExecutor(t *testing.T) {
	if _, err := NewExecutor(config.Config{Executor: config.ExecutorCommand, ExecutorArgv: []string{"/nonexistent/update-tool"}}); err == nil ||
		!strings.Contains(err.Error(), `EXECUTOR_COMMAND program "/nonexistent/update-tool" cannot be run`) {
		t.Errorf("a missing program: error %v", err)
	}
	command, err := NewExecutor(config.Config{Executor: config.ExecutorCommand, ExecutorArgv: []string{"sh", "-c", "true"}, ExecutorKillGrace: time.Second})
	if c, ok := command.(*CommandExecutor); err != nil || !ok || c.KillGrace != time.Second {
		t.Errorf("command executor: %#v, %v", command, err)
	}
	simulated, err := NewExecutor(config.Config{Executor: config.ExecutorSimulated, SimulatedDuration: time.Minute})
	if s, ok := simulated.(*SimulatedExecutor); err != nil || !ok || s.Duration != time.Minute {
		t.Errorf("simulated executor: %#v, %v", simulated, err)
	}
	if none, err := NewExecutor(config.Config{Executor: config.ExecutorNone}); none != nil || err == nil ||
		!strings.Contains(err.Error(), "EXECUTOR=none: this worker hosts no executor") {
		t.Errorf("EXECUTOR=none built %#v, %v; want no executor and an error saying so", none, err)
	}
}

func TestCommandOutputTail(t *testing.T) {
	var tail commandOutputTail
	for i := 1; i <= executorOutputLines+5; i++ {
		fmt.Fprintf(&tail, "line %d\r\n", i)
	}
	// An unfinished line counts, and one line cannot grow past its bound.
	fmt.Fprint(&tail, strings.Repeat("x", 2*executorMaxLineBytes))
	lines := strings.Split(tail.String(), "\n")
	if len(lines) != executorOutputLines {
		t.Fatalf("kept %d lines, want %d", len(lines), executorOutputLines)
	}
	if lines[0] != "line 7" || lines[len(lines)-2] != "line 25" {
		t.Errorf("kept lines %q ... %q, want line 7 ... line 25", lines[0], lines[len(lines)-2])
	}
	if last := lines[len(lines)-1]; len(last) != executorMaxLineBytes || tail.lastLine() != last {
		t.Errorf("unfinished line kept as %d bytes (lastLine %d), want %d", len(last), len(tail.lastLine()), executorMaxLineBytes)
	}
}
