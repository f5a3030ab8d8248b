-- +goose Up

-- The lean lifecycle's notices: each transition's commit queues its notice
-- (due at once) and the reminders of the schedule as it stands (due at
-- their offsets) here, in the transaction that writes its audit row. The
-- worker's dispatcher claims due rows with FOR UPDATE SKIP LOCKED, so any
-- number of workers share them, and sends each through the notifier
-- (notification_outbox still keys every email, so a notice is mailed once).
-- A reminder of a schedule that changed, or of an update that started or
-- closed, is withdrawn, never deleted: delivery stays visible.
CREATE TABLE notice_queue (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id     text NOT NULL,
    instance_id     text NOT NULL,
    kind            text NOT NULL,
    slot_start      timestamptz NOT NULL,
    sequence        integer NOT NULL DEFAULT 0,
    due_at          timestamptz NOT NULL,
    -- queued: waiting or being retried; sent: the notifier delivered (or
    -- stored) it; failed: undeliverable for good; withdrawn: no longer due
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed', 'withdrawn')),
    -- when a dispatcher may next take it: due_at, a retry's backoff, or a
    -- claim's lease (a dispatcher that dies leaves it to the next)
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    notice          jsonb NOT NULL, -- the workflows.SendNoticeInput
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (workflow_id, kind, slot_start, sequence)
);
CREATE INDEX notice_queue_next_idx ON notice_queue (next_attempt_at) WHERE state = 'queued';
CREATE INDEX notice_queue_workflow_idx ON notice_queue (workflow_id, due_at);

-- +goose Down
DROP TABLE notice_queue;
