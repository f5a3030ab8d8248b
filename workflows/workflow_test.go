package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uber-go/tally/v4"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
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
	}
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

func newScenario(t *testing.T) *scenario {
	var ts testsuite.WorkflowTestSuite
	metrics := tally.NewTestScope("", nil)
	ts.SetMetricsHandler(sdktally.NewMetricsHandler(metrics))
	env := ts.NewTestWorkflowEnvironment()
	env.SetStartTime(scenarioStart)
	env.RegisterWorkflow(ServiceUpdate)
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

func (s *scenario) update(name string, arg any) *updateOutcome {
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
	s.env.ExecuteWorkflow(ServiceUpdate, s.in)
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

func TestApproveThenSucceed(t *testing.T) {
	s := newScenario(t)
	var approve *updateOutcome
	var beforeStart StatusView
	s.at(scenarioStart.Add(days(5)), func() { approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped, Note: "fine by us"}) })
	s.at(primaryStart.Add(-days(1)), func() { beforeStart = s.status() })

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.2.0", res.FinalVersion)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, Attempt{Slot: SlotPrimary, Started: primaryStart, Finished: primaryStart, Outcome: OutcomeSucceeded}, res.Attempts[0])
	assert.Equal(t, primaryStart, s.env.Now().UTC(), "the update runs at the primary start")
	assert.Equal(t, map[string]int64{string(StatusSucceeded): 1}, s.completions())

	assert.Equal(t, kinds(NoticeScheduled, NoticeConfirmed, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionApproved, actionStarted, actionSucceeded}, s.fakes.actions())

	require.True(t, approve.completed)
	require.NoError(t, approve.err)
	assert.Equal(t, StatusApproved, approve.result.Status)
	assert.Equal(t, adminListed, approve.result.ApprovedBy, "the admin is matched case-insensitively and recorded as listed")
	assert.Equal(t, scenarioStart.Add(days(5)), approve.result.ApprovedAt)
	approved := s.fakes.transitions[1]
	assert.Equal(t, adminListed, approved.Actor)
	assert.Equal(t, ChannelUpdate, approved.Channel)
	assert.Equal(t, StatusScheduled, approved.From)
	assert.Equal(t, "fine by us", approved.Detail)

	assert.Equal(t, []NoticeKind{NoticeDayOf, NoticeInProgress}, upcomingKinds(beforeStart))
	assert.Equal(t, "Wed 15 Apr 2026 03:00 CEST", beforeStart.Primary.LocalStart)
	assert.Equal(t, primaryStart.Add(DefaultWindowLength), beforeStart.Primary.End)

	final := s.status()
	assert.Equal(t, primaryStart.Add(-days(30)), noticeAt(t, final, ReminderKind(days(30))).At)
	assert.Equal(t, primaryStart, noticeAt(t, final, NoticeDayOf).At)
	assert.Empty(t, final.Upcoming)

	bookings, releases, versions, applies := s.fakes.counts()
	assert.Equal(t, []int{0, 0, 1, 1}, []int{bookings, releases, versions, applies}, "bookings, releases, versions, applies")
	assert.Equal(t, RecordVersionInput{InstanceID: "inst-1", Version: "9.2.0"}, s.fakes.versions[0])
	assert.Equal(t, ExecutorTaskQueue, s.fakes.applyQueues[0])
	assert.Equal(t, primaryStart.Add(DefaultWindowLength), s.fakes.applies[0].WindowEnd)
	assert.Equal(t, SlotPrimary, s.fakes.applies[0].Attempt)
	reminder30 := s.fakes.notices[3]
	assert.Equal(t, days(30), reminder30.Offset)
	assert.Equal(t, primaryStart, reminder30.SlotStart)
}

func TestRescheduleRearmsRemindersThenSucceeds(t *testing.T) {
	s := newScenario(t)
	// On day 20 (the 90-day reminder went out on day 10) the admin moves
	// the update to day 40: the 90- and 30-day reminders of the new slot are
	// already past, the 15-day one (day 25) is not.
	rescheduledAt := scenarioStart.Add(days(20))
	newPrimary := scenarioStart.Add(days(40))
	newSecondary := newPrimary.Add(days(3))
	var reschedule *updateOutcome
	s.at(rescheduledAt, func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: "OPS@acme.example", PrimaryStart: newPrimary, SecondaryStart: newSecondary})
	})

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, s.env.Now().UTC(), "the update runs at the new primary start")
	assert.Equal(t, kinds(NoticeScheduled, reminders(90), NoticeRescheduled, reminders(15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())

	require.True(t, reschedule.completed)
	require.NoError(t, reschedule.err)
	view := reschedule.result
	assert.Equal(t, StatusApproved, view.Status, "a reschedule implies approval")
	assert.Equal(t, "ops@acme.example", view.ApprovedBy)
	assert.Equal(t, rescheduledAt, view.ApprovedAt)
	assert.Equal(t, newPrimary, view.Primary.Start)
	assert.Equal(t, newSecondary, view.Secondary.Start)
	assert.Equal(t, kinds(reminders(15, 7), NoticeDayOf, NoticeInProgress), upcomingKinds(view))
	assert.Equal(t, newPrimary.Add(-days(15)), view.Upcoming[0].At)

	require.Len(t, s.fakes.bookings, 1)
	assert.Equal(t, BookSlotsInput{
		WorkflowID: s.fakes.bookings[0].WorkflowID, InstanceID: "inst-1", Region: "eu-central",
		OfferedVersion: "9.2.0", TargetVersion: "9.2.0", PrimaryStart: newPrimary, SecondaryStart: newSecondary,
	}, s.fakes.bookings[0])
	reminder15 := s.fakes.notices[3]
	assert.Equal(t, newPrimary, reminder15.SlotStart, "reminders of the new slot carry its start (the outbox key)")
	assert.Equal(t, newPrimary.Add(DefaultWindowLength), s.fakes.applies[0].WindowEnd)
}

func TestRescheduleToLaterTargetVersion(t *testing.T) {
	s := newScenario(t)
	newPrimary := primaryStart.Add(days(10)) // inside 9.3.0's period
	newSecondary := newPrimary.Add(days(2))
	var reschedule, backwards *updateOutcome
	s.at(scenarioStart.Add(days(50)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary, TargetVersion: "9.3.0"})
	})
	s.at(scenarioStart.Add(days(51)), func() {
		backwards = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary, TargetVersion: "9.2.0"})
	})

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, "9.3.0", res.FinalVersion)
	assert.Equal(t, newPrimary, s.env.Now().UTC())
	require.NoError(t, reschedule.err)
	assert.Equal(t, "9.3.0", reschedule.result.TargetVersion)
	assert.Equal(t, "9.2.0", reschedule.result.OfferedVersion, "the offered version stays the one in the workflow ID")
	assert.Equal(t, release93, reschedule.result.ReleasePeriod)

	require.Error(t, backwards.rejected)
	assert.Contains(t, backwards.rejected.Error(), `target version "9.2.0" is older than the current target "9.3.0"; choose one of 9.3.0`)
	assert.False(t, backwards.accepted)

	require.Len(t, s.fakes.bookings, 1)
	assert.Equal(t, "9.2.0", s.fakes.bookings[0].OfferedVersion)
	assert.Equal(t, "9.3.0", s.fakes.bookings[0].TargetVersion)
	assert.Equal(t, "9.3.0", s.fakes.applies[0].TargetVersion)
	assert.Equal(t, RecordVersionInput{InstanceID: "inst-1", Version: "9.3.0"}, s.fakes.versions[0])
	assert.Equal(t, "9.3.0", s.fakes.lastTransition().Snapshot.TargetVersion)
}

func TestValidatorsRejectBadUpdates(t *testing.T) {
	checkAt := scenarioStart.Add(days(1))
	good := RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: secondaryStart}
	tests := []struct {
		name   string
		update string
		arg    any
		want   string
	}{
		{"approve by a non-admin", UpdateApprove, ApproveInput{Admin: "mallory@evil.example"},
			`"mallory@evil.example" is not an admin of instance inst-1`},
		{"reschedule by a non-admin", UpdateReschedule, RescheduleInput{Admin: "mallory@evil.example", PrimaryStart: primaryStart, SecondaryStart: secondaryStart},
			`"mallory@evil.example" is not an admin of instance inst-1`},
		{"primary slot in the past", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: checkAt.Add(-time.Hour), SecondaryStart: secondaryStart},
			"primary start 2026-01-06T00:00:00Z is not in the future (now 2026-01-06T01:00:00Z); choose a later slot"},
		{"secondary inside the primary window", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: primaryStart.Add(6 * time.Hour)},
			"secondary start 2026-04-15T07:00:00Z is too early: it must be at or after 2026-04-16T13:00:00Z (primary window end 2026-04-15T13:00:00Z plus a gap of 24h0m0s)"},
		{"secondary within the minimum gap", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: primaryStart.Add(20 * time.Hour)},
			"secondary start 2026-04-15T21:00:00Z is too early"},
		{"secondary after the release period", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: release92.PeriodEnd.Add(-time.Hour)},
			"the secondary window 2026-06-14T00:00:00Z to 2026-06-14T12:00:00Z lies outside the release period of 9.2.0 (2025-12-26T01:00:00Z to 2026-06-14T01:00:00Z); choose a slot inside it"},
		{"primary before the later release's period", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: checkAt.Add(days(2)), SecondaryStart: secondaryStart, TargetVersion: "9.3.0"},
			"the primary window 2026-01-08T01:00:00Z to 2026-01-08T13:00:00Z lies outside the release period of 9.3.0 (2026-02-04T01:00:00Z to 2026-09-12T01:00:00Z); choose a slot inside it"},
		{"unknown target version", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart, SecondaryStart: secondaryStart, TargetVersion: "10.0.0"},
			`target version "10.0.0" is not offered for this update; choose one of 9.2.0, 9.3.0`},
		{"empty admin list", UpdateSetAdmins, SetAdminsInput{}, "the admin list is empty; give at least one e-mail address"},
		{"admin that is no address", UpdateSetAdmins, SetAdminsInput{Admins: []string{"ops@acme.example", "Ops Team <ops@acme.example>"}},
			`admin "Ops Team <ops@acme.example>" is not a plain e-mail address (like admin@example.com)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			var outcome, control *updateOutcome
			var after StatusView
			s.at(checkAt, func() { outcome = s.update(tt.update, tt.arg) })
			s.at(checkAt.Add(time.Hour), func() {
				after = s.status()
				s.env.CancelWorkflow()
			})
			// A valid Update after the rejection proves the workflow still answers.
			s.at(checkAt.Add(30*time.Minute), func() { control = s.update(UpdateReschedule, good) })

			_, err := s.run()
			require.Error(t, err)
			require.Error(t, outcome.rejected, "the validator must reject the Update")
			assert.Contains(t, outcome.rejected.Error(), tt.want)
			assert.False(t, outcome.accepted)
			assert.False(t, outcome.completed)
			require.NoError(t, control.err)
			assert.Equal(t, StatusApproved, after.Status)
			assert.Len(t, s.fakes.bookings, 1, "only the valid reschedule books")
			assert.Equal(t, []string{actionScheduled, actionRescheduled, actionCancelled}, s.fakes.actions())
		})
	}
}

func TestApproveTwiceRefused(t *testing.T) {
	s := newScenario(t)
	var first, second *updateOutcome
	s.at(scenarioStart.Add(days(1)), func() { first = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	s.at(scenarioStart.Add(days(2)), func() { second = s.update(UpdateApprove, ApproveInput{Admin: "ops@acme.example"}) })

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.NoError(t, first.err)
	require.Error(t, second.rejected)
	assert.Equal(t, "the update was already approved by Admin@Acme.example at 2026-01-06T01:00:00Z", second.rejected.Error())
	assert.Equal(t, 1, countKind(s.fakes.noticeKinds(), NoticeConfirmed))
}

func TestChangesAfterStartRefused(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(_ context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return temporal.NewNonRetryableApplicationError("migration step 3 failed", ErrTypeUpdateFailed, nil)
		}
		return nil
	}
	var approve, reschedule *updateOutcome
	checkAt := primaryStart.Add(days(1)) // fallback scheduled, waiting for the secondary slot
	s.at(checkAt, func() {
		approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped})
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: checkAt.Add(days(2)), SecondaryStart: checkAt.Add(days(4))})
	})

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	want := "the update started at 2026-04-15T01:00:00Z; it can no longer be "
	require.Error(t, approve.rejected)
	assert.Equal(t, want+"approved", approve.rejected.Error())
	require.Error(t, reschedule.rejected)
	assert.Equal(t, want+"rescheduled", reschedule.rejected.Error())
	assert.Empty(t, s.fakes.bookings)
}

func TestRescheduleWhileInProgressRefused(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	started, refused := make(chan struct{}), make(chan error, 1)
	s.fakes.applyUpdate = func(ctx context.Context, _ ApplyUpdateInput) error {
		close(started)
		select { // keep the update running until the Reschedule was answered
		case err := <-refused:
			refused <- err
		case <-ctx.Done():
		}
		return nil
	}
	go func() {
		<-started
		s.env.UpdateWorkflow(UpdateReschedule, "while-in-progress", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { refused <- err },
			OnAccept:   func() {},
			OnComplete: func(any, error) { refused <- errors.New("the Reschedule was accepted") },
		}, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart.Add(days(3)), SecondaryStart: primaryStart.Add(days(5))})
	}()

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.EqualError(t, <-refused, "the update started at 2026-04-15T01:00:00Z; it can no longer be rescheduled")
	assert.Empty(t, s.fakes.bookings)
}

func TestUnapprovedOptionalThenLateRescheduleSucceeds(t *testing.T) {
	s := newScenario(t)
	lateAt := primaryStart.Add(days(2))
	newPrimary := primaryStart.Add(days(10))
	newSecondary := newPrimary.Add(days(2))
	var approve, reschedule *updateOutcome
	var declined StatusView
	s.at(primaryStart.Add(days(1)), func() {
		declined = s.status()
		approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped})
	})
	s.at(lateAt, func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary})
	})

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeNotApproved, NoticeRescheduled, reminders(7), NoticeDayOf, NoticeInProgress, NoticeSucceeded),
		s.fakes.noticeKinds(), "no day-of for an update that will not run; the new slot's reminders are sent again")
	assert.Equal(t, []string{actionScheduled, actionNotApproved, actionRescheduled, actionStarted, actionSucceeded}, s.fakes.actions())

	assert.Equal(t, StatusNotApproved, declined.Status)
	assert.Empty(t, declined.Upcoming)
	notApproved := s.fakes.notices[5]
	assert.Equal(t, release92.PeriodEnd.Add(-days(2)), notApproved.Deadline,
		"the admins may reschedule to a primary start that leaves both 12 h windows and the 24 h gap inside the release period")
	require.Error(t, approve.rejected)
	assert.Equal(t, "the update was not approved before its slot at 2026-04-15T01:00:00Z; reschedule to a later slot instead (a primary slot starting by 2026-06-12T01:00:00Z, so both windows fit in the release period ending 2026-06-14T01:00:00Z)", approve.rejected.Error())
	require.NoError(t, reschedule.err)
	assert.Equal(t, StatusApproved, reschedule.result.Status)

	require.Len(t, s.fakes.releases, 1, "the unapproved slots went back to the pool")
	assert.Equal(t, ReleaseSlotsInput{InstanceID: "inst-1", OfferedVersion: "9.2.0"}, s.fakes.releases[0])
	require.Len(t, s.fakes.bookings, 1, "the late reschedule books again")
}

func TestUnapprovedUntilPeriodEndClosesNotApproved(t *testing.T) {
	s := newScenario(t)

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusNotApproved, res.Status)
	assert.Equal(t, "9.1.0", res.FinalVersion)
	assert.Equal(t, map[string]int64{string(StatusNotApproved): 1}, s.completions())
	assert.Empty(t, res.Attempts)
	assert.Equal(t, release92.PeriodEnd, s.env.Now().UTC(), "open for a late reschedule until the period ends")
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeNotApproved), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionNotApproved, actionExpired}, s.fakes.actions())
	assert.Equal(t, StatusNotApproved, s.fakes.lastTransition().Snapshot.Status)
	bookings, releases, versions, applies := s.fakes.counts()
	assert.Equal(t, []int{0, 1, 0, 0}, []int{bookings, releases, versions, applies}, "bookings, releases, versions, applies")
}

func TestMandatoryRunsWithoutApproval(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, primaryStart, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionSucceeded}, s.fakes.actions())
	assert.True(t, s.fakes.lastTransition().Snapshot.Mandatory)
	assert.Empty(t, s.fakes.lastTransition().Snapshot.ApprovedBy)
	assert.Len(t, s.fakes.applies, 1)
}

func TestPrimaryFailsFallbackSucceeds(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(_ context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return temporal.NewNonRetryableApplicationError("schema migration failed", ErrTypeUpdateFailed, nil)
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, secondaryStart, s.env.Now().UTC(), "the second attempt runs at the secondary start")
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, SlotPrimary, res.Attempts[0].Slot)
	assert.Equal(t, OutcomeFailed, res.Attempts[0].Outcome)
	assert.Equal(t, "schema migration failed", res.Attempts[0].Error, "the executor's message, without the SDK's wrapping")
	assert.Equal(t, Attempt{Slot: SlotSecondary, Started: secondaryStart, Finished: secondaryStart, Outcome: OutcomeSucceeded}, res.Attempts[1])
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionSucceeded}, s.fakes.actions())
	require.Len(t, s.fakes.applies, 2, "a definitive failure is not retried")
	assert.Equal(t, secondaryStart.Add(DefaultWindowLength), s.fakes.applies[1].WindowEnd)
	fallback := s.fakes.notices[7]
	assert.Equal(t, secondaryStart, fallback.SlotStart)
	assert.Equal(t, StatusFallbackScheduled, fallback.Update.Status)
}

func TestBothAttemptsFail(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusFailed, res.Status)
	assert.Equal(t, map[string]int64{string(StatusFailed): 1}, s.completions())
	assert.Equal(t, "9.1.0", res.FinalVersion)
	assert.Equal(t, secondaryStart, s.env.Now().UTC())
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, OutcomeFailed, res.Attempts[1].Outcome)
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeFailed), s.fakes.noticeKinds())
	assert.Equal(t, []string{actionScheduled, actionStarted, actionFallback, actionStarted, actionFailed}, s.fakes.actions())
	assert.Empty(t, s.fakes.versions, "the instance stays on its version")
}

func TestTransientExecutorErrorsRetriedInsideWindow(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	calls := 0
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		calls++
		if calls < 3 {
			return errors.New("executor unreachable")
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1, "retries are one attempt in one window")
	assert.Equal(t, 3, calls)
	assert.Equal(t, primaryStart.Add(30*time.Second), s.env.Now().UTC(), "retried after 10 s and 20 s of backoff")
}

func TestWindowElapsesFallsBack(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	// A short window keeps the real-time wait of the hanging executor short.
	s.in.WindowLength = time.Second
	s.fakes.applyUpdate = func(ctx context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return blockUntilCancelled(ctx, in)
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, OutcomeWindowElapsed, res.Attempts[0].Outcome)
	assert.Contains(t, res.Attempts[0].Error, "timed out (", "a lapsed window is reported as a timeout")
	assert.NotContains(t, res.Attempts[0].Error, "scheduledEventID", "without the SDK's wrapping")
	assert.Equal(t, OutcomeSucceeded, res.Attempts[1].Outcome)
	assert.Equal(t, secondaryStart, s.env.Now().UTC())
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
}

func TestUndeliverableNoticesDoNotStopTheLifecycle(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.sendNotice = func(in SendNoticeInput) error {
		switch in.Kind {
		case ReminderKind(days(30)):
			return temporal.NewNonRetryableApplicationError("no admin or extra recipient", ErrTypeNoRecipients, nil)
		case NoticeInProgress:
			return temporal.NewNonRetryableApplicationError("SendGrid 400: invalid address", ErrTypeMailRejected, nil)
		}
		return nil
	}

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	final := s.status()
	assert.Contains(t, noticeAt(t, final, ReminderKind(days(30))).Error, "no admin or extra recipient")
	assert.Contains(t, noticeAt(t, final, NoticeInProgress).Error, "invalid address")
	assert.Empty(t, noticeAt(t, final, NoticeSucceeded).Error)
}

func TestFullSlotLeavesScheduleUnchanged(t *testing.T) {
	s := newScenario(t)
	s.fakes.bookSlots = func(BookSlotsInput) error {
		return temporal.NewNonRetryableApplicationError("slot 2026-02-01T01:00:00Z in eu-central is full (40 of 40)", ErrTypeSlotFull, nil)
	}
	var reschedule *updateOutcome
	var after StatusView
	s.at(scenarioStart.Add(days(3)), func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: scenarioStart.Add(days(27)), SecondaryStart: scenarioStart.Add(days(29))})
	})
	s.at(scenarioStart.Add(days(4)), func() {
		after = s.status()
		s.env.CancelWorkflow()
	})

	_, err := s.run()
	require.Error(t, err)
	require.True(t, reschedule.accepted, "capacity is only known in Postgres, after validation")
	require.Error(t, reschedule.err)
	assert.Contains(t, reschedule.err.Error(), "the slots could not be booked: slot 2026-02-01T01:00:00Z in eu-central is full (40 of 40); choose other slots from those offered for 9.2.0 in eu-central")
	assert.Equal(t, StatusScheduled, after.Status)
	assert.Equal(t, primaryStart, after.Primary.Start)
	assert.Empty(t, after.ApprovedBy)
	assert.Equal(t, kinds(NoticeScheduled, NoticeCancelled), s.fakes.noticeKinds())
}

func TestSetAdminsReplacesWhoMayAct(t *testing.T) {
	s := newScenario(t)
	var set, formerAdmin, newAdmin *updateOutcome
	s.at(scenarioStart.Add(days(1)), func() {
		set = s.update(UpdateSetAdmins, SetAdminsInput{Admins: []string{"new-admin@acme.example"}})
	})
	s.at(scenarioStart.Add(days(2)), func() { formerAdmin = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	s.at(scenarioStart.Add(days(3)), func() { newAdmin = s.update(UpdateApprove, ApproveInput{Admin: "New-Admin@acme.example"}) })

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	require.NoError(t, set.err)
	assert.Equal(t, []string{"new-admin@acme.example"}, set.result.Admins)
	require.Error(t, formerAdmin.rejected)
	assert.Equal(t, `"admin@acme.example" is not an admin of instance inst-1; ask one of its admins`, formerAdmin.rejected.Error())
	require.NoError(t, newAdmin.err)
	assert.Equal(t, "new-admin@acme.example", newAdmin.result.ApprovedBy)
	assert.Equal(t, []string{actionScheduled, actionAdminsChanged, actionApproved, actionStarted, actionSucceeded}, s.fakes.actions())
}

func TestCancellationInEveryPhase(t *testing.T) {
	failPrimary := func(_ context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return temporal.NewNonRetryableApplicationError("failed", ErrTypeUpdateFailed, nil)
		}
		return nil
	}
	tests := []struct {
		name       string
		mandatory  bool
		approveAt  time.Time
		cancelAt   time.Time
		executor   func(context.Context, ApplyUpdateInput) error
		fromStatus Status
		notices    []NoticeKind
		attempts   int
	}{
		{name: "scheduled", cancelAt: scenarioStart.Add(days(3)), fromStatus: StatusScheduled,
			notices: kinds(NoticeScheduled, NoticeCancelled)},
		{name: "approved", approveAt: scenarioStart.Add(days(2)), cancelAt: scenarioStart.Add(days(75)), fromStatus: StatusApproved,
			notices: kinds(NoticeScheduled, NoticeConfirmed, reminders(90, 30), NoticeCancelled)},
		{name: "not approved", cancelAt: primaryStart.Add(days(1)), fromStatus: StatusNotApproved,
			notices: kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeNotApproved, NoticeCancelled)},
		{name: "fallback scheduled", mandatory: true, executor: failPrimary, cancelAt: primaryStart.Add(days(1)), fromStatus: StatusFallbackScheduled,
			notices: kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeCancelled), attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			s.in.Mandatory = tt.mandatory
			s.fakes.applyUpdate = tt.executor
			if !tt.approveAt.IsZero() {
				s.at(tt.approveAt, func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
			}
			s.at(tt.cancelAt, s.env.CancelWorkflow)

			_, err := s.run()
			assertCancelled(t, s, err, tt.fromStatus, tt.notices)
			assert.Equal(t, tt.cancelAt, s.env.Now().UTC())
			assert.Len(t, s.fakes.applies, tt.attempts)
		})
	}

	t.Run("in progress", func(t *testing.T) {
		s := newScenario(t)
		s.in.Mandatory = true
		started := make(chan struct{})
		s.fakes.applyUpdate = func(ctx context.Context, in ApplyUpdateInput) error {
			close(started)
			return blockUntilCancelled(ctx, in)
		}
		// The executor and the in-progress notice run concurrently in real
		// time; cancel once the executor has begun and the notice went out
		// (a notice still pending at the cancellation is abandoned).
		go func() {
			<-started
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if slices.Contains(s.fakes.noticeKinds(), NoticeInProgress) {
					break
				}
			}
			s.env.CancelWorkflow()
		}()

		_, err := s.run()
		assertCancelled(t, s, err, StatusInProgress, kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeCancelled))
		view := s.status()
		require.Len(t, view.Attempts, 1)
		assert.Equal(t, OutcomeCancelled, view.Attempts[0].Outcome)
		assert.Equal(t, primaryStart, s.env.Now().UTC())
	})
}

func assertCancelled(t *testing.T, s *scenario, err error, from Status, notices []NoticeKind) {
	t.Helper()
	require.Error(t, err)
	var cancelled *temporal.CanceledError
	assert.ErrorAs(t, err, &cancelled, "the run must show as Canceled")
	assert.Equal(t, notices, s.fakes.noticeKinds())
	last := s.fakes.lastTransition()
	assert.Equal(t, actionCancelled, last.Action)
	assert.Equal(t, ActorOperator, last.Actor)
	assert.Equal(t, ChannelOperator, last.Channel)
	assert.Equal(t, from, last.From)
	assert.Equal(t, map[string]int64{string(StatusCancelled): 1}, s.completions())
	assert.Equal(t, StatusCancelled, last.Snapshot.Status)
	require.NotEmpty(t, s.fakes.releases)
	assert.Equal(t, ReleaseSlotsInput{InstanceID: "inst-1", OfferedVersion: "9.2.0"}, s.fakes.releases[len(s.fakes.releases)-1])
}

func TestInvalidInputFailsTheWorkflow(t *testing.T) {
	s := newScenario(t)
	s.in.Instance.TimeZone = "Mars/Olympus"

	_, err := s.run()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, ErrTypeInvalidInput, appErr.Type())
	assert.True(t, appErr.NonRetryable())
	assert.Contains(t, appErr.Error(), `instance.timeZone "Mars/Olympus" is not an IANA time zone name`)
	assert.Empty(t, s.fakes.noticeKinds())
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

// An admin may approve in the very first moments of the workflow, before
// the scheduled notice has gone out; the approval must survive it.
func TestApproveBeforeScheduledNoticeKeepsApproval(t *testing.T) {
	s := newScenario(t)
	var approve *updateOutcome
	s.at(scenarioStart, func() { approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })

	res, err := s.run()
	require.NoError(t, err)

	require.True(t, approve.completed)
	require.NoError(t, approve.err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, kinds(NoticeScheduled, NoticeConfirmed, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded), s.fakes.noticeKinds())
}

// errThrottled is a mail provider refusing every send for now: retryable, so
// the notice is retried. The test environment caps retries at 10 attempts,
// so it gives up after the backoff 5 s, 10 s, ... 10 min, 10 min: 30m35s
// of virtual time (a real server retries for the day).
var errThrottled = errors.New("SendGrid 429: too many requests")

const throttledFor = 30*time.Minute + 35*time.Second

// A throttled mailer must hold neither an admin's answer nor the update:
// Approve answers at once, the update starts exactly at the primary start,
// and the workflow still waits for every notice to settle before it closes.
func TestThrottledMailHoldsNeitherAnswerNorUpdate(t *testing.T) {
	s := newScenario(t)
	s.fakes.sendNotice = func(in SendNoticeInput) error {
		switch in.Kind {
		case NoticeConfirmed, NoticeDayOf, NoticeInProgress:
			return errThrottled
		}
		return nil
	}
	approveAt := scenarioStart.Add(days(5))
	var approve *updateOutcome
	s.at(approveAt, func() { approve = s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })

	res, err := s.run()
	require.NoError(t, err)

	require.True(t, approve.completed)
	require.NoError(t, approve.err)
	assert.Equal(t, approveAt, approve.completedAt, "Approve answers once the audit is written, not when the email is delivered")
	assert.Equal(t, StatusSucceeded, res.Status)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, primaryStart, res.Attempts[0].Started, "the update starts at the primary start while the day-of and in-progress notices are retried")
	assert.Equal(t, kinds(NoticeScheduled, NoticeConfirmed, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded),
		slices.Compact(s.fakes.noticeKinds()), "scheduled in lifecycle order (retries compacted)")
	assert.Equal(t, 10, countKind(s.fakes.noticeKinds(), NoticeInProgress), "the in-progress notice was retried")

	final := s.status()
	for _, kind := range []NoticeKind{NoticeConfirmed, NoticeDayOf, NoticeInProgress} {
		assert.Contains(t, noticeAt(t, final, kind).Error, "429", kind)
	}
	assert.Empty(t, noticeAt(t, final, NoticeSucceeded).Error)
	assert.Equal(t, approveAt.Add(throttledFor), noticeAt(t, final, NoticeConfirmed).At, "recorded when it was given up")
	assert.Equal(t, primaryStart.Add(throttledFor), s.env.Now().UTC(), "the workflow closes only once the in-progress notice has settled")
}

// A Reschedule that is booking when the old slot's reminder comes due wins:
// the reminder, computed for the old slot, is dropped, and only the new
// slot's reminders go out.
func TestRescheduleWhileReminderComesDueDropsOldSlotReminder(t *testing.T) {
	s := newScenario(t)
	rescheduleAt := primaryStart.Add(-days(7)).Add(-2 * time.Second)
	newPrimary := primaryStart.Add(days(20))
	newSecondary := newPrimary.Add(days(3))
	bookingCalls := 0
	s.fakes.bookSlots = func(BookSlotsInput) error {
		// Two transient failures keep the booking in flight (backoff 1 s,
		// then 2 s) across the 7-day reminder of the old slot.
		bookingCalls++
		if bookingCalls <= 2 {
			return errors.New("connection reset by peer")
		}
		return nil
	}
	var reschedule *updateOutcome
	s.at(rescheduleAt, func() {
		reschedule = s.update(UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: newPrimary, SecondaryStart: newSecondary})
	})

	res, err := s.run()
	require.NoError(t, err)

	require.NoError(t, reschedule.err)
	assert.Equal(t, rescheduleAt.Add(3*time.Second), reschedule.completedAt, "booked on the third try, after the old reminder's time")
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.Equal(t, newPrimary, res.Attempts[0].Started)
	assert.Equal(t, kinds(NoticeScheduled, reminders(90, 30, 15), NoticeRescheduled, reminders(15, 7), NoticeDayOf, NoticeInProgress, NoticeSucceeded),
		s.fakes.noticeKinds(), "no 7-day reminder for the old slot")
	rescheduled := slices.IndexFunc(s.fakes.notices, func(n SendNoticeInput) bool { return n.Kind == NoticeRescheduled })
	for _, n := range s.fakes.notices[rescheduled:] {
		if n.Kind != NoticeSucceeded && n.Kind != NoticeInProgress {
			assert.Equal(t, newPrimary, n.SlotStart, "%s after the reschedule names the new slot", n.Kind)
		}
	}
}
