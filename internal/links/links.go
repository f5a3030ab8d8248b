// Package links signs and checks the portal's bearer tokens: the action
// links in emails (approve, choose other slots, view), the emailed sign-in
// links and the session cookie. A token is bound to one recipient, one
// workflow (none for sign-in and sessions) and one action, expires, and
// carries a random nonce that the portal records when the token is used,
// so every emailed link works once. The worker mints links for emails, the
// portal checks them: both hold the same PORTAL_SECRET.
package links

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Actions a token may carry.
const (
	ActionApprove    = "approve"
	ActionReschedule = "reschedule" // choose other slots
	ActionView       = "view"
	ActionSignIn     = "sign-in"
	ActionSession    = "session"
)

// MinSecretLength is the shortest PORTAL_SECRET accepted: an HMAC-SHA256
// key shorter than its output weakens it.
const MinSecretLength = 32

// DefaultLinkLifetime bounds an emailed link that has no earlier deadline.
const DefaultLinkLifetime = 7 * 24 * time.Hour

// Errors of Verify. The portal shows a page for each.
var (
	ErrMalformed = errors.New("the link is not one the portal issued (it is cut short or altered)")
	ErrForged    = errors.New("the link's signature does not match: it was altered or signed with another key")
	ErrExpired   = errors.New("the link has expired")
)

// Claims is what a token asserts.
type Claims struct {
	Recipient  string `json:"r"`
	WorkflowID string `json:"w,omitempty"`
	Action     string `json:"a"`
	// Channel says how the bearer proved who they are, for the audit log
	// (sessions: portal-link, portal-session, oidc).
	Channel string    `json:"c,omitempty"`
	Expires time.Time `json:"e"`
	Nonce   string    `json:"n"`
}

// Signer mints and verifies tokens with one HMAC-SHA256 key.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner checks secret and returns a signer that reads the time from now.
func NewSigner(secret string, now func() time.Time) (*Signer, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("PORTAL_SECRET has %d bytes; give at least %d random bytes (such as the output of `openssl rand -hex 32`)", len(secret), MinSecretLength)
	}
	return &Signer{key: []byte(secret), now: now}, nil
}

// Mint signs a token for c, filling in a fresh nonce when c has none.
func (s *Signer) Mint(c Claims) (string, error) {
	if c.Nonce == "" {
		nonce := make([]byte, 16)
		if _, err := rand.Read(nonce); err != nil {
			return "", fmt.Errorf("mint a link nonce: %w", err)
		}
		c.Nonce = base64.RawURLEncoding.EncodeToString(nonce)
	}
	c.Expires = c.Expires.UTC().Truncate(time.Second)
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(body)), nil
}

// Verify checks a token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(got, s.mac(body)) {
		return Claims{}, ErrForged
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Nonce == "" || c.Action == "" || c.Recipient == "" {
		return Claims{}, ErrMalformed
	}
	if !s.now().Before(c.Expires) {
		return c, ErrExpired
	}
	return c, nil
}

// CSRF derives the form token for a page reached with the token whose
// nonce is given: a forged form from another site cannot know it.
func (s *Signer) CSRF(nonce string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf|" + nonce))
}

// CheckCSRF reports whether token is the form token for nonce.
func (s *Signer) CheckCSRF(nonce, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && token != "" && hmac.Equal(got, s.mac("csrf|"+nonce))
}

func (s *Signer) mac(body string) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(body))
	return h.Sum(nil)
}

// ActionExpiry is when an emailed action link expires: lifetime after now,
// and never after the decision's deadline (zero: none).
func ActionExpiry(now time.Time, lifetime time.Duration, deadline time.Time) time.Time {
	expires := now.Add(lifetime)
	if !deadline.IsZero() && deadline.Before(expires) {
		return deadline
	}
	return expires
}
