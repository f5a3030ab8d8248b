package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The names an operator types, for shell completion: instance IDs and
// release versions that start with what was typed so far.

const instanceIDsSQL = `
SELECT id FROM instances WHERE starts_with(id, $1) ORDER BY id LIMIT $2`

// InstanceIDs returns up to limit instance IDs starting with prefix, sorted.
func (s *Store) InstanceIDs(ctx context.Context, prefix string, limit int) ([]string, error) {
	return s.names(ctx, "instance IDs", instanceIDsSQL, prefix, limit)
}

const releaseVersionsSQL = `
SELECT version FROM releases WHERE starts_with(version, $1) ORDER BY ordinal DESC LIMIT $2`

// ReleaseVersions returns up to limit release versions starting with
// prefix, newest first.
func (s *Store) ReleaseVersions(ctx context.Context, prefix string, limit int) ([]string, error) {
	return s.names(ctx, "release versions", releaseVersionsSQL, prefix, limit)
}

func (s *Store) names(ctx context.Context, what, sql, prefix string, limit int) ([]string, error) {
	rows, err := s.db.Query(ctx, sql, strings.TrimSpace(prefix), limit)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return names, nil
}
