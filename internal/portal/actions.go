package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// refusal is why an action was not done, as a page.
type refusal struct {
	status int
	page   problemPage
}

func (r *refusal) Error() string { return r.page.Title + ": " + r.page.Message }

// updateActions names the actor action each Update asserts.
var updateActions = map[string]string{workflows.UpdateApprove: actor.ActionApprove, workflows.UpdateReschedule: actor.ActionReschedule}

// act sends one admin action to an update's workflow after checking, in
// Postgres, that email is an admin of its instance now; nothing reaches
// the workflow otherwise. With an action signer the Update carries the
// signed assertion of who acts, through which channel, which input puts
// in the payload. A refusal is a *refusal; anything else is an unexpected
// failure.
func (s *Server) act(ctx context.Context, email string, channel actor.Channel, workflowID, updateName string, input func(assertion string) any) (workflows.StatusView, error) {
	if _, err := s.store.AdminUpdateOf(ctx, email, workflowID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return workflows.StatusView{}, &refusal{http.StatusForbidden, problemNotAdmin}
		}
		return workflows.StatusView{}, err
	}
	assertion := ""
	if s.cfg.ActionSigner != nil {
		var err error
		assertion, err = s.cfg.ActionSigner.Sign(actor.Claims{Actor: email, Channel: channel, WorkflowID: workflowID,
			Action: updateActions[updateName], IssuedAt: s.now()})
		if err != nil {
			return workflows.StatusView{}, err
		}
	}
	s.logger.Info("portal action", "action", updateName, "workflowId", workflowID, "actor", email, "channel", channel)
	handle, err := s.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   updateName,
		Args:         []any{input(assertion)},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var view workflows.StatusView
	if err == nil {
		err = handle.Get(ctx, &view)
	}
	return view, refusalOf(err)
}

// refusalOf turns the workflow's answer into a page: a slot that filled,
// an update that started or closed, or another refusal in the workflow's
// own words.
func refusalOf(err error) error {
	var appErr *temporal.ApplicationError
	var notFound *serviceerror.NotFound
	switch {
	case err == nil:
		return nil
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeSlotFull:
		return &refusal{http.StatusConflict, problemSlotFilled}
	case errors.As(err, &appErr):
		page := problemClosed
		msg := appErr.Message()
		if !strings.Contains(msg, "can no longer") {
			page = problemBadChoice
		}
		page.Message = "The update was not changed: " + msg + "."
		return &refusal{http.StatusConflict, page}
	case errors.As(err, &notFound):
		page := problemClosed
		page.Message = "The update has closed, so nothing was changed."
		return &refusal{http.StatusConflict, page}
	}
	return err
}

// result is one update's outcome on the result page.
type result struct {
	Instance string
	OK       bool
	Message  string
}

// approve approves one or several updates (the list's checkboxes).
func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		page := problemBadChoice
		page.Message = "No update was selected; tick the updates to approve."
		s.problem(w, r, http.StatusBadRequest, page)
		return
	}
	var results []result
	for _, id := range ids {
		view, err := s.act(r.Context(), sess.Recipient, actor.Channel(sess.Channel), id, workflows.UpdateApprove, func(assertion string) any {
			return workflows.ApproveInput{Admin: sess.Recipient, Note: "through the portal (" + sess.Channel + ")", Assertion: assertion}
		})
		results = append(results, s.resultOf(r, id, view, err, "approved"))
	}
	s.render(w, r, http.StatusOK, "result", "Approval", struct{ Results []result }{results})
}

func (s *Server) resultOf(r *http.Request, workflowID string, view workflows.StatusView, err error, done string) result {
	instance := workflowID
	if view.InstanceName != "" {
		instance = view.InstanceName
	}
	var ref *refusal
	switch {
	case err == nil:
		return result{Instance: instance, OK: true, Message: done + "; the windows stand as shown on its page."}
	case errors.As(err, &ref):
		return result{Instance: instance, Message: ref.page.Title + ". " + ref.page.Message}
	}
	s.logger.Error("portal action failed", "path", r.URL.Path, "workflowId", workflowID, "error", err)
	return result{Instance: instance, Message: problemInternal.Message}
}

// reschedule moves an update to the slots picked from the lists.
func (s *Server) reschedule(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	id := r.PostFormValue("id")
	in, err := s.rescheduleInput(r, sess.Recipient, id)
	if err == nil {
		_, err = s.act(r.Context(), sess.Recipient, actor.Channel(sess.Channel), id, workflows.UpdateReschedule, func(assertion string) any {
			in.Assertion = assertion
			return in
		})
	}
	var ref *refusal
	switch {
	case err == nil:
		http.Redirect(w, r, "/update?id="+url.QueryEscape(id)+"&done="+url.QueryEscape("Moved to the slots you chose."), http.StatusSeeOther)
	case errors.As(err, &ref):
		if ref.page.Title == problemSlotFilled.Title || ref.page.Title == problemBadChoice.Title {
			ref.page.Link = "/update?id=" + url.QueryEscape(id) + "#choose"
			ref.page.LinkText = "Choose again"
		}
		s.problem(w, r, ref.status, ref.page)
	default:
		s.fail(w, r, "reschedule", err)
	}
}

// rescheduleInput reads the picked slots; both must be offered slots of
// one release that still have room.
func (s *Server) rescheduleInput(r *http.Request, email, workflowID string) (workflows.RescheduleInput, error) {
	primaryVersion, primary, err1 := parseSlotValue(r.PostFormValue("primary"))
	secondaryVersion, secondary, err2 := parseSlotValue(r.PostFormValue("secondary"))
	if err := errors.Join(err1, err2); err != nil {
		page := problemBadChoice
		page.Message = "Pick both slots from the lists on the update's page."
		return workflows.RescheduleInput{}, &refusal{http.StatusBadRequest, page}
	}
	if primaryVersion != secondaryVersion {
		page := problemBadChoice
		page.Message = fmt.Sprintf("The primary slot is of version %s and the secondary of %s; pick both from the same version.", primaryVersion, secondaryVersion)
		return workflows.RescheduleInput{}, &refusal{http.StatusBadRequest, page}
	}
	rec, err := s.store.AdminUpdateOf(r.Context(), email, workflowID)
	if errors.Is(err, store.ErrNotFound) {
		return workflows.RescheduleInput{}, &refusal{http.StatusForbidden, problemNotAdmin}
	}
	if err != nil {
		return workflows.RescheduleInput{}, err
	}
	free, err := s.store.FreeSlots(r.Context(), rec.Region, rec.View.OfferedVersion, s.now())
	if err != nil {
		return workflows.RescheduleInput{}, err
	}
	for _, want := range []time.Time{primary, secondary} {
		if !hasSlot(free, primaryVersion, want) {
			return workflows.RescheduleInput{}, &refusal{http.StatusConflict, problemSlotFilled}
		}
	}
	return workflows.RescheduleInput{Admin: email, PrimaryStart: primary, SecondaryStart: secondary, TargetVersion: primaryVersion}, nil
}

func parseSlotValue(v string) (string, time.Time, error) {
	version, start, ok := strings.Cut(v, "|")
	if !ok || version == "" {
		return "", time.Time{}, fmt.Errorf("slot %q is not version|start", v)
	}
	t, err := time.Parse(time.RFC3339, start)
	return version, t, err
}

func hasSlot(free []store.FreeSlot, version string, start time.Time) bool {
	for _, f := range free {
		if f.Version == version && f.Start.Equal(start) {
			return true
		}
	}
	return false
}
