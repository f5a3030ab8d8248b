// Package notice is DESIGN.md's communications table and the rendering of
// its notices: who each kind addresses, whether it is emailed and alerted,
// and the subject, HTML and text of each email. It is pure: the Notifier
// activity reads recipients, stores and sends.
package notice

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/workflows"
)

// Email is one notice ready to send or store.
type Email struct {
	Subject string
	HTML    string
	Text    string
	// Substitutions holds each recipient's text for the placeholders (their
	// action links); the Notifier fills it in.
	Substitutions map[string]map[string]string
	// Attachments carry the calendar invite of the kinds that have one.
	Attachments []sendgrid.Attachment
}

// moment is one point in time in the instance's zone and in UTC.
type moment struct {
	Local string // "Sat 24 Oct 2026 22:00 CEST"
	UTC   string // "Sat 24 Oct 2026 20:00 UTC"
}

// window is an update window in the instance's zone and in UTC.
type window struct {
	Start moment
	End   moment
}

// data is what every template sees. Everything is computed here so the
// templates only lay text out.
type data struct {
	Kind           workflows.NoticeKind
	Banner         Banner
	Subject        string
	WorkflowID     string
	InstanceID     string
	InstanceName   string
	TimeZone       string
	CurrentVersion string
	TargetVersion  string
	Mandatory      bool
	Approved       bool
	ApprovedBy     string
	Primary        window
	Secondary      window
	HasSecondary   bool
	// Current is the window the notice's slot is in (the one running, for
	// in-progress; the primary otherwise).
	Current     window
	Deadline    moment
	HasDeadline bool
	StartsIn    string // reminders: "30 days", "7 days", "2 minutes"
	// LastError summarizes the latest failed attempt's error, if any: one
	// sanitized line (summary.go), never the executor's raw output.
	LastError string
	// AlreadyUpToDate: the update closed without running, the instance
	// already on FoundVersion; SupersededBy: the newer target that
	// replaced it.
	AlreadyUpToDate bool
	FoundVersion    string
	SupersededBy    string
	// Actions: the placeholders each recipient's action links replace.
	Actions     bool
	ActionsHTML string
	ActionsText string
	// FreeSlots lists the next slots with room, rendered.
	FreeSlots []window
}

// newData prepares in for the templates, with windows in timeZone.
func newData(in workflows.SendNoticeInput, spec Spec, timeZone string) (data, error) {
	u := in.Update
	if u.Primary.Start.IsZero() {
		return data{}, fmt.Errorf("notice %q for workflow %s has no primary window start", in.Kind, in.WorkflowID)
	}
	primary, err := newWindow(u.Primary, timeZone)
	if err != nil {
		return data{}, err
	}
	d := data{
		Kind:           in.Kind,
		Banner:         spec.Banner,
		WorkflowID:     in.WorkflowID,
		InstanceID:     u.InstanceID,
		InstanceName:   u.InstanceName,
		TimeZone:       timeZone,
		CurrentVersion: u.CurrentVersion,
		TargetVersion:  u.TargetVersion,
		Mandatory:      u.Mandatory,
		Approved:       u.ApprovedBy != "" || u.Status == workflows.StatusApproved,
		ApprovedBy:     u.ApprovedBy,
		Primary:        primary,
		Current:        primary,

		AlreadyUpToDate: u.AlreadyUpToDate,
		FoundVersion:    u.FoundVersion,
		SupersededBy:    u.SupersededBy,
	}
	if !u.Secondary.Start.IsZero() {
		if d.Secondary, err = newWindow(u.Secondary, timeZone); err != nil {
			return data{}, err
		}
		d.HasSecondary = true
		if in.SlotStart.Equal(u.Secondary.Start) {
			d.Current = d.Secondary
		}
	}
	if !in.Deadline.IsZero() {
		if d.Deadline, err = newMoment(in.Deadline, timeZone); err != nil {
			return data{}, err
		}
		d.HasDeadline = true
	}
	if in.Kind.IsReminder() {
		d.StartsIn = spellDuration(in.Offset)
	}
	for i := len(u.Attempts) - 1; i >= 0; i-- {
		if msg := u.Attempts[i].Error; msg != "" {
			d.LastError = summary(msg)
			break
		}
	}
	return d, nil
}

// newWindow renders w in timeZone and UTC. A window without an end (a
// StatusView filled before its length was known) gets the default length.
func newWindow(w workflows.Window, timeZone string) (window, error) {
	end := w.End
	if !end.After(w.Start) {
		end = w.Start.Add(workflows.DefaultWindowLength)
	}
	start, err := newMoment(w.Start, timeZone)
	if err != nil {
		return window{}, err
	}
	endMoment, err := newMoment(end, timeZone)
	if err != nil {
		return window{}, err
	}
	return window{Start: start, End: endMoment}, nil
}

// newMoment renders one instant the way windows are rendered.
func newMoment(t time.Time, timeZone string) (moment, error) {
	local, err := workflows.NewWindow(t, t, timeZone)
	if err != nil {
		return moment{}, err
	}
	utc, err := workflows.NewWindow(t, t, "UTC")
	if err != nil {
		return moment{}, err
	}
	return moment{Local: local.LocalStart, UTC: utc.LocalStart}, nil
}

// spellDuration says how far ahead a reminder is, in the largest whole
// unit: "30 days", "1 day", "6 hours", "2 minutes".
func spellDuration(d time.Duration) string {
	units := []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}}
	for _, u := range units {
		if d >= u.size && d%u.size == 0 {
			n := int64(d / u.size)
			if n == 1 {
				return "1 " + u.name
			}
			return fmt.Sprintf("%d %ss", n, u.name)
		}
	}
	return d.String()
}

func truncate(s string, limit int) string {
	r := []rune(strings.TrimSpace(s))
	if len(r) <= limit {
		return string(r)
	}
	return string(r[:limit]) + "…"
}

// oneLine folds a rendered subject or alert onto one line: a newline in an
// instance name must never reach a mail header.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// RenderEmail renders the subject, HTML and text bodies of an email kind,
// with windows in timeZone and UTC.
func RenderEmail(in workflows.SendNoticeInput, spec Spec, timeZone string) (Email, error) {
	return RenderEmailWith(in, spec, timeZone, Options{})
}

// maxFreeSlots bounds the slots an email lists; the portal shows them all.
const maxFreeSlots = 5

// RenderEmailWith is RenderEmail with the action-links placeholders and
// the free slots of opts, where the kind carries them.
func RenderEmailWith(in workflows.SendNoticeInput, spec Spec, timeZone string, opts Options) (Email, error) {
	if !spec.Email {
		return Email{}, fmt.Errorf("notice kind %q is not sent by email", in.Kind)
	}
	d, err := newData(in, spec, timeZone)
	if err != nil {
		return Email{}, err
	}
	if spec.Actions && opts.Actions {
		d.Actions, d.ActionsHTML, d.ActionsText = true, PlaceholderActionsHTML, PlaceholderActionsText
	}
	if spec.OffersSlots {
		for _, f := range opts.FreeSlots[:min(len(opts.FreeSlots), maxFreeSlots)] {
			w, err := newWindow(workflows.Window{Start: f.Start, End: f.Start.Add(f.Window)}, timeZone)
			if err != nil {
				return Email{}, err
			}
			d.FreeSlots = append(d.FreeSlots, w)
		}
	}
	set := templates[spec.Template]
	var buf bytes.Buffer
	if err := set.Text.ExecuteTemplate(&buf, "subject", d); err != nil {
		return Email{}, fmt.Errorf("render subject of %q: %w", in.Kind, err)
	}
	d.Subject = oneLine(buf.String())
	buf.Reset()
	if err := set.HTML.ExecuteTemplate(&buf, "layout", d); err != nil {
		return Email{}, fmt.Errorf("render HTML of %q: %w", in.Kind, err)
	}
	html := buf.String()
	buf.Reset()
	if err := set.Text.ExecuteTemplate(&buf, "layout", d); err != nil {
		return Email{}, fmt.Errorf("render text of %q: %w", in.Kind, err)
	}
	return Email{Subject: d.Subject, HTML: html, Text: buf.String()}, nil
}

// RenderAlert renders the one-line message of an in-product alert.
func RenderAlert(in workflows.SendNoticeInput, spec Spec, timeZone string) (string, error) {
	d, err := newData(in, spec, timeZone)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := templates[spec.Template].Text.ExecuteTemplate(&buf, "alert", d); err != nil {
		return "", fmt.Errorf("render alert of %q: %w", in.Kind, err)
	}
	return oneLine(buf.String()), nil
}
