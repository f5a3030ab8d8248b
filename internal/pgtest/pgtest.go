// Package pgtest gives each test a fresh, migrated Postgres database on the
// server at TEST_DATABASE_URL (default: the local server), dropped when the
// test ends, so tests never depend on leftover state or on each other.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
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
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v (is Postgres running?)", ServerURL(), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return dbURL
}

// UncreatedDatabase names a database that does not exist yet and returns
// its name and URL, for tests of code that creates it; whatever creates it,
// it is dropped when the test ends.
func UncreatedDatabase(t testing.TB) (name, dbURL string) {
	t.Helper()
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	name = "svcupdate_test_" + hex.EncodeToString(suffix)
	u, err := url.Parse(ServerURL())
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", ServerURL(), err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), ServerURL())
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return name, u.String()
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
