-- +goose Up

-- Releases in version order. Older releases are loaded without slots so the
-- order (and so n-1 / n-2 eligibility) is known.
CREATE TABLE releases (
    version      text PRIMARY KEY,
    name         text NOT NULL,
    -- position in the version history; the highest is n, the newest.
    -- Eligibility counts positions (n-1, n-2), not the gaps between values.
    ordinal      integer NOT NULL,
    -- the window in which this release's slots lie; NULL for old releases
    -- that are loaded only so the version order is known
    period_start timestamptz,
    period_end   timestamptz,
    -- deferred so one fleet load can swap two releases' orders
    CONSTRAINT releases_ordinal_key UNIQUE (ordinal) DEFERRABLE INITIALLY DEFERRED,
    CHECK ((period_start IS NULL) = (period_end IS NULL)),
    CHECK (period_end IS NULL OR period_end > period_start)
);

-- Update windows offered per release and region.
CREATE TABLE slots (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_version text NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    region          text NOT NULL,
    starts_at       timestamptz NOT NULL,
    window_length   interval NOT NULL DEFAULT '12 hours' CHECK (window_length > interval '0'),
    -- how many instances may update in this window; 0 withdraws the slot
    capacity        integer NOT NULL CHECK (capacity >= 0),
    -- reservations held in slot_bookings; changed only together with them,
    -- in one conditional statement, so it can never exceed capacity
    booked          integer NOT NULL DEFAULT 0,
    CONSTRAINT slots_booked_within_capacity CHECK (booked >= 0 AND booked <= capacity),
    -- also the index for "slots of a release in a region, by start"
    UNIQUE (release_version, region, starts_at)
);

CREATE TABLE tenants (
    id   text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE instances (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('production', 'sandbox')),
    region          text NOT NULL,
    time_zone       text NOT NULL, -- IANA name, validated by the loader
    -- set by the fleet file when the instance is first loaded, then moved
    -- forward by completed updates (RecordInstanceVersion)
    current_version text NOT NULL REFERENCES releases (version),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_version_idx ON instances (current_version);
CREATE INDEX instances_tenant_idx ON instances (tenant_id);

-- Who hears about an instance's updates. Read when a notice is sent, so a
-- recipient added today gets tomorrow's reminder.
CREATE TABLE recipients (
    instance_id text NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    -- admin: approves and reschedules; user: uses the instance (hears of
    -- in-progress and succeeded); extra: an address admins added for notices
    role        text NOT NULL CHECK (role IN ('admin', 'user', 'extra')),
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX recipients_unique_idx ON recipients (instance_id, role, lower(email));

-- Slot reservations: one per update and role.
CREATE TABLE slot_bookings (
    instance_id     text NOT NULL REFERENCES instances (id),
    -- the version the update was started for (the workflow ID's version);
    -- the booked slot may belong to a later release an admin chose
    offered_version text NOT NULL REFERENCES releases (version),
    role            text NOT NULL CHECK (role IN ('primary', 'secondary')),
    slot_id         bigint NOT NULL REFERENCES slots (id),
    workflow_id     text NOT NULL, -- the ServiceUpdate workflow holding the reservation
    booked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, offered_version, role)
);
CREATE INDEX slot_bookings_slot_idx ON slot_bookings (slot_id);

-- Projection of each workflow's state, for listing and reporting after
-- Temporal's history retention has expired.
CREATE TABLE updates (
    workflow_id     text PRIMARY KEY,
    instance_id     text NOT NULL REFERENCES instances (id),
    offered_version text NOT NULL,
    target_version  text NOT NULL,
    current_version text NOT NULL, -- the instance's version when the workflow last recorded
    mandatory       boolean NOT NULL, -- n-2 or older: runs without approval
    status          text NOT NULL, -- a workflows.Status
    primary_start   timestamptz NOT NULL,
    secondary_start timestamptz NOT NULL,
    approved_by     text,
    approved_at     timestamptz,
    attempts        integer NOT NULL DEFAULT 0, -- update executions so far (primary, secondary)
    last_error      text, -- the latest failed attempt's error
    snapshot        jsonb NOT NULL, -- the workflow's last StatusView
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_id, offered_version)
);
CREATE INDEX updates_offered_status_idx ON updates (offered_version, status);
CREATE INDEX updates_target_status_idx ON updates (target_version, status);

-- Append-only record of who did what, when, through which channel.
CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    workflow_id     text NOT NULL,
    instance_id     text NOT NULL,
    actor           text NOT NULL,
    channel         text NOT NULL,
    action          text NOT NULL,
    detail          text,
    -- the update's status before and after the transition (equal for
    -- actions that change the schedule but not the status)
    status_before   text NOT NULL,
    status_after    text NOT NULL,
    -- activity identity (run ID + activity ID), so a retried activity
    -- writes its row once
    idempotency_key text NOT NULL UNIQUE
);
CREATE INDEX audit_log_workflow_idx ON audit_log (workflow_id, id);

-- +goose StatementBegin
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Every email, written before it is sent and marked after, keyed so a
-- retried or re-run activity sends a notice once.
CREATE TABLE notification_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id text NOT NULL,
    kind        text NOT NULL,
    -- the slot the notice is about; a reschedule changes it, so a re-armed
    -- reminder is a new row
    slot_start  timestamptz NOT NULL,
    instance_id text NOT NULL,
    recipients  text[] NOT NULL,
    subject     text NOT NULL,
    html_body   text NOT NULL,
    text_body   text NOT NULL,
    -- pending: written, not yet accepted by SendGrid; sent: accepted;
    -- stored: outbox mode, never sent; rejected: permanent 4xx
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'stored', 'rejected')),
    attempts    integer NOT NULL DEFAULT 0,
    message_id  text, -- SendGrid's X-Message-Id
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    UNIQUE (workflow_id, kind, slot_start)
);
CREATE INDEX notification_outbox_pending_idx ON notification_outbox (state) WHERE state = 'pending';

-- In-product alerts shown to an instance's admins (and users).
CREATE TABLE in_product_alerts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  text NOT NULL,
    workflow_id  text NOT NULL,
    kind         text NOT NULL,
    slot_start   timestamptz NOT NULL,
    audience     text NOT NULL, -- 'admins' or 'admins+users'
    message      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    dismissed_at timestamptz,
    UNIQUE (workflow_id, kind, slot_start)
);
CREATE INDEX in_product_alerts_instance_idx ON in_product_alerts (instance_id, created_at);

-- +goose Down
DROP TABLE in_product_alerts;
DROP TABLE notification_outbox;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only;
DROP TABLE updates;
DROP TABLE slot_bookings;
DROP TABLE recipients;
DROP TABLE instances;
DROP TABLE tenants;
DROP TABLE slots;
DROP TABLE releases;
