package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// The action links of the update emails: a GET shows what the link will
// do and a button; only the POST acts (so a mail scanner that follows
// links approves nothing). The link is recorded as used in the same
// transaction as the action, so a refused action leaves it usable.

// confirmPage asks the admin to confirm a link's action.
type confirmPage struct {
	Question  string
	Button    string
	Action    string
	Recipient string
	Expires   string
	Update    *updateView
}

var linkWords = map[string]struct{ title, question, button string }{
	links.ActionApprove:    {"Approve this update", "Approve the update below for the windows shown?", "Approve"},
	links.ActionReschedule: {"Choose other slots", "Open the update below to choose other slots?", "Continue to the slots"},
	links.ActionView:       {"View this update", "Open the update below?", "Open the update"},
}

// checkLink verifies a link and that it may still be used; on a problem
// it writes the page and returns false.
func (s *Server) checkLink(w http.ResponseWriter, r *http.Request, actions ...string) (links.Claims, bool) {
	claims, err := s.signer.Verify(r.PathValue("token"))
	switch {
	case errors.Is(err, links.ErrExpired):
		s.problem(w, r, http.StatusGone, problemLinkExpired)
		return claims, false
	case err != nil:
		s.problem(w, r, http.StatusBadRequest, problemLinkInvalid)
		return claims, false
	}
	known := false
	for _, a := range actions {
		known = known || claims.Action == a
	}
	if !known {
		s.problem(w, r, http.StatusBadRequest, problemLinkInvalid)
		return claims, false
	}
	used, err := s.store.LinkUsed(r.Context(), claims.Nonce)
	if err != nil {
		s.fail(w, r, "read a link", err)
		return claims, false
	}
	if used {
		s.problem(w, r, http.StatusGone, problemLinkUsed)
		return claims, false
	}
	return claims, true
}

func (s *Server) confirmLink(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.checkLink(w, r, links.ActionApprove, links.ActionReschedule, links.ActionView)
	if !ok {
		return
	}
	rec, err := s.store.AdminUpdateOf(r.Context(), claims.Recipient, claims.WorkflowID)
	if errors.Is(err, store.ErrNotFound) {
		s.problem(w, r, http.StatusForbidden, problemNotAdmin)
		return
	}
	if err != nil {
		s.fail(w, r, "read an update", err)
		return
	}
	u := newUpdateView(rec.View, rec.Region, rec.TimeZone)
	if claims.Action == links.ActionApprove && !u.CanApprove {
		// Said before the button, so the link stays unused for nothing.
		page := problemNothingToApprove
		page.Message = nothingToApprove(u)
		s.problem(w, r, http.StatusConflict, page)
		return
	}
	words := linkWords[claims.Action]
	s.render(w, r, http.StatusOK, "confirm", words.title, confirmPage{
		Question: words.question, Button: words.button, Action: r.URL.Path,
		Recipient: claims.Recipient, Expires: at(claims.Expires, timeZone(u.TimeZone)).Local, Update: &u,
	})
}

func (s *Server) useLink(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.checkLink(w, r, links.ActionApprove, links.ActionReschedule, links.ActionView)
	if !ok {
		return
	}
	if !s.spendLink(w, r, claims, "use a link", func(ctx context.Context) error {
		if claims.Action == links.ActionApprove {
			_, err := s.act(ctx, claims.Recipient, actor.ChannelPortalLink, claims.WorkflowID, workflows.UpdateApprove, func(assertion string) any {
				return workflows.ApproveInput{Admin: claims.Recipient, Note: "through an emailed link", Assertion: assertion}
			})
			return err
		}
		// Choosing slots and viewing go on in a session; the admin must
		// still be one.
		_, err := s.store.AdminUpdateOf(ctx, claims.Recipient, claims.WorkflowID)
		if errors.Is(err, store.ErrNotFound) {
			return &refusal{http.StatusForbidden, problemNotAdmin}
		}
		return err
	}) {
		return
	}
	if err := s.startSession(w, r, claims.Recipient, actor.ChannelPortalLink); err != nil {
		s.fail(w, r, "start a session", err)
		return
	}
	target := "/update?id=" + url.QueryEscape(claims.WorkflowID)
	switch claims.Action {
	case links.ActionApprove:
		target += "&done=" + url.QueryEscape("Approved. The update runs in the windows below.")
	case links.ActionReschedule:
		target += "#choose"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// nothingToApprove says why an update takes no approval.
func nothingToApprove(u updateView) string {
	switch {
	case u.Mandatory && u.Open:
		return "This update is mandatory: it runs in its primary window without approval. You can still choose other slots."
	case u.ApprovedBy != "" && u.Open:
		return "This update was already approved by " + u.ApprovedBy + ". You can still choose other slots."
	case u.Open:
		return "This update can no longer be approved, only moved to other slots."
	}
	return "This update is " + strings.ToLower(u.StatusText) + " and can no longer change."
}

// spendLink uses the link once, in one transaction with check, and
// answers a used link or a refusal with its page; false when it answered.
func (s *Server) spendLink(w http.ResponseWriter, r *http.Request, claims links.Claims, doing string, check func(context.Context) error) bool {
	err := s.store.UseLink(r.Context(), usedLink(claims), check)
	var ref *refusal
	switch {
	case errors.Is(err, store.ErrLinkUsed):
		s.problem(w, r, http.StatusGone, problemLinkUsed)
		return false
	case errors.As(err, &ref):
		s.problem(w, r, ref.status, ref.page)
		return false
	case err != nil:
		s.fail(w, r, doing, err)
		return false
	}
	return true
}

func usedLink(c links.Claims) store.UsedLink {
	return store.UsedLink{Nonce: c.Nonce, Action: c.Action, Recipient: c.Recipient, WorkflowID: c.WorkflowID, Expires: c.Expires}
}
