-- +goose Up

-- The Rollout workflow of a release orders execution in waves: sandboxes
-- (wave 0), then production in the waves the operator gave. A wave's gate
-- is its state: pending until the Rollout looks at the failures of the
-- waves before it, open (its updates run), held (they wait, the rollout
-- paused) or aborted (they are cancelled). Each ServiceUpdate reads its
-- wave's state in the instance check before an attempt.
CREATE TABLE rollout_waves (
    version    text NOT NULL REFERENCES releases (version),
    wave       integer NOT NULL CHECK (wave >= 0),
    state      text NOT NULL CHECK (state IN ('pending', 'open', 'held', 'aborted')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, wave)
);

-- An instance whose update the Rollout started (or found started), and its
-- wave. A re-run skips these from here, without asking Temporal.
CREATE TABLE rollout_members (
    version     text NOT NULL,
    instance_id text NOT NULL REFERENCES instances (id),
    wave        integer NOT NULL,
    workflow_id text NOT NULL,
    PRIMARY KEY (version, instance_id),
    FOREIGN KEY (version, wave) REFERENCES rollout_waves (version, wave)
);
CREATE INDEX rollout_members_wave_idx ON rollout_members (version, wave);

-- +goose Down
DROP TABLE rollout_members;
DROP TABLE rollout_waves;
