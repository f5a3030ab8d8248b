// Package schemas embeds the numbered SQL migrations and applies them with
// goose (github.com/pressly/goose/v3): embedded files, a Postgres advisory
// lock so concurrent starters cannot race, and a version table that makes a
// second run a no-op.
package schemas

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// FS holds every migration, named NNN_description.sql.
//
//go:embed *.sql
var FS embed.FS

// Applied is one migration that Migrate applied.
type Applied struct {
	Version int64
	Source  string
}

// Migrate applies every pending migration to the database at databaseURL
// and returns the ones it applied (none when the schema is current).
func Migrate(ctx context.Context, databaseURL string) ([]Applied, error) {
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	return MigrateDB(ctx, db)
}

// MigrateDB is Migrate on an open database/sql handle (pgx stdlib driver).
func MigrateDB(ctx context.Context, db *sql.DB) ([]Applied, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply migrations: %w", err)
	}
	applied := make([]Applied, 0, len(results))
	for _, r := range results {
		applied = append(applied, Applied{Version: r.Source.Version, Source: r.Source.Path})
	}
	return applied, nil
}
