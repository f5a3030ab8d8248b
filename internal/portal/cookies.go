package portal

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/links"
)

// Cookies. The session is a signed token (links.ActionSession) naming the
// admin and how they signed in; the CSRF cookie holds a random nonce the
// form tokens are derived from (a signed double-submit cookie).
const (
	sessionCookie = "svcupdate_session"
	csrfCookie    = "svcupdate_csrf"
)

type csrfKey struct{}

// csrfNonce returns the request's CSRF nonce, setting a fresh cookie when
// the browser has none.
func (s *Server) csrfNonce(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 16 {
		return c.Value
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		panic(fmt.Sprintf("read random bytes for a CSRF nonce: %v", err))
	}
	nonce := base64.RawURLEncoding.EncodeToString(raw)
	http.SetCookie(w, s.cookie(r, csrfCookie, nonce, 0))
	return nonce
}

func csrfNonceOf(r *http.Request) string {
	nonce, _ := r.Context().Value(csrfKey{}).(string)
	return nonce
}

// cookie is HttpOnly, SameSite=Lax (a link from an email still carries
// it), Secure when the portal is reached over TLS; maxAge 0 lasts the
// browser session.
func (s *Server) cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = s.now().Add(maxAge)
	}
	return c
}

// startSession signs the admin in for SessionLifetime.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, email string, channel actor.Channel) error {
	token, err := s.signer.Mint(links.Claims{Recipient: email, Action: links.ActionSession, Channel: string(channel),
		Expires: s.now().Add(s.cfg.SessionLifetime)})
	if err != nil {
		return err
	}
	http.SetCookie(w, s.cookie(r, sessionCookie, token, s.cfg.SessionLifetime))
	return nil
}

// session returns the signed-in admin, if any.
func (s *Server) session(r *http.Request) (links.Claims, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return links.Claims{}, false
	}
	claims, err := s.signer.Verify(c.Value)
	if err != nil || claims.Action != links.ActionSession {
		return links.Claims{}, false
	}
	return claims, true
}

// requireSession returns the signed-in admin or sends the browser to the
// sign-in page.
func (s *Server) requireSession(w http.ResponseWriter, r *http.Request) (links.Claims, bool) {
	sess, ok := s.session(r)
	if !ok {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
		} else {
			s.problem(w, r, http.StatusUnauthorized, problemSignedOut)
		}
	}
	return sess, ok
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
}

// spell says a lifetime the way people do: "7 days", "12 hours", "30 minutes".
func spell(d time.Duration) string {
	for _, u := range []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}} {
		if d >= u.size && d%u.size == 0 {
			if n := d / u.size; n != 1 {
				return fmt.Sprintf("%d %ss", n, u.name)
			}
			return "1 " + u.name
		}
	}
	return d.String()
}
