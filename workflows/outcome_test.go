package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// A decided outcome stays decided: a cancellation that arrives once Failed
// or NotApproved is decided, while its audit row or its notice is still
// being written, neither turns it into Cancelled nor cuts the notice off.

// postgresDown fails once with a retry a minute later, as a store activity
// does while Postgres restarts.
func postgresDown() error {
	return temporal.NewApplicationErrorWithOptions("connection refused", "", temporal.ApplicationErrorOptions{NextRetryDelay: time.Minute})
}

func TestCancellationWhileTheOutcomeIsRecordedKeepsIt(t *testing.T) {
	failBoth := func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}
	tests := []struct {
		name      string
		mandatory bool
		decidedAt time.Time
		action    string
		want      Status
		notices   []NoticeKind
	}{
		{name: "failed", mandatory: true, decidedAt: secondaryStart, action: actionFailed, want: StatusFailed,
			notices: kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeDayOf, NoticeInProgress, NoticeFallback, NoticeInProgress, NoticeFailed)},
		{name: "not approved", decidedAt: release92.PeriodEnd, action: actionExpired, want: StatusNotApproved,
			notices: kinds(NoticeScheduled, reminders(90, 30, 15, 7), NoticeNotApproved)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			s.in.Mandatory = tt.mandatory
			s.fakes.applyUpdate = failBoth
			down := true
			s.fakes.recordTransition = func(in RecordTransitionInput) error {
				if in.Action == tt.action && down {
					down = false
					return postgresDown()
				}
				return nil
			}
			s.at(tt.decidedAt.Add(30*time.Second), s.env.CancelWorkflow)

			res, err := s.run()
			require.NoError(t, err, "the run ends as decided, not as cancelled")
			assert.Equal(t, tt.want, res.Status)
			assert.Equal(t, tt.notices, s.fakes.noticeKinds())
			// A failed update then waits for a new attempt: the
			// cancellation withdraws that offer, with a row of its own.
			assert.Contains(t, s.fakes.actions(), tt.action)
			assert.Equal(t, tt.want, s.fakes.lastTransition().Snapshot.Status)
			assert.Equal(t, map[string]int64{string(tt.want): 1}, s.completions())
		})
	}
}

// The failed notice, throttled by the mail provider when the operator
// cancels the still-open workflow, is still delivered.
func TestCancellationDoesNotCutOffTheFailedNotice(t *testing.T) {
	s := newScenario(t)
	s.in.Mandatory = true
	s.fakes.applyUpdate = func(context.Context, ApplyUpdateInput) error {
		return temporal.NewNonRetryableApplicationError("disk full", ErrTypeUpdateFailed, nil)
	}
	throttled := 0
	s.fakes.sendNotice = func(in SendNoticeInput) error {
		if in.Kind == NoticeFailed && throttled < 3 { // retried after 5 s, 10 s, 20 s
			throttled++
			return errThrottled
		}
		return nil
	}
	s.at(secondaryStart.Add(20*time.Second), s.env.CancelWorkflow)

	res, err := s.run()
	require.NoError(t, err)
	assert.Equal(t, StatusFailed, res.Status)
	failed := noticeAt(t, s.status(), NoticeFailed)
	assert.Empty(t, failed.Error, "the failed notice was delivered, not abandoned")
	assert.Equal(t, secondaryStart.Add(35*time.Second), failed.At)
	assert.Equal(t, 4, countKind(s.fakes.noticeKinds(), NoticeFailed), "three throttled tries, then sent")
	assert.NotContains(t, s.fakes.noticeKinds(), NoticeCancelled)
}
