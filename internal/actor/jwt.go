package actor

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenClaims is Claims as JWT claims: registered ones where they fit
// (sub, aud, iat, jti; act as in RFC 8693 for the operator acting for the
// subject), private ones for the rest.
type tokenClaims struct {
	jwt.RegisteredClaims
	Act     *actingParty `json:"act,omitempty"`
	Channel Channel      `json:"channel"`
	Action  string       `json:"action"`
}

// actingParty is RFC 8693's "act" claim: who acts for the subject.
type actingParty struct {
	Subject string `json:"sub"`
}

func toJWT(c Claims) tokenClaims {
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:  c.Actor,
			Audience: jwt.ClaimStrings{c.WorkflowID},
			IssuedAt: jwt.NewNumericDate(c.IssuedAt),
			ID:       c.Nonce,
		},
		Channel: c.Channel,
		Action:  c.Action,
	}
	if c.Operator != "" {
		tc.Act = &actingParty{Subject: c.Operator}
	}
	return tc
}

func fromJWT(tc tokenClaims) Claims {
	c := Claims{
		Actor:   tc.Subject,
		Channel: tc.Channel,
		Action:  tc.Action,
		Nonce:   tc.ID,
	}
	if len(tc.Audience) == 1 {
		c.WorkflowID = tc.Audience[0]
	}
	if tc.IssuedAt != nil {
		c.IssuedAt = tc.IssuedAt.UTC().Truncate(time.Second)
	}
	if tc.Act != nil {
		c.Operator = tc.Act.Subject
	}
	return c
}
