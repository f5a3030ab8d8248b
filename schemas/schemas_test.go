package schemas_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/schemas"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t) // applies every migration once
	applied, err := schemas.Migrate(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(applied) != 0 {
		t.Fatalf("second migrate applied %v, want nothing", applied)
	}
}

func TestCurrentWaitsForPendingMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewEmptyDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := schemas.Current(ctx, pool); err == nil || !strings.Contains(err.Error(), "is at version 0") || !strings.Contains(err.Error(), "run `starter migrate`") {
		t.Errorf("Current before migrating: %v, want version 0 and what to run", err)
	}
	if _, err := schemas.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	if err := schemas.Current(ctx, pool); err != nil {
		t.Errorf("Current after migrating: %v", err)
	}
}

func TestCreateDatabaseOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name, _ := pgtest.UncreatedDatabase(t)
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i, want := range []bool{true, false} {
		created, err := schemas.CreateDatabase(ctx, conn, name)
		if err != nil || created != want {
			t.Errorf("CreateDatabase call %d: created %t, %v; want %t", i+1, created, err, want)
		}
	}
}
