-- +goose NO TRANSACTION
-- +goose Up

-- The Rollout pages its candidates by (kind = 'production', id), sandboxes
-- first (store.rolloutPageSQL). Without an index on that key each page
-- read and sorted every instance after the cursor: 155-207 ms a page for
-- 200,000 instances, growing with the fleet; with it, 2-3 ms. Built
-- concurrently: a fleet load may run meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS instances_rollout_order_idx
    ON instances ((kind = 'production'), id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS instances_rollout_order_idx;
