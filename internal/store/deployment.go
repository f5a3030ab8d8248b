package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Deployment is the identity of the deployment a database belongs to, and
// the Temporal namespace it was bound to.
type Deployment struct {
	ID        string
	Namespace string
}

const selectDeployment = `SELECT id, namespace FROM deployment`

// Deployment returns the database's identity, ErrNotFound before `starter
// setup` bound it.
func (s *Store) Deployment(ctx context.Context) (Deployment, error) {
	var d Deployment
	err := s.db.QueryRow(ctx, selectDeployment).Scan(&d.ID, &d.Namespace)
	if errors.Is(err, pgx.ErrNoRows) {
		return Deployment{}, fmt.Errorf("the database has no deployment identity: %w", ErrNotFound)
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("read the deployment identity: %w", err)
	}
	return d, nil
}

const insertDeployment = `INSERT INTO deployment (id, namespace) VALUES ($1, $2) ON CONFLICT (singleton) DO NOTHING`

// ClaimDeployment writes d as the database's identity unless it has one,
// and returns the identity the database holds afterwards: d, or the one
// written first.
func (s *Store) ClaimDeployment(ctx context.Context, d Deployment) (Deployment, error) {
	if _, err := s.db.Exec(ctx, insertDeployment, d.ID, d.Namespace); err != nil {
		return Deployment{}, fmt.Errorf("write the deployment identity: %w", err)
	}
	return s.Deployment(ctx)
}
