// Package sendgrid sends a notice through SendGrid's v3 mail/send API and
// classifies the answer for Temporal: what is retried, when, and what is
// rejected for good.
package sendgrid

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	sendgridgo "github.com/sendgrid/sendgrid-go"
	"github.com/sendgrid/sendgrid-go/helpers/mail"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/workflows"
)

const (
	sendPath = "/v3/mail/send"
	// requestTimeout bounds one call even when the activity's own timeout
	// is long, so a hung connection becomes a retry, not a stall.
	requestTimeout = 30 * time.Second
	// maxPersonalizations is SendGrid's limit per request.
	maxPersonalizations = 1000
	// maxRetryDelay caps a reset header far in the future (clock skew, a
	// misbehaving proxy) so a notice is never parked for days.
	maxRetryDelay = time.Hour
	// errorBodyLimit keeps an unexpected HTML error page out of the outbox.
	errorBodyLimit = 500
)

// Error types of retryable mail failures. Temporal retries them with the
// activity's retry policy, or after NextRetryDelay when SendGrid said when.
// A rejected notice is the non-retryable workflows.ErrTypeMailRejected.
const (
	ErrTypeThrottled   = "MailThrottled"   // 429
	ErrTypeUnavailable = "MailUnavailable" // 5xx or no answer
	// ErrTypeUnauthorized is a 401 or 403: SendGrid refused the API key
	// (wrong, revoked, rotated, or without the Mail Send permission). It
	// says nothing about the notice, so it is retried until an operator
	// fixes SENDGRID_API_KEY, within the activity's schedule-to-close.
	ErrTypeUnauthorized = "MailUnauthorized"
)

// Message is one notice for its recipients.
type Message struct {
	Recipients []string
	Subject    string
	HTML       string
	Text       string
	// CustomArgs are echoed by SendGrid in its event webhooks.
	CustomArgs map[string]string
	// Substitutions holds, per recipient, the text that replaces each
	// placeholder in their copy (their own signed action links).
	Substitutions map[string]map[string]string
	// Attachments are added to every copy (a calendar invite).
	Attachments []Attachment
}

// Attachment is a file sent with a message.
type Attachment struct {
	Filename    string
	ContentType string // such as "text/calendar; method=REQUEST"
	Content     []byte
}

// Client sends through SendGrid's v3 mail/send API.
type Client struct {
	apiKey string
	host   string
	from   *mail.Email
	now    func() time.Time

	mu sync.Mutex
	// pausedUntil is when SendGrid takes requests again: the
	// X-RateLimit-Reset of an answer that left no request (Remaining 0)
	// or was a 429. Zero while requests remain.
	pausedUntil time.Time
}

// PausedUntil is when SendGrid's rate limit, as its last answers said,
// lets the next request through; zero or past when it does now. A sender
// of many notices (the outbox dispatcher) waits until then rather than
// spend requests on 429s.
func (c *Client) PausedUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pausedUntil
}

// notePause records the rate limit an answer reported.
func (c *Client) notePause(headers http.Header, throttled bool) {
	remaining, err := strconv.Atoi(strings.TrimSpace(headers.Get("X-RateLimit-Remaining")))
	exhausted := throttled || (err == nil && remaining <= 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !exhausted {
		c.pausedUntil = time.Time{}
		return
	}
	delay := c.retryDelay(headers)
	if delay == 0 {
		delay = time.Second // a 429 without a reset: back off a moment
	}
	c.pausedUntil = c.now().Add(delay)
}

// NewClient checks cfg and builds a client that reads the time, for
// X-RateLimit-Reset, from now.
func NewClient(cfg Config, now func() time.Time) (*Client, error) {
	from, err := mail.ParseEmail(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("MAIL_FROM %q is not an email address (accepted: \"updates@example.com\" or \"svcupdate <updates@example.com>\"): %w", cfg.From, err)
	}
	host := cfg.host()
	if u, err := url.Parse(host); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SENDGRID_HOST %q is not an http or https URL with a host (e.g. %s)", cfg.Host, defaultHost)
	}
	return &Client{apiKey: cfg.APIKey, host: host, from: from, now: now}, nil
}

// requestBody builds the v3 request: one personalization per recipient so
// nobody sees another recipient's address, text before HTML (SendGrid
// requires text/plain first).
func (c *Client) requestBody(msg Message) []byte {
	v3 := mail.NewV3Mail()
	v3.SetFrom(c.from)
	v3.Subject = msg.Subject
	for _, address := range msg.Recipients {
		p := mail.NewPersonalization()
		p.AddTos(mail.NewEmail("", address))
		for placeholder, value := range msg.Substitutions[address] {
			p.SetSubstitution(placeholder, value)
		}
		v3.AddPersonalizations(p)
	}
	v3.AddContent(mail.NewContent("text/plain", msg.Text), mail.NewContent("text/html", msg.HTML))
	for _, a := range msg.Attachments {
		v3.AddAttachment(mail.NewAttachment().SetFilename(a.Filename).SetType(a.ContentType).
			SetContent(base64.StdEncoding.EncodeToString(a.Content)).SetDisposition("attachment"))
	}
	for k, v := range msg.CustomArgs {
		v3.SetCustomArg(k, v)
	}
	return mail.GetRequestBody(v3)
}

// Send makes one request and classifies SendGrid's answer: the message ID
// on 2xx; a retryable application error on 429 and 5xx, asking Temporal
// to retry no earlier than X-RateLimit-Reset; a retryable
// ErrTypeUnauthorized on 401 and 403 (the key, not the notice, is wrong);
// a non-retryable workflows.ErrTypeMailRejected with SendGrid's error text
// on other 4xx.
// Retries are Temporal's, not a loop here, so they survive a worker crash.
func (c *Client) Send(ctx context.Context, msg Message) (string, error) {
	if len(msg.Recipients) > maxPersonalizations {
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("notice has %d recipients; SendGrid accepts at most %d per request", len(msg.Recipients), maxPersonalizations),
			workflows.ErrTypeMailRejected, nil)
	}
	request := sendgridgo.GetRequest(c.apiKey, sendPath, c.host)
	request.Method = http.MethodPost
	request.Body = c.requestBody(msg)

	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	response, err := sendgridgo.MakeRequestWithContext(ctx, request)
	if err != nil {
		// The error names the URL and the network failure, never the key,
		// which travels in a header.
		return "", temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("SendGrid at %s did not answer: %v", c.host, err),
			ErrTypeUnavailable, temporal.ApplicationErrorOptions{Cause: err})
	}
	headers := http.Header(response.Headers)
	status := response.StatusCode
	c.notePause(headers, status == http.StatusTooManyRequests)
	switch {
	case status >= 200 && status < 300:
		return headers.Get("X-Message-Id"), nil
	case status == http.StatusTooManyRequests || status >= 500:
		errType, what := ErrTypeUnavailable, "is unavailable"
		if status == http.StatusTooManyRequests {
			errType, what = ErrTypeThrottled, "throttled the request"
		}
		delay := c.retryDelay(headers)
		msg := fmt.Sprintf("SendGrid %s (HTTP %d): %s", what, status, errorText(response.Body))
		if delay > 0 {
			msg += fmt.Sprintf("; retrying after X-RateLimit-Reset, in %s", delay)
		}
		return "", temporal.NewApplicationErrorWithOptions(msg, errType, temporal.ApplicationErrorOptions{NextRetryDelay: delay})
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// The key travels in a header and is never part of the message.
		return "", temporal.NewApplicationError(
			fmt.Sprintf("SendGrid refused the API key (HTTP %d): %s; check SENDGRID_API_KEY and its Mail Send permission", status, errorText(response.Body)),
			ErrTypeUnauthorized)
	default:
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("SendGrid rejected the notice (HTTP %d): %s", status, errorText(response.Body)),
			workflows.ErrTypeMailRejected, nil)
	}
}

// retryDelay reads X-RateLimit-Reset (Unix seconds). Zero leaves the delay
// to the activity's retry policy.
func (c *Client) retryDelay(headers http.Header) time.Duration {
	reset, err := strconv.ParseInt(strings.TrimSpace(headers.Get("X-RateLimit-Reset")), 10, 64)
	if err != nil || reset <= 0 {
		return 0
	}
	delay := time.Unix(reset, 0).Sub(c.now())
	switch {
	case delay < time.Second:
		// Already reset (or clocks differ): retry soon, but not at once;
		// Temporal cannot express "immediately" through NextRetryDelay.
		return time.Second
	case delay > maxRetryDelay:
		return maxRetryDelay
	default:
		return delay
	}
}

// errorText extracts the messages of SendGrid's
// {"errors":[{"message":..., "field":...}]}, or the raw body otherwise.
func errorText(body string) string {
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
	if r := []rune(body); len(r) > errorBodyLimit {
		return string(r[:errorBodyLimit]) + "…"
	}
	return body
}
