package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sendgrid/sendgrid-go"
	"github.com/sendgrid/sendgrid-go/helpers/mail"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/workflows"
)

// MailerConfig configures the SendGrid mailer. The worker fills it from
// SENDGRID_HOST, SENDGRID_API_KEY and MAIL_FROM.
type MailerConfig struct {
	// SendGridHost is the API base URL; empty means mailDefaultHost.
	SendGridHost string
	// SendGridAPIKey empty keeps the mailer in outbox mode: every notice is
	// rendered, stored and logged, and nothing is sent.
	SendGridAPIKey string
	// MailFrom is the sender, "Name <address>" or a bare address.
	MailFrom string
}

// LogValue keeps the API key out of every log line MailerConfig reaches.
func (c MailerConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("sendgridHost", c.host()),
		slog.Bool("sendgridAPIKeySet", c.SendGridAPIKey != ""),
		slog.String("mailFrom", c.MailFrom),
	)
}

// String keeps the API key out of fmt's %v and %+v.
func (c MailerConfig) String() string {
	return fmt.Sprintf("MailerConfig{SendGridHost: %q, SendGridAPIKey set: %t, MailFrom: %q}", c.host(), c.SendGridAPIKey != "", c.MailFrom)
}

func (c MailerConfig) host() string {
	if c.SendGridHost == "" {
		return mailDefaultHost
	}
	return strings.TrimRight(c.SendGridHost, "/")
}

const (
	mailDefaultHost = "https://api.sendgrid.com"
	mailSendPath    = "/v3/mail/send"
	// mailRequestTimeout bounds one call even when the activity's own
	// timeout is long, so a hung connection becomes a retry, not a stall.
	mailRequestTimeout = 30 * time.Second
	// mailMaxPersonalizations is SendGrid's limit per request.
	mailMaxPersonalizations = 1000
	// mailMaxRetryDelay caps a reset header far in the future (clock skew,
	// a misbehaving proxy) so a notice is never parked for days.
	mailMaxRetryDelay = time.Hour
	// mailErrorBodyLimit keeps an unexpected HTML error page out of the outbox.
	mailErrorBodyLimit = 500
)

// Error types of retryable mail failures. Temporal retries them with the
// activity's retry policy, or after NextRetryDelay when SendGrid said when.
const (
	mailErrTypeThrottled   = "MailThrottled"   // 429
	mailErrTypeUnavailable = "MailUnavailable" // 5xx or no answer
	// mailErrTypeUnauthorized is a 401 or 403: SendGrid refused the API key
	// (wrong, revoked, rotated, or without the Mail Send permission). It
	// says nothing about the notice, so it is retried until an operator
	// fixes SENDGRID_API_KEY, within the activity's schedule-to-close.
	mailErrTypeUnauthorized = "MailUnauthorized"
)

// mailMessage is one notice for its recipients.
type mailMessage struct {
	Recipients []string
	Subject    string
	HTML       string
	Text       string
	// CustomArgs are echoed by SendGrid in its event webhooks.
	CustomArgs map[string]string
}

// mailSendGrid sends through SendGrid's v3 mail/send API.
type mailSendGrid struct {
	apiKey string
	host   string
	from   *mail.Email
	now    func() time.Time
}

func newMailSendGrid(cfg MailerConfig, now func() time.Time) (*mailSendGrid, error) {
	from, err := mail.ParseEmail(cfg.MailFrom)
	if err != nil {
		return nil, fmt.Errorf("MAIL_FROM %q is not an email address (accepted: \"updates@example.com\" or \"svcupdate <updates@example.com>\"): %w", cfg.MailFrom, err)
	}
	host := cfg.host()
	if u, err := url.Parse(host); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SENDGRID_HOST %q is not an http or https URL with a host (e.g. %s)", cfg.SendGridHost, mailDefaultHost)
	}
	return &mailSendGrid{apiKey: cfg.SendGridAPIKey, host: host, from: from, now: now}, nil
}

// mailRequestBody builds the v3 request: one personalization per recipient
// so nobody sees another recipient's address, text before HTML (SendGrid
// requires text/plain first).
func (m *mailSendGrid) requestBody(msg mailMessage) []byte {
	v3 := mail.NewV3Mail()
	v3.SetFrom(m.from)
	v3.Subject = msg.Subject
	for _, address := range msg.Recipients {
		p := mail.NewPersonalization()
		p.AddTos(mail.NewEmail("", address))
		v3.AddPersonalizations(p)
	}
	v3.AddContent(mail.NewContent("text/plain", msg.Text), mail.NewContent("text/html", msg.HTML))
	for k, v := range msg.CustomArgs {
		v3.SetCustomArg(k, v)
	}
	return mail.GetRequestBody(v3)
}

// send makes one request and classifies SendGrid's answer: the message ID
// on 2xx; a retryable application error on 429 and 5xx, asking Temporal
// to retry no earlier than X-RateLimit-Reset; a retryable
// mailErrTypeUnauthorized on 401 and 403 (the key, not the notice, is
// wrong); a non-retryable workflows.ErrTypeMailRejected with SendGrid's
// error text on other 4xx.
// Retries are Temporal's, not a loop here, so they survive a worker crash.
func (m *mailSendGrid) send(ctx context.Context, msg mailMessage) (string, error) {
	if len(msg.Recipients) > mailMaxPersonalizations {
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("notice has %d recipients; SendGrid accepts at most %d per request", len(msg.Recipients), mailMaxPersonalizations),
			workflows.ErrTypeMailRejected, nil)
	}
	request := sendgrid.GetRequest(m.apiKey, mailSendPath, m.host)
	request.Method = http.MethodPost
	request.Body = m.requestBody(msg)

	ctx, cancel := context.WithTimeout(ctx, mailRequestTimeout)
	defer cancel()
	response, err := sendgrid.MakeRequestWithContext(ctx, request)
	if err != nil {
		// The error names the URL and the network failure, never the key,
		// which travels in a header.
		return "", temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("SendGrid at %s did not answer: %v", m.host, err),
			mailErrTypeUnavailable, temporal.ApplicationErrorOptions{Cause: err})
	}
	headers := http.Header(response.Headers)
	status := response.StatusCode
	switch {
	case status >= 200 && status < 300:
		return headers.Get("X-Message-Id"), nil
	case status == http.StatusTooManyRequests || status >= 500:
		errType, what := mailErrTypeUnavailable, "is unavailable"
		if status == http.StatusTooManyRequests {
			errType, what = mailErrTypeThrottled, "throttled the request"
		}
		delay := m.retryDelay(headers)
		msg := fmt.Sprintf("SendGrid %s (HTTP %d): %s", what, status, mailErrorText(response.Body))
		if delay > 0 {
			msg += fmt.Sprintf("; retrying after X-RateLimit-Reset, in %s", delay)
		}
		return "", temporal.NewApplicationErrorWithOptions(msg, errType, temporal.ApplicationErrorOptions{NextRetryDelay: delay})
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// The key travels in a header and is never part of the message.
		return "", temporal.NewApplicationError(
			fmt.Sprintf("SendGrid refused the API key (HTTP %d): %s; check SENDGRID_API_KEY and its Mail Send permission", status, mailErrorText(response.Body)),
			mailErrTypeUnauthorized)
	default:
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("SendGrid rejected the notice (HTTP %d): %s", status, mailErrorText(response.Body)),
			workflows.ErrTypeMailRejected, nil)
	}
}

// retryDelay reads X-RateLimit-Reset (Unix seconds). Zero leaves the delay
// to the activity's retry policy.
func (m *mailSendGrid) retryDelay(headers http.Header) time.Duration {
	reset, err := strconv.ParseInt(strings.TrimSpace(headers.Get("X-RateLimit-Reset")), 10, 64)
	if err != nil || reset <= 0 {
		return 0
	}
	delay := time.Unix(reset, 0).Sub(m.now())
	switch {
	case delay < time.Second:
		// Already reset (or clocks differ): retry soon, but not at once;
		// Temporal cannot express "immediately" through NextRetryDelay.
		return time.Second
	case delay > mailMaxRetryDelay:
		return mailMaxRetryDelay
	default:
		return delay
	}
}

// mailErrorText extracts the messages of SendGrid's
// {"errors":[{"message":..., "field":...}]}, or the raw body otherwise.
func mailErrorText(body string) string {
	var parsed struct {
		Errors []struct {
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &parsed); err == nil && len(parsed.Errors) > 0 {
		texts := make([]string, 0, len(parsed.Errors))
		for _, e := range parsed.Errors {
			if e.Field != "" {
				texts = append(texts, e.Field+": "+e.Message)
			} else {
				texts = append(texts, e.Message)
			}
		}
		return strings.Join(texts, "; ")
	}
	body = strings.TrimSpace(body)
	if body == "" {
		return "no error text in the response"
	}
	if r := []rune(body); len(r) > mailErrorBodyLimit {
		return string(r[:mailErrorBodyLimit]) + "…"
	}
	return body
}
