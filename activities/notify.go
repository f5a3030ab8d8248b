package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/activities/notice"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// Notifier sends the notices of the communications table: emails through
// the notification outbox and SendGrid (or the outbox alone, without an API
// key) and in-product alerts.
//
// Delivery is effectively once per (workflow, kind, slot, sequence) with
// one remaining at-least-once window: if the worker dies (or Postgres becomes
// unreachable) after SendGrid answered 2xx and before the outbox row is
// marked sent, the retried activity finds the row still pending and sends
// the notice again. SendGrid's API has no idempotency key to close it.
type Notifier struct {
	store  *store.Store
	mailer *sendgrid.Client // nil in outbox mode
	now    func() time.Time // replaced by tests
	links  *ActionLinks     // nil: emails carry no action links
	// organizer is the sender's address, the organizer of calendar invites.
	organizer string
}

// NewNotifier builds the notifier. Without cfg.APIKey it runs in outbox
// mode and never contacts SendGrid.
func NewNotifier(st *store.Store, cfg sendgrid.Config) (*Notifier, error) {
	if st == nil {
		return nil, errors.New("notifier needs a store, got nil")
	}
	n := &Notifier{store: st, now: time.Now, organizer: "updates@example.com"}
	if from, err := mail.ParseAddress(cfg.From); err == nil {
		n.organizer = from.Address
	}
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

// mailPausedUntil is when SendGrid's rate limit lets the next request
// through (zero in outbox mode).
func (n *Notifier) mailPausedUntil() time.Time {
	if n.mailer == nil {
		return time.Time{}
	}
	return n.mailer.PausedUntil()
}

// Register registers SendNotice under workflows.ActivitySendNotice.
func (n *Notifier) Register(r worker.ActivityRegistry) {
	r.RegisterActivityWithOptions(n.SendNotice, activity.RegisterOptions{Name: workflows.ActivitySendNotice})
}

// Outcomes of SendNotice, the outcome tag of metricNoticesSent.
const (
	outcomeSent         = "sent"
	outcomeStored       = "stored"
	outcomeDuplicate    = "duplicate"
	outcomeSuperseded   = "superseded" // a later notice of the same kind and slot took its place
	outcomeRejected     = "rejected"
	outcomeThrottled    = "throttled"
	outcomeUnauthorized = "unauthorized"
	outcomeUnavailable  = "unavailable"
	outcomeNoRecipients = "no-recipients"
	outcomeAlerted      = "alerted" // alert-only kinds (in-progress)
)

const metricNoticesSent = "svcupdate_notices_sent"

// SendNotice sends one notice to every recipient its kind addresses, read
// from Postgres now. It is idempotent per (WorkflowID, Kind, SlotStart,
// Sequence).
func (n *Notifier) SendNotice(ctx context.Context, in workflows.SendNoticeInput) (workflows.SendNoticeResult, error) {
	spec, err := validateNotice(in)
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
		n.count(ctx, in.Kind, outcomeNoRecipients)
		msg := fmt.Sprintf("notice %q for instance %q (%s): no valid recipient among its %s", in.Kind, instanceID, instanceName, spec.Audience.Name)
		return workflows.SendNoticeResult{}, temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeNoRecipients, nil)
	}
	result := workflows.SendNoticeResult{Recipients: len(recipients)}

	if spec.Alert.Applies(in) {
		message, err := notice.RenderAlert(in, spec, timeZone)
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
		n.count(ctx, in.Kind, outcomeAlerted)
		return result, nil
	}

	free, err := n.freeSlots(ctx, spec, instance.Region, in.Update.TargetVersion)
	if err != nil {
		return result, err
	}
	email, err := notice.RenderEmailWith(in, spec, timeZone, notice.Options{Actions: n.links != nil, FreeSlots: free})
	if err != nil {
		return result, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	if n.links != nil && spec.Actions {
		if email.Substitutions, err = n.actionSubstitutions(ctx, in, spec, recipients, timeZone); err != nil {
			return result, err
		}
	}
	invite, ok, err := notice.RenderInvite(in, spec, timeZone, n.organizer, n.now())
	if err != nil {
		return result, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	if ok {
		email.Attachments = []sendgrid.Attachment{{Filename: invite.Filename, ContentType: invite.ContentType(), Content: invite.Content}}
	}
	return n.sendThroughOutbox(ctx, in, recipients, email, result)
}

// sendThroughOutbox writes the outbox row, then sends unless the row says
// the notice was sent or stored already, and records the outcome. The row
// stays locked while SendGrid is called, so concurrent executions of one
// notice send it once.
func (n *Notifier) sendThroughOutbox(ctx context.Context, in workflows.SendNoticeInput, recipients []string, email notice.Email, result workflows.SendNoticeResult) (workflows.SendNoticeResult, error) {
	claim, err := n.store.ClaimOutbox(ctx, store.OutboxNotice{
		WorkflowID: in.WorkflowID, Kind: string(in.Kind), SlotStart: in.SlotStart, Sequence: in.Sequence, InstanceID: in.Update.InstanceID,
		Recipients: recipients, Subject: email.Subject, HTML: email.HTML, Text: email.Text, Links: email.Substitutions,
	})
	if err != nil {
		return result, err
	}
	defer claim.Close(ctx)

	// A later Reschedule to the same slot sent its own notice meanwhile:
	// this one's schedule is out of date.
	if claim.Superseded {
		n.count(ctx, in.Kind, outcomeSuperseded)
		activityLogger(ctx).Info("notice not sent: a later one for the same slot was", "kind", in.Kind,
			"workflowId", in.WorkflowID, "sequence", in.Sequence)
		result.Superseded = true
		return result, nil
	}
	// A rejected row is tried again: rejection is non-retryable, so only a
	// deliberate re-run (after fixing an address or the sender) gets here.
	if claim.State == store.OutboxSent || claim.State == store.OutboxStored {
		n.count(ctx, in.Kind, outcomeDuplicate)
		result.Duplicate, result.Emailed, result.MessageID = true, claim.State == store.OutboxSent, claim.MessageID
		return result, nil
	}

	if n.mailer == nil {
		if err := claim.Finish(ctx, store.OutboxOutcome{State: store.OutboxStored}); err != nil {
			return result, err
		}
		activityLogger(ctx).Info("notice stored in outbox mode, not sent (SENDGRID_API_KEY is empty)",
			"kind", in.Kind, "workflowId", in.WorkflowID, "recipients", len(recipients), "subject", email.Subject)
		n.count(ctx, in.Kind, outcomeStored)
		return result, nil
	}

	messageID, sendErr := n.mailer.Send(ctx, sendgrid.Message{
		Recipients:    recipients,
		Subject:       email.Subject,
		HTML:          email.HTML,
		Text:          email.Text,
		Substitutions: email.Substitutions,
		Attachments:   email.Attachments,
		CustomArgs: map[string]string{
			"instance_id":    in.Update.InstanceID,
			"target_version": in.Update.TargetVersion,
			"notice":         string(in.Kind),
			"workflow_id":    in.WorkflowID,
			"slot_start":     in.SlotStart.UTC().Format(time.RFC3339), // with workflow_id, notice and sequence, the outbox key
			"sequence":       strconv.Itoa(in.Sequence),
		},
	})
	if sendErr == nil {
		sentAt := n.now()
		// The mail is out: record it even when ctx ended meanwhile (the
		// worker stopping), or it would be sent again. A failure here is
		// the at-least-once window described on Notifier.
		settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		if err := claim.Finish(settle, store.OutboxOutcome{State: store.OutboxSent, Attempted: 1, MessageID: messageID, SentAt: &sentAt}); err != nil {
			return result, err
		}
		activityLogger(ctx).Info("notice sent", "kind", in.Kind, "workflowId", in.WorkflowID, "recipients", len(recipients), "messageId", messageID)
		n.count(ctx, in.Kind, outcomeSent)
		result.Emailed, result.MessageID = true, messageID
		return result, nil
	}

	logger := activityLogger(ctx)
	state, outcome, logNotSent := store.OutboxPending, outcomeUnavailable, logger.Warn
	var appErr *temporal.ApplicationError
	if errors.As(sendErr, &appErr) {
		switch appErr.Type() {
		case workflows.ErrTypeMailRejected:
			state, outcome = store.OutboxRejected, outcomeRejected
		case sendgrid.ErrTypeThrottled:
			outcome = outcomeThrottled
		case sendgrid.ErrTypeUnauthorized:
			// Every notice fails alike until an operator fixes the key:
			// the row stays pending for the retry, and the log says so
			// loudly (the message carries SendGrid's text, never the key).
			outcome, logNotSent = outcomeUnauthorized, logger.Error
		}
	}
	if err := claim.Finish(ctx, store.OutboxOutcome{State: state, Attempted: 1, LastError: sendErr.Error()}); err != nil {
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
	addresses, err := n.store.AudienceAddresses(ctx, instanceID, audienceRoles(audience))
	if err != nil {
		return nil, err
	}
	valid, invalid := dedupeRecipients(addresses)
	if len(invalid) > 0 {
		activityLogger(ctx).Warn("dropped invalid recipient addresses", "instanceId", instanceID, "audience", audience.Name, "invalid", invalid)
	}
	return valid, nil
}

// groupRoles are the recipients.role values of the communications table's
// recipient groups.
var groupRoles = map[notice.Group]string{notice.Admins: store.RoleAdmin, notice.Users: store.RoleUser, notice.ExtraRecipients: store.RoleExtra}

// audienceRoles lists the recipients.role values audience addresses.
func audienceRoles(audience notice.Audience) []string {
	out := make([]string, len(audience.Groups))
	for i, group := range audience.Groups {
		out[i] = groupRoles[group]
	}
	return out
}

// dedupeRecipients keeps each valid bare address once (first
// spelling wins, compared case-insensitively) and returns the invalid ones.
func dedupeRecipients(addresses []string) (valid, invalid []string) {
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

// validateNotice checks what SendNotice needs from its input and returns
// the kind's row of the communications table.
func validateNotice(in workflows.SendNoticeInput) (notice.Spec, error) {
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
	if in.Sequence < 0 {
		return notice.Spec{}, fmt.Errorf("notice %q for workflow %q has sequence %d; give zero or more", in.Kind, in.WorkflowID, in.Sequence)
	}
	if in.Kind.IsReminder() && workflows.ReminderKind(in.Offset) != in.Kind {
		return notice.Spec{}, fmt.Errorf("notice %q has offset %s, which names %q: a reminder's kind must be workflows.ReminderKind(offset)",
			in.Kind, in.Offset, workflows.ReminderKind(in.Offset))
	}
	return spec, nil
}

// activityLogger is the activity's logger, whose lines carry the workflow
// and run IDs; for a notice from the queue, the dispatcher's. Otherwise (a
// direct call from a test or a tool) it is slog's default logger.
func activityLogger(ctx context.Context) log.Logger {
	if activity.IsActivity(ctx) {
		return activity.GetLogger(ctx)
	}
	if d, fromQueue := ctx.Value(dispatcherKey{}).(dispatcherContext); fromQueue {
		return log.NewStructuredLogger(d.logger)
	}
	return log.NewStructuredLogger(slog.Default())
}

// count increments svcupdate_notices_sent: on the activity's handler, or
// on the dispatcher's (withDispatcher) for a notice from the queue.
// Outside both (a direct call from a test or a tool) nothing is counted.
func (n *Notifier) count(ctx context.Context, kind workflows.NoticeKind, outcome string) {
	var handler client.MetricsHandler
	switch d, fromQueue := ctx.Value(dispatcherKey{}).(dispatcherContext); {
	case activity.IsActivity(ctx):
		handler = activity.GetMetricsHandler(ctx)
	case fromQueue && d.metrics != nil:
		handler = d.metrics
	default:
		return
	}
	handler.WithTags(map[string]string{"kind": string(kind), "outcome": outcome}).
		Counter(metricNoticesSent).Inc(1)
}
