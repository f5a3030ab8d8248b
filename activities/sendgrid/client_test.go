package sendgrid_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/activities/sendgrid/sendgridtest"
	"github.com/svcupdate/svcupdate/workflows"
)

// testNow is the clock of every client test.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testMessage() sendgrid.Message {
	return sendgrid.Message{
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

func newTestClient(t *testing.T, cfg sendgrid.Config) *sendgrid.Client {
	t.Helper()
	m, err := sendgrid.NewClient(cfg, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSendAcceptedRecordsMessageIDAndKeepsRecipientsApart(t *testing.T) {
	fake := sendgridtest.NewServer(t, sendgridtest.Response{Status: http.StatusAccepted, Headers: map[string]string{"X-Message-Id": "sg-abc123"}})
	msg := testMessage()
	id, err := newTestClient(t, fake.Config()).Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if id != "sg-abc123" {
		t.Errorf("message id %q, want sg-abc123", id)
	}
	reqs := fake.Accepted()
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

func TestSendClassifiesResponses(t *testing.T) {
	resetIn42s := strconv.FormatInt(testNow.Add(42*time.Second).Unix(), 10)
	resetPast := strconv.FormatInt(testNow.Add(-time.Minute).Unix(), 10)
	resetFarAway := strconv.FormatInt(testNow.Add(48*time.Hour).Unix(), 10)
	cases := []struct {
		name      string
		response  sendgridtest.Response
		wrongKey  bool
		wantType  string
		retryable bool
		wantDelay time.Duration
		wantText  string
	}{
		{
			name:     "400 carries SendGrid's error text",
			response: sendgridtest.Response{Status: 400, Body: `{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":"http://sendgrid.com/docs"}]}`},
			wantType: workflows.ErrTypeMailRejected, wantText: "personalizations.0.to.0.email: Does not contain a valid address.",
		},
		{
			name:     "413 is a rejection too",
			response: sendgridtest.Response{Status: 413, Body: `{"errors":[{"message":"The JSON payload you have included in your request is too large."}]}`},
			wantType: workflows.ErrTypeMailRejected, wantText: "payload you have included in your request is too large",
		},
		{
			name: "401 for a revoked key is retried until the key is fixed", wrongKey: true,
			wantType: sendgrid.ErrTypeUnauthorized, retryable: true,
			wantText: "SendGrid refused the API key (HTTP 401): The provided authorization grant is invalid, expired, or revoked; check SENDGRID_API_KEY",
		},
		{
			name:     "403 without JSON keeps the raw body and is retried",
			response: sendgridtest.Response{Status: 403, Body: "access forbidden"},
			wantType: sendgrid.ErrTypeUnauthorized, retryable: true, wantText: "SendGrid refused the API key (HTTP 403): access forbidden",
		},
		{
			name:     "429 retries at X-RateLimit-Reset",
			response: sendgridtest.Response{Status: 429, Body: `{"errors":[{"message":"too many requests"}]}`, Headers: map[string]string{"X-RateLimit-Reset": resetIn42s}},
			wantType: sendgrid.ErrTypeThrottled, retryable: true, wantDelay: 42 * time.Second, wantText: "too many requests",
		},
		{
			name:     "429 with a reset already past retries after a second",
			response: sendgridtest.Response{Status: 429, Headers: map[string]string{"X-RateLimit-Reset": resetPast}},
			wantType: sendgrid.ErrTypeThrottled, retryable: true, wantDelay: time.Second,
		},
		{
			name:     "429 with a reset two days away is capped",
			response: sendgridtest.Response{Status: 429, Headers: map[string]string{"X-RateLimit-Reset": resetFarAway}},
			wantType: sendgrid.ErrTypeThrottled, retryable: true, wantDelay: sendgrid.MaxRetryDelay,
		},
		{
			name:     "500 leaves the delay to the retry policy",
			response: sendgridtest.Response{Status: 500, Body: "internal error"},
			wantType: sendgrid.ErrTypeUnavailable, retryable: true, wantDelay: 0, wantText: "internal error",
		},
		{
			name:     "503 honours X-RateLimit-Reset too",
			response: sendgridtest.Response{Status: 503, Headers: map[string]string{"X-RateLimit-Reset": resetIn42s}},
			wantType: sendgrid.ErrTypeUnavailable, retryable: true, wantDelay: 42 * time.Second,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fake *sendgridtest.Server
			if tc.wrongKey {
				fake = sendgridtest.NewServer(t)
			} else {
				fake = sendgridtest.NewServer(t, tc.response)
			}
			cfg := fake.Config()
			if tc.wrongKey {
				cfg.APIKey = "SG.revoked"
			}
			id, err := newTestClient(t, cfg).Send(context.Background(), testMessage())
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
			if strings.Contains(err.Error(), cfg.APIKey) {
				t.Errorf("error reveals the API key: %q", err)
			}
			if fake.Calls() != 1 {
				t.Errorf("%d requests, want 1: retries belong to Temporal", fake.Calls())
			}
		})
	}
}

func TestSendWithoutAnswerIsRetryable(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	cfg := fake.Config()
	fake.Close()
	_, err := newTestClient(t, cfg).Send(context.Background(), testMessage())
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != sendgrid.ErrTypeUnavailable || appErr.NonRetryable() {
		t.Fatalf("err = %v, want a retryable %s", err, sendgrid.ErrTypeUnavailable)
	}
	if strings.Contains(err.Error(), sendgridtest.APIKey) {
		t.Errorf("error reveals the API key: %q", err)
	}
}

func TestSendRefusesMoreRecipientsThanOneRequestHolds(t *testing.T) {
	fake := sendgridtest.NewServer(t)
	msg := testMessage()
	msg.Recipients = make([]string, sendgrid.MaxPersonalizations+1)
	for i := range msg.Recipients {
		msg.Recipients[i] = fmt.Sprintf("admin%d@contoso.example", i)
	}
	_, err := newTestClient(t, fake.Config()).Send(context.Background(), msg)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || !strings.Contains(err.Error(), "1001 recipients") {
		t.Fatalf("err = %v, want a non-retryable error naming the count", err)
	}
	if fake.Calls() != 0 {
		t.Errorf("%d requests sent, want none", fake.Calls())
	}
}

func TestConfigNeverShowsTheKey(t *testing.T) {
	cfg := sendgrid.Config{APIKey: sendgridtest.APIKey, From: "updates@provider.example"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "mailer", cfg)
	for _, shown := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), logged.String()} {
		if strings.Contains(shown, sendgridtest.APIKey) {
			t.Errorf("API key shown: %s", shown)
		}
		if !strings.Contains(shown, sendgrid.DefaultHost) {
			t.Errorf("default host not shown: %s", shown)
		}
	}
}

func TestNewClientRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg      sendgrid.Config
		wantText string
	}{
		{sendgrid.Config{APIKey: "k", From: "svcupdate"}, "MAIL_FROM"},
		{sendgrid.Config{APIKey: "k", From: "updates@provider.example", Host: "api.sendgrid.com"}, "SENDGRID_HOST"},
		{sendgrid.Config{APIKey: "k", From: "updates@provider.example", Host: "ftp://api.sendgrid.com"}, "SENDGRID_HOST"},
	} {
		if _, err := sendgrid.NewClient(tc.cfg, time.Now); err == nil || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%v: err = %v, want one naming %s", tc.cfg, err, tc.wantText)
		}
	}
}
