package actor

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Signer signs assertions with one private key, named by its key ID in
// every assertion so the verifier knows which public key to check with.
type Signer struct {
	keyID string
	key   ed25519.PrivateKey
}

// NewSigner signs with key under the name keyID.
func NewSigner(keyID string, key ed25519.PrivateKey) *Signer {
	return &Signer{keyID: keyID, key: key}
}

// KeyID names the signer's key.
func (s *Signer) KeyID() string { return s.keyID }

// Sign returns the signed assertion of c. An empty Nonce is filled with a
// random one, so callers need not make their own.
func (s *Signer) Sign(c Claims) (string, error) {
	if c.Nonce == "" {
		nonce := make([]byte, 16)
		if _, err := rand.Read(nonce); err != nil {
			return "", fmt.Errorf("make a nonce: %w", err)
		}
		c.Nonce = base64.RawURLEncoding.EncodeToString(nonce)
	}
	if err := c.check(); err != nil {
		return "", err
	}
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, toJWT(c))
	token.Header["kid"] = s.keyID
	signed, err := token.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign the assertion with key %s: %w", s.keyID, err)
	}
	return signed, nil
}
