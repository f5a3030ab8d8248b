-- +goose Up

-- Every accepted Reschedule sends its own rescheduled email, also one that
-- chooses a primary start an earlier Reschedule chose: the notice carries
-- a sequence (how many earlier Reschedules of the update chose that start).
-- A row of the outbox holds the notice of its key (workflow, kind, slot)
-- with the highest sequence claimed so far. A claim with a higher sequence
-- is a new notice: it takes the row over and sends. One with the row's
-- sequence is the same notice (a retried activity): it sends nothing more.
-- One with a lower sequence was overtaken by a later Reschedule to the
-- same slot and sends nothing.
--
-- Additive: the unique key stays (workflow_id, kind, slot_start). Older
-- workers write `ON CONFLICT (workflow_id, kind, slot_start)`, which needs a
-- unique index on exactly those columns; a key that included the sequence
-- would leave them none and fail every email they send. Their rows get
-- sequence 0, as every notice they know of has.
ALTER TABLE notification_outbox ADD COLUMN sequence integer NOT NULL DEFAULT 0 CHECK (sequence >= 0);

-- +goose Down
ALTER TABLE notification_outbox DROP COLUMN sequence;
