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

// recordVersionSQL returns the version the instance ran before, read
// under the row lock the update takes.
const recordVersionSQL = `
UPDATE instances AS i SET current_version = $2, updated_at = now()
FROM (SELECT id, current_version FROM instances WHERE id = $1 FOR UPDATE) AS prev
WHERE i.id = prev.id
RETURNING prev.current_version`

// RecordInstanceVersion records that an instance now runs version. A
// repeated call (a retried activity) reports the version itself as the
// previous one.
func (s *Store) RecordInstanceVersion(ctx context.Context, in workflows.RecordVersionInput) (workflows.RecordVersionResult, error) {
	var res workflows.RecordVersionResult
	if in.InstanceID == "" || in.Version == "" {
		return res, errorf(ErrInvalidRequest, "record instance version: instanceId and version required")
	}
	err := s.db.QueryRow(ctx, recordVersionSQL, in.InstanceID, in.Version).Scan(&res.PreviousVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, errorf(ErrNotFound, "record instance version: instance %q does not exist", in.InstanceID)
	}
	if err != nil {
		return res, mapError(err, fmt.Sprintf("record version %s on instance %q", in.Version, in.InstanceID))
	}
	return res, nil
}

// insertAuditSQL writes the audit row once per idempotency key; a
// retried activity finds its row instead (auditIDSQL).
const insertAuditSQL = `
INSERT INTO audit_log (workflow_id, instance_id, actor, channel, action, detail, status_before, status_after, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`

const auditIDSQL = `SELECT id FROM audit_log WHERE idempotency_key = $1`

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
    snapshot = EXCLUDED.snapshot, updated_at = now()`

// RecordTransition appends the audit row of one transition and refreshes
// the updates projection from its snapshot, in one transaction.
// idempotencyKey identifies the caller (the activity's run and activity
// ID): a second call with the same key writes nothing and returns the
// audit ID of the first.
func (s *Store) RecordTransition(ctx context.Context, idempotencyKey string, in workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
	var res workflows.RecordTransitionResult
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
		return res, errorf(ErrInvalidRequest, "record transition: %s required", strings.Join(missing, ", "))
	}
	snapshotJSON, err := json.Marshal(snap)
	if err != nil {
		return res, errorf(ErrInvalidRequest, "record transition: snapshot of %s cannot be encoded: %v", snap.WorkflowID, err)
	}
	var lastError string
	if n := len(snap.Attempts); n > 0 {
		lastError = snap.Attempts[n-1].Error
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, insertAuditSQL, snap.WorkflowID, snap.InstanceID, in.Actor, in.Channel, in.Action,
			nullText(in.Detail), string(in.From), string(snap.Status), idempotencyKey).Scan(&res.AuditID)
		if errors.Is(err, pgx.ErrNoRows) {
			// Written by an earlier attempt, together with the projection.
			return mapError(tx.QueryRow(ctx, auditIDSQL, idempotencyKey).Scan(&res.AuditID), "read audit row "+idempotencyKey)
		}
		if err != nil {
			return mapError(err, "append the audit row of "+snap.WorkflowID)
		}
		_, err = tx.Exec(ctx, upsertUpdateSQL, snap.WorkflowID, snap.InstanceID, snap.OfferedVersion, snap.TargetVersion,
			snap.CurrentVersion, snap.Mandatory, string(snap.Status), snap.Primary.Start, snap.Secondary.Start,
			nullText(snap.ApprovedBy), nullTime(snap.ApprovedAt), len(snap.Attempts), nullText(lastError), snapshotJSON)
		return mapError(err, fmt.Sprintf("update the projection of %s (instance %q)", snap.WorkflowID, snap.InstanceID))
	})
	return res, err
}
