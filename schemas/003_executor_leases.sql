-- +goose Up

-- Fences of executor leases: every lease taken gets a new, larger number,
-- so a fence names one holder for good, even after its row is gone.
CREATE SEQUENCE executor_lease_fence;

-- At most one update command runs per instance: the executor takes the
-- instance's lease before it runs the probe or the command and releases it
-- when the attempt ends. A holder renews its lease while it runs and
-- promises that its command is gone by kill_deadline if it cannot; only
-- then may another attempt break the lease. host, boot_id and the worker's
-- and command's process identities let a worker restarted on the same host
-- find and kill what a crashed predecessor left running.
CREATE TABLE executor_leases (
    instance_id    text PRIMARY KEY,
    fence          bigint NOT NULL,
    -- for people: the workflow, the activity attempt and the worker
    holder         text NOT NULL,
    host           text NOT NULL,
    -- the kernel's boot ID: process IDs of another boot mean nothing
    boot_id        text NOT NULL,
    worker_pid     integer NOT NULL,
    -- the process's start time (clock ticks since boot), so a reused PID
    -- is not taken for the holder
    worker_started bigint NOT NULL,
    -- the process group of the program running under the lease, if any
    pgid           integer,
    pgid_started   bigint,
    started_at     timestamptz NOT NULL,
    kill_deadline  timestamptz NOT NULL,
    CHECK ((pgid IS NULL) = (pgid_started IS NULL))
);
CREATE INDEX executor_leases_host_idx ON executor_leases (host);

-- +goose Down
DROP TABLE executor_leases;
DROP SEQUENCE executor_lease_fence;
