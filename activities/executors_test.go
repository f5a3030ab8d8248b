package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// applyEnv is an activity environment that records every heartbeat
// the executor makes (the SDK's listener sees only the throttled ones sent
// to the server) and every metric.
type applyEnv struct {
	*testsuite.TestActivityEnvironment
	metrics    tally.TestScope
	heartbeats *heartbeatRecorder
}

func newApplyEnv(t *testing.T, options worker.Options) *applyEnv {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	metrics := tally.NewTestScope("", nil)
	suite.SetMetricsHandler(sdktally.NewMetricsHandler(metrics))
	recorder := &heartbeatRecorder{}
	options.Interceptors = append(options.Interceptors, recorder)
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(options)
	return &applyEnv{TestActivityEnvironment: env, metrics: metrics, heartbeats: recorder}
}

// run registers e as ApplyUpdate and runs it with in.
func (env *applyEnv) run(e Executor, in workflows.ApplyUpdateInput) (workflows.ApplyUpdateResult, error) {
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
func (env *applyEnv) durations(attempt workflows.SlotRole, outcome string) int {
	n := 0
	for _, timer := range env.metrics.Snapshot().Timers() {
		tags := timer.Tags()
		if timer.Name() == applyDurationMetric && tags["attempt"] == string(attempt) && tags["outcome"] == outcome {
			n += len(timer.Values())
		}
	}
	return n
}

type heartbeatRecorder struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	beats []heartbeatDetails
}

func (r *heartbeatRecorder) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	inbound := &heartbeatInbound{recorder: r}
	inbound.Next = next
	return inbound
}

func (r *heartbeatRecorder) snapshot() []heartbeatDetails {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]heartbeatDetails(nil), r.beats...)
}

type heartbeatInbound struct {
	interceptor.ActivityInboundInterceptorBase
	recorder *heartbeatRecorder
}

func (i *heartbeatInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	o := &heartbeatOutbound{recorder: i.recorder}
	o.Next = outbound
	return i.Next.Init(o)
}

type heartbeatOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	recorder *heartbeatRecorder
}

func (o *heartbeatOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	for _, d := range details {
		if beat, ok := d.(heartbeatDetails); ok {
			o.recorder.mu.Lock()
			o.recorder.beats = append(o.recorder.beats, beat)
			o.recorder.mu.Unlock()
		}
	}
	o.Next.RecordHeartbeat(ctx, details...)
}

func applyInput(windowEnd time.Time) workflows.ApplyUpdateInput {
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

func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %v (%T) is not an application error", err, err)
	}
	return appErr
}

func TestExecutorsRejectInvalidInput(t *testing.T) {
	valid := applyInput(time.Now().Add(time.Hour))
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
		for _, executor := range []Executor{shellExecutor(t, "true", ""), &SimulatedExecutor{}} {
			t.Run(fmt.Sprintf("%s/%T", tt.name, executor), func(t *testing.T) {
				in := valid
				tt.change(&in)
				_, err := newApplyEnv(t, worker.Options{}).run(executor, in)
				appErr := appError(t, err)
				if appErr.Type() != workflows.ErrTypeInvalidInput || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), tt.want) {
					t.Errorf("error %q (type %s, non-retryable %v), want a non-retryable %s saying %q",
						appErr.Error(), appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeInvalidInput, tt.want)
				}
			})
		}
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{0, 10 * time.Second},
		{90 * time.Second, 30 * time.Second},
		{2 * time.Second, time.Second},
	} {
		if got := heartbeatInterval(tt.timeout); got != tt.want {
			t.Errorf("interval for a %s heartbeat timeout = %s, want %s", tt.timeout, got, tt.want)
		}
	}
}

func TestNewExecutor(t *testing.T) {
	if _, err := NewExecutor(ExecutorOptions{Kind: config.ExecutorCommand, Command: []string{"/nonexistent/update-tool"}}); err == nil ||
		!strings.Contains(err.Error(), `EXECUTOR_COMMAND program "/nonexistent/update-tool" cannot be run`) {
		t.Errorf("a missing program: error %v", err)
	}
	if _, err := NewExecutor(ExecutorOptions{Kind: config.ExecutorCommand, Command: []string{"true"}, Probe: []string{"/nonexistent/probe"}, Leases: &store.Store{}}); err == nil ||
		!strings.Contains(err.Error(), `EXECUTOR_PROBE_COMMAND program "/nonexistent/probe" cannot be run`) {
		t.Errorf("a missing probe: error %v", err)
	}
	if _, err := NewExecutor(ExecutorOptions{Kind: config.ExecutorCommand, Command: []string{"true"}}); err == nil ||
		!strings.Contains(err.Error(), "needs Postgres for its per-instance leases") {
		t.Errorf("no lease store: error %v", err)
	}
	leases := &store.Store{}
	command, err := NewExecutor(ExecutorOptions{Kind: config.ExecutorCommand, Command: []string{"sh", "-c", "true"}, Probe: []string{"true"}, KillGrace: time.Second, Leases: leases})
	if c, ok := command.(*CommandExecutor); err != nil || !ok || c.KillGrace != time.Second || c.Leases != leases || len(c.Probe) != 1 {
		t.Errorf("command executor: %#v, %v", command, err)
	}
	simulated, err := NewExecutor(ExecutorOptions{Kind: config.ExecutorSimulated, SimulatedDuration: time.Minute})
	if s, ok := simulated.(*SimulatedExecutor); err != nil || !ok || s.Duration != time.Minute {
		t.Errorf("simulated executor: %#v, %v", simulated, err)
	}
	if none, err := NewExecutor(ExecutorOptions{Kind: config.ExecutorNone}); none != nil || err == nil ||
		!strings.Contains(err.Error(), "EXECUTOR=none: this worker hosts no executor") {
		t.Errorf("EXECUTOR=none built %#v, %v; want no executor and an error saying so", none, err)
	}
}
