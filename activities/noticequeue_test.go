package activities

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/activities/sendgrid/sendgridtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// dispatchFixture is a notifier fixture with a dispatcher on its clock,
// which a test moves.
type dispatchFixture struct {
	*notifyFixture
	dispatcher *Dispatcher
	store      *store.Store
	clock      time.Time
	logs       *bytes.Buffer
}

func newDispatchFixture(t *testing.T, server *sendgridtest.Server) *dispatchFixture {
	f := &dispatchFixture{notifyFixture: newNotifyFixture(t, server.Config()), clock: notifyTestNow, logs: &bytes.Buffer{}}
	f.addRecipient(store.RoleAdmin, "ada@contoso.example")
	f.notifier.now = func() time.Time { return f.clock }
	f.store = store.New(f.pool)
	d, err := NewDispatcher(f.store, f.notifier, slog.New(slog.NewTextHandler(f.logs, nil)), f.metrics)
	if err != nil {
		t.Fatal(err)
	}
	d.now = func() time.Time { return f.clock }
	f.dispatcher = d
	return f
}

// commit queues the scheduled notice now and the 7-day reminder in a day.
func (f *dispatchFixture) commit(key string) {
	f.t.Helper()
	scheduled := noticetest.Input(workflows.NoticeScheduled)
	reminder := noticetest.Input(workflows.ReminderKind(7 * 24 * time.Hour))
	_, err := f.store.CommitTransition(context.Background(), key, workflows.CommitTransitionInput{
		At: f.clock,
		Transition: workflows.RecordTransitionInput{Actor: workflows.ActorSystem, Channel: workflows.ChannelWorkflow,
			Action: "scheduled", From: workflows.StatusScheduled, Snapshot: scheduled.Update},
		Notices:   []workflows.SendNoticeInput{scheduled},
		Reminders: []workflows.QueuedReminder{{DueAt: f.clock.Add(24 * time.Hour), Notice: reminder}},
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *dispatchFixture) dispatch() int {
	f.t.Helper()
	n, err := f.dispatcher.DispatchDue(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *dispatchFixture) states() []string {
	f.t.Helper()
	deliveries, err := f.store.NoticeDeliveries(context.Background(), workflows.WorkflowID(notifyTestInstance, "9.2.0"))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, d := range deliveries {
		out = append(out, d.Kind+"="+d.State+"/"+strconv.Itoa(d.Attempts))
	}
	return out
}

// The notice is mailed when due and the reminder when its day comes,
// each through the outbox and the real sendgrid-go client.
func TestDispatcherSendsWhatIsDue(t *testing.T) {
	server := sendgridtest.NewServer(t)
	f := newDispatchFixture(t, server)
	f.commit("run/1")

	if n := f.dispatch(); n != 1 {
		t.Fatalf("claimed %d, want the scheduled notice only", n)
	}
	if got, want := f.states(), []string{"scheduled=sent/1", "reminder-7d=queued/0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
	f.clock = f.clock.Add(24 * time.Hour)
	if n := f.dispatch(); n != 1 {
		t.Fatalf("claimed %d, want the reminder", n)
	}
	accepted := server.Accepted()
	if len(accepted) != 2 || accepted[0].CustomArgs["notice"] != "scheduled" || accepted[1].CustomArgs["notice"] != "reminder-7d" {
		t.Fatalf("SendGrid accepted %d requests: %+v", len(accepted), accepted)
	}
	if got := f.outboxRows(); len(got) != 2 || got[0].State != store.OutboxSent || got[1].State != store.OutboxSent {
		t.Fatalf("outbox %+v, want both sent", got)
	}
	if n := f.dispatch(); n != 0 {
		t.Fatalf("claimed %d after everything was sent", n)
	}
	if got := f.metrics.count(workflows.NoticeScheduled, outcomeSent) + f.metrics.count(workflows.ReminderKind(7*24*time.Hour), outcomeSent); got != 2 {
		t.Errorf("svcupdate_notices_sent counted %d sent, want 2", got)
	}
	if !bytes.Contains(f.logs.Bytes(), []byte("notice sent")) {
		t.Errorf("the notifier did not log through the dispatcher's logger:\n%s", f.logs)
	}
}

// A 429 puts the notice back until X-RateLimit-Reset and holds the
// dispatcher's next request until then; an answer with no request
// remaining holds it too, without a 429 being spent.
func TestDispatcherKeepsToTheRateLimit(t *testing.T) {
	reset := strconv.FormatInt(notifyTestNow.Add(30*time.Second).Unix(), 10)
	server := sendgridtest.NewServer(t,
		sendgridtest.Response{Status: http.StatusTooManyRequests, Body: `{"errors":[{"message":"too many requests"}]}`,
			Headers: map[string]string{"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "0"}},
	)
	f := newDispatchFixture(t, server)
	f.commit("run/1")

	f.dispatch()
	if got, want := f.states(), []string{"scheduled=queued/1", "reminder-7d=queued/0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the 429: %v, want %v", got, want)
	}
	if until := f.notifier.mailPausedUntil(); !until.Equal(notifyTestNow.Add(30 * time.Second)) {
		t.Fatalf("paused until %s, want X-RateLimit-Reset", until)
	}
	if n := f.dispatch(); n != 0 {
		t.Fatalf("claimed %d before X-RateLimit-Reset", n)
	}
	f.clock = f.clock.Add(30 * time.Second)
	if n := f.dispatch(); n != 1 {
		t.Fatalf("claimed %d at the reset, want the notice again", n)
	}
	if got, want := f.states(), []string{"scheduled=sent/2", "reminder-7d=queued/0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the reset: %v, want %v", got, want)
	}
	if server.Calls() != 2 {
		t.Fatalf("%d requests, want the 429 and the send", server.Calls())
	}
}

// A rejected notice fails for good; one that keeps failing is retried
// with a growing backoff and given up a day after it was due.
func TestDispatcherNextStep(t *testing.T) {
	due := notifyTestNow
	claimed := func(attempts int) store.ClaimedNotice { return store.ClaimedNotice{Attempts: attempts, DueAt: due} }
	rejected := temporal.NewNonRetryableApplicationError("SendGrid rejected the notice (HTTP 400): bad address", workflows.ErrTypeMailRejected, nil)
	unavailable := temporal.NewApplicationError("SendGrid is unavailable (HTTP 503)", "MailUnavailable")
	for _, tc := range []struct {
		name      string
		err       error
		attempts  int
		now       time.Time
		state     string
		retryAt   time.Time
		reasonHas string
	}{
		{"sent", nil, 1, due, store.NoticeSent, time.Time{}, ""},
		{"rejected", rejected, 1, due, store.NoticeFailed, time.Time{}, "bad address"},
		{"first retry", unavailable, 1, due, store.NoticeQueued, due.Add(5 * time.Second), "unavailable"},
		{"fourth retry", unavailable, 4, due, store.NoticeQueued, due.Add(40 * time.Second), "unavailable"},
		{"backoff capped", unavailable, 30, due, store.NoticeQueued, due.Add(10 * time.Minute), "unavailable"},
		{"given up", unavailable, 200, due.Add(24 * time.Hour), store.NoticeFailed, time.Time{}, "given up 24h0m0s after it was due"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, retryAt, why := nextStep(tc.err, claimed(tc.attempts), tc.now)
			if state != tc.state || !retryAt.Equal(tc.retryAt) || !bytes.Contains([]byte(why), []byte(tc.reasonHas)) {
				t.Fatalf("nextStep = %s, %s, %q; want %s, %s, containing %q", state, retryAt, why, tc.state, tc.retryAt, tc.reasonHas)
			}
		})
	}
}

// benchDispatchLoops is NOTICE_DISPATCH_LOOPS's default.
const benchDispatchLoops = 16

// Several dispatch loops share one queue: every notice is mailed once,
// through the real sendgrid-go client and the SendGrid test server. The
// rate it logs is this machine's figure for a worker's dispatcher.
func TestDispatcherLoopsShareTheQueue(t *testing.T) {
	server := sendgridtest.NewServer(t)
	f := newDispatchFixture(t, server)
	f.dispatcher.now = time.Now
	f.notifier.now = time.Now
	const notices = 400
	scheduled := noticetest.Input(workflows.NoticeScheduled)
	in := workflows.CommitTransitionInput{
		At: time.Now(),
		Transition: workflows.RecordTransitionInput{Actor: workflows.ActorSystem, Channel: workflows.ChannelWorkflow,
			Action: "scheduled", From: workflows.StatusScheduled, Snapshot: scheduled.Update},
	}
	for i := range notices {
		n := scheduled
		n.SlotStart = scheduled.SlotStart.Add(time.Duration(i) * time.Minute)
		in.Notices = append(in.Notices, n)
	}
	if _, err := f.store.CommitTransition(context.Background(), "run/1", in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		f.dispatcher.Run(ctx, benchDispatchLoops)
	}()
	// Done is every notice recorded as sent, which comes after SendGrid's
	// answer: stopping the loops at that answer could stop them before
	// the record.
	testkit.WaitFor(t, time.Minute, "every notice sent and recorded", func() (bool, string) {
		sentRows := 0
		for _, row := range f.outboxRows() {
			if row.State == store.OutboxSent {
				sentRows++
			}
		}
		return sentRows >= notices, fmt.Sprintf("%d of %d outbox rows sent", sentRows, notices)
	})
	elapsed := time.Since(began)
	cancel()
	<-done
	t.Logf("%d notices through %d dispatch loops in %s: %.0f notices/s", notices, benchDispatchLoops, elapsed.Round(time.Millisecond), notices/elapsed.Seconds())
	if got := len(server.Accepted()); got != notices {
		t.Fatalf("SendGrid accepted %d requests for %d notices", got, notices)
	}
	if got := f.states(); len(got) != notices || slices.ContainsFunc(got, func(s string) bool { return s != "scheduled=sent/1" }) {
		t.Fatalf("queue rows %v, want %d sent once", got, notices)
	}
}

// A worker told to stop the moment SendGrid accepted a notice still
// records it as sent, in the outbox and in the queue: otherwise the
// notice would be mailed again once its lease ran out.
func TestDispatcherRecordsASendWhenStoppedAtOnce(t *testing.T) {
	server := sendgridtest.NewServer(t)
	f := newDispatchFixture(t, server)
	f.commit("run/1")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// The notifier reads the clock right after SendGrid's answer.
	f.notifier.now = func() time.Time {
		if len(server.Accepted()) > 0 {
			stop()
		}
		return f.clock
	}
	if _, err := f.dispatcher.DispatchDue(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == nil {
		t.Fatal("the worker was not stopped at the send; the test proves nothing")
	}
	if got, want := f.states(), []string{"scheduled=sent/1", "reminder-7d=queued/0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
	if got := f.outboxRows(); len(got) != 1 || got[0].State != store.OutboxSent || got[0].MessageID == "" {
		t.Fatalf("outbox %+v, want the notice sent with its message ID", got)
	}
}
