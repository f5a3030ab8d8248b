// Package portal is the admins' web application behind `starter portal`:
// server-rendered pages with plain forms (no JavaScript needed) where an
// instance's admins see their updates, approve them one by one or several
// at once, and choose other slots. Admins arrive through the signed action
// links of the update emails or sign in with an emailed single-use link
// (or OpenID Connect); a GET never changes anything, every form carries a
// CSRF token, and who may decide is read from Postgres at each action.
package portal

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

// Config is what the portal needs beyond its connections.
type Config struct {
	// BaseURL is where admins reach the portal (links in emails).
	BaseURL string
	// Secret signs links, sessions and form tokens (PORTAL_SECRET).
	Secret          string
	LinkLifetime    time.Duration // emailed links: sign-in and actions
	SessionLifetime time.Duration
	// RescheduleMinNotice hides slots starting sooner than this.
	RescheduleMinNotice time.Duration
	// Mailbox enables the operator page that shows the outbox (the demo).
	Mailbox bool
	// OIDC enables sign-in with an OpenID Connect provider when Issuer is set.
	OIDC OIDCConfig
	// ActionSigner signs the assertion of who acts that every Approve and
	// Reschedule carries (ACTION_SIGNING_KEY); the workflow verifies it.
	ActionSigner *actor.Signer
}

// Mailer sends a sign-in mail; nil keeps the portal in outbox mode.
type Mailer interface {
	Send(ctx context.Context, msg sendgrid.Message) (string, error)
}

// Server is the portal.
type Server struct {
	cfg      Config
	store    *store.Store
	temporal client.Client
	mailer   Mailer
	signer   *links.Signer
	pages    map[string]*template.Template
	logger   *slog.Logger
	now      func() time.Time
	oidc     *oidcProvider
}

// New checks cfg and builds the portal. mailer may be nil (outbox mode).
func New(ctx context.Context, cfg Config, st *store.Store, c client.Client, mailer Mailer, logger *slog.Logger) (*Server, error) {
	signer, err := links.NewSigner(cfg.Secret, time.Now)
	if err != nil {
		return nil, err
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("PORTAL_BASE_URL is empty; give the address admins reach the portal at, such as https://updates.example.com")
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, store: st, temporal: c, mailer: mailer, signer: signer, pages: pages, logger: logger, now: time.Now}
	if cfg.OIDC.Issuer != "" {
		if s.oidc, err = newOIDCProvider(ctx, cfg.OIDC, cfg.BaseURL); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parsePages parses each page with the layout and the shared partials.
func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"problem", "signin", "signin-sent", "confirm", "updates", "update", "result", "mailbox"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/confirm.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse the portal's %s page: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// Handler routes every page. Workflow IDs travel in the query string
// (they hold colons).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.myUpdates)
	mux.HandleFunc("GET /update", s.oneUpdate)
	mux.HandleFunc("POST /approve", s.approve)
	mux.HandleFunc("POST /reschedule", s.reschedule)
	mux.HandleFunc("GET /sign-in", s.signInForm)
	mux.HandleFunc("POST /sign-in", s.sendSignInLink)
	mux.HandleFunc("GET /sign-in/{token}", s.confirmSignIn)
	mux.HandleFunc("POST /sign-in/{token}", s.signIn)
	mux.HandleFunc("POST /sign-out", s.signOut)
	mux.HandleFunc("GET /link/{token}", s.confirmLink)
	mux.HandleFunc("POST /link/{token}", s.useLink)
	mux.HandleFunc("GET /oidc/login", s.oidcLogin)
	mux.HandleFunc("GET /oidc/callback", s.oidcCallback)
	if s.cfg.Mailbox {
		mux.HandleFunc("GET /mailbox", s.mailbox)
		mux.HandleFunc("GET /mailbox/{id}", s.mailboxCopy)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, http.StatusNotFound, problemNotFound)
	})
	return s.guard(mux)
}

// guard sets the security headers, checks the CSRF token of every POST and
// turns a panic into a plain error page: never a stack trace.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				s.logger.Error("portal page failed", "path", r.URL.Path, "panic", fmt.Sprint(v))
				s.problem(w, r, http.StatusInternalServerError, problemInternal)
			}
		}()
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer") // the links in emails are bearer tokens
		h.Set("Cache-Control", "no-store")
		nonce := s.csrfNonce(w, r)
		if r.Method == http.MethodPost && !s.signer.CheckCSRF(nonce, r.PostFormValue("csrf")) {
			s.problem(w, r, http.StatusForbidden, problemCSRF)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), csrfKey{}, nonce)))
	})
}

// view is what the layout sees, with the page's own data in Page.
type view struct {
	Title           string
	Email           string
	CSRF            string
	SessionLifetime string
	Page            any
}

// render writes a page; a failed render is logged, the admin gets the
// plain error page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	v := view{Title: title, CSRF: s.signer.CSRF(csrfNonceOf(r)), SessionLifetime: spell(s.cfg.SessionLifetime), Page: data}
	if sess, ok := s.session(r); ok {
		v.Email = sess.Recipient
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages[page].ExecuteTemplate(w, "layout", v); err != nil {
		s.logger.Error("render a portal page", "page", page, "error", err)
	}
}
