package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svcupdate/svcupdate/workflows"
)

// The portal's reads and writes: the updates an admin decides about, the
// slots still free, the links used, and the mails it sends outside a
// workflow (sign-in links) and shows (the demo mailbox).

// AdminUpdate is one update as its workflow last recorded it, with the
// instance's zone and region.
type AdminUpdate struct {
	View     workflows.StatusView
	Region   string
	TimeZone string
}

const adminUpdatesSQL = `
SELECT u.snapshot, i.region, i.time_zone
FROM updates u
JOIN instances i ON i.id = u.instance_id
WHERE EXISTS (SELECT 1 FROM recipients r
              WHERE r.instance_id = u.instance_id AND r.role = $3 AND lower(r.email) = lower($1))
  AND ($2 = '' OR u.workflow_id = $2)
ORDER BY u.primary_start, u.instance_id`

// AdminUpdates lists every update of every instance email is an admin of
// now, earliest primary slot first.
func (s *Store) AdminUpdates(ctx context.Context, email string) ([]AdminUpdate, error) {
	return s.adminUpdates(ctx, email, "")
}

// AdminUpdateOf returns one update if email is an admin of its instance
// now; ErrNotFound when the update does not exist or email is not.
func (s *Store) AdminUpdateOf(ctx context.Context, email, workflowID string) (AdminUpdate, error) {
	list, err := s.adminUpdates(ctx, email, workflowID)
	if err != nil {
		return AdminUpdate{}, err
	}
	if len(list) == 0 {
		return AdminUpdate{}, errorf(ErrNotFound, "%s is not an admin of the instance of %s", email, workflowID)
	}
	return list[0], nil
}

func (s *Store) adminUpdates(ctx context.Context, email, workflowID string) ([]AdminUpdate, error) {
	rows, err := s.db.Query(ctx, adminUpdatesSQL, email, workflowID, RoleAdmin)
	if err != nil {
		return nil, mapError(err, "read the updates of "+email)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AdminUpdate, error) {
		var u AdminUpdate
		var snapshot []byte
		if err := row.Scan(&snapshot, &u.Region, &u.TimeZone); err != nil {
			return u, err
		}
		return u, json.Unmarshal(snapshot, &u.View)
	})
	return list, mapError(err, "read the updates of "+email)
}

const isAdminAnywhereSQL = `
SELECT EXISTS (SELECT 1 FROM recipients WHERE role = $2 AND lower(email) = lower($1))`

// IsAdmin reports whether email is an admin of at least one instance now.
func (s *Store) IsAdmin(ctx context.Context, email string) (bool, error) {
	var ok bool
	err := s.db.QueryRow(ctx, isAdminAnywhereSQL, email, RoleAdmin).Scan(&ok)
	return ok, mapError(err, "read whether "+email+" is an admin")
}

// FreeSlot is an offered slot that still has room.
type FreeSlot struct {
	Version string
	Start   time.Time
	Window  time.Duration
	Free    int
}

const openSlotsSQL = `
SELECT s.release_version, s.starts_at, s.window_length, s.capacity - s.booked
FROM slots s
JOIN releases r ON r.version = s.release_version
WHERE s.region = $1 AND s.booked < s.capacity AND s.starts_at > $3
  AND r.ordinal >= (SELECT ordinal FROM releases WHERE version = $2)
  AND s.starts_at >= r.period_start AND s.starts_at < r.period_end
ORDER BY r.ordinal, s.starts_at`

// FreeSlots lists the slots in region of release version and of every
// later release that start after `after` and still have room, by release
// and start.
func (s *Store) FreeSlots(ctx context.Context, region, version string, after time.Time) ([]FreeSlot, error) {
	rows, err := s.db.Query(ctx, openSlotsSQL, region, version, after)
	if err != nil {
		return nil, mapError(err, "read the free slots in "+region)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (FreeSlot, error) {
		var f FreeSlot
		var window pgtype.Interval
		err := row.Scan(&f.Version, &f.Start, &window, &f.Free)
		f.Start, f.Window = f.Start.UTC(), duration(window)
		return f, err
	})
	return list, mapError(err, "read the free slots in "+region)
}

// UsedLink is a portal link at the moment it is used.
type UsedLink struct {
	Nonce      string
	Action     string
	Recipient  string
	WorkflowID string
	Expires    time.Time
}

// ErrLinkUsed: the link was used before.
var ErrLinkUsed = errors.New("link already used")

const useLinkSQL = `
INSERT INTO portal_used_links (nonce, action, recipient, workflow_id, expires_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (nonce) DO NOTHING`

// UseLink records link as used and runs act in the same transaction: when
// act fails, the link stays unused and act's error is returned. A link
// used before is ErrLinkUsed and act does not run; a concurrent use waits
// for the first to finish.
func (s *Store) UseLink(ctx context.Context, link UsedLink, act func(context.Context) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return mapError(err, "use a link: begin")
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tag, err := tx.Exec(ctx, useLinkSQL, link.Nonce, link.Action, link.Recipient, link.WorkflowID, link.Expires)
	if err != nil {
		return mapError(err, "use a link")
	}
	if tag.RowsAffected() == 0 {
		return ErrLinkUsed
	}
	if err := act(ctx); err != nil {
		return err
	}
	return mapError(tx.Commit(ctx), "use a link: commit")
}

const linkUsedSQL = `SELECT EXISTS (SELECT 1 FROM portal_used_links WHERE nonce = $1)`

// LinkUsed reports whether the link with nonce was used.
func (s *Store) LinkUsed(ctx context.Context, nonce string) (bool, error) {
	var used bool
	err := s.db.QueryRow(ctx, linkUsedSQL, nonce).Scan(&used)
	return used, mapError(err, "read whether a link was used")
}

// PortalMail is a mail the portal sends outside any workflow: a sign-in
// link. It goes through the outbox like every notice.
type PortalMail struct {
	Key       string // unique per mail: the sign-in link's nonce
	Kind      string
	Recipient string
	Subject   string
	HTML      string
	Text      string
	State     string // OutboxSent or OutboxStored
	MessageID string
	LastError string
	At        time.Time
}

const portalMailSQL = `
INSERT INTO notification_outbox (workflow_id, kind, slot_start, instance_id, recipients, subject, html_body, text_body,
                                 state, attempts, message_id, last_error, sent_at)
VALUES ($1, $2, $3, '', $4, $5, $6, $7, $8, $9, nullif($10, ''), nullif($11, ''), $12)`

// AddPortalMail records a portal mail in the outbox.
func (s *Store) AddPortalMail(ctx context.Context, m PortalMail) error {
	attempts := 0
	var sentAt *time.Time
	if m.State != OutboxStored {
		attempts = 1
		sentAt = &m.At
	}
	_, err := s.db.Exec(ctx, portalMailSQL, "portal:"+m.Key, m.Kind, m.At, []string{m.Recipient}, m.Subject, m.HTML, m.Text,
		m.State, attempts, m.MessageID, m.LastError, sentAt)
	return mapError(err, fmt.Sprintf("outbox: write the %s mail to %s", m.Kind, m.Recipient))
}

// OutboxMail is one outbox row as the demo mailbox shows it.
type OutboxMail struct {
	ID         int64
	WorkflowID string
	Kind       string
	Recipients []string
	Subject    string
	HTML       string
	Text       string
	State      string
	// Links holds each recipient's action links: placeholder -> URL.
	Links     map[string]map[string]string
	CreatedAt time.Time
}

const outboxMailsSQL = `
SELECT id, workflow_id, kind, recipients, subject, html_body, text_body, state, links, created_at
FROM notification_outbox WHERE $1 = 0 OR id = $1 ORDER BY id DESC LIMIT $2`

// OutboxMails lists the latest limit rows of the outbox, newest first.
func (s *Store) OutboxMails(ctx context.Context, limit int) ([]OutboxMail, error) {
	return s.outboxMails(ctx, 0, limit)
}

// OutboxMailByID returns one row of the outbox; ErrNotFound when none.
func (s *Store) OutboxMailByID(ctx context.Context, id int64) (OutboxMail, error) {
	list, err := s.outboxMails(ctx, id, 1)
	if err != nil {
		return OutboxMail{}, err
	}
	if len(list) == 0 {
		return OutboxMail{}, errorf(ErrNotFound, "outbox mail %d does not exist", id)
	}
	return list[0], nil
}

func (s *Store) outboxMails(ctx context.Context, id int64, limit int) ([]OutboxMail, error) {
	rows, err := s.db.Query(ctx, outboxMailsSQL, id, limit)
	if err != nil {
		return nil, mapError(err, "read the outbox")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OutboxMail, error) {
		var m OutboxMail
		err := row.Scan(&m.ID, &m.WorkflowID, &m.Kind, &m.Recipients, &m.Subject, &m.HTML, &m.Text, &m.State, &m.Links, &m.CreatedAt)
		m.CreatedAt = m.CreatedAt.UTC()
		return m, err
	})
	return list, mapError(err, "read the outbox")
}
