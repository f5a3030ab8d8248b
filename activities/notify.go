package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/activities/notice"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/workflows"
)

// Notifier sends the notices of the communications table: emails through
// the notification outbox and SendGrid (or the outbox alone, without an API
// key) and in-product alerts.
//
// Delivery is effectively once per (workflow, kind, slot) with one
// remaining at-least-once window: if the worker dies (or Postgres becomes
// unreachable) after SendGrid answered 2xx and before the outbox row is
// marked sent, the retried activity finds the row still pending and sends
// the notice again. SendGrid's API has no idempotency key to close it.
type Notifier struct {
	pool   *pgxpool.Pool
	mailer *sendgrid.Client // nil in outbox mode
	now    func() time.Time // replaced by tests
}

// NewNotifier builds the notifier. Without cfg.APIKey it runs in outbox
// mode and never contacts SendGrid.
func NewNotifier(pool *pgxpool.Pool, cfg sendgrid.Config) (*Notifier, error) {
	if pool == nil {
		return nil, errors.New("notifier needs a Postgres pool, got nil")
	}
	n := &Notifier{pool: pool, now: time.Now}
	if cfg.APIKey != "" {
		// The client reads the clock through n so a test's clock reaches it.
		m, err := sendgrid.NewClient(cfg, func() time.Time { return n.now() })
		if err != nil {
			return nil, err
		}
		n.mailer = m
	}
	return n, nil
}

// Register registers SendNotice under workflows.ActivitySendNotice.
func (n *Notifier) Register(r worker.ActivityRegistry) {
	r.RegisterActivityWithOptions(n.SendNotice, activity.RegisterOptions{Name: workflows.ActivitySendNotice})
}

// Outcomes of SendNotice, the outcome tag of outboxMetricNoticesSent.
const (
	outboxOutcomeSent         = "sent"
	outboxOutcomeStored       = "stored"
	outboxOutcomeDuplicate    = "duplicate"
	outboxOutcomeRejected     = "rejected"
	outboxOutcomeThrottled    = "throttled"
	outboxOutcomeUnauthorized = "unauthorized"
	outboxOutcomeUnavailable  = "unavailable"
	outboxOutcomeNoRecipients = "no-recipients"
	outboxOutcomeAlerted      = "alerted" // alert-only kinds (in-progress)
)

const outboxMetricNoticesSent = "svcupdate_notices_sent"

// Outbox row states (notification_outbox.state).
const (
	outboxStatePending  = "pending"
	outboxStateSent     = "sent"
	outboxStateStored   = "stored"
	outboxStateRejected = "rejected"
)

const (
	noticeSelectInstanceSQL = `SELECT name, time_zone FROM instances WHERE id = $1`

	// Admins first, then in the order they were added, so the deduplicated
	// list (first spelling wins) is stable.
	noticeSelectRecipientsSQL = `
SELECT email FROM recipients
WHERE instance_id = $1 AND role = ANY($2)
ORDER BY role = $3 DESC, created_at, email`

	outboxInsertSQL = `
INSERT INTO notification_outbox (workflow_id, kind, slot_start, instance_id, recipients, subject, html_body, text_body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (workflow_id, kind, slot_start) DO NOTHING`

	// The row lock is held while SendGrid is called, so two concurrent
	// executions of the same notice (a timed-out attempt still running
	// beside its retry) send once: the second waits and then sees "sent".
	outboxLockSQL = `
SELECT id, state, coalesce(message_id, '') FROM notification_outbox
WHERE workflow_id = $1 AND kind = $2 AND slot_start = $3
FOR UPDATE`

	// Recipients and bodies are rewritten with what this attempt used, so
	// the row shows what was actually sent (recipients are read per send).
	outboxMarkSQL = `
UPDATE notification_outbox
SET state = $2, attempts = attempts + $3, message_id = nullif($4, ''), last_error = nullif($5, ''),
    sent_at = $6, recipients = $7, subject = $8, html_body = $9, text_body = $10
WHERE id = $1`

	alertInsertSQL = `
INSERT INTO in_product_alerts (instance_id, workflow_id, kind, slot_start, audience, message, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workflow_id, kind, slot_start) DO NOTHING`
)

// SendNotice sends one notice to every recipient its kind addresses, read
// from Postgres now. It is idempotent per (WorkflowID, Kind, SlotStart).
func (n *Notifier) SendNotice(ctx context.Context, in workflows.SendNoticeInput) (workflows.SendNoticeResult, error) {
	spec, err := noticeValidate(in)
	if err != nil {
		return workflows.SendNoticeResult{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	instanceID := in.Update.InstanceID
	// The instance row gives the zone windows are rendered in (StatusView
	// carries none of its own) and proves the instance still exists.
	var instanceName, timeZone string
	err = n.pool.QueryRow(ctx, noticeSelectInstanceSQL, instanceID).Scan(&instanceName, &timeZone)
	if errors.Is(err, pgx.ErrNoRows) {
		msg := fmt.Sprintf("notice %q: instance %q is not in the database", in.Kind, instanceID)
		return workflows.SendNoticeResult{}, temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeNotFound, err)
	}
	if err != nil {
		return workflows.SendNoticeResult{}, fmt.Errorf("read instance %q: %w", instanceID, err)
	}
	if in.Update.InstanceName == "" {
		in.Update.InstanceName = instanceName
	}

	recipients, err := n.recipients(ctx, instanceID, spec.Audience)
	if err != nil {
		return workflows.SendNoticeResult{}, err
	}
	if len(recipients) == 0 {
		n.count(ctx, in.Kind, outboxOutcomeNoRecipients)
		msg := fmt.Sprintf("notice %q for instance %q (%s): no valid recipient among its %s", in.Kind, instanceID, instanceName, spec.Audience.Name)
		return workflows.SendNoticeResult{}, temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeNoRecipients, nil)
	}
	result := workflows.SendNoticeResult{Recipients: len(recipients)}

	if spec.Alert.Applies(in) {
		message, err := notice.RenderAlert(in, spec, timeZone)
		if err != nil {
			return result, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
		}
		if _, err := n.pool.Exec(ctx, alertInsertSQL, instanceID, in.WorkflowID, string(in.Kind), in.SlotStart, spec.Audience.AlertAudience, message, n.now()); err != nil {
			return result, fmt.Errorf("write in-product alert %q for instance %q: %w", in.Kind, instanceID, err)
		}
		result.Alerted = true
	}
	if !spec.Email {
		n.count(ctx, in.Kind, outboxOutcomeAlerted)
		return result, nil
	}

	email, err := notice.RenderEmail(in, spec, timeZone)
	if err != nil {
		return result, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	return n.sendThroughOutbox(ctx, in, recipients, email, result)
}

// sendThroughOutbox writes the outbox row, then sends unless the row says
// the notice was sent or stored already, and records the outcome.
func (n *Notifier) sendThroughOutbox(ctx context.Context, in workflows.SendNoticeInput, recipients []string, email notice.Email, result workflows.SendNoticeResult) (workflows.SendNoticeResult, error) {
	key := []any{in.WorkflowID, string(in.Kind), in.SlotStart}
	tx, err := n.pool.Begin(ctx)
	if err != nil {
		return result, fmt.Errorf("outbox: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	if _, err := tx.Exec(ctx, outboxInsertSQL, append(key, in.Update.InstanceID, recipients, email.Subject, email.HTML, email.Text)...); err != nil {
		return result, fmt.Errorf("outbox: write %q for %s: %w", in.Kind, in.WorkflowID, err)
	}
	var id int64
	var state, messageID string
	if err := tx.QueryRow(ctx, outboxLockSQL, key...).Scan(&id, &state, &messageID); err != nil {
		return result, fmt.Errorf("outbox: lock %q for %s: %w", in.Kind, in.WorkflowID, err)
	}
	// A rejected row is tried again: rejection is non-retryable, so only a
	// deliberate re-run (after fixing an address or the sender) gets here.
	if state == outboxStateSent || state == outboxStateStored {
		n.count(ctx, in.Kind, outboxOutcomeDuplicate)
		result.Duplicate, result.Emailed, result.MessageID = true, state == outboxStateSent, messageID
		return result, nil
	}

	mark := func(state string, attempted int, messageID, lastError string, sentAt *time.Time) error {
		_, err := tx.Exec(ctx, outboxMarkSQL, id, state, attempted, messageID, lastError, sentAt,
			recipients, email.Subject, email.HTML, email.Text)
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			return fmt.Errorf("outbox: mark %q for %s %s: %w", in.Kind, in.WorkflowID, state, err)
		}
		return nil
	}

	if n.mailer == nil {
		if err := mark(outboxStateStored, 0, "", "", nil); err != nil {
			return result, err
		}
		activityLogger(ctx).Info("notice stored in outbox mode, not sent (SENDGRID_API_KEY is empty)",
			"kind", in.Kind, "workflowId", in.WorkflowID, "recipients", len(recipients), "subject", email.Subject)
		n.count(ctx, in.Kind, outboxOutcomeStored)
		return result, nil
	}

	messageID, sendErr := n.mailer.Send(ctx, sendgrid.Message{
		Recipients: recipients,
		Subject:    email.Subject,
		HTML:       email.HTML,
		Text:       email.Text,
		CustomArgs: map[string]string{
			"instance_id":    in.Update.InstanceID,
			"target_version": in.Update.TargetVersion,
			"notice":         string(in.Kind),
			"workflow_id":    in.WorkflowID,
			"slot_start":     in.SlotStart.UTC().Format(time.RFC3339), // with workflow_id and notice, the outbox key
		},
	})
	if sendErr == nil {
		sentAt := n.now()
		// A failure here is the at-least-once window described on Notifier.
		if err := mark(outboxStateSent, 1, messageID, "", &sentAt); err != nil {
			return result, err
		}
		activityLogger(ctx).Info("notice sent", "kind", in.Kind, "workflowId", in.WorkflowID, "recipients", len(recipients), "messageId", messageID)
		n.count(ctx, in.Kind, outboxOutcomeSent)
		result.Emailed, result.MessageID = true, messageID
		return result, nil
	}

	logger := activityLogger(ctx)
	state, outcome, logNotSent := outboxStatePending, outboxOutcomeUnavailable, logger.Warn
	var appErr *temporal.ApplicationError
	if errors.As(sendErr, &appErr) {
		switch appErr.Type() {
		case workflows.ErrTypeMailRejected:
			state, outcome = outboxStateRejected, outboxOutcomeRejected
		case sendgrid.ErrTypeThrottled:
			outcome = outboxOutcomeThrottled
		case sendgrid.ErrTypeUnauthorized:
			// Every notice fails alike until an operator fixes the key:
			// the row stays pending for the retry, and the log says so
			// loudly (the message carries SendGrid's text, never the key).
			outcome, logNotSent = outboxOutcomeUnauthorized, logger.Error
		}
	}
	if err := mark(state, 1, "", sendErr.Error(), nil); err != nil {
		// The send error is the one that decides retrying; keep both.
		return result, errors.Join(sendErr, err)
	}
	logNotSent("notice not sent", "kind", in.Kind, "workflowId", in.WorkflowID, "recipients", len(recipients), "outcome", outcome, "error", sendErr)
	n.count(ctx, in.Kind, outcome)
	return result, sendErr
}

// recipients reads the audience's addresses now, drops invalid ones (with
// a warning naming them) and duplicates, case-insensitively.
func (n *Notifier) recipients(ctx context.Context, instanceID string, audience notice.Audience) ([]string, error) {
	rows, err := n.pool.Query(ctx, noticeSelectRecipientsSQL, instanceID, audienceRoles(audience), storeRoleAdmin)
	if err != nil {
		return nil, fmt.Errorf("read recipients of instance %q: %w", instanceID, err)
	}
	addresses, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read recipients of instance %q: %w", instanceID, err)
	}
	valid, invalid := noticeDedupeRecipients(addresses)
	if len(invalid) > 0 {
		activityLogger(ctx).Warn("dropped invalid recipient addresses", "instanceId", instanceID, "audience", audience.Name, "invalid", invalid)
	}
	return valid, nil
}

// groupRoles are the recipients.role values of the communications table's
// recipient groups.
var groupRoles = map[notice.Group]string{notice.Admins: storeRoleAdmin, notice.Users: storeRoleUser, notice.ExtraRecipients: storeRoleExtra}

// audienceRoles lists the recipients.role values audience addresses.
func audienceRoles(audience notice.Audience) []string {
	out := make([]string, len(audience.Groups))
	for i, group := range audience.Groups {
		out[i] = groupRoles[group]
	}
	return out
}

// noticeDedupeRecipients keeps each valid bare address once (first
// spelling wins, compared case-insensitively) and returns the invalid ones.
func noticeDedupeRecipients(addresses []string) (valid, invalid []string) {
	seen := make(map[string]bool, len(addresses))
	for _, raw := range addresses {
		address := strings.TrimSpace(raw)
		parsed, err := mail.ParseAddress(address)
		if err != nil || parsed.Name != "" || parsed.Address != address {
			invalid = append(invalid, raw)
			continue
		}
		key := strings.ToLower(address)
		if seen[key] {
			continue
		}
		seen[key] = true
		valid = append(valid, address)
	}
	return valid, invalid
}

// noticeValidate checks what SendNotice needs from its input and returns
// the kind's row of the communications table.
func noticeValidate(in workflows.SendNoticeInput) (notice.Spec, error) {
	spec, err := notice.For(in.Kind)
	if err != nil {
		return notice.Spec{}, err
	}
	var missing []string
	if in.WorkflowID == "" {
		missing = append(missing, "workflowId")
	}
	if in.Update.InstanceID == "" {
		missing = append(missing, "update.instanceId")
	}
	if in.SlotStart.IsZero() {
		missing = append(missing, "slotStart")
	}
	if in.Update.Primary.Start.IsZero() {
		missing = append(missing, "update.primary.start")
	}
	if len(missing) > 0 {
		return notice.Spec{}, fmt.Errorf("notice %q for workflow %q lacks %s", in.Kind, in.WorkflowID, strings.Join(missing, ", "))
	}
	if in.Kind.IsReminder() && workflows.ReminderKind(in.Offset) != in.Kind {
		return notice.Spec{}, fmt.Errorf("notice %q has offset %s, which names %q: a reminder's kind must be workflows.ReminderKind(offset)",
			in.Kind, in.Offset, workflows.ReminderKind(in.Offset))
	}
	return spec, nil
}

// activityLogger is the activity's logger, whose lines carry the workflow
// and run IDs. Outside an activity (a direct call from a test or a tool)
// it is slog's default logger.
func activityLogger(ctx context.Context) log.Logger {
	if !activity.IsActivity(ctx) {
		return log.NewStructuredLogger(slog.Default())
	}
	return activity.GetLogger(ctx)
}

// count increments svcupdate_notices_sent. Outside an activity (a direct
// call from a test or a tool) there is no handler and nothing is counted.
func (n *Notifier) count(ctx context.Context, kind workflows.NoticeKind, outcome string) {
	if !activity.IsActivity(ctx) {
		return
	}
	activity.GetMetricsHandler(ctx).
		WithTags(map[string]string{"kind": string(kind), "outcome": outcome}).
		Counter(outboxMetricNoticesSent).Inc(1)
}
