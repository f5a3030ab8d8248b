package workflows

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// The time-skipping tests run a whole lifecycle (months) in milliseconds.
// Every scenario starts 100 days before a primary slot, so all default
// reminders (90, 30, 15, 7, 0 days) are ahead.
var (
	primaryStart   = time.Date(2026, 4, 15, 1, 0, 0, 0, time.UTC)
	secondaryStart = primaryStart.Add(days(7))
	scenarioStart  = primaryStart.Add(-days(100))
	release92      = ReleaseOption{Version: "9.2.0", PeriodStart: scenarioStart.Add(-days(10)), PeriodEnd: primaryStart.Add(days(60))}
	release93      = ReleaseOption{Version: "9.3.0", PeriodStart: scenarioStart.Add(days(30)), PeriodEnd: primaryStart.Add(days(150))}
)

const (
	adminListed = "Admin@Acme.example"
	adminTyped  = "admin@acme.example" // the same admin, as typed at the CLI
)

var scenarioWorkflowID = WorkflowID("inst-1", "9.2.0")

func scenarioInput() Input {
	return Input{
		Instance: Instance{
			ID: "inst-1", Name: "Acme production", TenantID: "acme", Kind: "production",
			Region: "eu-central", TimeZone: "Europe/Berlin",
		},
		Admins:          []string{adminListed, "ops@acme.example"},
		CurrentVersion:  "9.1.0",
		TargetVersion:   "9.2.0",
		PrimaryStart:    primaryStart,
		SecondaryStart:  secondaryStart,
		Releases:        []ReleaseOption{release92, release93},
		SecondaryMinGap: 24 * time.Hour,
	}.WithDefaults() // as the starter does
}

// scenario is one workflow run in the time-skipping environment.
type scenario struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	fakes   *fakeActivities
	metrics tally.TestScope
	in      Input
	updates int
}

// newScenario runs the workflow on the path of workflows started before
// the lean lifecycle (still run by the ones in flight); newLeanScenario
// on the lean lifecycle every workflow started now takes.
func newScenario(t *testing.T) *scenario {
	return newScenarioTrusting(t, trustingTestKeys)
}

// newScenarioTrusting is newScenario with a worker that trusts what
// workflows trusts.
func newScenarioTrusting(t *testing.T, workflows ServiceUpdates) *scenario {
	s := newLeanScenarioTrusting(t, workflows)
	s.in.LeanLifecycle = false // an input from before the starters set it
	s.env.OnGetVersion(changeLeanLifecycle, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	return s
}

func newLeanScenario(t *testing.T) *scenario {
	return newLeanScenarioTrusting(t, trustingTestKeys)
}

func newLeanScenarioTrusting(t *testing.T, workflows ServiceUpdates) *scenario {
	var ts testsuite.WorkflowTestSuite
	metrics := tally.NewTestScope("", nil)
	ts.SetMetricsHandler(sdktally.NewMetricsHandler(metrics))
	env := ts.NewTestWorkflowEnvironment()
	env.SetStartTime(scenarioStart)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: scenarioWorkflowID})
	env.RegisterWorkflowWithOptions(workflows.ServiceUpdate, workflow.RegisterOptions{Name: WorkflowType})
	fakes := &fakeActivities{}
	fakes.register(env)
	fakes.registerExecutor(env)
	return &scenario{t: t, env: env, fakes: fakes, metrics: metrics, in: scenarioInput()}
}

// at runs fn when the virtual clock reaches when.
func (s *scenario) at(when time.Time, fn func()) {
	s.env.RegisterDelayedCallback(fn, when.Sub(scenarioStart))
}

// updateOutcome is filled in as the Update's callbacks arrive.
type updateOutcome struct {
	rejected  error
	accepted  bool
	completed bool
	// completedAt is the virtual time the answer came.
	completedAt time.Time
	result      StatusView
	err         error
}

// update sends an Update as the portal or the operator would: an admin
// Update without an assertion gets one, signed for this workflow now.
func (s *scenario) update(name string, arg any) *updateOutcome {
	return s.updateAsIs(name, signed(s.t, scenarioWorkflowID, name, arg, s.env.Now()))
}

// updateAsIs sends arg as it is, signed or not.
func (s *scenario) updateAsIs(name string, arg any) *updateOutcome {
	s.updates++
	o := &updateOutcome{}
	s.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", name, s.updates), &testsuite.TestUpdateCallback{
		OnReject: func(err error) { o.rejected = err },
		OnAccept: func() { o.accepted = true },
		OnComplete: func(v any, err error) {
			o.completed, o.completedAt, o.err = true, s.env.Now().UTC(), err
			if view, ok := v.(StatusView); ok {
				o.result = view
			}
		},
	}, arg)
	return o
}

func (s *scenario) status() StatusView {
	s.t.Helper()
	value, err := s.env.QueryWorkflow(QueryStatus)
	require.NoError(s.t, err)
	var view StatusView
	require.NoError(s.t, value.Get(&view))
	return view
}

// run executes the workflow to its end and returns its result or error.
func (s *scenario) run() (Result, error) {
	s.t.Helper()
	s.fakes.expect(s.in)
	s.env.ExecuteWorkflow(WorkflowType, s.in)
	require.True(s.t, s.env.IsWorkflowCompleted(), "workflow did not complete")
	if err := s.env.GetWorkflowError(); err != nil {
		return Result{}, err
	}
	var res Result
	require.NoError(s.t, s.env.GetWorkflowResult(&res))
	return res, nil
}

// completions reads the svcupdate_updates_completed counter by outcome.
func (s *scenario) completions() map[string]int64 {
	counts := map[string]int64{}
	for _, c := range s.metrics.Snapshot().Counters() {
		if c.Name() == metricUpdatesClosed {
			counts[c.Tags()[metricTagOutcome]] += c.Value()
		}
	}
	return counts
}

func reminders(offsets ...int) []NoticeKind {
	kinds := make([]NoticeKind, len(offsets))
	for i, d := range offsets {
		kinds[i] = ReminderKind(days(d))
	}
	return kinds
}

func kinds(groups ...any) []NoticeKind {
	var all []NoticeKind
	for _, g := range groups {
		switch g := g.(type) {
		case NoticeKind:
			all = append(all, g)
		case []NoticeKind:
			all = append(all, g...)
		}
	}
	return all
}

func noticeAt(t *testing.T, view StatusView, kind NoticeKind) NoticeRecord {
	t.Helper()
	for _, n := range view.Notices {
		if n.Kind == kind {
			return n
		}
	}
	t.Fatalf("no %s notice in %v", kind, view.Notices)
	return NoticeRecord{}
}

func upcomingKinds(view StatusView) []NoticeKind {
	out := make([]NoticeKind, len(view.Upcoming))
	for i, n := range view.Upcoming {
		out[i] = n.Kind
	}
	return out
}

func countKind(all []NoticeKind, kind NoticeKind) int {
	n := 0
	for _, k := range all {
		if k == kind {
			n++
		}
	}
	return n
}
