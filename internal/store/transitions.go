package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/workflows"
)

// recordVersionSQL moves an instance to a version only forward, by
// release order: under the instance's row lock it compares the ordinal of
// the version it runs with the new one's and updates only when the new one
// is later. It returns the version run before, whether the new version
// exists, and whether the row moved; no row means no such instance.
const recordVersionSQL = `
WITH prev AS (
    SELECT i.id, i.current_version, cur.ordinal AS current_ordinal, tgt.ordinal AS new_ordinal
    FROM instances i
    JOIN releases cur ON cur.version = i.current_version
    LEFT JOIN releases tgt ON tgt.version = $2
    WHERE i.id = $1
    FOR UPDATE OF i
), moved AS (
    UPDATE instances AS i SET current_version = $2, updated_at = now()
    FROM prev
    WHERE i.id = prev.id AND prev.new_ordinal > prev.current_ordinal
    RETURNING i.id
)
SELECT prev.current_version, prev.new_ordinal IS NOT NULL, EXISTS (SELECT 1 FROM moved) FROM prev`

// RecordInstanceVersion records that an instance now runs version. A
// version only moves forward: recording the version the instance runs (a
// retried activity) or an older one (a late success of an older update)
// changes nothing and says so with Unchanged.
func (s *Store) RecordInstanceVersion(ctx context.Context, in workflows.RecordVersionInput) (workflows.RecordVersionResult, error) {
	return recordVersion(ctx, s.db, in)
}

// recordVersion is RecordInstanceVersion on db, a transaction or the pool.
func recordVersion(ctx context.Context, db DBTX, in workflows.RecordVersionInput) (workflows.RecordVersionResult, error) {
	var res workflows.RecordVersionResult
	if in.InstanceID == "" || in.Version == "" {
		return res, errorf(ErrInvalidRequest, "record instance version: instanceId and version required")
	}
	var known, moved bool
	err := db.QueryRow(ctx, recordVersionSQL, in.InstanceID, in.Version).Scan(&res.PreviousVersion, &known, &moved)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return res, errorf(ErrNotFound, "record instance version: instance %q does not exist", in.InstanceID)
	case err != nil:
		return res, mapError(err, fmt.Sprintf("record version %s on instance %q", in.Version, in.InstanceID))
	case !known:
		return workflows.RecordVersionResult{}, errorf(ErrNotFound, "record version %s on instance %q: release %q does not exist", in.Version, in.InstanceID, in.Version)
	}
	res.Unchanged = !moved
	return res, nil
}

// insertAuditSQL writes the audit row once per idempotency key; a
// retried activity finds its row instead (auditIDSQL).
const insertAuditSQL = `
INSERT INTO audit_log (workflow_id, instance_id, actor, channel, action, detail, status_before, status_after, idempotency_key, operator)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`

const auditIDSQL = `SELECT id FROM audit_log WHERE idempotency_key = $1`

// upsertUpdateSQL refreshes the projection, but never moves it out of a
// final status ($15): an update that succeeded, was cancelled or was
// superseded has ended, and a row that arrives after it (on the path of
// releases 1 and 2, an attempt's start is recorded beside the executor and
// can commit after a cancellation that followed at once) keeps its audit
// row without reopening the update. Failed and NotApproved are closed but
// not final: a Reschedule can give either a new attempt.
const upsertUpdateSQL = `
INSERT INTO updates (workflow_id, instance_id, offered_version, target_version, current_version, mandatory, status,
                     primary_start, secondary_start, approved_by, approved_at, attempts, last_error, snapshot)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (workflow_id) DO UPDATE SET
    target_version = EXCLUDED.target_version, current_version = EXCLUDED.current_version,
    mandatory = EXCLUDED.mandatory, status = EXCLUDED.status,
    primary_start = EXCLUDED.primary_start, secondary_start = EXCLUDED.secondary_start,
    approved_by = EXCLUDED.approved_by, approved_at = EXCLUDED.approved_at,
    attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
    snapshot = EXCLUDED.snapshot, updated_at = now()
WHERE updates.status = EXCLUDED.status OR updates.status <> ALL($15::text[])`

// finalStatuses are the statuses of an update that has ended for good.
var finalStatuses = []string{
	string(workflows.StatusSucceeded), string(workflows.StatusCancelled), string(workflows.StatusSuperseded),
}

// RecordTransition appends the audit row of one transition and refreshes
// the updates projection from its snapshot, in one transaction. An open
// status while another open update holds the instance is refused with a
// *HeldError and writes nothing (at most one update per instance is open).
// idempotencyKey identifies the caller (the activity's run and activity
// ID): a second call with the same key writes nothing and returns the
// audit ID of the first.
func (s *Store) RecordTransition(ctx context.Context, idempotencyKey string, in workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
	var res workflows.RecordTransitionResult
	row, err := transitionRow(idempotencyKey, in)
	if err != nil {
		return res, err
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		res.AuditID, _, err = row.write(ctx, tx)
		return err
	})
	return res, s.heldOnConflict(ctx, err, in.Snapshot.InstanceID, in.Snapshot.WorkflowID)
}

// auditedTransition is a transition's audit row and projection, checked.
type auditedTransition struct {
	key          string
	in           workflows.RecordTransitionInput
	snapshotJSON []byte
	lastError    string
}

// transitionRow checks what a transition's rows need.
func transitionRow(idempotencyKey string, in workflows.RecordTransitionInput) (auditedTransition, error) {
	snap := in.Snapshot
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"idempotency key", idempotencyKey}, {"actor", in.Actor}, {"channel", in.Channel}, {"action", in.Action},
		{"from", string(in.From)}, {"snapshot.workflowId", snap.WorkflowID}, {"snapshot.instanceId", snap.InstanceID},
		{"snapshot.offeredVersion", snap.OfferedVersion}, {"snapshot.targetVersion", snap.TargetVersion}, {"snapshot.status", string(snap.Status)},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return auditedTransition{}, errorf(ErrInvalidRequest, "record transition: %s required", strings.Join(missing, ", "))
	}
	snapshotJSON, err := json.Marshal(snap)
	if err != nil {
		return auditedTransition{}, errorf(ErrInvalidRequest, "record transition: snapshot of %s cannot be encoded: %v", snap.WorkflowID, err)
	}
	row := auditedTransition{key: idempotencyKey, in: in, snapshotJSON: snapshotJSON}
	if n := len(snap.Attempts); n > 0 {
		row.lastError = snap.Attempts[n-1].Error
	}
	return row, nil
}

// write appends the audit row and refreshes the projection. written is
// false when an earlier call with the same key wrote them: the audit ID
// is then that call's, and nothing else is written.
func (r auditedTransition) write(ctx context.Context, tx pgx.Tx) (auditID int64, written bool, err error) {
	snap, in := r.in.Snapshot, r.in
	err = tx.QueryRow(ctx, insertAuditSQL, snap.WorkflowID, snap.InstanceID, in.Actor, in.Channel, in.Action,
		nullText(in.Detail), string(in.From), string(snap.Status), r.key, nullText(in.Operator)).Scan(&auditID)
	if errors.Is(err, pgx.ErrNoRows) {
		// Written by an earlier attempt, together with the projection.
		return auditID, false, mapError(tx.QueryRow(ctx, auditIDSQL, r.key).Scan(&auditID), "read audit row "+r.key)
	}
	if err != nil {
		return 0, false, mapError(err, "append the audit row of "+snap.WorkflowID)
	}
	_, err = tx.Exec(ctx, upsertUpdateSQL, snap.WorkflowID, snap.InstanceID, snap.OfferedVersion, snap.TargetVersion,
		snap.CurrentVersion, snap.Mandatory, string(snap.Status), snap.Primary.Start, snap.Secondary.Start,
		nullText(snap.ApprovedBy), nullTime(snap.ApprovedAt), len(snap.Attempts), nullText(r.lastError), r.snapshotJSON, finalStatuses)
	return auditID, true, mapError(err, fmt.Sprintf("update the projection of %s (instance %q)", snap.WorkflowID, snap.InstanceID))
}
