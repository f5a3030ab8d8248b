package schemas

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
)

// pgDuplicateDatabase is SQLSTATE duplicate_database.
const pgDuplicateDatabase = "42P04"

// Current fails while migrations are pending, so a worker deployed before
// `starter migrate` ran waits for it instead of failing activities. It
// only reads: creating goose's version table is the migration's job.
func Current(ctx context.Context, pool *pgxpool.Pool) error {
	want, err := latestVersion()
	if err != nil {
		return err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", goose.DefaultTablename).Scan(&exists); err != nil {
		return fmt.Errorf("looking for the schema version table: %w", err)
	}
	var have int64
	if exists {
		query := "SELECT COALESCE(MAX(version_id), 0) FROM " + pgx.Identifier{goose.DefaultTablename}.Sanitize() + " WHERE is_applied"
		if err := pool.QueryRow(ctx, query).Scan(&have); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
	}
	if have < want {
		return fmt.Errorf("the svcupdate schema is at version %d, this worker needs %d (run `starter migrate`)", have, want)
	}
	return nil
}

// latestVersion is the highest migration embedded in this binary.
func latestVersion() (int64, error) {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		return 0, fmt.Errorf("reading the embedded migrations: %w", err)
	}
	var highest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("embedded migration %s: %w", e.Name(), err)
		}
		highest = max(highest, v)
	}
	return highest, nil
}

// CreateDatabase creates the database name through conn, a connection to
// another database of the same server, unless it exists. It reports
// whether it created it.
func CreateDatabase(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return false, nil
	}
	_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgDuplicateDatabase {
		return false, nil // created by a concurrent starter
	}
	if err != nil {
		return false, fmt.Errorf("create database %q: %w", name, err)
	}
	return true, nil
}
