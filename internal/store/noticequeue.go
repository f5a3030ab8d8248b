package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/workflows"
)

// Notice queue states (notice_queue.state).
const (
	NoticeQueued    = "queued"
	NoticeSent      = "sent"
	NoticeFailed    = "failed"
	NoticeWithdrawn = "withdrawn"
)

// claimNoticesSQL takes up to $3 due rows for this dispatcher. SKIP
// LOCKED lets dispatchers of other workers pass over rows being claimed;
// the lease (next_attempt_at moved on) hides the claimed rows from them
// until this one has finished them, or has died and the lease ran out.
const claimNoticesSQL = `
UPDATE notice_queue q SET next_attempt_at = $1::timestamptz + $2::interval, attempts = q.attempts + 1
FROM (
    SELECT id FROM notice_queue
    WHERE state = 'queued' AND next_attempt_at <= $1
    ORDER BY next_attempt_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) due
WHERE q.id = due.id
RETURNING q.id, q.attempts, q.due_at, q.notice`

// ClaimedNotice is a due notice a dispatcher holds until its lease ends.
type ClaimedNotice struct {
	ID       int64
	Attempts int // including this one
	DueAt    time.Time
	Notice   workflows.SendNoticeInput
}

// ClaimNotices claims up to limit notices due at now, each for lease.
func (s *Store) ClaimNotices(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]ClaimedNotice, error) {
	rows, err := s.db.Query(ctx, claimNoticesSQL, now, interval(lease), limit)
	if err != nil {
		return nil, mapError(err, "claim due notices")
	}
	claimed, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ClaimedNotice, error) {
		var c ClaimedNotice
		var data []byte
		if err := row.Scan(&c.ID, &c.Attempts, &c.DueAt, &data); err != nil {
			return c, err
		}
		if err := json.Unmarshal(data, &c.Notice); err != nil {
			return c, fmt.Errorf("notice %d is not a SendNoticeInput: %w", c.ID, err)
		}
		return c, nil
	})
	return claimed, mapError(err, "claim due notices")
}

// finishNoticeSQL settles a claimed row unless it was withdrawn meanwhile.
const finishNoticeSQL = `
UPDATE notice_queue SET state = $2, last_error = nullif($3, ''), finished_at = $4
WHERE id = $1 AND state = 'queued'`

// FinishNotice marks a claimed notice sent or failed for good, with the
// error that failed it.
func (s *Store) FinishNotice(ctx context.Context, id int64, state, lastError string, at time.Time) error {
	if state != NoticeSent && state != NoticeFailed {
		return errorf(ErrInvalidRequest, "finish notice %d: state %q; give %q or %q", id, state, NoticeSent, NoticeFailed)
	}
	_, err := s.db.Exec(ctx, finishNoticeSQL, id, state, lastError, at)
	return mapError(err, fmt.Sprintf("finish notice %d", id))
}

const retryNoticeSQL = `
UPDATE notice_queue SET next_attempt_at = $2, last_error = $3
WHERE id = $1 AND state = 'queued'`

// RetryNotice gives a claimed notice back, due again at at.
func (s *Store) RetryNotice(ctx context.Context, id int64, at time.Time, lastError string) error {
	_, err := s.db.Exec(ctx, retryNoticeSQL, id, at, lastError)
	return mapError(err, fmt.Sprintf("retry notice %d", id))
}

// NoticeDelivery is one queued notice as the dispatcher left it.
type NoticeDelivery struct {
	Kind       string     `json:"kind"`
	DueAt      time.Time  `json:"dueAt"`
	State      string     `json:"state"`
	Attempts   int        `json:"attempts"`
	LastError  string     `json:"lastError,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

const noticeDeliveriesSQL = `
SELECT kind, due_at, state, attempts, coalesce(last_error, ''), finished_at
FROM notice_queue WHERE workflow_id = $1 ORDER BY due_at, id`

// NoticeDeliveries lists the queued notices of a workflow, by due time.
func (s *Store) NoticeDeliveries(ctx context.Context, workflowID string) ([]NoticeDelivery, error) {
	rows, err := s.db.Query(ctx, noticeDeliveriesSQL, workflowID)
	if err != nil {
		return nil, mapError(err, "list the notices of "+workflowID)
	}
	deliveries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (NoticeDelivery, error) {
		var d NoticeDelivery
		err := row.Scan(&d.Kind, &d.DueAt, &d.State, &d.Attempts, &d.LastError, &d.FinishedAt)
		return d, err
	})
	return deliveries, mapError(err, "list the notices of "+workflowID)
}

// WithDeliveries completes the Status answer of a workflow on the lean
// lifecycle with its notice queue as of now: every notice sent or failed
// for good (at the time it was settled, with its error), and every one
// due and not yet delivered (Queued, with the last error of its retries),
// in place of the notices the workflow only knows it queued. Reminders
// not yet due stay in Upcoming, withdrawn ones nowhere. A workflow on the
// old path has no queue: its answer comes back as it was.
func (s *Store) WithDeliveries(ctx context.Context, view workflows.StatusView, now time.Time) (workflows.StatusView, error) {
	deliveries, err := s.NoticeDeliveries(ctx, view.WorkflowID)
	if err != nil || len(deliveries) == 0 {
		return view, err
	}
	var notices []workflows.NoticeRecord
	for _, n := range view.Notices {
		if !n.Queued {
			notices = append(notices, n)
		}
	}
	for _, d := range deliveries {
		kind := workflows.NoticeKind(d.Kind)
		switch {
		case d.State == NoticeSent && d.FinishedAt != nil:
			notices = append(notices, workflows.NoticeRecord{Kind: kind, At: *d.FinishedAt})
		case d.State == NoticeFailed && d.FinishedAt != nil:
			notices = append(notices, workflows.NoticeRecord{Kind: kind, At: *d.FinishedAt, Error: d.LastError})
		case d.State == NoticeQueued && !d.DueAt.After(now):
			notices = append(notices, workflows.NoticeRecord{Kind: kind, At: d.DueAt, Queued: true, Error: d.LastError})
		}
	}
	slices.SortStableFunc(notices, func(a, b workflows.NoticeRecord) int { return a.At.Compare(b.At) })
	view.Notices = notices
	return view, nil
}
