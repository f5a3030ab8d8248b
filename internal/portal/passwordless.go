package portal

import (
	"bytes"
	"context"
	"errors"
	htmltemplate "html/template"
	"net/http"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/internal/store"
)

// SignInLinkLifetime bounds an emailed sign-in link: it is asked for by
// the person about to use it.
const SignInLinkLifetime = 30 * time.Minute

// KindSignIn is the outbox kind of sign-in mails.
const KindSignIn = "sign-in"

var (
	signInHTML = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/signin-mail.html"))
	signInText = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/signin-mail.html"))
)

type signInForm struct {
	LinkLifetime string
	OIDC         bool
}

func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.session(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "signin", "Sign in", signInForm{LinkLifetime: spell(SignInLinkLifetime), OIDC: s.oidc != nil})
}

// sendSignInLink mails a sign-in link to an admin. The page says the same
// whether or not the address is an admin's, so it tells nobody who is.
func (s *Server) sendSignInLink(w http.ResponseWriter, r *http.Request) {
	address := strings.TrimSpace(r.PostFormValue("email"))
	parsed, err := mail.ParseAddress(address)
	if err != nil || parsed.Address != address {
		page := problemBadChoice
		page.Title = "That is not an email address"
		page.Message = "Enter one address such as ada@example.com."
		page.Link, page.LinkText = "/sign-in", "Try again"
		s.problem(w, r, http.StatusBadRequest, page)
		return
	}
	admin, err := s.store.IsAdmin(r.Context(), address)
	if err != nil {
		s.fail(w, r, "read an admin", err)
		return
	}
	if admin {
		if err := s.mailSignInLink(r.Context(), address); err != nil {
			s.fail(w, r, "mail a sign-in link", err)
			return
		}
	} else {
		s.logger.Info("sign-in asked for an address that administers no instance")
	}
	s.render(w, r, http.StatusOK, "signin-sent", "Check your email", struct{ Address, LinkLifetime string }{address, spell(SignInLinkLifetime)})
}

// mailSignInLink sends the link through SendGrid (or stores it, in outbox
// mode) and records it in the outbox.
func (s *Server) mailSignInLink(ctx context.Context, address string) error {
	claims := links.Claims{Recipient: address, Action: links.ActionSignIn, Expires: s.now().Add(SignInLinkLifetime)}
	token, err := s.signer.Mint(claims)
	if err != nil {
		return err
	}
	verified, err := s.signer.Verify(token)
	if err != nil {
		return err
	}
	data := struct{ Recipient, URL, Expires string }{address, s.cfg.BaseURL + "/sign-in/" + token, verified.Expires.Format(pageTimeLayout)}
	var html, text bytes.Buffer
	if err := signInHTML.ExecuteTemplate(&html, "html", data); err != nil {
		return err
	}
	if err := signInText.ExecuteTemplate(&text, "text", data); err != nil {
		return err
	}
	m := store.PortalMail{Key: verified.Nonce, Kind: KindSignIn, Recipient: address, Subject: "Your sign-in link to the service update portal",
		HTML: html.String(), Text: text.String(), State: store.OutboxStored, At: s.now()}
	if s.mailer != nil {
		m.MessageID, err = s.mailer.Send(ctx, sendgrid.Message{Recipients: []string{address}, Subject: m.Subject, HTML: m.HTML, Text: m.Text,
			CustomArgs: map[string]string{"notice": KindSignIn}})
		m.State = store.OutboxSent
		if err != nil {
			m.State, m.LastError = store.OutboxRejected, err.Error()
		}
	}
	return errors.Join(err, s.store.AddPortalMail(ctx, m))
}

func (s *Server) confirmSignIn(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.checkLink(w, r, links.ActionSignIn)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "confirm", "Sign in", confirmPage{
		Question: "Sign in to the service update portal as " + claims.Recipient + "?", Button: "Sign in",
		Action: r.URL.Path, Recipient: claims.Recipient, Expires: claims.Expires.Format(pageTimeLayout),
	})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.checkLink(w, r, links.ActionSignIn)
	if !ok {
		return
	}
	if !s.spendLink(w, r, claims, "sign in", func(ctx context.Context) error {
		admin, err := s.store.IsAdmin(ctx, claims.Recipient)
		if err == nil && !admin {
			return &refusal{http.StatusForbidden, problemNotAdmin}
		}
		return err
	}) {
		return
	}
	if err := s.startSession(w, r, claims.Recipient, actor.ChannelPortalSession); err != nil {
		s.fail(w, r, "start a session", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
