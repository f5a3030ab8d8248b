package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/store"
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
	store  *store.Store
	mailer *mailSendGrid // nil in outbox mode
	logger *slog.Logger
	now    func() time.Time // replaced by tests
}

// NewNotifier builds the notifier. Without cfg.SendGridAPIKey it runs in
// outbox mode and never contacts SendGrid.
func NewNotifier(st *store.Store, cfg MailerConfig, logger *slog.Logger) (*Notifier, error) {
	if st == nil {
		return nil, errors.New("notifier needs a store, got nil")
	}
	if logger == nil {
		logger = slog.Default()
	}
	n := &Notifier{store: st, logger: logger, now: time.Now}
	if cfg.SendGridAPIKey != "" {
		// The mailer reads the clock through n so a test's clock reaches it.
		m, err := newMailSendGrid(cfg, func() time.Time { return n.now() })
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

// SendNotice sends one notice to every recipient its kind addresses, read
// from Postgres now. It is idempotent per (WorkflowID, Kind, SlotStart).
func (n *Notifier) SendNotice(ctx context.Context, in workflows.SendNoticeInput) (workflows.SendNoticeResult, error) {
	spec, err := noticeValidate(in)
	if err != nil {
		return workflows.SendNoticeResult{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	instanceID := in.Update.InstanceID
	// The instance gives the zone windows are rendered in (StatusView
	// carries none of its own), and reading it proves it still exists.
	instance, err := n.store.Instance(ctx, instanceID)
	if errors.Is(err, store.ErrNotFound) {
		msg := fmt.Sprintf("notice %q: instance %q is not in the database", in.Kind, instanceID)
		return workflows.SendNoticeResult{}, temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeNotFound, err)
	}
	if err != nil {
		return workflows.SendNoticeResult{}, err
	}
	instanceName, timeZone := instance.Name, instance.TimeZone
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

	if spec.Alert.applies(in) {
		message, err := renderAlert(in, spec, timeZone)
		if err != nil {
			return result, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
		}
		err = n.store.AddAlert(ctx, store.Alert{InstanceID: instanceID, WorkflowID: in.WorkflowID, Kind: string(in.Kind),
			SlotStart: in.SlotStart, Audience: spec.Audience.AlertAudience, Message: message, CreatedAt: n.now()})
		if err != nil {
			return result, err
		}
		result.Alerted = true
	}
	if !spec.Email {
		n.count(ctx, in.Kind, outboxOutcomeAlerted)
		return result, nil
	}

	email, err := renderEmail(in, spec, timeZone)
	if err != nil {
		return result, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	return n.sendThroughOutbox(ctx, in, recipients, email, result)
}

// sendThroughOutbox writes the outbox row, then sends unless the row says
// the notice was sent or stored already, and records the outcome. The row
// stays locked while SendGrid is called, so concurrent executions of one
// notice send it once.
func (n *Notifier) sendThroughOutbox(ctx context.Context, in workflows.SendNoticeInput, recipients []string, email renderedEmail, result workflows.SendNoticeResult) (workflows.SendNoticeResult, error) {
	claim, err := n.store.ClaimOutbox(ctx, store.OutboxNotice{
		WorkflowID: in.WorkflowID, Kind: string(in.Kind), SlotStart: in.SlotStart, InstanceID: in.Update.InstanceID,
		Recipients: recipients, Subject: email.Subject, HTML: email.HTML, Text: email.Text,
	})
	if err != nil {
		return result, err
	}
	defer claim.Close(ctx)

	// A rejected row is tried again: rejection is non-retryable, so only a
	// deliberate re-run (after fixing an address or the sender) gets here.
	if claim.State == store.OutboxSent || claim.State == store.OutboxStored {
		n.count(ctx, in.Kind, outboxOutcomeDuplicate)
		result.Duplicate, result.Emailed, result.MessageID = true, claim.State == store.OutboxSent, claim.MessageID
		return result, nil
	}

	if n.mailer == nil {
		if err := claim.Finish(ctx, store.OutboxOutcome{State: store.OutboxStored}); err != nil {
			return result, err
		}
		n.logger.Info("notice stored in outbox mode, not sent (SENDGRID_API_KEY is empty)",
			"kind", in.Kind, "workflow", in.WorkflowID, "recipients", len(recipients), "subject", email.Subject)
		n.count(ctx, in.Kind, outboxOutcomeStored)
		return result, nil
	}

	messageID, sendErr := n.mailer.send(ctx, mailMessage{
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
		if err := claim.Finish(ctx, store.OutboxOutcome{State: store.OutboxSent, Attempted: 1, MessageID: messageID, SentAt: &sentAt}); err != nil {
			return result, err
		}
		n.logger.Info("notice sent", "kind", in.Kind, "workflow", in.WorkflowID, "recipients", len(recipients), "messageId", messageID)
		n.count(ctx, in.Kind, outboxOutcomeSent)
		result.Emailed, result.MessageID = true, messageID
		return result, nil
	}

	state, outcome, level := store.OutboxPending, outboxOutcomeUnavailable, slog.LevelWarn
	var appErr *temporal.ApplicationError
	if errors.As(sendErr, &appErr) {
		switch appErr.Type() {
		case workflows.ErrTypeMailRejected:
			state, outcome = store.OutboxRejected, outboxOutcomeRejected
		case mailErrTypeThrottled:
			outcome = outboxOutcomeThrottled
		case mailErrTypeUnauthorized:
			// Every notice fails alike until an operator fixes the key:
			// the row stays pending for the retry, and the log says so
			// loudly (the message carries SendGrid's text, never the key).
			outcome, level = outboxOutcomeUnauthorized, slog.LevelError
		}
	}
	if err := claim.Finish(ctx, store.OutboxOutcome{State: state, Attempted: 1, LastError: sendErr.Error()}); err != nil {
		// The send error is the one that decides retrying; keep both.
		return result, errors.Join(sendErr, err)
	}
	n.logger.Log(ctx, level, "notice not sent", "kind", in.Kind, "workflow", in.WorkflowID, "recipients", len(recipients), "outcome", outcome, "error", sendErr)
	n.count(ctx, in.Kind, outcome)
	return result, sendErr
}

// recipients reads the audience's addresses now, drops invalid ones (with
// a warning naming them) and duplicates, case-insensitively.
func (n *Notifier) recipients(ctx context.Context, instanceID string, audience noticeAudience) ([]string, error) {
	addresses, err := n.store.AudienceAddresses(ctx, instanceID, audience.Roles)
	if err != nil {
		return nil, err
	}
	valid, invalid := noticeDedupeRecipients(addresses)
	if len(invalid) > 0 {
		n.logger.Warn("dropped invalid recipient addresses", "instance", instanceID, "audience", audience.Name, "invalid", invalid)
	}
	return valid, nil
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
func noticeValidate(in workflows.SendNoticeInput) (noticeSpec, error) {
	spec, err := noticeSpecFor(in.Kind)
	if err != nil {
		return noticeSpec{}, err
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
		return noticeSpec{}, fmt.Errorf("notice %q for workflow %q lacks %s", in.Kind, in.WorkflowID, strings.Join(missing, ", "))
	}
	if in.Kind.IsReminder() && workflows.ReminderKind(in.Offset) != in.Kind {
		return noticeSpec{}, fmt.Errorf("notice %q has offset %s, which names %q: a reminder's kind must be workflows.ReminderKind(offset)",
			in.Kind, in.Offset, workflows.ReminderKind(in.Offset))
	}
	return spec, nil
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
