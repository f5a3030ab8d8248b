package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/workflows"
)

const mailTestAPIKey = "SG.test-key-never-logged"

// mailTestNow is the clock of every mailer test.
var mailTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mailFakeResponse is one scripted answer of mailFakeSendGrid.
type mailFakeResponse struct {
	Status  int
	Body    string
	Headers map[string]string
}

// mailFakeRequest is the part of a v3 mail/send body the tests inspect.
type mailFakeRequest struct {
	From struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"from"`
	Subject          string `json:"subject"`
	Personalizations []struct {
		To  []struct{ Email string } `json:"to"`
		CC  []json.RawMessage        `json:"cc"`
		BCC []json.RawMessage        `json:"bcc"`
	} `json:"personalizations"`
	Content []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
	CustomArgs map[string]string `json:"custom_args"`
}

// mailFakeSendGrid is an httptest server that checks requests the way
// SendGrid's v3 mail/send does (path, bearer key, JSON shape) and answers
// from a script, then 202 with a message ID.
type mailFakeSendGrid struct {
	t      *testing.T
	server *httptest.Server

	mu       sync.Mutex
	script   []mailFakeResponse
	accepted []mailFakeRequest // requests answered 2xx
	calls    int
}

func newMailFakeSendGrid(t *testing.T, script ...mailFakeResponse) *mailFakeSendGrid {
	f := &mailFakeSendGrid{t: t, script: script}
	f.server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.server.Close)
	return f
}

func (f *mailFakeSendGrid) config() MailerConfig {
	return MailerConfig{SendGridHost: f.server.URL, SendGridAPIKey: mailTestAPIKey, MailFrom: "svcupdate <updates@provider.example>"}
}

func (f *mailFakeSendGrid) reject(w http.ResponseWriter, status int, message string) {
	f.t.Errorf("fake SendGrid: %s", message)
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"message":%q,"field":null,"help":null}]}`, message)
}

func (f *mailFakeSendGrid) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if r.Method != http.MethodPost || r.URL.Path != mailSendPath {
		f.reject(w, http.StatusNotFound, r.Method+" "+r.URL.Path+" is not POST "+mailSendPath)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+mailTestAPIKey {
		// Not a test failure: the 401 case sends a wrong key on purpose.
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]}`)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.reject(w, http.StatusBadRequest, "Content-Type is "+ct)
		return
	}
	var req mailFakeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.reject(w, http.StatusBadRequest, "body is not JSON: "+err.Error())
		return
	}
	if msg := mailCheckRequestShape(req); msg != "" {
		f.reject(w, http.StatusBadRequest, msg)
		return
	}
	if len(f.script) > 0 {
		resp := f.script[0]
		f.script = f.script[1:]
		for k, v := range resp.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(resp.Status)
		io.WriteString(w, resp.Body)
		if resp.Status/100 == 2 {
			f.accepted = append(f.accepted, req)
		}
		return
	}
	w.Header().Set("X-Message-Id", fmt.Sprintf("msg-%d", f.calls))
	w.WriteHeader(http.StatusAccepted)
	f.accepted = append(f.accepted, req)
}

// mailCheckRequestShape returns what SendGrid would reject in req, or "".
func mailCheckRequestShape(req mailFakeRequest) string {
	switch {
	case req.From.Email == "":
		return "from.email is required"
	case req.Subject == "":
		return "subject is required"
	case len(req.Personalizations) == 0:
		return "personalizations are required"
	case len(req.Content) != 2 || req.Content[0].Type != "text/plain" || req.Content[1].Type != "text/html":
		return "content must be text/plain then text/html"
	case req.Content[0].Value == "" || req.Content[1].Value == "":
		return "content values must not be empty"
	}
	for i, p := range req.Personalizations {
		if len(p.To) != 1 || p.To[0].Email == "" || len(p.CC) > 0 || len(p.BCC) > 0 {
			return fmt.Sprintf("personalizations[%d] must have exactly one to and no cc/bcc", i)
		}
	}
	for _, key := range []string{"instance_id", "target_version", "notice", "workflow_id"} {
		if req.CustomArgs[key] == "" {
			return "custom_args." + key + " is missing"
		}
	}
	return ""
}

func (f *mailFakeSendGrid) acceptedRequests() []mailFakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mailFakeRequest(nil), f.accepted...)
}

func (f *mailFakeSendGrid) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func mailTestMessage() mailMessage {
	return mailMessage{
		Recipients: []string{"ada@contoso.example", "grace@contoso.example", "ops@partner.example"},
		Subject:    "Service update scheduled: Contoso Sales to 9.2.0",
		HTML:       "<p>scheduled</p>",
		Text:       "scheduled",
		CustomArgs: map[string]string{
			"instance_id": "inst-1", "target_version": "9.2.0", "notice": "scheduled",
			"workflow_id": workflows.WorkflowID("inst-1", "9.2.0"),
		},
	}
}

func newMailTestSender(t *testing.T, cfg MailerConfig) *mailSendGrid {
	t.Helper()
	m, err := newMailSendGrid(cfg, func() time.Time { return mailTestNow })
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMailSendAcceptedRecordsMessageIDAndKeepsRecipientsApart(t *testing.T) {
	fake := newMailFakeSendGrid(t, mailFakeResponse{Status: http.StatusAccepted, Headers: map[string]string{"X-Message-Id": "sg-abc123"}})
	msg := mailTestMessage()
	id, err := newMailTestSender(t, fake.config()).send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if id != "sg-abc123" {
		t.Errorf("message id %q, want sg-abc123", id)
	}
	reqs := fake.acceptedRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests accepted, want 1 for one notice", len(reqs))
	}
	req := reqs[0]
	if len(req.Personalizations) != len(msg.Recipients) {
		t.Fatalf("%d personalizations, want one per recipient (%d)", len(req.Personalizations), len(msg.Recipients))
	}
	for i, p := range req.Personalizations {
		if p.To[0].Email != msg.Recipients[i] {
			t.Errorf("personalizations[%d].to = %q, want %q", i, p.To[0].Email, msg.Recipients[i])
		}
	}
	if req.From.Email != "updates@provider.example" || req.From.Name != "svcupdate" {
		t.Errorf("from = %+v", req.From)
	}
	if req.Subject != msg.Subject || req.Content[0].Value != msg.Text || req.Content[1].Value != msg.HTML {
		t.Errorf("subject or content changed on the way: %+v", req)
	}
	for k, v := range msg.CustomArgs {
		if req.CustomArgs[k] != v {
			t.Errorf("custom_args[%s] = %q, want %q", k, req.CustomArgs[k], v)
		}
	}
}

func TestMailSendClassifiesResponses(t *testing.T) {
	resetIn42s := strconv.FormatInt(mailTestNow.Add(42*time.Second).Unix(), 10)
	resetPast := strconv.FormatInt(mailTestNow.Add(-time.Minute).Unix(), 10)
	resetFarAway := strconv.FormatInt(mailTestNow.Add(48*time.Hour).Unix(), 10)
	cases := []struct {
		name      string
		response  mailFakeResponse
		wrongKey  bool
		wantType  string
		retryable bool
		wantDelay time.Duration
		wantText  string
	}{
		{
			name:     "400 carries SendGrid's error text",
			response: mailFakeResponse{Status: 400, Body: `{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":"http://sendgrid.com/docs"}]}`},
			wantType: workflows.ErrTypeMailRejected, wantText: "personalizations.0.to.0.email: Does not contain a valid address.",
		},
		{
			name:     "413 is a rejection too",
			response: mailFakeResponse{Status: 413, Body: `{"errors":[{"message":"The JSON payload you have included in your request is too large."}]}`},
			wantType: workflows.ErrTypeMailRejected, wantText: "payload you have included in your request is too large",
		},
		{
			name: "401 for a revoked key is retried until the key is fixed", wrongKey: true,
			wantType: mailErrTypeUnauthorized, retryable: true,
			wantText: "SendGrid refused the API key (HTTP 401): The provided authorization grant is invalid, expired, or revoked; check SENDGRID_API_KEY",
		},
		{
			name:     "403 without JSON keeps the raw body and is retried",
			response: mailFakeResponse{Status: 403, Body: "access forbidden"},
			wantType: mailErrTypeUnauthorized, retryable: true, wantText: "SendGrid refused the API key (HTTP 403): access forbidden",
		},
		{
			name:     "429 retries at X-RateLimit-Reset",
			response: mailFakeResponse{Status: 429, Body: `{"errors":[{"message":"too many requests"}]}`, Headers: map[string]string{"X-RateLimit-Reset": resetIn42s}},
			wantType: mailErrTypeThrottled, retryable: true, wantDelay: 42 * time.Second, wantText: "too many requests",
		},
		{
			name:     "429 with a reset already past retries after a second",
			response: mailFakeResponse{Status: 429, Headers: map[string]string{"X-RateLimit-Reset": resetPast}},
			wantType: mailErrTypeThrottled, retryable: true, wantDelay: time.Second,
		},
		{
			name:     "429 with a reset two days away is capped",
			response: mailFakeResponse{Status: 429, Headers: map[string]string{"X-RateLimit-Reset": resetFarAway}},
			wantType: mailErrTypeThrottled, retryable: true, wantDelay: mailMaxRetryDelay,
		},
		{
			name:     "500 leaves the delay to the retry policy",
			response: mailFakeResponse{Status: 500, Body: "internal error"},
			wantType: mailErrTypeUnavailable, retryable: true, wantDelay: 0, wantText: "internal error",
		},
		{
			name:     "503 honours X-RateLimit-Reset too",
			response: mailFakeResponse{Status: 503, Headers: map[string]string{"X-RateLimit-Reset": resetIn42s}},
			wantType: mailErrTypeUnavailable, retryable: true, wantDelay: 42 * time.Second,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fake *mailFakeSendGrid
			if tc.wrongKey {
				fake = newMailFakeSendGrid(t)
			} else {
				fake = newMailFakeSendGrid(t, tc.response)
			}
			cfg := fake.config()
			if tc.wrongKey {
				cfg.SendGridAPIKey = "SG.revoked"
			}
			id, err := newMailTestSender(t, cfg).send(context.Background(), mailTestMessage())
			if err == nil {
				t.Fatalf("send succeeded with message id %q", id)
			}
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) {
				t.Fatalf("error %T %v is not an application error", err, err)
			}
			if appErr.Type() != tc.wantType {
				t.Errorf("type %q, want %q", appErr.Type(), tc.wantType)
			}
			if appErr.NonRetryable() == tc.retryable {
				t.Errorf("non-retryable = %t, want %t", appErr.NonRetryable(), !tc.retryable)
			}
			if appErr.NextRetryDelay() != tc.wantDelay {
				t.Errorf("next retry delay %s, want %s", appErr.NextRetryDelay(), tc.wantDelay)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q lacks %q", err, tc.wantText)
			}
			if strings.Contains(err.Error(), cfg.SendGridAPIKey) {
				t.Errorf("error reveals the API key: %q", err)
			}
			if fake.callCount() != 1 {
				t.Errorf("%d requests, want 1: retries belong to Temporal", fake.callCount())
			}
		})
	}
}

func TestMailSendWithoutAnswerIsRetryable(t *testing.T) {
	fake := newMailFakeSendGrid(t)
	cfg := fake.config()
	fake.server.Close()
	_, err := newMailTestSender(t, cfg).send(context.Background(), mailTestMessage())
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != mailErrTypeUnavailable || appErr.NonRetryable() {
		t.Fatalf("err = %v, want a retryable %s", err, mailErrTypeUnavailable)
	}
	if strings.Contains(err.Error(), mailTestAPIKey) {
		t.Errorf("error reveals the API key: %q", err)
	}
}

func TestMailSendRefusesMoreRecipientsThanOneRequestHolds(t *testing.T) {
	fake := newMailFakeSendGrid(t)
	msg := mailTestMessage()
	msg.Recipients = make([]string, mailMaxPersonalizations+1)
	for i := range msg.Recipients {
		msg.Recipients[i] = fmt.Sprintf("admin%d@contoso.example", i)
	}
	_, err := newMailTestSender(t, fake.config()).send(context.Background(), msg)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || !strings.Contains(err.Error(), "1001 recipients") {
		t.Fatalf("err = %v, want a non-retryable error naming the count", err)
	}
	if fake.callCount() != 0 {
		t.Errorf("%d requests sent, want none", fake.callCount())
	}
}

func TestMailerConfigNeverShowsTheKey(t *testing.T) {
	cfg := MailerConfig{SendGridAPIKey: mailTestAPIKey, MailFrom: "updates@provider.example"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "mailer", cfg)
	for _, shown := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), logged.String()} {
		if strings.Contains(shown, mailTestAPIKey) {
			t.Errorf("API key shown: %s", shown)
		}
		if !strings.Contains(shown, mailDefaultHost) {
			t.Errorf("default host not shown: %s", shown)
		}
	}
}

func TestMailSenderRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg      MailerConfig
		wantText string
	}{
		{MailerConfig{SendGridAPIKey: "k", MailFrom: "svcupdate"}, "MAIL_FROM"},
		{MailerConfig{SendGridAPIKey: "k", MailFrom: "updates@provider.example", SendGridHost: "api.sendgrid.com"}, "SENDGRID_HOST"},
		{MailerConfig{SendGridAPIKey: "k", MailFrom: "updates@provider.example", SendGridHost: "ftp://api.sendgrid.com"}, "SENDGRID_HOST"},
	} {
		if _, err := newMailSendGrid(tc.cfg, time.Now); err == nil || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%v: err = %v, want one naming %s", tc.cfg, err, tc.wantText)
		}
	}
}
