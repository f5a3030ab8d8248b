package links

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const secret = "0123456789abcdef0123456789abcdef"

func TestLinksAreBoundSignedAndExpire(t *testing.T) {
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	s, err := NewSigner(secret, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	claims := Claims{Recipient: "ada@acme.example", WorkflowID: "service-update:acme:9.2.0", Action: ActionApprove, Expires: now.Add(time.Hour)}
	token, err := s.Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(token)
	if err != nil || got.Recipient != claims.Recipient || got.WorkflowID != claims.WorkflowID || got.Action != claims.Action || got.Nonce == "" {
		t.Fatalf("Verify(Mint(c)) = %+v, %v", got, err)
	}
	other, _ := s.Mint(claims)
	if other == token {
		t.Error("two links for the same claims are equal: each needs its own nonce to be single-use")
	}

	otherKey, _ := NewSigner(strings.Repeat("x", MinSecretLength), func() time.Time { return now })
	body, _, _ := strings.Cut(token, ".")
	for name, c := range map[string]struct {
		token string
		want  error
	}{
		"signed with another key": {mustMint(t, otherKey, claims), ErrForged},
		"payload changed":         {strings.Replace(token, body[:4], "eyJz", 1), ErrForged},
		"cut short":               {body, ErrMalformed},
		"not base64":              {body + ".!!", ErrMalformed},
		"expired":                 {mustMint(t, s, Claims{Recipient: "ada@acme.example", Action: ActionView, Expires: now}), ErrExpired},
	} {
		if _, err := s.Verify(c.token); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
	}
	if _, err := NewSigner("short", time.Now); err == nil || !strings.Contains(err.Error(), "PORTAL_SECRET") {
		t.Errorf("a short secret: %v, want an error naming PORTAL_SECRET", err)
	}
}

func TestCSRFTokensBelongToTheirNonce(t *testing.T) {
	s, _ := NewSigner(secret, time.Now)
	token := s.CSRF("nonce-a")
	if !s.CheckCSRF("nonce-a", token) || s.CheckCSRF("nonce-b", token) || s.CheckCSRF("nonce-a", "") {
		t.Error("a CSRF token must pass for its own nonce only")
	}
}

func TestActionLinksNeverOutliveTheDeadline(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := ActionExpiry(now, DefaultLinkLifetime, now.Add(48*time.Hour)); !got.Equal(now.Add(48 * time.Hour)) {
		t.Errorf("deadline in 2 days: expires %s", got)
	}
	if got := ActionExpiry(now, DefaultLinkLifetime, now.Add(30*24*time.Hour)); !got.Equal(now.Add(DefaultLinkLifetime)) {
		t.Errorf("deadline in 30 days: expires %s, want after the lifetime", got)
	}
	if got := ActionExpiry(now, DefaultLinkLifetime, time.Time{}); !got.Equal(now.Add(DefaultLinkLifetime)) {
		t.Errorf("no deadline: expires %s", got)
	}
}

func mustMint(t *testing.T, s *Signer, c Claims) string {
	t.Helper()
	token, err := s.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return token
}
