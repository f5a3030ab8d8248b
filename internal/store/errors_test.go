package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
)

// MapError against errors Postgres really raises.
func TestMapErrorMapsPostgresCodes(t *testing.T) {
	t.Parallel()
	_, tx := setup(t, storetest.Fleet(1, 5))
	cases := []struct {
		name     string
		sql      string
		sentinel error
		msg      string
	}{
		{"unique violation", "INSERT INTO tenants (id, name) VALUES ('acme', 'Again')", store.ErrDuplicate,
			"add tenant: already exists (Key (id)=(acme) already exists.)"},
		{"foreign key violation", "INSERT INTO instances (id, tenant_id, name, kind, region, time_zone, current_version) VALUES ('x', 'nobody', 'X', 'sandbox', 'eu', 'UTC', '9.0.0')", store.ErrNotFound,
			`add tenant: refers to something that does not exist (Key (tenant_id)=(nobody) is not present in table "tenants".)`},
		{"slot capacity", "UPDATE slots SET booked = capacity + 1", store.ErrSlotFull,
			"add tenant: the slot's bookings would exceed its capacity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := execAside(t, tx, tc.sql)
			wantErr(t, store.MapError(err, "add tenant"), tc.sentinel, tc.msg)
		})
	}
	// Other Postgres errors and connection failures keep their cause and
	// match no sentinel, so activities retry them.
	err := execAside(t, tx, "UPDATE releases SET period_end = period_start WHERE version = '9.2.0'")
	mapped := store.MapError(err, "shorten period")
	for _, sentinel := range []error{store.ErrNotFound, store.ErrDuplicate, store.ErrSlotFull, store.ErrSlotNotOffered} {
		if errors.Is(mapped, sentinel) {
			t.Fatalf("%v matches %v", mapped, sentinel)
		}
	}
	if !strings.HasPrefix(mapped.Error(), "shorten period: ERROR: new row for relation \"releases\" violates check constraint") {
		t.Fatalf("mapped = %v", mapped)
	}
	if store.MapError(nil, "nothing") != nil {
		t.Fatal("nil error mapped to non-nil")
	}
}

// Only transactions aborted because of a concurrent one run again.
func TestRetryableTx(t *testing.T) {
	t.Parallel()
	deadlock := &pgconn.PgError{Code: store.PgDeadlockDetected}
	cases := []struct {
		err  error
		want bool
	}{
		{deadlock, true},
		{&pgconn.PgError{Code: store.PgSerializationFailure}, true},
		{store.MapError(deadlock, "book a slot"), true},
		{&pgconn.PgError{Code: store.PgUniqueViolation}, false},
		{store.Errorf(store.ErrSlotFull, "full"), false},
		{context.Canceled, false},
	}
	for _, tc := range cases {
		if got := store.RetryableTx(tc.err); got != tc.want {
			t.Errorf("RetryableTx(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// execAside runs sql in a savepoint of tx and rolls it back, so an
// expected error leaves tx usable.
func execAside(t *testing.T, tx pgx.Tx, sql string) error {
	t.Helper()
	ctx := context.Background()
	aside, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer aside.Rollback(ctx) //nolint:errcheck // the savepoint only undoes sql
	_, err = aside.Exec(ctx, sql)
	return err
}
