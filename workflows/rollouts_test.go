package workflows

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// fakeRollout stands in for the rollout activities: a fleet of three
// waves whose updates' statuses the test sets.
type fakeRollout struct {
	mu      sync.Mutex
	reports []WaveReport
	batches []StartBatchInput
	alerts  []AlertOperatorsInput
	cancels []CancelWavesInput
	states  []SetWaveStateInput
	moves   []MoveWavesInput
	// notMoved is how many updates each MoveWaves in turn leaves where
	// they are; past its end, none. duringMove runs inside each MoveWaves.
	notMoved   []int
	duringMove func()
	// rescanFinds: a walk after the first finds this many new candidates
	// in each production wave, and none among the sandboxes.
	rescanFinds int
}

func newFakeRollout(start time.Time, failedInWave0, failedInWave1 int) *fakeRollout {
	return &fakeRollout{reports: []WaveReport{
		{Wave: 0, State: WaveOpen, Members: 2, ByStatus: map[Status]int{StatusScheduled: 2 - failedInWave0, StatusFailed: failedInWave0},
			FirstStart: start.Add(24 * time.Hour), LastStart: start.Add(24 * time.Hour)},
		{Wave: 1, State: WavePending, Members: 10, ByStatus: map[Status]int{StatusScheduled: 10 - failedInWave1, StatusFallbackScheduled: failedInWave1},
			FirstStart: start.Add(48 * time.Hour), LastStart: start.Add(48 * time.Hour)},
		{Wave: 2, State: WavePending, Members: 30, ByStatus: map[Status]int{StatusScheduled: 30},
			FirstStart: start.Add(72 * time.Hour), LastStart: start.Add(72 * time.Hour)},
	}}
}

func (f *fakeRollout) register(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivityWithOptions(f.PlanWaves, activity.RegisterOptions{Name: ActivityPlanWaves})
	env.RegisterActivityWithOptions(f.StartBatch, activity.RegisterOptions{Name: ActivityStartBatch})
	env.RegisterActivityWithOptions(f.WaveReport, activity.RegisterOptions{Name: ActivityWaveReport})
	env.RegisterActivityWithOptions(f.SetWaveState, activity.RegisterOptions{Name: ActivitySetWaveState})
	env.RegisterActivityWithOptions(f.AlertOperators, activity.RegisterOptions{Name: ActivityAlertOperators})
	env.RegisterActivityWithOptions(f.CancelWaves, activity.RegisterOptions{Name: ActivityCancelWaves})
	env.RegisterActivityWithOptions(f.MoveWaves, activity.RegisterOptions{Name: ActivityMoveWaves})
}

func (f *fakeRollout) PlanWaves(_ context.Context, _ PlanWavesInput) (PlanWavesResult, error) {
	return PlanWavesResult{Waves: []RolloutWave{
		{Wave: 0, Size: 2, Last: RolloutKey{InstanceID: "s1"}},
		{Wave: 1, Size: 10, Last: RolloutKey{Production: true, InstanceID: "p09"}},
		{Wave: 2, Size: 30, Last: RolloutKey{Production: true, InstanceID: "p39"}},
	}}, nil
}

func (f *fakeRollout) StartBatch(_ context.Context, in StartBatchInput) (StartBatchResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, in)
	size := []int{2, 10, 30}[in.Wave]
	if len(f.batches) > 3 && f.rescanFinds > 0 {
		if in.Wave == 0 {
			return StartBatchResult{Outcomes: map[string]int{}, Next: in.Through, Exhausted: true}, nil
		}
		// Booked from the floor the walk gives.
		return StartBatchResult{Outcomes: map[string]int{"started": f.rescanFinds}, Next: in.Through, Exhausted: true,
			Processed: f.rescanFinds, LastStart: in.SlotsFrom.Add(time.Hour)}, nil
	}
	return StartBatchResult{Outcomes: map[string]int{"started": size}, Next: in.Through, Exhausted: true, Processed: size,
		LastStart: f.reports[in.Wave].LastStart}, nil
}

func (f *fakeRollout) WaveReport(_ context.Context, _ WaveReportInput) (WaveReportResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return WaveReportResult{Waves: slices.Clone(f.reports)}, nil
}

func (f *fakeRollout) SetWaveState(_ context.Context, in SetWaveStateInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, in)
	for i := range f.reports {
		if slices.Contains(in.Waves, f.reports[i].Wave) {
			f.reports[i].State = in.State
		}
	}
	return nil
}

func (f *fakeRollout) AlertOperators(_ context.Context, in AlertOperatorsInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alerts = append(f.alerts, in)
	return nil
}

func (f *fakeRollout) CancelWaves(_ context.Context, in CancelWavesInput) (CancelWavesResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, in)
	return CancelWavesResult{Cancelled: 30}, nil
}

// MoveWaves moves each wave a day after the one before, from in.From.
func (f *fakeRollout) MoveWaves(_ context.Context, in MoveWavesInput) (MoveWavesResult, error) {
	if f.duringMove != nil {
		f.duringMove()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := MoveWavesResult{LastStart: in.From}
	if n := len(f.moves); n < len(f.notMoved) {
		res.NotMoved = f.notMoved[n]
		res.Details = []string{"service-update:p01:9.2.0: not moved: no free primary and secondary slot pair"}
	}
	f.moves = append(f.moves, in)
	for i, w := range f.reports {
		if slices.Contains(in.Waves, w.Wave) {
			f.reports[i].FirstStart = res.LastStart
			f.reports[i].LastStart = res.LastStart
			res.Moved += w.Members
			res.LastStart = res.LastStart.Add(24 * time.Hour)
		}
	}
	res.Moved -= res.NotMoved
	return res, nil
}

func rolloutEnv(t *testing.T, fake *fakeRollout, start time.Time) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(start)
	env.RegisterWorkflowWithOptions(Rollout, workflow.RegisterOptions{Name: RolloutWorkflowType})
	fake.register(env)
	return env
}

func testRolloutInput() RolloutInput {
	return RolloutInput{Version: "9.2.0", Waves: []int{25, 100}, MaxFailure: 0.05, BatchSize: 500, RequestedBy: "test"}
}

// steer sends an operator's command at the given time.
func steer(t *testing.T, env *testsuite.TestWorkflowEnvironment, at time.Duration, update string, input any) {
	env.RegisterDelayedCallback(func() { sendSteer(t, env, update, input) }, at)
}

// sendSteer sends an operator's Update now; a refusal fails the test.
func sendSteer(t *testing.T, env *testsuite.TestWorkflowEnvironment, update string, input any) {
	env.UpdateWorkflow(update, "", &testsuite.TestUpdateCallback{
		OnAccept: func() {}, OnReject: func(err error) { t.Errorf("%s refused: %v", update, err) },
		OnComplete: func(any, error) {},
	}, input)
}

// waveStateAt returns where the rollout will have reported wave's state
// at the given offset into the test.
func waveStateAt(env *testsuite.TestWorkflowEnvironment, fake *fakeRollout, wave int, at time.Duration) *string {
	var state string
	env.RegisterDelayedCallback(func() {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		state = fake.reports[wave].State
	}, at)
	return &state
}

func progressOf(t *testing.T, env *testsuite.TestWorkflowEnvironment) RolloutProgress {
	t.Helper()
	var p RolloutProgress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRolloutOpensWavesWithinTheBudget: no update failed, so each
// production wave opens at its first slot without a word to operators.
func TestRolloutOpensWavesWithinTheBudget(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 0, 0)
	env := rolloutEnv(t, fake, start)
	var phases []string
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		if phase, ok := args.Get(0).(temporal.SearchAttributes).GetKeyword(SearchAttrRolloutPhase); ok {
			phases = append(phases, phase)
		}
	}).Return(nil)
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	// The Web UI finds a finished rollout by its phase.
	if len(phases) == 0 || phases[len(phases)-1] != string(PhaseDone) {
		t.Errorf("RolloutPhase set to %v, want Done last", phases)
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	p := progressOf(t, env)
	if p.Phase != PhaseDone || p.Outcomes["started"] != 42 || p.Candidates != 42 {
		t.Errorf("progress = %+v, want Done with 42 started of 42", p)
	}
	if len(fake.alerts) != 0 || len(fake.cancels) != 0 {
		t.Errorf("alerts %v, cancels %v, want none", fake.alerts, fake.cancels)
	}
	if len(fake.batches) != 3 || !fake.batches[1].SlotsFrom.After(fake.reports[0].LastStart) {
		t.Errorf("batches %+v: want one per wave, wave 1 booked after wave 0's last slot", fake.batches)
	}
	for _, w := range fake.reports {
		if w.State != WaveOpen {
			t.Errorf("wave %d is %s, want open", w.Wave, w.State)
		}
	}
}

// TestRolloutRescanBooksAfterEarlierWaves: a rescan that finds a new
// production instance books it after the sandboxes' slots, though it
// starts no sandbox itself, so the wave's gate stays behind them.
func TestRolloutRescanBooksAfterEarlierWaves(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 0, 0)
	fake.rescanFinds = 1
	env := rolloutEnv(t, fake, start)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalRescan, nil) }, time.Hour)
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(fake.batches) != 6 {
		t.Fatalf("batches %+v, want two walks of three", fake.batches)
	}
	sandboxesLast := start.Add(24 * time.Hour)
	if rescanWave1 := fake.batches[4]; rescanWave1.Wave != 1 || !rescanWave1.SlotsFrom.After(sandboxesLast) {
		t.Errorf("the rescan booked wave 1 from %s, want after the sandboxes' last slot %s", rescanWave1.SlotsFrom, sandboxesLast)
	}
}

// TestRolloutZeroBudgetHoldsOnAnyFailure: with --max-failure 0% a wave
// opens when no update before it failed, and is held by the first failure.
func TestRolloutZeroBudgetHoldsOnAnyFailure(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	in := testRolloutInput()
	in.MaxFailure = 0

	clean := newFakeRollout(start, 0, 0)
	env := rolloutEnv(t, clean, start)
	env.ExecuteWorkflow(RolloutWorkflowType, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if p := progressOf(t, env); p.Phase != PhaseDone || len(clean.alerts) != 0 {
		t.Errorf("no failure, zero budget: phase %s, alerts %v; want Done, none", p.Phase, clean.alerts)
	}

	failed := newFakeRollout(start, 0, 1)
	env = rolloutEnv(t, failed, start)
	wave2 := waveStateAt(env, failed, 2, 80*time.Hour)
	steer(t, env, 90*time.Hour, UpdateAbort, AbortInput{By: "ops@provider.example", Reason: "one failed"})
	env.ExecuteWorkflow(RolloutWorkflowType, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if *wave2 != WaveHeld || len(failed.alerts) != 1 || failed.alerts[0].Wave != 2 {
		t.Errorf("one failure in wave 1, zero budget: wave 2 %s, alerts %+v; want wave 2 held and one alert for it", *wave2, failed.alerts)
	}
}

// TestRolloutWaveGate: a sandbox failed (1 of 2, above 5 %), so wave 1 is
// held at its first slot, the operators alerted, and the rollout paused;
// Resume opens it. At wave 2 the failures (now 1 of 12) are still above
// the budget: held again, and Abort cancels its updates.
func TestRolloutWaveGate(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 1, 0)
	env := rolloutEnv(t, fake, start)
	var paused RolloutProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		if err == nil {
			err = v.Get(&paused)
		}
		if err != nil {
			t.Error(err)
		}
	}, 49*time.Hour)
	steer(t, env, 50*time.Hour, UpdateResume, ResumeInput{By: "ops@provider.example"})
	steer(t, env, 73*time.Hour, UpdateAbort, AbortInput{By: "ops@provider.example", Reason: "too many failures"})
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if paused.Phase != PhasePaused || paused.CurrentWave != 1 {
		t.Errorf("before the Resume: %+v, want paused at wave 1", paused)
	}
	if len(fake.alerts) != 2 || fake.alerts[0].Wave != 1 || fake.alerts[1].Wave != 2 {
		t.Errorf("alerts = %+v, want one for wave 1 and one for wave 2", fake.alerts)
	}
	if got := fake.reports[1].State; got != WaveOpen {
		t.Errorf("wave 1 is %s after the Resume, want open", got)
	}
	if got := fake.reports[2].State; got != WaveAborted {
		t.Errorf("wave 2 is %s after the Abort, want aborted", got)
	}
	if len(fake.cancels) != 1 || !slices.Equal(fake.cancels[0].Waves, []int{2}) {
		t.Errorf("cancels = %+v, want wave 2's updates cancelled", fake.cancels)
	}
	if p := progressOf(t, env); p.Phase != PhaseAborted {
		t.Errorf("phase %s, want Aborted", p.Phase)
	}
}

// TestRolloutPauseHoldsTheNextWave: an operator's Pause before a wave's
// first slot keeps the wave pending (its updates wait) until Resume.
func TestRolloutPauseHoldsTheNextWave(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 0, 0)
	env := rolloutEnv(t, fake, start)
	steer(t, env, time.Hour, UpdatePause, PauseInput{By: "ops@provider.example", Reason: "change freeze"})
	atSlot := waveStateAt(env, fake, 1, 49*time.Hour)
	steer(t, env, 100*time.Hour, UpdateResume, ResumeInput{By: "ops@provider.example"})
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if *atSlot == WaveOpen {
		t.Error("wave 1 opened at its first slot while the rollout was paused")
	}
	if p := progressOf(t, env); p.Phase != PhaseDone {
		t.Errorf("phase %s after the Resume, want Done", p.Phase)
	}
}

// TestRolloutResumeMovesTheHeldWave: wave 1 is held (a sandbox failed);
// the operator resumes it with a later time. The first move leaves an
// update where it was, so the wave stays held and the operators are told
// again; the second Resume moves the rest and the wave opens, its updates
// to run at their new slots. Wave 2 moved after it, so its gate comes
// after wave 1's new slots.
func TestRolloutResumeMovesTheHeldWave(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 1, 0)
	fake.notMoved = []int{1}
	env := rolloutEnv(t, fake, start)
	moveTo := start.Add(10 * 24 * time.Hour)
	resume := ResumeInput{By: "ops@provider.example", MoveTo: moveTo}
	steer(t, env, 50*time.Hour, UpdateResume, resume)
	var afterFirst RolloutProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		if err == nil {
			err = v.Get(&afterFirst)
		}
		if err != nil {
			t.Error(err)
		}
	}, 51*time.Hour)
	steer(t, env, 52*time.Hour, UpdateResume, resume)
	// Wave 2's gate, now at its moved first slot, holds it (1 of 12
	// failed); abort it there.
	steer(t, env, 12*24*time.Hour, UpdateAbort, AbortInput{By: "ops@provider.example", Reason: "still failing"})
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}

	if afterFirst.Phase != PhasePaused || !strings.Contains(afterFirst.Paused, "wave 1 held: 1 updates of waves [1 2] could not be moved to slots from 2027-01-14T08:00:00Z (39 moved, 0 already later") {
		t.Errorf("after the first move: phase %s, %q; want paused, naming what stayed", afterFirst.Phase, afterFirst.Paused)
	}
	if !slices.Contains(afterFirst.Details, "service-update:p01:9.2.0: not moved: no free primary and secondary slot pair") {
		t.Errorf("details = %q, want the update not moved named", afterFirst.Details)
	}
	if len(fake.moves) != 2 {
		t.Fatalf("moves = %+v, want two", fake.moves)
	}
	for _, m := range fake.moves {
		if !slices.Equal(m.Waves, []int{1, 2}) || !m.From.Equal(moveTo) || m.RequestedBy != "rollout of 9.2.0, resumed by ops@provider.example" {
			t.Errorf("move %+v: want waves 1 and 2 from %s, by the rollout for its operator", m, moveTo)
		}
	}
	if len(fake.alerts) != 3 || fake.alerts[1].Wave != 1 || fake.alerts[1].Move != 1 || fake.alerts[2].Wave != 2 || fake.alerts[2].Move != 0 {
		t.Errorf("alerts = %+v, want wave 1 twice (held, then after move 1) and wave 2", fake.alerts)
	}
	if got := fake.reports[1].State; got != WaveOpen {
		t.Errorf("wave 1 is %s after the move, want open", got)
	}
	if got := fake.reports[2]; got.State != WaveAborted || !got.FirstStart.Equal(moveTo.Add(24*time.Hour)) {
		t.Errorf("wave 2 = %+v, want aborted at its moved gate, a day after wave 1's", got)
	}
}

// A Resume may move only a held wave, and only to a later time.
func TestRolloutRefusesAMoveItCannotMake(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		pause bool
		at    time.Duration
		in    ResumeInput
		want  string
	}{
		{"paused by an operator, no wave held", true, 2 * time.Hour, ResumeInput{By: "ops", MoveTo: start.Add(240 * time.Hour)}, "no wave is held"},
		{"a time passed", false, 50 * time.Hour, ResumeInput{By: "ops", MoveTo: start}, "move to 2027-01-04T08:00:00Z leaves the admins less notice than MIN_NOTICE (0d) from now (2027-01-06T10:00:00Z): move to 2027-01-06T10:01:00Z or later"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeRollout(start, 1, 0)
			env := rolloutEnv(t, fake, start)
			if tt.pause {
				steer(t, env, time.Hour, UpdatePause, PauseInput{By: "ops", Reason: "freeze"})
			}
			var refused error
			env.RegisterDelayedCallback(func() {
				env.UpdateWorkflow(UpdateResume, "", &testsuite.TestUpdateCallback{
					OnAccept: func() {}, OnReject: func(err error) { refused = err }, OnComplete: func(any, error) {},
				}, tt.in)
			}, tt.at)
			steer(t, env, 100*time.Hour, UpdateAbort, AbortInput{By: "ops"})
			env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			if refused == nil || !strings.Contains(refused.Error(), tt.want) {
				t.Errorf("refusal %v, want %q", refused, tt.want)
			}
			if len(fake.moves) != 0 {
				t.Errorf("moves = %+v, want none", fake.moves)
			}
		})
	}
}

// An operator who pauses while the held wave's updates move keeps the
// wave held after the move, until the next Resume.
func TestRolloutPauseDuringAMoveKeepsTheWaveHeld(t *testing.T) {
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 1, 0)
	env := rolloutEnv(t, fake, start)
	fake.duringMove = func() {
		fake.duringMove = nil
		sendSteer(t, env, UpdatePause, PauseInput{By: "ops@provider.example", Reason: "incident"})
	}
	steer(t, env, 50*time.Hour, UpdateResume, ResumeInput{By: "ops@provider.example", MoveTo: start.Add(10 * 24 * time.Hour)})
	afterMove := waveStateAt(env, fake, 1, 60*time.Hour)
	steer(t, env, 70*time.Hour, UpdateResume, ResumeInput{By: "ops@provider.example"})
	steer(t, env, 12*24*time.Hour, UpdateAbort, AbortInput{By: "ops@provider.example", Reason: "still failing"})
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if *afterMove != WaveHeld {
		t.Errorf("wave 1 is %q after a move during which an operator paused, want held", *afterMove)
	}
	if got := fake.reports[1].State; got != WaveOpen {
		t.Errorf("wave 1 is %s after the next Resume, want open", got)
	}
	if len(fake.moves) != 1 {
		t.Errorf("moves = %+v, want one", fake.moves)
	}
}

// The updates a batch starts run their first task as long after their
// start as the whole walk should take (a quarter more), within bounds.
func TestRolloutDefersFirstTasksPastTheWalk(t *testing.T) {
	t0 := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	r := &rollout{st: RolloutState{Waves: []RolloutWave{{Size: 100}, {Size: 1000}}, ScanStartedAt: t0}}
	if got, want := r.firstTasksAt(t0), t0.Add(minFirstTaskDeferral); !got.Equal(want) {
		t.Errorf("before the first batch: %v, want %v", got, want)
	}
	r.st.ScanProcessed = 100 // in 10 s: the walk of 1,100 takes 110 s
	if got, want := r.firstTasksAt(t0.Add(10*time.Second)), t0.Add(10*time.Second+137500*time.Millisecond); !got.Equal(want) {
		t.Errorf("after 100 of 1,100 in 10 s: %v, want %v", got, want)
	}
	r.st.ScanProcessed = 1 // in 10 minutes: the walk would take days
	if got, want := r.firstTasksAt(t0.Add(10*time.Minute)), t0.Add(10*time.Minute+maxFirstTaskDeferral); !got.Equal(want) {
		t.Errorf("a slow walk: %v, want at most %v", got, want)
	}

	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	fake := newFakeRollout(start, 0, 0)
	env := rolloutEnv(t, fake, start)
	env.ExecuteWorkflow(RolloutWorkflowType, testRolloutInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	for i, b := range fake.batches {
		if b.FirstTasksAt.Before(start.Add(minFirstTaskDeferral)) {
			t.Errorf("batch %d defers its first tasks until %v, want at least %v", i, b.FirstTasksAt, start.Add(minFirstTaskDeferral))
		}
	}
}
