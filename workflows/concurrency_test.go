package workflows

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// Cancellation and races: an Update, a reminder, a notice or an operator's
// cancellation arriving while another step is under way.

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
		}, signed(t, scenarioWorkflowID, UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: primaryStart.Add(days(3)), SecondaryStart: primaryStart.Add(days(5))}, primaryStart))
	}()

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, res.Status)
	assert.EqualError(t, <-refused, "the update started at 2026-04-15T01:00:00Z; it can no longer be rescheduled")
	assert.Empty(t, s.fakes.bookings)
}

func TestCancellationInEveryPhase(t *testing.T) {
	failPrimary := primaryFails("failed")
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
		// The executor, the in-progress notice and the started row run
		// concurrently in real time; cancel once the executor has begun and
		// the notice and the row are written (one still pending at the
		// cancellation is abandoned).
		go func() {
			<-started
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if slices.Contains(s.fakes.noticeKinds(), NoticeInProgress) && slices.Contains(s.fakes.actions(), actionStarted) {
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
