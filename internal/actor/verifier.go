package actor

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ClockSkew is how far in the future an assertion's issue time may lie,
// for a signer whose clock runs ahead of the Temporal server's.
const ClockSkew = time.Minute

// DefaultMaxAge is how old an assertion may be when it is verified: it is
// signed just before its Update is sent, so minutes are plenty, and a
// captured one is soon useless.
const DefaultMaxAge = 5 * time.Minute

// ErrNoAssertion is returned for a request that carries no assertion at all.
var ErrNoAssertion = errors.New("the request carries no signed assertion of who acts; send it through the portal or the starter, which sign it")

// Verifier checks assertions against the public keys it trusts, each by
// its key ID. Trusting several at once is how keys rotate: trust the new
// key, move the signers to it, then stop trusting the old one.
type Verifier struct {
	keys map[string]ed25519.PublicKey
	// channels holds, for a key that may sign only through some channels,
	// those channels (ACTION_TRUSTED_KEYS "id:key:portal-link+oidc"); a key
	// absent here signs through any.
	channels map[string][]Channel
}

// NewVerifier trusts keys, by key ID.
func NewVerifier(keys map[string]ed25519.PublicKey) *Verifier {
	trusted := make(map[string]ed25519.PublicKey, len(keys))
	for id, key := range keys {
		trusted[id] = key
	}
	return &Verifier{keys: trusted, channels: map[string][]Channel{}}
}

// restrict lets the key keyID sign only through channels.
func (v *Verifier) restrict(keyID string, channels []Channel) {
	v.channels[keyID] = slices.Clone(channels)
}

// KeyIDs lists the trusted key IDs, sorted.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Expect is what an assertion must say to allow one Update now.
type Expect struct {
	WorkflowID string
	Action     string
	// Now is the time the assertion's age is judged at (workflow.Now in
	// workflow code).
	Now time.Time
	// MaxAge is the oldest an assertion may be; zero means DefaultMaxAge.
	MaxAge time.Duration
}

// Verify checks that assertion was signed by a trusted key, is complete,
// allows want.Action on want.WorkflowID, and is neither stale nor issued
// in the future; it returns its claims. Whether the actor is an admin, and
// whether the nonce was seen before, is for the caller, which knows.
func (v *Verifier) Verify(assertion string, want Expect) (Claims, error) {
	if assertion == "" {
		return Claims{}, ErrNoAssertion
	}
	var tc tokenClaims
	parser := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithoutClaimsValidation())
	token, err := parser.ParseWithClaims(assertion, &tc, v.key)
	if err != nil {
		return Claims{}, refusal(err)
	}
	c := fromJWT(tc)
	if err := c.check(); err != nil {
		return Claims{}, err
	}
	keyID, _ := token.Header["kid"].(string)
	if allowed, restricted := v.channels[keyID]; restricted && !slices.Contains(allowed, c.Channel) {
		return Claims{}, fmt.Errorf("key %q signs only through %v, not %s", keyID, allowed, c.Channel)
	}
	maxAge := want.MaxAge
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	switch age := want.Now.Sub(c.IssuedAt); {
	case c.WorkflowID != want.WorkflowID:
		return Claims{}, fmt.Errorf("the assertion is for workflow %s, not %s", c.WorkflowID, want.WorkflowID)
	case c.Action != want.Action:
		return Claims{}, fmt.Errorf("the assertion allows %s, not %s", c.Action, want.Action)
	case age > maxAge:
		return Claims{}, fmt.Errorf("the assertion was issued at %s, %s ago (accepted: at most %s old); sign the action again",
			c.IssuedAt.UTC().Format(time.RFC3339), age.Round(time.Second), maxAge)
	case -age > ClockSkew:
		return Claims{}, fmt.Errorf("the assertion was issued at %s, in the future (accepted: at most %s ahead); check the signer's clock",
			c.IssuedAt.UTC().Format(time.RFC3339), ClockSkew)
	}
	return c, nil
}

// key finds the public key a token names.
func (v *Verifier) key(token *jwt.Token) (any, error) {
	id, _ := token.Header["kid"].(string)
	if id == "" {
		return nil, keyError{errors.New("the assertion names no key (kid)")}
	}
	key, ok := v.keys[id]
	if !ok {
		return nil, keyError{fmt.Errorf("the assertion is signed with key %q, which this worker does not trust (trusted: %s)", id, strings.Join(v.KeyIDs(), ", "))}
	}
	return key, nil
}

// keyError is a key lookup's refusal, passed through the parser as is.
type keyError struct{ error }

// refusal turns a parse failure into one line that says what was wrong.
func refusal(err error) error {
	var unknownKey keyError
	switch {
	case errors.As(err, &unknownKey):
		return unknownKey.error
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errors.New("the assertion is not a signed assertion (accepted: an EdDSA JWT made by the portal or the starter)")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrSignatureInvalid):
		return errors.New("the assertion's signature does not verify with the key it names: it was forged, altered or signed another way (accepted: EdDSA)")
	}
	return fmt.Errorf("the assertion is refused: %w", err)
}

// Read returns the claims of an assertion without checking its signature,
// age or binding. It is for an Update handler whose validator verified the
// assertion: the handler runs again on replay, long after, when the key
// that signed may no longer be trusted, so it must not verify again.
func Read(assertion string) (Claims, error) {
	var tc tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(assertion, &tc); err != nil {
		return Claims{}, refusal(err)
	}
	return fromJWT(tc), nil
}
