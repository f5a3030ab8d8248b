package actor_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/svcupdate/svcupdate/internal/actor"
)

const workflowID = "service-update:acme-prod:9.2.0"

var now = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func newKey(t *testing.T, id string) (*actor.Signer, ed25519.PublicKey) {
	t.Helper()
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return actor.NewSigner(id, private), public
}

func claims() actor.Claims {
	return actor.Claims{
		Actor: "ada@acme.example", Channel: actor.ChannelPortalSession,
		WorkflowID: workflowID, Action: actor.ActionApprove, IssuedAt: now,
	}
}

func expect() actor.Expect {
	return actor.Expect{WorkflowID: workflowID, Action: actor.ActionApprove, Now: now.Add(30 * time.Second)}
}

func sign(t *testing.T, s *actor.Signer, c actor.Claims) string {
	t.Helper()
	assertion, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return assertion
}

func TestSignedClaimsVerifyAsSigned(t *testing.T) {
	signer, public := newKey(t, "portal-1")
	v := actor.NewVerifier(map[string]ed25519.PublicKey{"portal-1": public})
	for _, c := range []actor.Claims{
		claims(),
		{Actor: "ada@acme.example", Operator: "olga@provider.example", Channel: actor.ChannelOperatorCLI,
			WorkflowID: workflowID, Action: actor.ActionApprove, IssuedAt: now, Nonce: "n-1"},
	} {
		got, err := v.Verify(sign(t, signer, c), expect())
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if c.Nonce == "" {
			if got.Nonce == "" {
				t.Fatal("Sign left the nonce empty")
			}
			c.Nonce = got.Nonce
		}
		if got != c {
			t.Errorf("Verify = %+v, want %+v", got, c)
		}
	}
}

func TestEachAssertionGetsItsOwnNonce(t *testing.T) {
	signer, public := newKey(t, "portal-1")
	v := actor.NewVerifier(map[string]ed25519.PublicKey{"portal-1": public})
	first, err := v.Verify(sign(t, signer, claims()), expect())
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(sign(t, signer, claims()), expect())
	if err != nil {
		t.Fatal(err)
	}
	if first.Nonce == second.Nonce {
		t.Errorf("two assertions share nonce %q", first.Nonce)
	}
}

// Rotation: a worker trusting the old and the new key accepts both; once
// the old key is no longer trusted, its assertions are refused.
func TestRotationTrustsEveryListedKeyAndNoOther(t *testing.T) {
	oldSigner, oldPublic := newKey(t, "ops-2026-05")
	newSigner, newPublic := newKey(t, "ops-2026-11")
	both := actor.NewVerifier(map[string]ed25519.PublicKey{"ops-2026-05": oldPublic, "ops-2026-11": newPublic})
	for _, s := range []*actor.Signer{oldSigner, newSigner} {
		if _, err := both.Verify(sign(t, s, claims()), expect()); err != nil {
			t.Errorf("during rotation, key %s: %v", s.KeyID(), err)
		}
	}
	after := actor.NewVerifier(map[string]ed25519.PublicKey{"ops-2026-11": newPublic})
	if _, err := after.Verify(sign(t, newSigner, claims()), expect()); err != nil {
		t.Errorf("after rotation, new key: %v", err)
	}
	_, err := after.Verify(sign(t, oldSigner, claims()), expect())
	if err == nil || !strings.Contains(err.Error(), `"ops-2026-05", which this worker does not trust (trusted: ops-2026-11)`) {
		t.Errorf("after rotation, old key: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	signer, public := newKey(t, "portal-1")
	impostor, _ := newKey(t, "portal-1") // same key ID, another key
	v := actor.NewVerifier(map[string]ed25519.PublicKey{"portal-1": public})
	valid := sign(t, signer, claims())
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(
		[]byte(strings.Replace(decode(t, parts[1]), "ada@acme.example", "eve@acme.example", 1))) + "." + parts[2]
	hmac := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "eve@acme.example", "aud": workflowID,
		"iat": now.Unix(), "jti": "x", "channel": "portal-link", "action": "approve"})
	hmac.Header["kid"] = "portal-1"
	confused, err := hmac.SignedString([]byte(public)) // the public key used as an HMAC secret
	if err != nil {
		t.Fatal(err)
	}
	unsigned := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "eve@acme.example"})
	none, err := unsigned.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	noKid := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "eve@acme.example"})
	_, private, _ := ed25519.GenerateKey(rand.Reader)
	withoutKid, err := noKid.SignedString(private)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, assertion string
		want            actor.Expect
		refusal         string
	}{
		{"missing", "", expect(), "carries no signed assertion"},
		{"malformed", "not-a-token", expect(), "is not a signed assertion"},
		{"tampered claims", tampered, expect(), "signature does not verify"},
		{"forged with another key under a trusted key ID", sign(t, impostor, claims()), expect(), "signature does not verify"},
		{"HMAC with the public key (algorithm confusion)", confused, expect(), "signature does not verify"},
		{"alg none", none, expect(), "signature does not verify"},
		{"no key ID", withoutKid, expect(), "names no key"},
		{"another workflow", valid, actor.Expect{WorkflowID: "service-update:other:9.2.0", Action: actor.ActionApprove, Now: now}, "is for workflow service-update:acme-prod:9.2.0, not service-update:other:9.2.0"},
		{"another action", valid, actor.Expect{WorkflowID: workflowID, Action: actor.ActionReschedule, Now: now}, "allows approve, not reschedule"},
		{"stale", valid, actor.Expect{WorkflowID: workflowID, Action: actor.ActionApprove, Now: now.Add(actor.DefaultMaxAge + time.Second)}, "ago (accepted: at most 5m0s old)"},
		{"stale under a shorter max age", valid, actor.Expect{WorkflowID: workflowID, Action: actor.ActionApprove, Now: now.Add(2 * time.Minute), MaxAge: time.Minute}, "at most 1m0s old"},
		{"from the future", valid, actor.Expect{WorkflowID: workflowID, Action: actor.ActionApprove, Now: now.Add(-actor.ClockSkew - time.Second)}, "in the future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.assertion, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.refusal) {
				t.Errorf("Verify = %v, want a refusal containing %q", err, tc.refusal)
			}
		})
	}
}

func decode(t *testing.T, segment string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestSignRefusesIncompleteClaims(t *testing.T) {
	signer, _ := newKey(t, "ops-1")
	for _, tc := range []struct {
		change  func(*actor.Claims)
		refusal string
	}{
		{func(c *actor.Claims) { c.Actor = "" }, "names no actor"},
		{func(c *actor.Claims) { c.Channel = "email" }, `channel "email" is unknown`},
		{func(c *actor.Claims) { c.Channel = actor.ChannelOperatorCLI }, "names no operator"},
		{func(c *actor.Claims) { c.Operator = "olga@provider.example" }, "its channel portal-session is an admin's own"},
		{func(c *actor.Claims) { c.WorkflowID = "" }, "names no workflow"},
		{func(c *actor.Claims) { c.Action = "cancel" }, `action "cancel" is unknown`},
		{func(c *actor.Claims) { c.IssuedAt = time.Time{} }, "no issue time"},
	} {
		c := claims()
		tc.change(&c)
		if _, err := signer.Sign(c); err == nil || !strings.Contains(err.Error(), tc.refusal) {
			t.Errorf("Sign(%+v) = %v, want a refusal containing %q", c, err, tc.refusal)
		}
	}
}

func TestGeneratedKeysParseAndWorkTogether(t *testing.T) {
	signing, trusted, err := actor.GenerateKeyPair("ops-2026-11")
	if err != nil {
		t.Fatal(err)
	}
	var key actor.SigningKey
	if err := key.Decode(signing); err != nil {
		t.Fatal(err)
	}
	_, otherTrusted, err := actor.GenerateKeyPair("portal-2026-11")
	if err != nil {
		t.Fatal(err)
	}
	var keys actor.TrustedKeys
	if err := keys.Decode(otherTrusted + ", " + trusted); err != nil {
		t.Fatal(err)
	}
	if got := keys.String(); got != "ops-2026-11,portal-2026-11" {
		t.Errorf("TrustedKeys = %q", got)
	}
	if _, err := keys.Verifier.Verify(sign(t, key.Signer, claims()), expect()); err != nil {
		t.Errorf("a generated pair does not verify: %v", err)
	}
	secret := signing[strings.Index(signing, ":")+1:]
	if shown := fmt.Sprintf("%v %s %+v", key, key, key); strings.Contains(shown, secret) {
		t.Errorf("the signing key prints its secret: %s", shown)
	}
}

func TestKeyTextRefusals(t *testing.T) {
	signing, trusted, err := actor.GenerateKeyPair("k1")
	if err != nil {
		t.Fatal(err)
	}
	secret := signing[3:]
	for _, tc := range []struct {
		name, text, refusal string
		parse               func(string) error
	}{
		{"signing without ID", secret, "is written key-id:key", parseSigning},
		{"signing with a bad ID", "k 1:" + secret, `key ID "k 1" has other characters than letters`, parseSigning},
		{"signing with a short key", "k1:AAAA", "is not 32 bytes", parseSigning},
		{"trusted with a short key", "k1:AAAA", "is not 32 bytes", parseTrusted},
		{"trusted twice", trusted + "," + trusted, `key ID "k1" is listed twice`, parseTrusted},
		{"trusted empty", " , ", "no public key is listed", parseTrusted},
	} {
		err := tc.parse(tc.text)
		switch {
		case err == nil || !strings.Contains(err.Error(), tc.refusal):
			t.Errorf("%s: %v, want a refusal containing %q", tc.name, err, tc.refusal)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("%s: the error repeats the key: %v", tc.name, err)
		}
	}
	if _, _, err := actor.GenerateKeyPair("bad id"); err == nil {
		t.Error("GenerateKeyPair accepted a key ID with a space")
	}
}

func parseSigning(text string) error { _, err := actor.ParseSigningKey(text); return err }
func parseTrusted(text string) error { _, err := actor.ParseTrustedKeys(text); return err }

// A trusted key may be limited to channels, so the portal's key cannot
// sign as an operator; an unlimited key signs through any channel.
func TestTrustedKeyLimitedToChannels(t *testing.T) {
	portalSigning, portalTrusted, err := actor.GenerateKeyPair("portal-1")
	if err != nil {
		t.Fatal(err)
	}
	opsSigning, opsTrusted, err := actor.GenerateKeyPair("ops-1")
	if err != nil {
		t.Fatal(err)
	}
	v, err := actor.ParseTrustedKeys(portalTrusted + ":portal-link+portal-session+oidc," + opsTrusted)
	if err != nil {
		t.Fatal(err)
	}
	portal, err := actor.ParseSigningKey(portalSigning)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := actor.ParseSigningKey(opsSigning)
	if err != nil {
		t.Fatal(err)
	}
	asOperator := claims()
	asOperator.Channel, asOperator.Operator = actor.ChannelOperatorCLI, "olga@provider.example"
	if _, err := v.Verify(sign(t, portal, claims()), expect()); err != nil {
		t.Errorf("the portal's key through the portal: %v", err)
	}
	if _, err := v.Verify(sign(t, portal, asOperator), expect()); err == nil ||
		!strings.Contains(err.Error(), `key "portal-1" signs only through [portal-link portal-session oidc], not operator-cli`) {
		t.Errorf("the portal's key as an operator: %v", err)
	}
	for _, c := range []actor.Claims{claims(), asOperator} {
		if _, err := v.Verify(sign(t, ops, c), expect()); err != nil {
			t.Errorf("an unlimited key through %s: %v", c.Channel, err)
		}
	}
	if _, err := actor.ParseTrustedKeys(opsTrusted + ":email"); err == nil || !strings.Contains(err.Error(), `limited to channel "email", which is unknown`) {
		t.Errorf("a key limited to an unknown channel: %v", err)
	}
}
