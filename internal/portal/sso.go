package portal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// OIDCConfig enables sign-in with an OpenID Connect provider.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
}

// oidcProvider is the provider's endpoints and its ID-token verifier.
type oidcProvider struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// oidcStateCookie carries the state and nonce of a sign-in in progress.
const oidcStateCookie = "svcupdate_oidc"

// oidcFlowLifetime bounds a sign-in at the provider.
const oidcFlowLifetime = 10 * time.Minute

func newOIDCProvider(ctx context.Context, cfg OIDCConfig, baseURL string) (*oidcProvider, error) {
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("OIDC_CLIENT_ID is empty; OIDC_ISSUER %s needs the client ID the portal is registered with", cfg.Issuer)
	}
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC_ISSUER %s: read its discovery document: %w", cfg.Issuer, err)
	}
	return &oidcProvider{
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: provider.Endpoint(),
			RedirectURL: baseURL + "/oidc/callback", Scopes: []string{oidc.ScopeOpenID, "email"}},
		verifier: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
	}, nil
}

func randomString() (string, error) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// oidcLogin sends the browser to the provider.
func (s *Server) oidcLogin(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		s.problem(w, r, http.StatusNotFound, problemNotFound)
		return
	}
	state, err := randomString()
	if err != nil {
		s.fail(w, r, "start an OIDC sign-in", err)
		return
	}
	nonce, err := randomString()
	if err != nil {
		s.fail(w, r, "start an OIDC sign-in", err)
		return
	}
	http.SetCookie(w, s.cookie(r, oidcStateCookie, state+"."+nonce, oidcFlowLifetime))
	http.Redirect(w, r, s.oidc.oauth.AuthCodeURL(state, oidc.Nonce(nonce)), http.StatusFound)
}

// oidcCallback checks the provider's answer and signs an admin in by the
// verified email address of the ID token.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		s.problem(w, r, http.StatusNotFound, problemNotFound)
		return
	}
	refused := problemLinkInvalid
	refused.Title = "The sign-in could not be checked"
	refused.Message = "The answer of your organization's sign-in did not match the sign-in the portal started. Nothing was done."
	c, err := r.Cookie(oidcStateCookie)
	if err != nil || c.Value != r.URL.Query().Get("state")+"."+nonceOf(c.Value) || r.URL.Query().Get("state") == "" {
		s.problem(w, r, http.StatusBadRequest, refused)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcStateCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true})
	token, err := s.oidc.oauth.Exchange(r.Context(), r.URL.Query().Get("code"))
	if err != nil {
		s.logger.Warn("OIDC code exchange failed", "error", err)
		s.problem(w, r, http.StatusBadRequest, refused)
		return
	}
	raw, _ := token.Extra("id_token").(string)
	idToken, err := s.oidc.verifier.Verify(r.Context(), raw)
	if err != nil || idToken.Nonce != nonceOf(c.Value) {
		s.logger.Warn("OIDC ID token refused", "error", err)
		s.problem(w, r, http.StatusBadRequest, refused)
		return
	}
	var claims struct {
		Email    string `json:"email"`
		Verified *bool  `json:"email_verified"`
	}
	if err := idToken.Claims(&claims); err != nil || claims.Email == "" || (claims.Verified != nil && !*claims.Verified) {
		refused.Message = "Your organization's sign-in did not give a verified email address. Nothing was done."
		s.problem(w, r, http.StatusForbidden, refused)
		return
	}
	admin, err := s.store.IsAdmin(r.Context(), claims.Email)
	if err != nil {
		s.fail(w, r, "read an admin", err)
		return
	}
	if !admin {
		s.problem(w, r, http.StatusForbidden, problemNotAdmin)
		return
	}
	if err := s.startSession(w, r, claims.Email, actor.ChannelOIDC); err != nil {
		s.fail(w, r, "start a session", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// nonceOf is the nonce part of the state cookie "state.nonce".
func nonceOf(cookie string) string {
	for i := len(cookie) - 1; i >= 0; i-- {
		if cookie[i] == '.' {
			return cookie[i+1:]
		}
	}
	return ""
}
