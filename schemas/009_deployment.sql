-- +goose Up

-- Which deployment this database belongs to: `starter setup` writes one ID
-- into the database and into the Temporal namespace's data, and a worker
-- refuses to start when the two differ. A worker left pointing at another
-- database while it polls the namespace would otherwise fail every notice
-- of the fleet it does not know ("instance is not in the database",
-- non-retryable) and lose them for good. One row at most.
CREATE TABLE deployment (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id text NOT NULL CHECK (id <> ''),
    namespace text NOT NULL CHECK (namespace <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE deployment;
