package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/svcupdate/svcupdate/workflows"
)

// fakeSendGrid speaks SendGrid's v3 mail/send: it checks the API key and
// the request's shape, records each mail and answers 202 with a message ID.
type fakeSendGrid struct {
	apiKey string
	server *httptest.Server

	mu      sync.Mutex
	mails   []fakeMail
	refused []string
}

// fakeMail is one accepted request, read back from its custom_args and
// personalizations.
type fakeMail struct {
	MessageID     string
	WorkflowID    string
	InstanceID    string
	TargetVersion string
	Kind          workflows.NoticeKind
	SlotStart     string // RFC 3339, UTC
	Recipients    []string
	Subject       string
}

func newFakeSendGrid(t *testing.T, apiKey string) *fakeSendGrid {
	t.Helper()
	f := &fakeSendGrid{apiKey: apiKey}
	f.server = httptest.NewServer(f)
	t.Cleanup(func() {
		f.server.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, why := range f.refused {
			t.Errorf("fake SendGrid refused a request: %s", why)
		}
	})
	return f
}

func (f *fakeSendGrid) sent() []fakeMail {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.mails)
}

func (f *fakeSendGrid) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, why string) {
		f.mu.Lock()
		f.refused = append(f.refused, why)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"message": why}}})
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v3/mail/send" {
		refuse(http.StatusNotFound, r.Method+" "+r.URL.Path+" is not POST /v3/mail/send")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.apiKey {
		refuse(http.StatusUnauthorized, "the Authorization header does not carry the API key")
		return
	}
	var body struct {
		Personalizations []struct {
			To  []struct{ Email string } `json:"to"`
			CC  []json.RawMessage        `json:"cc"`
			BCC []json.RawMessage        `json:"bcc"`
		} `json:"personalizations"`
		Subject string `json:"subject"`
		Content []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"content"`
		CustomArgs map[string]string `json:"custom_args"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		refuse(http.StatusBadRequest, "body is not JSON: "+err.Error())
		return
	}
	m := fakeMail{
		WorkflowID:    body.CustomArgs["workflow_id"],
		InstanceID:    body.CustomArgs["instance_id"],
		TargetVersion: body.CustomArgs["target_version"],
		Kind:          workflows.NoticeKind(body.CustomArgs["notice"]),
		SlotStart:     body.CustomArgs["slot_start"],
		Subject:       body.Subject,
	}
	switch {
	case m.WorkflowID == "" || m.InstanceID == "" || m.TargetVersion == "" || m.Kind == "" || m.SlotStart == "":
		refuse(http.StatusBadRequest, fmt.Sprintf("custom_args lack workflow_id, instance_id, target_version, notice or slot_start: %v", body.CustomArgs))
		return
	case m.Subject == "" || len(body.Content) != 2 || body.Content[0].Type != "text/plain" || body.Content[1].Type != "text/html":
		refuse(http.StatusBadRequest, fmt.Sprintf("%s of %s: want a subject and text/plain then text/html content", m.Kind, m.WorkflowID))
		return
	}
	for _, p := range body.Personalizations {
		// One personalization per recipient: nobody sees the others.
		if len(p.To) != 1 || len(p.CC) > 0 || len(p.BCC) > 0 {
			refuse(http.StatusBadRequest, fmt.Sprintf("%s of %s: a personalization addresses more than one recipient", m.Kind, m.WorkflowID))
			return
		}
		m.Recipients = append(m.Recipients, p.To[0].Email)
	}
	f.mu.Lock()
	m.MessageID = fmt.Sprintf("e2e-message-%d", len(f.mails)+1)
	f.mails = append(f.mails, m)
	f.mu.Unlock()
	w.Header().Set("X-Message-Id", m.MessageID)
	w.WriteHeader(http.StatusAccepted)
}
