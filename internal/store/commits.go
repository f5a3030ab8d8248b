package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/workflows"
)

// withdrawRemindersSQL withdraws the queued reminders of a workflow due
// after the transition: the commit queues the ones that still stand.
const withdrawRemindersSQL = `
UPDATE notice_queue SET state = 'withdrawn', finished_at = now()
WHERE workflow_id = $1 AND state = 'queued' AND due_at > $2 AND (kind LIKE 'reminder-%' OR kind = $3)`

// queueNoticeSQL queues a notice once per key; a reminder withdrawn a
// moment ago by the same commit (or an earlier one) comes back with the
// schedule it now renders. A sent or failed row stays as it is.
const queueNoticeSQL = `
INSERT INTO notice_queue (workflow_id, instance_id, kind, slot_start, sequence, due_at, next_attempt_at, notice)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
ON CONFLICT (workflow_id, kind, slot_start, sequence) DO UPDATE
SET due_at = EXCLUDED.due_at, next_attempt_at = EXCLUDED.due_at, notice = EXCLUDED.notice, state = 'queued', finished_at = NULL
WHERE notice_queue.state = 'withdrawn'`

// CommitTransition writes one transition of the lean lifecycle in one
// transaction: the audit row and projection (as RecordTransition), the
// reservations given back and the version recorded when the transition
// asks, its notice queued, and the queued reminders replaced by the ones
// that still stand. idempotencyKey identifies the caller: a second call
// with the same key writes nothing and returns the first's audit ID.
func (s *Store) CommitTransition(ctx context.Context, idempotencyKey string, in workflows.CommitTransitionInput) (workflows.CommitTransitionResult, error) {
	var res workflows.CommitTransitionResult
	row, err := transitionRow(idempotencyKey, in.Transition)
	if err != nil {
		return res, err
	}
	if in.At.IsZero() {
		return res, errorf(ErrInvalidRequest, "commit transition of %s: at (the workflow's time) required", in.Transition.Snapshot.WorkflowID)
	}
	queued, err := queuedNotices(in)
	if err != nil {
		return res, err
	}
	snap := in.Transition.Snapshot
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		res = workflows.CommitTransitionResult{}
		auditID, written, err := row.write(ctx, tx)
		res.AuditID = auditID
		if err != nil || !written {
			return err
		}
		if in.ReleaseSlots {
			if err := lockUpdate(ctx, tx, snap.InstanceID, snap.OfferedVersion); err != nil {
				return err
			}
			if res.Released, err = releaseBookings(ctx, tx, snap.InstanceID, snap.OfferedVersion); err != nil {
				return err
			}
		}
		if in.RecordVersion != "" {
			if _, err := recordVersion(ctx, tx, workflows.RecordVersionInput{InstanceID: snap.InstanceID, Version: in.RecordVersion}); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, withdrawRemindersSQL, snap.WorkflowID, in.At, string(workflows.NoticeDayOf)); err != nil {
			return mapError(err, "withdraw the reminders of "+snap.WorkflowID)
		}
		for _, q := range queued {
			if _, err := tx.Exec(ctx, queueNoticeSQL, q.notice.WorkflowID, snap.InstanceID, string(q.notice.Kind),
				q.notice.SlotStart, q.notice.Sequence, q.dueAt, q.json); err != nil {
				return mapError(err, fmt.Sprintf("queue the %s notice of %s", q.notice.Kind, snap.WorkflowID))
			}
		}
		return nil
	})
	return res, s.heldOnConflict(ctx, err, snap.InstanceID, snap.WorkflowID)
}

// queuedNotice is one notice_queue row to write.
type queuedNotice struct {
	notice workflows.SendNoticeInput
	dueAt  time.Time
	json   []byte
}

// queuedNotices lists the commit's notices (due at its time) and
// reminders, each checked and encoded.
func queuedNotices(in workflows.CommitTransitionInput) ([]queuedNotice, error) {
	var out []queuedNotice
	add := func(n workflows.SendNoticeInput, due time.Time) error {
		if n.WorkflowID == "" || n.Kind == "" || n.SlotStart.IsZero() || due.IsZero() {
			return errorf(ErrInvalidRequest, "queue notice %q of %q: workflowId, kind, slotStart and a due time required", n.Kind, n.WorkflowID)
		}
		data, err := json.Marshal(n)
		if err != nil {
			return errorf(ErrInvalidRequest, "queue notice %q of %s: cannot be encoded: %v", n.Kind, n.WorkflowID, err)
		}
		out = append(out, queuedNotice{notice: n, dueAt: due, json: data})
		return nil
	}
	for _, n := range in.Notices {
		if err := add(n, in.At); err != nil {
			return nil, err
		}
	}
	for _, r := range in.Reminders {
		if err := add(r.Notice, r.DueAt); err != nil {
			return nil, err
		}
	}
	return out, nil
}
