package actor

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// Keys travel in the environment as text: a key ID, a colon, and the key
// in unpadded base64url. A signer holds one private key (its 32-byte
// seed): ACTION_SIGNING_KEY=ops-2026-11:<seed>. A worker trusts a
// comma-separated list of public keys, each optionally limited to the
// channels it may sign through (+-separated), so a stolen portal key
// cannot pose as an operator:
// ACTION_TRUSTED_KEYS=ops-2026-11:<public>:operator-cli,portal-2026-11:<public>:portal-link+portal-session+oidc.

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

const keyIDAccepted = "letters, digits, '.', '_' and '-', at most 64, such as ops-2026-11"

// GenerateKeyPair makes a new key pair named keyID and returns both halves
// as text: the signing key for ACTION_SIGNING_KEY and the public key for
// ACTION_TRUSTED_KEYS.
func GenerateKeyPair(keyID string) (signing, trusted string, err error) {
	if !keyIDPattern.MatchString(keyID) {
		return "", "", fmt.Errorf("key ID %q is not accepted (accepted: %s)", keyID, keyIDAccepted)
	}
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate an Ed25519 key: %w", err)
	}
	return keyID + ":" + base64.RawURLEncoding.EncodeToString(private.Seed()),
		keyID + ":" + base64.RawURLEncoding.EncodeToString(public), nil
}

// ParseSigningKey reads a signing key written as GenerateKeyPair writes it.
// The error never repeats the key.
func ParseSigningKey(text string) (*Signer, error) {
	id, raw, err := splitKey(text, ed25519.SeedSize, "signing key")
	if err != nil {
		return nil, &KeyTextError{err.Error()}
	}
	return NewSigner(id, ed25519.NewKeyFromSeed(raw)), nil
}

// ParseTrustedKeys reads a comma-separated list of public keys written as
// GenerateKeyPair writes them; each key ID may appear once.
func ParseTrustedKeys(text string) (*Verifier, error) {
	keys := map[string]ed25519.PublicKey{}
	restricted := map[string][]Channel{}
	for _, item := range strings.Split(text, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		key, channels, limited := cutLast(item)
		id, raw, err := splitKey(key, ed25519.PublicKeySize, "public key")
		if err != nil {
			return nil, &KeyTextError{err.Error()}
		}
		if _, dup := keys[id]; dup {
			return nil, &KeyTextError{fmt.Sprintf("key ID %q is listed twice", id)}
		}
		keys[id] = ed25519.PublicKey(raw)
		if limited {
			for _, name := range strings.Split(channels, "+") {
				if c := Channel(name); !c.known() {
					return nil, &KeyTextError{fmt.Sprintf("key ID %q is limited to channel %q, which is unknown (known: %v)", id, name, Channels)}
				}
				restricted[id] = append(restricted[id], Channel(name))
			}
		}
	}
	if len(keys) == 0 {
		return nil, &KeyTextError{"no public key is listed"}
	}
	v := NewVerifier(keys)
	for id, channels := range restricted {
		v.restrict(id, channels)
	}
	return v, nil
}

// cutLast splits "id:key:channels" into "id:key" and "channels"; limited
// is false for a plain "id:key".
func cutLast(item string) (key, channels string, limited bool) {
	if strings.Count(item, ":") < 2 {
		return item, "", false
	}
	i := strings.LastIndex(item, ":")
	return item[:i], item[i+1:], true
}

func splitKey(text string, size int, what string) (string, []byte, error) {
	id, encoded, ok := strings.Cut(strings.TrimSpace(text), ":")
	if !ok {
		return "", nil, fmt.Errorf("a %s is written key-id:key", what)
	}
	if !keyIDPattern.MatchString(id) {
		return "", nil, fmt.Errorf("key ID %q has other characters than %s", id, keyIDAccepted)
	}
	raw, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil || len(raw) != size {
		return "", nil, fmt.Errorf("the %s of key ID %q is not %d bytes of unpadded base64url", what, id, size)
	}
	return id, raw, nil
}

// KeyTextError is a key written wrongly; its message never repeats the key.
type KeyTextError struct{ Reason string }

func (e *KeyTextError) Error() string { return e.Reason }

// SigningKey is ACTION_SIGNING_KEY as configuration (envconfig.Decoder);
// it prints as its key ID only, so the key never reaches a log.
type SigningKey struct{ Signer *Signer }

// Decode implements envconfig.Decoder.
func (k *SigningKey) Decode(value string) error {
	if strings.TrimSpace(value) == "" {
		k.Signer = nil // no key: this program signs nothing
		return nil
	}
	signer, err := ParseSigningKey(value)
	if err != nil {
		return err
	}
	k.Signer = signer
	return nil
}

// String names the key, never its secret.
func (k SigningKey) String() string {
	if k.Signer == nil {
		return ""
	}
	return "key " + k.Signer.KeyID()
}

// TrustedKeys is ACTION_TRUSTED_KEYS as configuration (envconfig.Decoder).
type TrustedKeys struct{ Verifier *Verifier }

// Decode implements envconfig.Decoder.
func (k *TrustedKeys) Decode(value string) error {
	if strings.TrimSpace(value) == "" {
		k.Verifier = nil // no key trusted: every admin action is refused
		return nil
	}
	verifier, err := ParseTrustedKeys(value)
	if err != nil {
		return err
	}
	k.Verifier = verifier
	return nil
}

// String lists the trusted key IDs.
func (k TrustedKeys) String() string {
	if k.Verifier == nil {
		return ""
	}
	return strings.Join(k.Verifier.KeyIDs(), ",")
}
