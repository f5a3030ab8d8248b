package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
)

// outboxRow is what a test reads back of a notification_outbox row.
type outboxRow struct {
	State, MessageID, LastError string
	Attempts                    int
	Recipients                  []string
	SentAt                      *time.Time
	Subject                     string
}

func outboxRows(t *testing.T, db store.DBTX) []outboxRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT state, coalesce(message_id, ''), coalesce(last_error, ''), attempts, recipients, sent_at, subject
		FROM notification_outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func notice(kind string) store.OutboxNotice {
	return store.OutboxNotice{
		WorkflowID: "service-update:inst-000:9.2.0", Kind: kind, SlotStart: storetest.SlotStarts[0], InstanceID: "inst-000",
		Recipients: []string{"admin0@acme.example"}, Subject: "Update scheduled", HTML: "<p>scheduled</p>", Text: "scheduled",
	}
}

// A notice's row is written once; each attempt records its outcome and
// what it sent, and a later claim finds the state to skip a second send.
func TestClaimOutboxRecordsEachAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))

	claim, err := s.ClaimOutbox(ctx, notice("scheduled"))
	if err != nil {
		t.Fatal(err)
	}
	if claim.State != store.OutboxPending || claim.MessageID != "" {
		t.Fatalf("new claim: state %q, message %q; want pending, none", claim.State, claim.MessageID)
	}
	if err := claim.Finish(ctx, store.OutboxOutcome{State: store.OutboxPending, Attempted: 1, LastError: "HTTP 500"}); err != nil {
		t.Fatal(err)
	}
	claim.Close(ctx) // after Finish: nothing to undo

	retry := notice("scheduled")
	retry.Recipients = append(retry.Recipients, "new@acme.example") // recipients are read per send
	claim, err = s.ClaimOutbox(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	if claim.State != store.OutboxPending {
		t.Fatalf("claim after a failure: state %q, want pending", claim.State)
	}
	sentAt := storetest.SlotStarts[0].Add(-time.Hour)
	if err := claim.Finish(ctx, store.OutboxOutcome{State: store.OutboxSent, Attempted: 1, MessageID: "sg-1", SentAt: &sentAt}); err != nil {
		t.Fatal(err)
	}

	claim, err = s.ClaimOutbox(ctx, notice("scheduled"))
	if err != nil {
		t.Fatal(err)
	}
	if claim.State != store.OutboxSent || claim.MessageID != "sg-1" {
		t.Fatalf("claim after the send: state %q, message %q; want sent, sg-1", claim.State, claim.MessageID)
	}
	claim.Close(ctx)

	rows := outboxRows(t, tx)
	if len(rows) != 1 || rows[0].SentAt == nil || !rows[0].SentAt.Equal(sentAt) {
		t.Fatalf("outbox = %+v, want one row sent at %s", rows, sentAt)
	}
	rows[0].SentAt = nil
	want := outboxRow{State: store.OutboxSent, MessageID: "sg-1", Attempts: 2,
		Recipients: []string{"admin0@acme.example", "new@acme.example"}, Subject: "Update scheduled"}
	if !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("outbox row = %+v\nwant %+v", rows[0], want)
	}
}

// Every Reschedule's notice has its own sequence (#7). For one key
// (workflow, kind, slot), a claim with a new, higher sequence is a new
// notice and is sent; the same sequence again is the same notice (a
// retried activity) and is not; a lower one was overtaken by a later
// Reschedule to the same slot and is not sent either.
func TestClaimOutboxTellsSequencesApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))
	rescheduled := func(sequence int) store.OutboxNotice {
		n := notice("rescheduled")
		n.Sequence, n.Subject = sequence, fmt.Sprintf("Update rescheduled (%d)", sequence)
		return n
	}
	sends := 0
	claim := func(n store.OutboxNotice) *store.OutboxClaim {
		t.Helper()
		c, err := s.ClaimOutbox(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == store.OutboxPending && !c.Superseded {
			sends++
			sentAt := storetest.PeriodStart
			if err := c.Finish(ctx, store.OutboxOutcome{State: store.OutboxSent, Attempted: 1, MessageID: fmt.Sprintf("sg-%d", n.Sequence), SentAt: &sentAt}); err != nil {
				t.Fatal(err)
			}
		}
		c.Close(ctx)
		return c
	}

	claim(rescheduled(0))
	if retry := claim(rescheduled(0)); retry.State != store.OutboxSent || retry.MessageID != "sg-0" || sends != 1 {
		t.Fatalf("retry of sequence 0: %+v after %d sends; want sent sg-0 after 1", retry, sends)
	}
	claim(rescheduled(1))
	if sends != 2 {
		t.Fatalf("sequence 1 after sequence 0: %d sends, want 2", sends)
	}
	if retry := claim(rescheduled(1)); retry.State != store.OutboxSent || retry.MessageID != "sg-1" || sends != 2 {
		t.Fatalf("retry of sequence 1: %+v after %d sends; want sent sg-1 after 2", retry, sends)
	}
	late := claim(rescheduled(0))
	if !late.Superseded || sends != 2 {
		t.Fatalf("sequence 0 after sequence 1: %+v after %d sends; want superseded, still 2 sends", late, sends)
	}
	stale, err := s.ClaimOutbox(ctx, rescheduled(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Finish(ctx, store.OutboxOutcome{State: store.OutboxSent, Attempted: 1}); !errors.Is(err, store.ErrInvalidRequest) {
		t.Fatalf("Finish of a superseded claim: %v, want ErrInvalidRequest", err)
	}

	rows := outboxRows(t, tx)
	if len(rows) != 1 || rows[0].MessageID != "sg-1" || rows[0].Attempts != 1 || rows[0].Subject != "Update rescheduled (1)" {
		t.Fatalf("outbox = %+v, want one row holding sequence 1's send", rows)
	}
	var sequence int
	if err := tx.QueryRow(ctx, "SELECT sequence FROM notification_outbox").Scan(&sequence); err != nil || sequence != 1 {
		t.Fatalf("row sequence %d (%v), want 1", sequence, err)
	}
	if _, err := s.ClaimOutbox(ctx, rescheduled(-1)); !errors.Is(err, store.ErrInvalidRequest) {
		t.Fatalf("claim with sequence -1: %v, want ErrInvalidRequest", err)
	}
}

// A claim closed without Finish leaves no trace: the next claim writes
// the row afresh.
func TestClaimOutboxClosedUnfinished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))
	claim, err := s.ClaimOutbox(ctx, notice("day-of"))
	if err != nil {
		t.Fatal(err)
	}
	claim.Close(ctx)
	if rows := outboxRows(t, tx); len(rows) != 0 {
		t.Fatalf("outbox = %+v after an unfinished claim, want empty", rows)
	}
}

// A second claim of the same notice waits for the first and then sees
// its outcome, so concurrent executions of one notice send it once.
func TestClaimOutboxWaitsForTheHolder(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := storetest.Load(t, pool, storetest.Fleet(1, 5))
	first, err := s.ClaimOutbox(ctx, notice("confirmed"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)

	type claimed struct {
		claim *store.OutboxClaim
		err   error
	}
	second := make(chan claimed, 1)
	go func() {
		c, err := s.ClaimOutbox(ctx, notice("confirmed"))
		second <- claimed{c, err}
	}()
	waitForLockWaiters(t, pool, 1)
	if err := first.Finish(ctx, store.OutboxOutcome{State: store.OutboxSent, Attempted: 1, MessageID: "sg-first"}); err != nil {
		t.Fatal(err)
	}
	got := <-second
	if got.err != nil {
		t.Fatal(got.err)
	}
	defer got.claim.Close(ctx)
	if got.claim.State != store.OutboxSent || got.claim.MessageID != "sg-first" {
		t.Fatalf("second claim: state %q, message %q; want the first's sent, sg-first", got.claim.State, got.claim.MessageID)
	}
}

// waitForLockWaiters waits until n sessions of the pool's database wait
// for a lock, or fails the test after a deadline.
func waitForLockWaiters(t *testing.T, pool store.DBTX, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		err := pool.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock after 10s, want %d", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAddAlertIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))
	alert := store.Alert{InstanceID: "inst-000", WorkflowID: "service-update:inst-000:9.2.0", Kind: "scheduled",
		SlotStart: storetest.SlotStarts[0], Audience: "admins", Message: "Update scheduled", CreatedAt: storetest.PeriodStart}
	for range 2 {
		if err := s.AddAlert(ctx, alert); err != nil {
			t.Fatal(err)
		}
	}
	moved := alert
	moved.SlotStart = storetest.SlotStarts[1] // a reschedule: another alert
	if err := s.AddAlert(ctx, moved); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `SELECT kind || ' ' || audience || ' ' || message FROM in_product_alerts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"scheduled admins Update scheduled", "scheduled admins Update scheduled"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("alerts = %q, want %q", got, want)
	}
}
