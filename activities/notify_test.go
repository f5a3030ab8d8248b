package activities

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/svcupdate/svcupdate/activities/notice"
	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/activities/sendgrid/sendgridtest"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

const notifyTestInstance = noticetest.InstanceID

// notifyTestNow is the notifier's clock in every test.
var notifyTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// notifyFixture is a fresh database holding one instance, a notifier on it
// and an activity environment that runs SendNotice as Temporal would.
type notifyFixture struct {
	t        *testing.T
	pool     *pgxpool.Pool
	notifier *Notifier
	env      *testsuite.TestActivityEnvironment
	metrics  *notifyMetrics
	logs     *notifyLogBuffer
}

func newNotifyFixture(t *testing.T, cfg sendgrid.Config) *notifyFixture {
	t.Helper()
	pool := pgtest.NewPool(t)
	notifyExec(t, pool, `INSERT INTO releases (version, name, ordinal) VALUES ('9.1.0', 'Spring 2026', 1), ('9.2.0', 'Fall 2026', 2)`)
	notifyExec(t, pool, `INSERT INTO tenants (id, name) VALUES ('contoso', 'Contoso')`)
	notifyExec(t, pool, `INSERT INTO instances (id, tenant_id, name, kind, region, time_zone, current_version)
		VALUES ($1, 'contoso', 'Contoso Sales', 'production', 'eu-west', 'Europe/Berlin', '9.1.0')`, notifyTestInstance)

	n, err := NewNotifier(store.New(pool), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.now = func() time.Time { return notifyTestNow }

	metrics := &notifyMetrics{counts: map[string]int64{}}
	logs := &notifyLogBuffer{}
	var suite testsuite.WorkflowTestSuite
	suite.SetMetricsHandler(metrics)
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	env := suite.NewTestActivityEnvironment()
	n.Register(env)
	return &notifyFixture{t: t, pool: pool, notifier: n, env: env, metrics: metrics, logs: logs}
}

func notifyExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (f *notifyFixture) addRecipient(role, email string) {
	f.t.Helper()
	notifyExec(f.t, f.pool, `INSERT INTO recipients (instance_id, role, email) VALUES ($1, $2, $3)`, notifyTestInstance, role, email)
}

// send runs SendNotice through the activity environment.
func (f *notifyFixture) send(in workflows.SendNoticeInput) (workflows.SendNoticeResult, error) {
	f.t.Helper()
	value, err := f.env.ExecuteActivity(workflows.ActivitySendNotice, in)
	if err != nil {
		return workflows.SendNoticeResult{}, err
	}
	var result workflows.SendNoticeResult
	if err := value.Get(&result); err != nil {
		f.t.Fatal(err)
	}
	return result, nil
}

func (f *notifyFixture) mustSend(in workflows.SendNoticeInput) workflows.SendNoticeResult {
	f.t.Helper()
	result, err := f.send(in)
	if err != nil {
		f.t.Fatalf("SendNotice %s: %v", in.Kind, err)
	}
	return result
}

type notifyOutboxRow struct {
	State, MessageID, LastError string
	Attempts                    int
	Recipients                  []string
	SentAt                      *time.Time
	Subject, TextBody           string
}

func (f *notifyFixture) outboxRows() []notifyOutboxRow {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(), `
		SELECT state, coalesce(message_id, ''), coalesce(last_error, ''), attempts, recipients, sent_at, subject, text_body
		FROM notification_outbox ORDER BY id`)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var out []notifyOutboxRow
	for rows.Next() {
		var r notifyOutboxRow
		if err := rows.Scan(&r.State, &r.MessageID, &r.LastError, &r.Attempts, &r.Recipients, &r.SentAt, &r.Subject, &r.TextBody); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// alerts lists in-product alerts as "kind audience".
func (f *notifyFixture) alerts() []string {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT kind || ' ' || audience FROM in_product_alerts ORDER BY id`)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func notifyRequestRecipients(req sendgridtest.Request) []string {
	var out []string
	for _, p := range req.Personalizations {
		out = append(out, p.To[0].Email)
	}
	return out
}

func notifyAppError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %T %v is not an application error", err, err)
	}
	return appErr
}

// notifyMetrics counts counter increments by "name kind outcome".
type notifyMetrics struct {
	mu     sync.Mutex
	counts map[string]int64
	tags   map[string]string
}

func (m *notifyMetrics) WithTags(tags map[string]string) client.MetricsHandler {
	merged := map[string]string{}
	for k, v := range m.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return &notifyMetricsView{root: m, tags: merged}
}
func (m *notifyMetrics) Counter(name string) client.MetricsCounter {
	return (&notifyMetricsView{root: m}).Counter(name)
}
func (m *notifyMetrics) Gauge(string) client.MetricsGauge { return client.MetricsNopHandler.Gauge("") }
func (m *notifyMetrics) Timer(string) client.MetricsTimer { return client.MetricsNopHandler.Timer("") }

func (m *notifyMetrics) count(kind workflows.NoticeKind, outcome string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[metricNoticesSent+" "+string(kind)+" "+outcome]
}

type notifyMetricsView struct {
	root *notifyMetrics
	tags map[string]string
}

func (v *notifyMetricsView) WithTags(tags map[string]string) client.MetricsHandler {
	merged := map[string]string{}
	for k, val := range v.tags {
		merged[k] = val
	}
	for k, val := range tags {
		merged[k] = val
	}
	return &notifyMetricsView{root: v.root, tags: merged}
}
func (v *notifyMetricsView) Counter(name string) client.MetricsCounter {
	key := name + " " + v.tags["kind"] + " " + v.tags["outcome"]
	return notifyCounter(func(d int64) {
		v.root.mu.Lock()
		v.root.counts[key] += d
		v.root.mu.Unlock()
	})
}
func (v *notifyMetricsView) Gauge(string) client.MetricsGauge {
	return client.MetricsNopHandler.Gauge("")
}
func (v *notifyMetricsView) Timer(string) client.MetricsTimer {
	return client.MetricsNopHandler.Timer("")
}

type notifyCounter func(int64)

func (c notifyCounter) Inc(d int64) { c(d) }

// notifyLogBuffer collects log output from concurrent activities.
type notifyLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *notifyLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *notifyLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNotifySendsOnceWhenTheActivityIsRetried(t *testing.T) {
	fake := sendgridtest.NewServer(t, sendgridtest.Response{Status: http.StatusAccepted, Headers: map[string]string{"X-Message-Id": "sg-first"}})
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	f.addRecipient("extra", "ops@partner.example")

	in := noticetest.Input(workflows.NoticeConfirmed)
	first := f.mustSend(in)
	if !first.Emailed || first.Duplicate || first.MessageID != "sg-first" || first.Recipients != 2 {
		t.Errorf("first send: %+v", first)
	}
	second := f.mustSend(in)
	if !second.Duplicate || second.MessageID != "sg-first" {
		t.Errorf("second send: %+v, want a duplicate carrying the first message id", second)
	}
	if got := len(fake.Accepted()); got != 1 {
		t.Fatalf("SendGrid accepted %d requests, want 1", got)
	}
	rows := f.outboxRows()
	if len(rows) != 1 || rows[0].State != store.OutboxSent || rows[0].MessageID != "sg-first" || rows[0].Attempts != 1 ||
		rows[0].SentAt == nil || !rows[0].SentAt.Equal(notifyTestNow) {
		t.Fatalf("outbox rows %+v, want one sent row with the message id and the clock's sent_at", rows)
	}
	if f.metrics.count(in.Kind, outcomeSent) != 1 || f.metrics.count(in.Kind, outcomeDuplicate) != 1 {
		t.Errorf("metrics %v, want one sent and one duplicate", f.metrics.counts)
	}

	// A reschedule re-arms the notice for a new slot: that is a new notice.
	in.SlotStart = in.SlotStart.Add(7 * 24 * time.Hour)
	if third := f.mustSend(in); third.Duplicate || !third.Emailed {
		t.Errorf("send for a new slot: %+v, want a fresh send", third)
	}
	if got := len(fake.Accepted()); got != 2 {
		t.Errorf("SendGrid accepted %d requests, want 2 after the slot moved", got)
	}
}

// Every Reschedule's notice is sent (#7), also a second one for the same
// primary start, which carries the next sequence; a retried activity of
// either still sends once, and an older one that comes after a newer one
// (its retries outlived a second Reschedule) is not sent at all.
func TestNotifySendsEachRescheduleOnce(t *testing.T) {
	fake := sendgridtest.NewServer(t, sendgridtest.Response{Status: http.StatusAccepted, Headers: map[string]string{"X-Message-Id": "sg-1"}})
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")

	first := noticetest.Input(workflows.NoticeRescheduled)
	again := first // back to the same primary start, with another secondary
	again.Sequence = 1
	again.Update.Secondary.Start = again.Update.Secondary.Start.Add(24 * time.Hour)
	for _, step := range []struct {
		name        string
		in          workflows.SendNoticeInput
		wantEmailed bool
		wantAfter   int
	}{
		{"first reschedule", first, true, 1},
		{"its retry", first, false, 1},
		{"second reschedule to the same slot", again, true, 2},
		{"its retry", again, false, 2},
		{"the first one's late retry", first, false, 2},
	} {
		result := f.mustSend(step.in)
		fresh := result.Emailed && !result.Duplicate && !result.Superseded
		if fresh != step.wantEmailed || len(fake.Accepted()) != step.wantAfter {
			t.Errorf("%s (sequence %d): %+v, SendGrid accepted %d; want a fresh send %t, %d accepted",
				step.name, step.in.Sequence, result, len(fake.Accepted()), step.wantEmailed, step.wantAfter)
		}
	}
	if accepted := fake.Accepted(); len(accepted) != 2 || accepted[1].CustomArgs["sequence"] != "1" {
		t.Errorf("SendGrid accepted %+v, want the second with custom_args sequence 1", accepted)
	}
	if f.metrics.count(workflows.NoticeRescheduled, outcomeSent) != 2 || f.metrics.count(workflows.NoticeRescheduled, outcomeDuplicate) != 2 ||
		f.metrics.count(workflows.NoticeRescheduled, outcomeSuperseded) != 1 {
		t.Errorf("metrics %v, want two sent, two duplicates and one superseded", f.metrics.counts)
	}
}

func TestNotifyRetriesAfterServerErrorAndSendsOnce(t *testing.T) {
	fake := sendgridtest.NewServer(t,
		sendgridtest.Response{Status: http.StatusInternalServerError, Body: `{"errors":[{"message":"internal error"}]}`},
		sendgridtest.Response{Status: http.StatusAccepted, Headers: map[string]string{"X-Message-Id": "sg-after-retry"}},
	)
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	in := noticetest.Input(workflows.NoticeScheduled)

	_, err := f.send(in)
	appErr := notifyAppError(t, err)
	if appErr.Type() != sendgrid.ErrTypeUnavailable || appErr.NonRetryable() {
		t.Fatalf("after a 500: %v, want a retryable %s", err, sendgrid.ErrTypeUnavailable)
	}
	rows := f.outboxRows()
	if len(rows) != 1 || rows[0].State != store.OutboxPending || rows[0].Attempts != 1 || !strings.Contains(rows[0].LastError, "HTTP 500") {
		t.Fatalf("outbox after the 500: %+v, want one pending row, 1 attempt, the error", rows)
	}

	if result := f.mustSend(in); !result.Emailed || result.MessageID != "sg-after-retry" {
		t.Errorf("retry: %+v", result)
	}
	if result := f.mustSend(in); !result.Duplicate {
		t.Errorf("third run: %+v, want a duplicate", result)
	}
	if got := len(fake.Accepted()); got != 1 {
		t.Errorf("SendGrid accepted %d requests, want exactly one 202", got)
	}
	if got := fake.Calls(); got != 2 {
		t.Errorf("SendGrid was called %d times, want 2 (the 500 and the 202)", got)
	}
	rows = f.outboxRows()
	if len(rows) != 1 || rows[0].State != store.OutboxSent || rows[0].Attempts != 2 || rows[0].LastError != "" || rows[0].MessageID != "sg-after-retry" {
		t.Errorf("outbox at the end: %+v, want one sent row after 2 attempts", rows)
	}
	if f.metrics.count(in.Kind, outcomeUnavailable) != 1 || f.metrics.count(in.Kind, outcomeSent) != 1 {
		t.Errorf("metrics %v", f.metrics.counts)
	}
}

func TestNotifyThrottledNoticeRetriesAtTheReset(t *testing.T) {
	reset := strconv.FormatInt(notifyTestNow.Add(90*time.Second).Unix(), 10)
	fake := sendgridtest.NewServer(t, sendgridtest.Response{Status: http.StatusTooManyRequests, Headers: map[string]string{"X-RateLimit-Reset": reset}})
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	in := noticetest.Input(workflows.NoticeRescheduled)

	_, err := f.send(in)
	appErr := notifyAppError(t, err)
	if appErr.Type() != sendgrid.ErrTypeThrottled || appErr.NonRetryable() || appErr.NextRetryDelay() != 90*time.Second {
		t.Fatalf("after a 429: type %s, non-retryable %t, next retry %s; want a retryable %s in 90s",
			appErr.Type(), appErr.NonRetryable(), appErr.NextRetryDelay(), sendgrid.ErrTypeThrottled)
	}
	if rows := f.outboxRows(); len(rows) != 1 || rows[0].State != store.OutboxPending || rows[0].Attempts != 1 {
		t.Errorf("outbox: %+v, want the row pending for the retry", rows)
	}
	if f.metrics.count(in.Kind, outcomeThrottled) != 1 {
		t.Errorf("metrics %v, want one throttled", f.metrics.counts)
	}
}

func TestNotifyRecordsRejection(t *testing.T) {
	fake := sendgridtest.NewServer(t, sendgridtest.Response{Status: http.StatusBadRequest,
		Body: `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from"}]}`})
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	in := noticetest.Input(workflows.NoticeCancelled)

	_, err := f.send(in)
	appErr := notifyAppError(t, err)
	if appErr.Type() != workflows.ErrTypeMailRejected || !appErr.NonRetryable() {
		t.Fatalf("after a 400: %v, want a non-retryable %s", err, workflows.ErrTypeMailRejected)
	}
	rows := f.outboxRows()
	if len(rows) != 1 || rows[0].State != store.OutboxRejected || !strings.Contains(rows[0].LastError, "from: The from address does not match a verified Sender Identity.") {
		t.Fatalf("outbox: %+v, want a rejected row with SendGrid's text", rows)
	}
	if f.metrics.count(in.Kind, outcomeRejected) != 1 {
		t.Errorf("metrics %v, want one rejected", f.metrics.counts)
	}

	// An operator's deliberate re-run after fixing the sender goes out.
	if result := f.mustSend(in); !result.Emailed || result.Duplicate {
		t.Errorf("re-run after the rejection: %+v, want it sent", result)
	}
	if rows := f.outboxRows(); len(rows) != 1 || rows[0].State != store.OutboxSent || rows[0].LastError != "" || rows[0].Attempts != 2 {
		t.Errorf("outbox after the re-run: %+v, want the same row sent", rows)
	}
}

// A refused API key (rotated, revoked) is the operator's to fix, not the
// recipients' fault: the notice stays pending and is retried, the failure
// is logged at ERROR without the key, and it is counted as unauthorized.
func TestNotifyUnauthorizedKeyKeepsTheNoticePending(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	cfg := fake.Config()
	cfg.APIKey = "SG.rotated-away-never-logged"
	f := newNotifyFixture(t, cfg)
	f.addRecipient(store.RoleAdmin, "ada@contoso.example")
	in := noticetest.Input(workflows.NoticeScheduled)

	_, err := f.send(in)
	appErr := notifyAppError(t, err)
	if appErr.Type() != sendgrid.ErrTypeUnauthorized || appErr.NonRetryable() {
		t.Fatalf("after a 401: %v (non-retryable %t), want a retryable %s", err, appErr.NonRetryable(), sendgrid.ErrTypeUnauthorized)
	}
	rows := f.outboxRows()
	if len(rows) != 1 || rows[0].State != store.OutboxPending || rows[0].Attempts != 1 || !strings.Contains(rows[0].LastError, "HTTP 401") {
		t.Fatalf("outbox: %+v, want one pending row, 1 attempt, the 401", rows)
	}
	if f.metrics.count(in.Kind, outcomeUnauthorized) != 1 || f.metrics.count(in.Kind, outcomeRejected) != 0 {
		t.Errorf("metrics %v, want one unauthorized and no rejection", f.metrics.counts)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"level":"ERROR","msg":"notice not sent"`) || !strings.Contains(logs, `"outcome":"unauthorized"`) {
		t.Errorf("the refused key is not logged at ERROR with its outcome:\n%s", logs)
	}
	if strings.Contains(logs, cfg.APIKey) || strings.Contains(rows[0].LastError, cfg.APIKey) {
		t.Errorf("the API key is in the log or the outbox:\n%s\n%s", logs, rows[0].LastError)
	}

	// Once the worker runs with a valid key, the retry sends the notice.
	mailer, err := sendgrid.NewClient(fake.Config(), f.notifier.now)
	if err != nil {
		t.Fatal(err)
	}
	f.notifier.mailer = mailer
	if result := f.mustSend(in); !result.Emailed || result.Duplicate {
		t.Errorf("retry with a valid key: %+v, want it sent", result)
	}
	if rows := f.outboxRows(); len(rows) != 1 || rows[0].State != store.OutboxSent || rows[0].Attempts != 2 {
		t.Errorf("outbox after the retry: %+v, want the same row sent after 2 attempts", rows)
	}
}

// The communications table's audiences read the right recipients.role values.
func TestNotifyAudiencesReadTheRightRoles(t *testing.T) {
	for kind, want := range map[workflows.NoticeKind]string{
		workflows.NoticeScheduled:  "admin,extra",
		workflows.NoticeInProgress: "admin,user",
	} {
		spec, err := notice.For(kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(audienceRoles(spec.Audience), ","); got != want {
			t.Errorf("%s reads roles %s, want %s", spec.Audience.Name, got, want)
		}
	}
}

// Concurrent executions of one notice (an attempt that timed out but still
// runs beside its retry) send once, for a new row and for a pending one.
func TestNotifyConcurrentExecutionsSendOnce(t *testing.T) {
	t.Run("new row", func(t *testing.T) { notifyConcurrentSendOnce(t, false) })
	t.Run("pending row after a 500", func(t *testing.T) { notifyConcurrentSendOnce(t, true) })
}

func notifyConcurrentSendOnce(t *testing.T, pendingFirst bool) {
	var script []sendgridtest.Response
	if pendingFirst {
		script = append(script, sendgridtest.Response{Status: http.StatusServiceUnavailable})
	}
	fake := sendgridtest.NewServer(t, script...)
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	in := noticetest.Input(workflows.NoticeScheduled)
	if pendingFirst {
		if _, err := f.notifier.SendNotice(context.Background(), in); err == nil {
			t.Fatal("the scripted 503 did not fail the first execution")
		}
	}

	const executions = 8
	results := make([]workflows.SendNoticeResult, executions)
	errs := make([]error, executions)
	var wg sync.WaitGroup
	for i := range executions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.notifier.SendNotice(context.Background(), in)
		}()
	}
	wg.Wait()
	duplicates := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("execution %d: %v", i, err)
		}
		if results[i].Duplicate {
			duplicates++
		}
	}
	if got := len(fake.Accepted()); got != 1 || duplicates != executions-1 {
		t.Errorf("%d sends and %d duplicates from %d concurrent executions, want 1 and %d", got, duplicates, executions, executions-1)
	}
}

func TestNotifyOutboxModeStoresAndSendsNothing(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	cfg := fake.Config()
	cfg.APIKey = "" // outbox mode, though a SendGrid host is reachable
	f := newNotifyFixture(t, cfg)
	f.addRecipient("admin", "ada@contoso.example")
	f.addRecipient("extra", "ops@partner.example")
	in := noticetest.Input(workflows.NoticeScheduled)

	result := f.mustSend(in)
	if result.Emailed || result.Duplicate || result.Recipients != 2 || !result.Alerted {
		t.Errorf("outbox mode: %+v, want stored (not emailed) for 2 recipients, with the alert", result)
	}
	if again := f.mustSend(in); !again.Duplicate || again.Emailed {
		t.Errorf("second run in outbox mode: %+v, want a duplicate", again)
	}
	if fake.Calls() != 0 {
		t.Fatalf("SendGrid was called %d times in outbox mode", fake.Calls())
	}
	rows := f.outboxRows()
	if len(rows) != 1 || rows[0].State != store.OutboxStored || rows[0].Attempts != 0 || rows[0].SentAt != nil ||
		!strings.Contains(rows[0].Subject, "Contoso Sales") || !strings.Contains(rows[0].TextBody, "9.1.0 -> 9.2.0") {
		t.Fatalf("outbox: %+v, want one stored row with the rendered mail", rows)
	}
	if got := strings.Join(rows[0].Recipients, ","); got != "ada@contoso.example,ops@partner.example" {
		t.Errorf("stored recipients %s", got)
	}
	logs := f.logs.String()
	for _, want := range []string{`"kind":"scheduled"`, `"workflowId":"` + in.WorkflowID + `"`, `"recipients":2`, `"subject":"` + rows[0].Subject + `"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if f.metrics.count(in.Kind, outcomeStored) != 1 {
		t.Errorf("metrics %v, want one stored", f.metrics.counts)
	}
}

func TestNotifyWithoutRecipientSendsNothingAndSaysSo(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	f := newNotifyFixture(t, fake.Config())
	// A user hears about in-progress and succeeded, not about scheduling;
	// an address that is not one is dropped.
	f.addRecipient("user", "user@contoso.example")
	f.addRecipient("admin", "not-an-address")
	in := noticetest.Input(workflows.NoticeScheduled)

	_, err := f.send(in)
	appErr := notifyAppError(t, err)
	if appErr.Type() != workflows.ErrTypeNoRecipients || !appErr.NonRetryable() || !strings.Contains(err.Error(), notifyTestInstance) {
		t.Fatalf("err = %v, want a non-retryable %s naming %s", err, workflows.ErrTypeNoRecipients, notifyTestInstance)
	}
	if fake.Calls() != 0 || len(f.outboxRows()) != 0 || len(f.alerts()) != 0 {
		t.Errorf("%d requests, %d outbox rows, %d alerts; want none", fake.Calls(), len(f.outboxRows()), len(f.alerts()))
	}
	if !strings.Contains(f.logs.String(), "not-an-address") {
		t.Errorf("the dropped address is not logged:\n%s", f.logs.String())
	}
	if f.metrics.count(in.Kind, outcomeNoRecipients) != 1 {
		t.Errorf("metrics %v, want one no-recipients", f.metrics.counts)
	}
}

func TestNotifyReadsRecipientsAtSendTime(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	f.mustSend(noticetest.Input(workflows.ReminderKind(30 * 24 * time.Hour)))

	f.addRecipient("extra", "new-colleague@contoso.example")
	f.mustSend(noticetest.Input(workflows.ReminderKind(15 * 24 * time.Hour)))

	reqs := fake.Accepted()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if got := strings.Join(notifyRequestRecipients(reqs[0]), ","); got != "ada@contoso.example" {
		t.Errorf("30-day reminder went to %s", got)
	}
	if got := strings.Join(notifyRequestRecipients(reqs[1]), ","); got != "ada@contoso.example,new-colleague@contoso.example" {
		t.Errorf("15-day reminder went to %s, want the recipient added in between too", got)
	}
	if reqs[1].CustomArgs["notice"] != "reminder-15d" || reqs[1].CustomArgs["instance_id"] != notifyTestInstance ||
		reqs[1].CustomArgs["target_version"] != "9.2.0" || reqs[1].CustomArgs["workflow_id"] != workflows.WorkflowID(notifyTestInstance, "9.2.0") {
		t.Errorf("custom_args %v", reqs[1].CustomArgs)
	}
}

func TestNotifyDeduplicatesRecipientsCaseInsensitively(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "Ada@Contoso.example")
	f.addRecipient("extra", "ada@contoso.EXAMPLE")
	f.addRecipient("extra", "grace@contoso.example")
	f.addRecipient("user", "ADA@contoso.example") // not in this audience anyway

	result := f.mustSend(noticetest.Input(workflows.NoticeDayOf))
	reqs := fake.Accepted()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if got := strings.Join(notifyRequestRecipients(reqs[0]), ","); got != "Ada@Contoso.example,grace@contoso.example" || result.Recipients != 2 {
		t.Errorf("recipients %s (%d), want Ada@Contoso.example,grace@contoso.example", got, result.Recipients)
	}
}

func TestNotifyAudiences(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	f.addRecipient("extra", "ops@partner.example")
	f.addRecipient("user", "sam@contoso.example")

	f.mustSend(noticetest.Input(workflows.NoticeSucceeded))
	f.mustSend(noticetest.Input(workflows.NoticeFailed))
	reqs := fake.Accepted()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	got := notifyRequestRecipients(reqs[0])
	sort.Strings(got)
	if strings.Join(got, ",") != "ada@contoso.example,sam@contoso.example" {
		t.Errorf("succeeded went to %v, want admins and users", got)
	}
	got = notifyRequestRecipients(reqs[1])
	sort.Strings(got)
	if strings.Join(got, ",") != "ada@contoso.example,ops@partner.example" {
		t.Errorf("failed went to %v, want admins and extra recipients", got)
	}
}

func TestNotifyInProductAlerts(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	f := newNotifyFixture(t, fake.Config())
	f.addRecipient("admin", "ada@contoso.example")
	f.addRecipient("user", "sam@contoso.example")

	sevenDays := noticetest.Input(workflows.ReminderKind(7 * 24 * time.Hour)) // approved
	sevenDaysUnapproved := sevenDays
	sevenDaysUnapproved.Update.ApprovedBy, sevenDaysUnapproved.Update.Status = "", workflows.StatusScheduled
	sevenDaysUnapproved.SlotStart = sevenDays.SlotStart.Add(24 * time.Hour) // another slot, so another key

	cases := []struct {
		in        workflows.SendNoticeInput
		wantAlert bool
		wantEmail bool
	}{
		{noticetest.Input(workflows.NoticeScheduled), true, true},
		{noticetest.Input(workflows.ReminderKind(30 * 24 * time.Hour)), false, true},
		{sevenDaysUnapproved, false, true},
		{sevenDays, true, true},
		{noticetest.Input(workflows.NoticeDayOf), false, true},
		{noticetest.Input(workflows.NoticeConfirmed), false, true},
		{noticetest.Input(workflows.NoticeInProgress), true, false},
		{noticetest.Input(workflows.NoticeSucceeded), false, true},
	}
	for _, tc := range cases {
		result := f.mustSend(tc.in)
		if result.Alerted != tc.wantAlert || result.Emailed != tc.wantEmail {
			t.Errorf("%s: alerted %t, emailed %t; want %t, %t", tc.in.Kind, result.Alerted, result.Emailed, tc.wantAlert, tc.wantEmail)
		}
	}
	// Re-running an alerting notice adds no second alert.
	f.mustSend(noticetest.Input(workflows.NoticeScheduled))
	f.mustSend(noticetest.Input(workflows.NoticeInProgress))

	want := "scheduled admins|reminder-7d admins|in-progress admins+users"
	if got := strings.Join(f.alerts(), "|"); got != want {
		t.Errorf("alerts %s, want %s", got, want)
	}
	if got := len(f.outboxRows()); got != 7 {
		t.Errorf("%d outbox rows, want 7 (every case but in-progress)", got)
	}
	if f.metrics.count(workflows.NoticeInProgress, outcomeAlerted) != 2 {
		t.Errorf("metrics %v, want in-progress alerted twice", f.metrics.counts)
	}
	var message string
	if err := f.pool.QueryRow(context.Background(), `SELECT message FROM in_product_alerts WHERE kind = 'in-progress'`).Scan(&message); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(message, "Sun 15 Mar 2026 10:00 CET") {
		t.Errorf("in-progress alert %q lacks the window end in the instance's zone", message)
	}
}

func TestNotifyRejectsInvalidInput(t *testing.T) {
	f := newNotifyFixture(t, sendgrid.Config{})
	f.addRecipient("admin", "ada@contoso.example")

	unknown := noticetest.Input(workflows.NoticeScheduled)
	unknown.Kind = "postponed"
	wrongOffset := noticetest.Input(workflows.ReminderKind(30 * 24 * time.Hour))
	wrongOffset.Offset = 7 * 24 * time.Hour
	noSlot := noticetest.Input(workflows.NoticeScheduled)
	noSlot.SlotStart = time.Time{}
	negativeSequence := noticetest.Input(workflows.NoticeRescheduled)
	negativeSequence.Sequence = -1
	otherInstance := noticetest.Input(workflows.NoticeScheduled)
	otherInstance.Update.InstanceID = "inst-nowhere"

	for _, tc := range []struct {
		name     string
		in       workflows.SendNoticeInput
		wantType string
		wantText string
	}{
		{"unknown kind", unknown, workflows.ErrTypeInvalidInput, `"postponed" is unknown`},
		{"reminder kind and offset disagree", wrongOffset, workflows.ErrTypeInvalidInput, `names "reminder-7d"`},
		{"no slot start", noSlot, workflows.ErrTypeInvalidInput, "slotStart"},
		{"negative sequence", negativeSequence, workflows.ErrTypeInvalidInput, "has sequence -1; give zero or more"},
		{"instance not loaded", otherInstance, workflows.ErrTypeNotFound, `"inst-nowhere"`},
	} {
		_, err := f.send(tc.in)
		appErr := notifyAppError(t, err)
		if appErr.Type() != tc.wantType || !appErr.NonRetryable() || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%s: %v, want a non-retryable %s containing %q", tc.name, err, tc.wantType, tc.wantText)
		}
	}
	if len(f.outboxRows()) != 0 {
		t.Errorf("invalid notices left outbox rows")
	}
}

func TestNotifyDedupeRecipients(t *testing.T) {
	valid, invalid := dedupeRecipients([]string{
		"Ada@Contoso.example", " ada@contoso.example ", "grace@contoso.example", "",
		"Bob <bob@contoso.example>", "no-at-sign", "grace@CONTOSO.example",
	})
	if got := strings.Join(valid, ","); got != "Ada@Contoso.example,grace@contoso.example" {
		t.Errorf("valid %s", got)
	}
	if got := strings.Join(invalid, ","); got != ",Bob <bob@contoso.example>,no-at-sign" {
		t.Errorf("invalid %q", got)
	}
}

func TestNewNotifierChecksItsDependencies(t *testing.T) {
	if _, err := NewNotifier(nil, sendgrid.Config{}); err == nil {
		t.Error("nil store accepted")
	}
	st := store.New(pgtest.NewPool(t))
	if _, err := NewNotifier(st, sendgrid.Config{APIKey: "k", From: "nobody"}); err == nil || !strings.Contains(err.Error(), "MAIL_FROM") {
		t.Errorf("bad sender: err = %v", err)
	}
	n, err := NewNotifier(st, sendgrid.Config{})
	if err != nil || n.mailer != nil {
		t.Errorf("no API key: %v, mailer %v; want outbox mode", err, n.mailer)
	}
}
