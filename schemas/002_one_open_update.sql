-- +goose Up

-- At most one open update per instance: two workflows updating one
-- instance (an older optional update and a newer mandatory one, or a later
-- target an admin chose and the next rollout) would run the update twice,
-- take capacity twice and could move the instance back. An update holds
-- its instance from the rollout's booking (which writes its row as
-- Scheduled in the same transaction) until the projection records a final
-- status: Succeeded, Failed, NotApproved, Cancelled or Superseded.
--
-- Additive: older workers keep writing the same columns; a transition that
-- would open a second update of an instance is refused by the index.

-- Instances with several open updates today keep one, chosen
-- deterministically: one already executing (never overlapped), then a
-- mandatory one, then the latest target release, then the most recently
-- recorded, then the workflow ID. The others' projection rows are closed
-- as Superseded, each with an audit row naming the update that keeps the
-- instance, so an operator can cancel the workflow behind it.
WITH open_updates AS (
    SELECT u.workflow_id, u.instance_id, u.status,
           row_number() OVER holders AS rank,
           first_value(u.workflow_id) OVER holders AS keeper
    FROM updates u
    LEFT JOIN releases r ON r.version = u.target_version
    WHERE u.status NOT IN ('Succeeded', 'Failed', 'NotApproved', 'Cancelled', 'Superseded')
    WINDOW holders AS (
        PARTITION BY u.instance_id
        ORDER BY u.status IN ('InProgress', 'FallbackScheduled') DESC, u.mandatory DESC,
                 r.ordinal DESC NULLS LAST, u.updated_at DESC, u.workflow_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
), superseded AS (
    UPDATE updates u SET status = 'Superseded', updated_at = now()
    FROM open_updates o
    WHERE u.workflow_id = o.workflow_id AND o.rank > 1
    RETURNING u.workflow_id, u.instance_id, o.status AS status_before, o.keeper
)
INSERT INTO audit_log (workflow_id, instance_id, actor, channel, action, detail, status_before, status_after, idempotency_key)
SELECT workflow_id, instance_id, 'system', 'migration', 'superseded',
       'schema migration 002 allows one open update per instance; ' || keeper ||
       ' keeps it. Cancel this workflow if it still runs.',
       status_before, 'Superseded', 'migration-002/' || workflow_id
FROM superseded;

CREATE UNIQUE INDEX updates_one_open_per_instance ON updates (instance_id)
    WHERE status NOT IN ('Succeeded', 'Failed', 'NotApproved', 'Cancelled', 'Superseded');

-- +goose Down
DROP INDEX updates_one_open_per_instance;
