// Package sendgridtest is a fake SendGrid for tests: an httptest server
// that checks requests the way SendGrid's v3 mail/send does and answers
// from a script.
package sendgridtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/svcupdate/svcupdate/activities/sendgrid"
)

// APIKey is the only key the fake accepts; any other gets a 401.
const APIKey = "SG.test-key-never-logged"

// sendPath is SendGrid's, written here apart from the client's so that a
// client posting elsewhere fails the tests.
const sendPath = "/v3/mail/send"

// Response is one scripted answer.
type Response struct {
	Status  int
	Body    string
	Headers map[string]string
}

// Request is the part of a v3 mail/send body the tests inspect.
type Request struct {
	From struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"from"`
	Subject          string `json:"subject"`
	Personalizations []struct {
		To            []struct{ Email string } `json:"to"`
		CC            []json.RawMessage        `json:"cc"`
		BCC           []json.RawMessage        `json:"bcc"`
		Substitutions map[string]string        `json:"substitutions"`
	} `json:"personalizations"`
	Attachments []struct {
		Content     string `json:"content"` // base64
		Type        string `json:"type"`
		Filename    string `json:"filename"`
		Disposition string `json:"disposition"`
	} `json:"attachments"`
	Content []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
	CustomArgs map[string]string `json:"custom_args"`
}

// Server answers valid requests from its script, then 202 with a message
// ID. A request SendGrid would refuse fails the test.
type Server struct {
	*httptest.Server
	t *testing.T

	mu       sync.Mutex
	script   []Response
	accepted []Request // requests answered 2xx
	calls    int
}

// NewServer starts a fake that answers with script first; it stops when
// the test ends.
func NewServer(t *testing.T, script ...Response) *Server {
	s := &Server{t: t, script: script}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Config points a client at the fake, with the key it accepts.
func (s *Server) Config() sendgrid.Config {
	return sendgrid.Config{Host: s.URL, APIKey: APIKey, From: "svcupdate <updates@provider.example>"}
}

// Accepted returns the requests answered 2xx, in order.
func (s *Server) Accepted() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.accepted...)
}

// Calls counts every request, answered 2xx or not.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *Server) reject(w http.ResponseWriter, status int, message string) {
	s.t.Errorf("fake SendGrid: %s", message)
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"message":%q,"field":null,"help":null}]}`, message)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if r.Method != http.MethodPost || r.URL.Path != sendPath {
		s.reject(w, http.StatusNotFound, r.Method+" "+r.URL.Path+" is not POST "+sendPath)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+APIKey {
		// Not a test failure: the 401 case sends a wrong key on purpose.
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]}`)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.reject(w, http.StatusBadRequest, "Content-Type is "+ct)
		return
	}
	var req Request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.reject(w, http.StatusBadRequest, "body is not JSON: "+err.Error())
		return
	}
	if msg := checkShape(req); msg != "" {
		s.reject(w, http.StatusBadRequest, msg)
		return
	}
	if len(s.script) > 0 {
		resp := s.script[0]
		s.script = s.script[1:]
		for k, v := range resp.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(resp.Status)
		io.WriteString(w, resp.Body)
		if resp.Status/100 == 2 {
			s.accepted = append(s.accepted, req)
		}
		return
	}
	w.Header().Set("X-Message-Id", fmt.Sprintf("msg-%d", s.calls))
	w.WriteHeader(http.StatusAccepted)
	s.accepted = append(s.accepted, req)
}

// checkShape returns what SendGrid would reject in req, or "".
func checkShape(req Request) string {
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
		size := 0
		for k, v := range p.Substitutions {
			size += len(k) + len(v)
		}
		if size > substitutionsLimit {
			return fmt.Sprintf("personalizations[%d] has %d bytes of substitutions; SendGrid accepts %d", i, size, substitutionsLimit)
		}
	}
	keys := []string{"instance_id", "target_version", "notice", "workflow_id"}
	if req.CustomArgs["notice"] == SignInNotice {
		keys = []string{"notice"} // the portal's sign-in mail is about no update
	}
	for _, key := range keys {
		if req.CustomArgs[key] == "" {
			return "custom_args." + key + " is missing"
		}
	}
	return ""
}

// SignInNotice is the notice custom arg of the portal's sign-in mails.
const SignInNotice = "sign-in"

// substitutionsLimit is SendGrid's cap on a personalization's
// substitutions, in bytes of keys and values.
const substitutionsLimit = 10000

// CopyFor returns the HTML and text bodies as address received them: its
// personalization's substitutions applied, as SendGrid does.
func (r Request) CopyFor(address string) (html, text string, ok bool) {
	for _, p := range r.Personalizations {
		if len(p.To) != 1 || p.To[0].Email != address {
			continue
		}
		text, html = r.Content[0].Value, r.Content[1].Value
		for placeholder, value := range p.Substitutions {
			text = strings.ReplaceAll(text, placeholder, value)
			html = strings.ReplaceAll(html, placeholder, value)
		}
		return html, text, true
	}
	return "", "", false
}
