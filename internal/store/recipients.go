package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Recipients are read in two orders: by address for people and workflows
// (Recipients, BookRolloutSlots), and in the order notices address them
// (AudienceAddresses), where the first spelling of a duplicate wins.

// InstanceRecipients is who hears about an instance's updates.
type InstanceRecipients struct {
	CurrentVersion string
	Admins         []string
	Users          []string
	Extra          []string
}

const instanceVersionSQL = `SELECT current_version FROM instances WHERE id = $1`

const instanceRecipientsSQL = `
SELECT role, email FROM recipients WHERE instance_id = $1 ORDER BY role, lower(email)`

// Recipients returns an instance's current version and recipients (each
// list sorted by address).
func (s *Store) Recipients(ctx context.Context, instanceID string) (InstanceRecipients, error) {
	var r InstanceRecipients
	err := s.db.QueryRow(ctx, instanceVersionSQL, instanceID).Scan(&r.CurrentVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, errorf(ErrNotFound, "instance %q does not exist", instanceID)
	}
	if err != nil {
		return r, mapError(err, fmt.Sprintf("read instance %q", instanceID))
	}
	return r, readRecipients(ctx, s.db, instanceID, &r)
}

// readRecipients fills r's lists with the instance's recipients, each
// sorted by address.
func readRecipients(ctx context.Context, db DBTX, instanceID string, r *InstanceRecipients) error {
	rows, err := db.Query(ctx, instanceRecipientsSQL, instanceID)
	if err != nil {
		return mapError(err, fmt.Sprintf("read the recipients of instance %q", instanceID))
	}
	var role, email string
	_, err = pgx.ForEachRow(rows, []any{&role, &email}, func() error {
		switch role {
		case RoleAdmin:
			r.Admins = append(r.Admins, email)
		case RoleUser:
			r.Users = append(r.Users, email)
		case RoleExtra:
			r.Extra = append(r.Extra, email)
		}
		return nil
	})
	return mapError(err, fmt.Sprintf("read the recipients of instance %q", instanceID))
}

// audienceSQL puts admins first, then the others in the order they were
// added, so the deduplicated list (first spelling wins) is stable.
const audienceSQL = `
SELECT email FROM recipients
WHERE instance_id = $1 AND role = ANY($2)
ORDER BY role = $3 DESC, created_at, email`

// AudienceAddresses returns the addresses of an instance's recipients in
// roles, as stored (a notice checks and deduplicates them): admins first,
// then in the order they were added.
func (s *Store) AudienceAddresses(ctx context.Context, instanceID string, roles []string) ([]string, error) {
	rows, err := s.db.Query(ctx, audienceSQL, instanceID, roles, RoleAdmin)
	if err != nil {
		return nil, mapError(err, fmt.Sprintf("read the recipients of instance %q", instanceID))
	}
	addresses, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return addresses, mapError(err, fmt.Sprintf("read the recipients of instance %q", instanceID))
}
