package portal

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/svcupdate/svcupdate/internal/store"
)

// The demo mailbox (PORTAL_MAILBOX): an operator page listing the outbox,
// so a newcomer running `make run` in outbox mode can open the emails and
// click their links. Never enable it where admins reach the portal.

type mailboxRow struct {
	At         string
	Kind       string
	Subject    string
	Recipients []struct{ Address, Href string }
}

func (s *Server) mailbox(w http.ResponseWriter, r *http.Request) {
	mails, err := s.store.OutboxMails(r.Context(), 200)
	if err != nil {
		s.fail(w, r, "read the outbox", err)
		return
	}
	rows := make([]mailboxRow, 0, len(mails))
	for _, m := range mails {
		row := mailboxRow{At: m.CreatedAt.Format(pageTimeLayout), Kind: m.Kind, Subject: m.Subject}
		for _, to := range m.Recipients {
			row.Recipients = append(row.Recipients, struct{ Address, Href string }{to,
				"/mailbox/" + strconv.FormatInt(m.ID, 10) + "?to=" + url.QueryEscape(to)})
		}
		rows = append(rows, row)
	}
	s.render(w, r, http.StatusOK, "mailbox", "Demo mailbox", struct{ Mails []mailboxRow }{rows})
}

// mailboxCopy shows one stored email as one recipient got it: their own
// links in place of the placeholders.
func (s *Server) mailboxCopy(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.problem(w, r, http.StatusNotFound, problemNotFound)
		return
	}
	m, err := s.store.OutboxMailByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.problem(w, r, http.StatusNotFound, problemNotFound)
		return
	}
	if err != nil {
		s.fail(w, r, "read the outbox", err)
		return
	}
	html := m.HTML
	for placeholder, link := range m.Links[r.URL.Query().Get("to")] {
		html = strings.ReplaceAll(html, placeholder, link)
	}
	// The stored mail is the worker's own rendering; it is shown as is,
	// like a mail client would.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	_, _ = w.Write([]byte(html))
}
