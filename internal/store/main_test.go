package store_test

import (
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// setup returns a store loaded with fl in a transaction of its own, rolled
// back when the test ends, and the transaction, for statements the store
// does not offer.
func setup(t *testing.T, fl *fleet.Fleet) (*store.Store, pgx.Tx) {
	t.Helper()
	tx := pgtest.TestTx(t)
	return storetest.Load(t, tx, fl), tx
}

func wantErr(t *testing.T, err, sentinel error, msg string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	if err.Error() != msg {
		t.Fatalf("message = %q\nwant      %q", err.Error(), msg)
	}
}
