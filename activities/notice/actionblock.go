package notice

import (
	"bytes"
	htmltemplate "html/template"
	texttemplate "text/template"
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// Placeholders of an actionable email: each recipient's copy carries their
// own signed action links in their place (SendGrid substitutions; the
// outbox keeps them per recipient).
const (
	PlaceholderActionsHTML = "%svcupdate-actions-html%"
	PlaceholderActionsText = "%svcupdate-actions-text%"
)

// Options adds what the Notifier reads at send time to an email.
type Options struct {
	// Actions puts the action-links placeholders in kinds that carry them.
	Actions bool
	// FreeSlots are the next slots with room, listed by kinds that offer
	// other slots.
	FreeSlots []FreeSlot
}

// FreeSlot is an offered slot that still has room.
type FreeSlot struct {
	Version string
	Start   time.Time
	Window  time.Duration
}

// ActionLinks are one recipient's links; empty ones are left out.
type ActionLinks struct {
	Approve string
	Choose  string
	View    string
	Expires time.Time
}

var (
	actionsHTML = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/actions.html.tmpl"))
	actionsText = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/actions.txt.tmpl"))
)

// RenderActions renders one recipient's links for the placeholders, in
// timeZone; a recipient without links (not an admin) gets a line saying
// who can act.
func RenderActions(l ActionLinks, timeZone string) (map[string]string, error) {
	name := "actions"
	if l.Approve == "" && l.Choose == "" && l.View == "" {
		name = "no-actions"
	}
	expires, err := newMoment(l.Expires, timeZone)
	if err != nil {
		return nil, err
	}
	d := struct {
		Approve, Choose, View string
		Expires               string
	}{l.Approve, l.Choose, l.View, expires.Local + " (" + expires.UTC + ")"}
	var html, text bytes.Buffer
	if err := actionsHTML.ExecuteTemplate(&html, name, d); err != nil {
		return nil, err
	}
	if err := actionsText.ExecuteTemplate(&text, name, d); err != nil {
		return nil, err
	}
	return map[string]string{PlaceholderActionsHTML: html.String(), PlaceholderActionsText: text.String()}, nil
}

// Links says which links a notice of kind offers for the update as it
// stands: approve while approval is still open, choose while the schedule
// can change, view always.
func Links(in workflows.SendNoticeInput, spec Spec) (approve, choose, view bool) {
	if !spec.Actions {
		return false, false, false
	}
	u := in.Update
	approve = u.Status == workflows.StatusScheduled && !u.Mandatory && u.ApprovedBy == "" && in.Kind != workflows.NoticeNotApproved
	choose = u.Status != workflows.StatusInProgress && u.Status != workflows.StatusFallbackScheduled
	return approve, choose, true
}
