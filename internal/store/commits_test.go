package store_test

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// leanNotice is a notice of the 9.2.0 update of instance for the slot at
// storetest.SlotStarts[0].
func leanNotice(instance string, kind workflows.NoticeKind) workflows.SendNoticeInput {
	snap := storetest.Transition(instance, workflows.StatusScheduled, workflows.StatusScheduled).Snapshot
	return workflows.SendNoticeInput{WorkflowID: snap.WorkflowID, Kind: kind, SlotStart: storetest.SlotStarts[0], Update: snap}
}

func reminderAt(instance string, days int, due time.Time) workflows.QueuedReminder {
	n := leanNotice(instance, workflows.ReminderKind(time.Duration(days)*24*time.Hour))
	n.Offset = time.Duration(days) * 24 * time.Hour
	return workflows.QueuedReminder{DueAt: due, Notice: n}
}

func commit(action string, at time.Time, from, to workflows.Status) workflows.CommitTransitionInput {
	tr := storetest.Transition("inst-000", from, to)
	tr.Action = action
	return workflows.CommitTransitionInput{Transition: tr, At: at}
}

type queueRow struct {
	Kind  string
	Due   time.Time
	State string
}

func queueRows(t *testing.T, s *store.Store, workflowID string) []queueRow {
	t.Helper()
	deliveries, err := s.NoticeDeliveries(context.Background(), workflowID)
	if err != nil {
		t.Fatal(err)
	}
	var rows []queueRow
	for _, d := range deliveries {
		rows = append(rows, queueRow{d.Kind, d.DueAt.UTC(), d.State})
	}
	return rows
}

// One commit per transition: the audit row, the projection, the notice
// and the reminders together; a later commit withdraws the reminders that
// no longer stand and queues the ones that do; the close releases the
// slots and records the version in the same transaction; a retried commit
// writes nothing.
func TestCommitTransitionWritesEverythingOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(2, 5))
	storetest.Open(t, s, "inst-000")
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-000", 0, 1)); err != nil {
		t.Fatal(err)
	}
	wf := workflows.WorkflowID("inst-000", "9.2.0")
	t0 := storetest.SlotStarts[0].Add(-40 * 24 * time.Hour)
	r30, r7 := t0.Add(10*24*time.Hour), t0.Add(33*24*time.Hour)

	scheduled := commit("scheduled", t0, workflows.StatusScheduled, workflows.StatusScheduled)
	scheduled.Notices = []workflows.SendNoticeInput{leanNotice("inst-000", workflows.NoticeScheduled)}
	scheduled.Reminders = []workflows.QueuedReminder{reminderAt("inst-000", 30, r30), reminderAt("inst-000", 7, r7)}
	first, err := s.CommitTransition(ctx, "run/1", scheduled)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.CommitTransition(ctx, "run/1", scheduled)
	if err != nil || again != first {
		t.Fatalf("retried commit = %+v, %v; want %+v", again, err, first)
	}
	want := []queueRow{{"scheduled", t0, store.NoticeQueued}, {"reminder-30d", r30, store.NoticeQueued}, {"reminder-7d", r7, store.NoticeQueued}}
	if got := queueRows(t, s, wf); !reflect.DeepEqual(got, want) {
		t.Fatalf("after scheduled: %v\nwant %v", got, want)
	}

	// The approval, after the 30-day reminder came due: that one stays, the
	// 7-day one is queued again with the approved snapshot.
	approved := commit("approved", r30.Add(time.Hour), workflows.StatusScheduled, workflows.StatusApproved)
	approved.Notices = []workflows.SendNoticeInput{leanNotice("inst-000", workflows.NoticeConfirmed)}
	approved.Reminders = []workflows.QueuedReminder{reminderAt("inst-000", 7, r7)}
	approved.Reminders[0].Notice.Update.Status = workflows.StatusApproved
	if _, err := s.CommitTransition(ctx, "run/2", approved); err != nil {
		t.Fatal(err)
	}
	want = []queueRow{{"scheduled", t0, store.NoticeQueued}, {"reminder-30d", r30, store.NoticeQueued},
		{"confirmed", r30.Add(time.Hour), store.NoticeQueued}, {"reminder-7d", r7, store.NoticeQueued}}
	if got := queueRows(t, s, wf); !reflect.DeepEqual(got, want) {
		t.Fatalf("after approved: %v\nwant %v", got, want)
	}
	var status workflows.Status
	if err := tx.QueryRow(ctx, `SELECT notice->'update'->>'status' FROM notice_queue WHERE kind = 'reminder-7d'`).Scan(&status); err != nil || status != workflows.StatusApproved {
		t.Fatalf("the 7-day reminder renders %q (%v), want the approved schedule", status, err)
	}

	// Cancelled before the 7-day reminder: withdrawn, slots released.
	cancelled := commit("cancelled", r7.Add(-time.Hour), workflows.StatusApproved, workflows.StatusCancelled)
	cancelled.ReleaseSlots = true
	cancelled.Notices = []workflows.SendNoticeInput{leanNotice("inst-000", workflows.NoticeCancelled)}
	res, err := s.CommitTransition(ctx, "run/3", cancelled)
	if err != nil || res.Released != 2 {
		t.Fatalf("cancel = %+v, %v; want 2 reservations released", res, err)
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{0, 0, 0, 0, 0}) {
		t.Fatalf("after the cancellation: usage %v", got)
	}
	want = []queueRow{{"scheduled", t0, store.NoticeQueued}, {"reminder-30d", r30, store.NoticeQueued},
		{"confirmed", r30.Add(time.Hour), store.NoticeQueued}, {"cancelled", r7.Add(-time.Hour), store.NoticeQueued},
		{"reminder-7d", r7, store.NoticeWithdrawn}}
	if got := queueRows(t, s, wf); !reflect.DeepEqual(got, want) {
		t.Fatalf("after cancelled: %v\nwant %v", got, want)
	}
	var audits int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE workflow_id = $1 AND idempotency_key LIKE 'run/%'`, wf).Scan(&audits); err != nil || audits != 3 {
		t.Fatalf("%d audit rows (%v), want 3", audits, err)
	}
}

func TestCommitTransitionRecordsTheVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))
	storetest.Open(t, s, "inst-000")
	succeeded := commit("succeeded", storetest.SlotStarts[0], workflows.StatusInProgress, workflows.StatusSucceeded)
	succeeded.RecordVersion = "9.2.0"
	succeeded.ReleaseSlots = true
	if _, err := s.CommitTransition(ctx, "run/9", succeeded); err != nil {
		t.Fatal(err)
	}
	var version string
	if err := tx.QueryRow(ctx, "SELECT current_version FROM instances WHERE id = 'inst-000'").Scan(&version); err != nil || version != "9.2.0" {
		t.Fatalf("instance runs %q (%v), want 9.2.0", version, err)
	}
}

func TestCommitTransitionRefusesBadInput(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, storetest.Fleet(1, 5))
	noTime := commit("scheduled", time.Time{}, workflows.StatusScheduled, workflows.StatusScheduled)
	_, err := s.CommitTransition(context.Background(), "run/1", noTime)
	wantErr(t, err, store.ErrInvalidRequest, "commit transition of service-update:inst-000:9.2.0: at (the workflow's time) required")
	noDue := commit("scheduled", storetest.SlotStarts[0], workflows.StatusScheduled, workflows.StatusScheduled)
	noDue.Reminders = []workflows.QueuedReminder{{Notice: leanNotice("inst-000", workflows.ReminderKind(24*time.Hour))}}
	_, err = s.CommitTransition(context.Background(), "run/1", noDue)
	wantErr(t, err, store.ErrInvalidRequest, `queue notice "reminder-1d" of "service-update:inst-000:9.2.0": workflowId, kind, slotStart and a due time required`)
}

// Dispatchers of several workers claim due notices side by side: each
// row goes to one of them, a row not yet due to none, and a finished or
// retried row leaves the queue until it is due again.
func TestClaimNoticesSharesRowsAmongDispatchers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := concurrentStore(t, storetest.Fleet(1, 5))
	storetest.Open(t, s, "inst-000")
	t0 := storetest.SlotStarts[0].Add(-40 * 24 * time.Hour)
	c := commit("scheduled", t0, workflows.StatusScheduled, workflows.StatusScheduled)
	c.Notices = []workflows.SendNoticeInput{leanNotice("inst-000", workflows.NoticeScheduled)}
	for d := 1; d <= 30; d++ {
		c.Reminders = append(c.Reminders, reminderAt("inst-000", d, t0.Add(time.Duration(d)*time.Minute)))
	}
	c.Reminders = append(c.Reminders, reminderAt("inst-000", 31, t0.Add(24*time.Hour)))
	if _, err := s.CommitTransition(ctx, "run/1", c); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	var mu sync.Mutex
	seen := map[int64]int{}
	runTogether(4, func(int) {
		for {
			claimed, err := s.ClaimNotices(ctx, now, time.Minute, 3)
			if err != nil {
				t.Error(err)
				return
			}
			if len(claimed) == 0 {
				return
			}
			mu.Lock()
			for _, n := range claimed {
				seen[n.ID]++
			}
			mu.Unlock()
		}
	})
	if len(seen) != 31 {
		t.Fatalf("%d notices claimed, want the 31 due", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("notice %d claimed %d times", id, n)
		}
	}
	// The leases run out: every row is due again, once.
	claimed, err := s.ClaimNotices(ctx, now.Add(2*time.Minute), time.Minute, 100)
	if err != nil || len(claimed) != 31 || claimed[0].Attempts != 2 {
		t.Fatalf("after the leases: %d claimed (%v), want 31 on their second attempt", len(claimed), err)
	}
	if err := s.FinishNotice(ctx, claimed[0].ID, store.NoticeSent, "", now); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishNotice(ctx, claimed[1].ID, store.NoticeFailed, "rejected", now); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryNotice(ctx, claimed[2].ID, now.Add(time.Hour), "throttled"); err != nil {
		t.Fatal(err)
	}
	err = s.FinishNotice(ctx, claimed[3].ID, store.NoticeQueued, "", now)
	wantErr(t, err, store.ErrInvalidRequest, `finish notice `+itoa(claimed[3].ID)+`: state "queued"; give "sent" or "failed"`)
	claimed, err = s.ClaimNotices(ctx, now.Add(10*time.Minute), time.Minute, 100)
	if err != nil || len(claimed) != 28 {
		t.Fatalf("%d claimed (%v), want 28: one sent, one failed, one waiting for its retry", len(claimed), err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The Status answer of a lean workflow lists what the queue delivered,
// what failed and what is due but not yet delivered, instead of the
// notices the workflow only queued; reminders ahead stay upcoming.
func TestWithDeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 5))
	storetest.Open(t, s, "inst-000")
	t0 := storetest.SlotStarts[0].Add(-40 * 24 * time.Hour)
	c := commit("scheduled", t0, workflows.StatusScheduled, workflows.StatusScheduled)
	c.Notices = []workflows.SendNoticeInput{leanNotice("inst-000", workflows.NoticeScheduled)}
	c.Reminders = []workflows.QueuedReminder{reminderAt("inst-000", 30, t0.Add(time.Hour)), reminderAt("inst-000", 15, t0.Add(2*time.Hour)),
		reminderAt("inst-000", 7, t0.Add(30*24*time.Hour))}
	if _, err := s.CommitTransition(ctx, "run/1", c); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(3 * time.Hour)
	claimed, err := s.ClaimNotices(ctx, now, time.Minute, 10)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claimed %d (%v), want the 3 due", len(claimed), err)
	}
	byKind := map[workflows.NoticeKind]int64{}
	for _, c := range claimed {
		byKind[c.Notice.Kind] = c.ID
	}
	sentAt := t0.Add(time.Minute)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.FinishNotice(ctx, byKind[workflows.NoticeScheduled], store.NoticeSent, "", sentAt))
	must(s.FinishNotice(ctx, byKind["reminder-30d"], store.NoticeFailed, "no valid recipient", now))
	must(s.RetryNotice(ctx, byKind["reminder-15d"], now.Add(time.Minute), "SendGrid is unavailable"))

	view := c.Transition.Snapshot
	view.Notices = []workflows.NoticeRecord{{Kind: workflows.NoticeScheduled, At: t0, Queued: true}}
	got, err := s.WithDeliveries(ctx, view, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []workflows.NoticeRecord{
		{Kind: workflows.NoticeScheduled, At: sentAt},
		{Kind: "reminder-15d", At: t0.Add(2 * time.Hour), Queued: true, Error: "SendGrid is unavailable"},
		{Kind: "reminder-30d", At: now, Error: "no valid recipient"},
	}
	for i := range got.Notices {
		got.Notices[i].At = got.Notices[i].At.UTC()
	}
	if !reflect.DeepEqual(got.Notices, want) {
		t.Fatalf("notices %+v\nwant %+v", got.Notices, want)
	}
	// A workflow of the old path has no queue: its answer is unchanged.
	old := storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled).Snapshot
	old.WorkflowID = "service-update:inst-000:9.1.0"
	old.Notices = []workflows.NoticeRecord{{Kind: workflows.NoticeScheduled, At: t0}}
	if got, err := s.WithDeliveries(ctx, old, now); err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("old path = %+v, %v; want it unchanged", got.Notices, err)
	}
}
