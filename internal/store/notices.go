package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Outbox row states (notification_outbox.state).
const (
	OutboxPending  = "pending"
	OutboxSent     = "sent"
	OutboxStored   = "stored"
	OutboxRejected = "rejected"
)

// OutboxNotice is one notice as written to the notification outbox. Its
// row is keyed by (WorkflowID, Kind, SlotStart) and holds the notice of
// that key with the highest Sequence claimed (schemas/004): a notice is
// sent once, and a later one of the same key (a second Reschedule to the
// same primary start) is sent too.
type OutboxNotice struct {
	WorkflowID string
	Kind       string
	SlotStart  time.Time
	Sequence   int
	InstanceID string
	Recipients []string
	Subject    string
	HTML       string
	Text       string
	// Links holds each recipient's action links (placeholder -> URL),
	// which their copy of HTML and Text carries in place of the
	// placeholders (schemas/006).
	Links map[string]map[string]string
}

const insertOutboxSQL = `
INSERT INTO notification_outbox (workflow_id, kind, slot_start, sequence, instance_id, recipients, subject, html_body, text_body, links)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, '{}'::jsonb))
ON CONFLICT (workflow_id, kind, slot_start) DO NOTHING`

// lockOutboxSQL's row lock is held while the notice is sent, so two
// concurrent executions of the same notice (a timed-out attempt still
// running beside its retry) send once: the second waits and then sees
// "sent".
const lockOutboxSQL = `
SELECT id, state, coalesce(message_id, ''), sequence FROM notification_outbox
WHERE workflow_id = $1 AND kind = $2 AND slot_start = $3
FOR UPDATE`

// markOutboxSQL rewrites recipients and bodies with what this attempt
// used, so the row shows what was actually sent (recipients are read per
// send). A notice that takes the row over from an earlier one of its key
// counts its own attempts.
const markOutboxSQL = `
UPDATE notification_outbox
SET state = $2, attempts = CASE WHEN sequence = $11 THEN attempts + $3 ELSE $3 END, sequence = $11,
    message_id = nullif($4, ''), last_error = nullif($5, ''),
    sent_at = $6, recipients = $7, subject = $8, html_body = $9, text_body = $10, links = coalesce($12, '{}'::jsonb)
WHERE id = $1`

// OutboxClaim is a notice's outbox row, locked until Finish or Close: the
// sender holds it while it sends.
type OutboxClaim struct {
	tx     pgx.Tx
	notice OutboxNotice
	id     int64
	// State and MessageID are the row's as found: a notice sent or stored
	// before is not sent again. A row that holds an earlier notice of the
	// key (a lower sequence) is found pending: this notice is a new one.
	State     string
	MessageID string
	// Superseded is set when the row holds a later notice of the key (a
	// higher sequence): this one is out of date and must not be sent.
	Superseded bool
}

// ClaimOutbox writes the notice's outbox row unless it exists and locks
// it. The caller must Close the claim.
func (s *Store) ClaimOutbox(ctx context.Context, n OutboxNotice) (*OutboxClaim, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, mapError(err, "outbox: begin")
	}
	c := &OutboxClaim{tx: tx, notice: n}
	if n.Sequence < 0 {
		c.Close(ctx)
		return nil, errorf(ErrInvalidRequest, "outbox: %q for %s has sequence %d; give zero or more", n.Kind, n.WorkflowID, n.Sequence)
	}
	if _, err := tx.Exec(ctx, insertOutboxSQL, n.WorkflowID, n.Kind, n.SlotStart, n.Sequence, n.InstanceID, n.Recipients, n.Subject, n.HTML, n.Text, n.Links); err != nil {
		c.Close(ctx)
		return nil, mapError(err, fmt.Sprintf("outbox: write %q for %s", n.Kind, n.WorkflowID))
	}
	var held int
	if err := tx.QueryRow(ctx, lockOutboxSQL, n.WorkflowID, n.Kind, n.SlotStart).Scan(&c.id, &c.State, &c.MessageID, &held); err != nil {
		c.Close(ctx)
		return nil, mapError(err, fmt.Sprintf("outbox: lock %q for %s", n.Kind, n.WorkflowID))
	}
	switch {
	case held > n.Sequence:
		c.Superseded = true
	case held < n.Sequence:
		c.State, c.MessageID = OutboxPending, ""
	}
	return c, nil
}

// OutboxOutcome is what one attempt to send a notice did.
type OutboxOutcome struct {
	State     string
	Attempted int // 1 when the mail service was called, 0 when not
	MessageID string
	LastError string
	SentAt    *time.Time
}

// Finish records the outcome on the claimed row, with the claim's
// recipients and bodies, and releases it.
func (c *OutboxClaim) Finish(ctx context.Context, o OutboxOutcome) error {
	n := c.notice
	if c.Superseded {
		c.Close(ctx)
		return errorf(ErrInvalidRequest, "outbox: %q for %s (sequence %d) was superseded by a later notice of its slot; it records no outcome",
			n.Kind, n.WorkflowID, n.Sequence)
	}
	_, err := c.tx.Exec(ctx, markOutboxSQL, c.id, o.State, o.Attempted, o.MessageID, o.LastError, o.SentAt,
		n.Recipients, n.Subject, n.HTML, n.Text, n.Sequence, n.Links)
	if err == nil {
		err = c.tx.Commit(ctx)
	}
	return mapError(err, fmt.Sprintf("outbox: mark %q for %s %s", n.Kind, n.WorkflowID, o.State))
}

// Close releases the claim and leaves the row as it was; after Finish it
// does nothing. It runs even when ctx is cancelled.
func (c *OutboxClaim) Close(ctx context.Context) {
	_ = c.tx.Rollback(context.WithoutCancel(ctx)) // an error only says the claim is finished
}

// Alert is an in-product alert. Its key is (WorkflowID, Kind, SlotStart).
type Alert struct {
	InstanceID string
	WorkflowID string
	Kind       string
	SlotStart  time.Time
	Audience   string // in_product_alerts.audience
	Message    string
	CreatedAt  time.Time
}

const insertAlertSQL = `
INSERT INTO in_product_alerts (instance_id, workflow_id, kind, slot_start, audience, message, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workflow_id, kind, slot_start) DO NOTHING`

// AddAlert writes an alert once; adding it again changes nothing.
func (s *Store) AddAlert(ctx context.Context, a Alert) error {
	_, err := s.db.Exec(ctx, insertAlertSQL, a.InstanceID, a.WorkflowID, a.Kind, a.SlotStart, a.Audience, a.Message, a.CreatedAt)
	return mapError(err, fmt.Sprintf("write in-product alert %q for instance %q", a.Kind, a.InstanceID))
}

// OutboxBacklog is what the outbox holds unsent: how many notices, and how
// long the oldest has waited.
type OutboxBacklog struct {
	Pending   int64
	OldestAge time.Duration
}

const selectOutboxBacklog = `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
FROM notification_outbox WHERE state = 'pending'`

// PendingNotices reads the outbox's backlog, for the metrics that alert
// on notices stuck there.
func (s *Store) PendingNotices(ctx context.Context) (OutboxBacklog, error) {
	var b OutboxBacklog
	var seconds float64
	if err := s.db.QueryRow(ctx, selectOutboxBacklog).Scan(&b.Pending, &seconds); err != nil {
		return OutboxBacklog{}, fmt.Errorf("read the outbox backlog: %w", err)
	}
	b.OldestAge = time.Duration(seconds * float64(time.Second))
	return b, nil
}
