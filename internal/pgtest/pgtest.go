// Package pgtest gives tests migrated Postgres databases on the server at
// TEST_DATABASE_URL (default: the local server), so tests never depend on
// leftover state or on each other: a transaction rolled back when the test
// ends (TestTx), cheap enough for every test that needs no concurrency, or
// a fresh database dropped when the test ends (NewDatabase, NewPool).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svcupdate/svcupdate/schemas"
)

// DefaultServerURL is the local server every developer and CI machine has.
const DefaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL is the maintenance database URL tests create databases through.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultServerURL
}

// NewDatabase creates an empty, migrated database and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dbURL := NewEmptyDatabase(t)
	if _, err := schemas.Migrate(context.Background(), dbURL); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return dbURL
}

// NewEmptyDatabase creates a database without the svcupdate schema, for
// tests of what happens before migration, and returns its URL.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	name, dbURL := UncreatedDatabase(t)
	if err := createDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	return dbURL
}

func createDatabase(ctx context.Context, name string) error {
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return fmt.Errorf("pgtest: connect to %s: %w (is Postgres running?)", ServerURL(), err)
	}
	defer admin.Close(ctx)
	if _, err := schemas.CreateDatabase(ctx, admin, name); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// UncreatedDatabase names a database that does not exist yet and returns
// its name and URL, for tests of code that creates it; whatever creates it,
// it is dropped when the test ends.
func UncreatedDatabase(t testing.TB) (name, dbURL string) {
	t.Helper()
	name, dbURL, err := newName()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(name); err != nil {
			t.Log(err)
		}
	})
	return name, dbURL
}

// newName returns a random database name and its URL on the server.
func newName() (name, dbURL string, err error) {
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return "", "", err
	}
	name = "svcupdate_test_" + hex.EncodeToString(suffix)
	u, err := url.Parse(ServerURL())
	if err != nil {
		return "", "", fmt.Errorf("pgtest: parse %s: %w", ServerURL(), err)
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

func dropDatabase(name string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return fmt.Errorf("pgtest: drop %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop %s: %w", name, err)
	}
	return nil
}

// NewPool creates a fresh migrated database and a pool on it, closed when
// the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(t))
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// shared is the database TestTx hands out transactions on: one per test
// binary, created and migrated by the first TestTx and dropped by Run.
var shared struct {
	mainRuns bool // Run is the binary's TestMain
	once     sync.Once
	name     string
	pool     *pgxpool.Pool
	err      error
}

// Run runs a package's tests and then drops the database TestTx created.
// A package whose tests call TestTx has it as its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
func Run(m *testing.M) int {
	shared.mainRuns = true
	code := m.Run()
	if shared.pool != nil {
		shared.pool.Close()
		if err := dropDatabase(shared.name); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// TestTx returns a transaction on the test binary's shared, migrated
// database, rolled back when the test ends, so parallel tests see neither
// each other's rows nor earlier runs'. Code under test that begins a
// transaction on it gets a savepoint. Tests of real concurrency need
// NewDatabase instead: two tests writing the same keys wait for each other.
func TestTx(t testing.TB) pgx.Tx {
	t.Helper()
	if !shared.mainRuns {
		t.Fatal("pgtest: TestTx needs the package's TestMain to call pgtest.Run, which drops the shared database")
	}
	shared.once.Do(func() { shared.name, shared.pool, shared.err = sharedDatabase() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	ctx := context.Background()
	tx, err := shared.pool.Begin(ctx)
	if err != nil {
		t.Fatalf("pgtest: begin: %v", err)
	}
	t.Cleanup(func() {
		if err := tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
			t.Errorf("pgtest: roll back: %v", err)
		}
	})
	return tx
}

// sharedDatabase creates and migrates the database of TestTx and opens a
// pool on it; on failure, nothing is left behind.
func sharedDatabase() (name string, pool *pgxpool.Pool, err error) {
	ctx := context.Background()
	name, dbURL, err := newName()
	if err != nil {
		return "", nil, err
	}
	if err := createDatabase(ctx, name); err != nil {
		return "", nil, err
	}
	_, err = schemas.Migrate(ctx, dbURL)
	if err == nil {
		pool, err = pgxpool.New(ctx, dbURL)
	}
	if err != nil {
		return "", nil, errors.Join(fmt.Errorf("pgtest: shared database: %w", err), dropDatabase(name))
	}
	return name, pool, nil
}
