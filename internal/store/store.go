// Package store is svcupdate's Postgres data and the one home of its SQL:
// releases and slots, the fleet, slot reservations, the updates projection,
// the audit log, the notification outbox and in-product alerts. The worker
// reaches it through activities, the starter directly.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// DBTX is what the store runs statements on: a *pgxpool.Pool or a pgx.Tx.
// On a transaction, the store's own transactions become savepoints, so a
// test can run the store inside one transaction and roll everything back.
type DBTX interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is svcupdate's Postgres data. It is safe for concurrent use when
// its DBTX is (a pool is, a transaction is not); every change is made in
// one transaction.
type Store struct {
	db DBTX
}

// New returns a Store over db.
func New(db DBTX) *Store { return &Store{db: db} }

// txAttempts bounds how often a transaction chosen as a deadlock or
// serialization victim is run again before its error is returned.
const txAttempts = 5

// inTx runs fn in a transaction, again when Postgres aborted it only
// because of a concurrent one. fn must have no effect outside tx.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.db, fn)
		if err == nil || attempt == txAttempts || !retryableTx(err) || ctx.Err() != nil {
			return err
		}
	}
}

// Recipient roles (recipients.role).
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
	RoleExtra = "extra"
)

// slotName names a slot for people: "the 9.2.0 slot in eu-west at
// 2027-03-06 22:00 UTC".
func slotName(release, region string, start time.Time) string {
	return fmt.Sprintf("the %s slot in %s at %s", release, region, timeText(start))
}

func timeText(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// interval and duration convert between Go durations and Postgres
// intervals (written as microseconds; a day counts 24 hours).
func interval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

func duration(iv pgtype.Interval) time.Duration {
	return time.Duration(iv.Microseconds)*time.Microsecond +
		time.Duration(iv.Days)*24*time.Hour +
		time.Duration(iv.Months)*30*24*time.Hour
}

func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
