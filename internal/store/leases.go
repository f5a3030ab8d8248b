package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// ErrLeaseLost: the executor lease named by an instance and a fence is no
// longer held under that fence (released, or broken after its kill
// deadline by another attempt).
var ErrLeaseLost = errors.New("executor lease lost")

// WorkerProcess identifies an executor worker process: PIDs are only
// compared on the same host and boot, and Started (the process's start
// time in clock ticks since boot) tells a reused PID from the original.
type WorkerProcess struct {
	Host    string
	BootID  string
	PID     int
	Started int64
}

// LeaseClaim asks for an instance's executor lease.
type LeaseClaim struct {
	InstanceID string
	// Holder says who holds the lease, for people: the workflow, the
	// activity attempt and the worker.
	Holder string
	Worker WorkerProcess
	// Timeout is how long the lease holds without a renewal: the holder
	// promises that its program is gone by then if it cannot renew.
	Timeout time.Duration
}

// Lease is an instance's executor lease as Postgres holds it.
type Lease struct {
	InstanceID string
	Fence      int64
	Holder     string
	Worker     WorkerProcess
	// PGID and PGIDStarted are the process group of the program running
	// under the lease (its leader's PID and start time); zero before one
	// started.
	PGID         int
	PGIDStarted  int64
	StartedAt    time.Time
	KillDeadline time.Time
	// ExpiresIn is the time left, by the database's clock, until
	// KillDeadline when the lease was read; zero or less once it passed.
	ExpiresIn time.Duration
}

// LeaseAttempt is what TakeLease found.
type LeaseAttempt struct {
	// Taken: Lease is the caller's own, with a new fence.
	Taken bool
	// Lease is the caller's lease when Taken, the current holder's
	// otherwise.
	Lease Lease
	// Broken is the expired lease the caller's replaced, if any.
	Broken *Lease
}

// The lease statements read the clock with clock_timestamp(), not now():
// inside a transaction now() stands still, and a lease is about time
// passing.
const leaseColumns = `instance_id, fence, holder, host, boot_id, worker_pid, worker_started,
coalesce(pgid, 0), coalesce(pgid_started, 0), started_at, kill_deadline, kill_deadline - clock_timestamp()`

const lockLeaseSQL = `SELECT ` + leaseColumns + ` FROM executor_leases WHERE instance_id = $1 FOR UPDATE`

const insertLeaseSQL = `
INSERT INTO executor_leases (instance_id, fence, holder, host, boot_id, worker_pid, worker_started, started_at, kill_deadline)
VALUES ($1, nextval('executor_lease_fence'), $2, $3, $4, $5, $6, clock_timestamp(), clock_timestamp() + $7::interval)
ON CONFLICT (instance_id) DO NOTHING
RETURNING ` + leaseColumns

const replaceLeaseSQL = `
UPDATE executor_leases
SET fence = nextval('executor_lease_fence'), holder = $2, host = $3, boot_id = $4, worker_pid = $5, worker_started = $6,
    pgid = NULL, pgid_started = NULL, started_at = clock_timestamp(), kill_deadline = clock_timestamp() + $7::interval
WHERE instance_id = $1
RETURNING ` + leaseColumns

// TakeLease takes the instance's executor lease unless another holder's
// kill deadline is still ahead; then it reports that holder. A lease whose
// kill deadline has passed is broken and replaced.
func (s *Store) TakeLease(ctx context.Context, claim LeaseClaim) (LeaseAttempt, error) {
	if claim.InstanceID == "" || claim.Holder == "" || claim.Timeout <= 0 {
		return LeaseAttempt{}, errorf(ErrInvalidRequest, "take executor lease: instance, holder and a positive timeout required")
	}
	what := fmt.Sprintf("take the executor lease of instance %q", claim.InstanceID)
	args := []any{claim.InstanceID, claim.Holder, claim.Worker.Host, claim.Worker.BootID, claim.Worker.PID, claim.Worker.Started, interval(claim.Timeout)}
	var attempt LeaseAttempt
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		attempt = LeaseAttempt{}
		// Two claimants may both find no row; the one whose insert loses
		// finds the winner's row the second time round.
		for range 2 {
			current, err := scanLease(tx.QueryRow(ctx, lockLeaseSQL, claim.InstanceID))
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				attempt.Lease, err = scanLease(tx.QueryRow(ctx, insertLeaseSQL, args...))
				if errors.Is(err, pgx.ErrNoRows) {
					continue
				}
				attempt.Taken = err == nil
				return err
			case err != nil:
				return err
			case current.ExpiresIn > 0:
				attempt.Lease = current
				return nil
			}
			attempt.Lease, err = scanLease(tx.QueryRow(ctx, replaceLeaseSQL, args...))
			attempt.Taken, attempt.Broken = err == nil, &current
			return err
		}
		return fmt.Errorf("the lease row changed under a concurrent claim twice")
	})
	return attempt, mapError(err, what)
}

const renewLeaseSQL = `
UPDATE executor_leases SET kill_deadline = clock_timestamp() + $3::interval
WHERE instance_id = $1 AND fence = $2`

// RenewLease moves the lease's kill deadline to timeout from now. It fails
// with ErrLeaseLost when the lease is no longer held under fence.
func (s *Store) RenewLease(ctx context.Context, instanceID string, fence int64, timeout time.Duration) error {
	tag, err := s.db.Exec(ctx, renewLeaseSQL, instanceID, fence, interval(timeout))
	if err != nil {
		return mapError(err, fmt.Sprintf("renew the executor lease of instance %q (fence %d)", instanceID, fence))
	}
	if tag.RowsAffected() == 0 {
		return errorf(ErrLeaseLost, "the executor lease of instance %q is no longer held under fence %d", instanceID, fence)
	}
	return nil
}

const recordLeaseProcessSQL = `
UPDATE executor_leases SET pgid = $3, pgid_started = $4
WHERE instance_id = $1 AND fence = $2`

// RecordLeaseProcess records the process group now running under the
// lease, so that a worker restarted on the same host can kill it should
// this one die. It fails with ErrLeaseLost when the lease is no longer
// held under fence.
func (s *Store) RecordLeaseProcess(ctx context.Context, instanceID string, fence int64, pgid int, started int64) error {
	tag, err := s.db.Exec(ctx, recordLeaseProcessSQL, instanceID, fence, pgid, started)
	if err != nil {
		return mapError(err, fmt.Sprintf("record process group %d under the executor lease of instance %q", pgid, instanceID))
	}
	if tag.RowsAffected() == 0 {
		return errorf(ErrLeaseLost, "the executor lease of instance %q is no longer held under fence %d", instanceID, fence)
	}
	return nil
}

const releaseLeaseSQL = `DELETE FROM executor_leases WHERE instance_id = $1 AND fence = $2`

// ReleaseLease gives the lease up, if it is still held under fence, and
// reports whether it was.
func (s *Store) ReleaseLease(ctx context.Context, instanceID string, fence int64) (bool, error) {
	tag, err := s.db.Exec(ctx, releaseLeaseSQL, instanceID, fence)
	if err != nil {
		return false, mapError(err, fmt.Sprintf("release the executor lease of instance %q (fence %d)", instanceID, fence))
	}
	return tag.RowsAffected() > 0, nil
}

const hostLeasesSQL = `SELECT ` + leaseColumns + ` FROM executor_leases WHERE host = $1 ORDER BY instance_id`

// HostLeases lists the leases held by workers on host.
func (s *Store) HostLeases(ctx context.Context, host string) ([]Lease, error) {
	rows, err := s.db.Query(ctx, hostLeasesSQL, host)
	if err != nil {
		return nil, mapError(err, fmt.Sprintf("list the executor leases of host %q", host))
	}
	leases, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Lease, error) { return scanLease(row) })
	return leases, mapError(err, fmt.Sprintf("list the executor leases of host %q", host))
}

func scanLease(row pgx.Row) (Lease, error) {
	var (
		l         Lease
		expiresIn pgtype.Interval
	)
	err := row.Scan(&l.InstanceID, &l.Fence, &l.Holder, &l.Worker.Host, &l.Worker.BootID, &l.Worker.PID, &l.Worker.Started,
		&l.PGID, &l.PGIDStarted, &l.StartedAt, &l.KillDeadline, &expiresIn)
	l.ExpiresIn = duration(expiresIn)
	return l, err
}
