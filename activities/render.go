package activities

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// renderTemplateFS holds one layout per format (HTML, plain text) and, per
// row of the communications table, templates/<spec.Template>.{html,txt}.tmpl.
// The text file defines "subject" and "content" for email kinds and "alert"
// for kinds with an in-product alert; the HTML file defines "content".
//
//go:embed templates/*.tmpl
var renderTemplateFS embed.FS

// renderTemplateSet is the parsed layout plus one kind's content.
type renderTemplateSet struct {
	HTML *htmltemplate.Template // nil for kinds without email
	Text *texttemplate.Template
}

// renderTemplates maps spec.Template to its parsed set. Parsed once at
// start-up: a broken template is a programming error that every test run
// catches, not something a running worker can recover from.
var renderTemplates = renderMustParse()

func renderMustParse() map[string]renderTemplateSet {
	htmlLayout := htmltemplate.Must(htmltemplate.ParseFS(renderTemplateFS, "templates/layout.html.tmpl"))
	textLayout := texttemplate.Must(texttemplate.ParseFS(renderTemplateFS, "templates/layout.txt.tmpl"))
	specs := []noticeSpec{noticeReminderSpec}
	for _, spec := range noticeSpecs {
		specs = append(specs, spec)
	}
	sets := make(map[string]renderTemplateSet, len(specs))
	for _, spec := range specs {
		var set renderTemplateSet
		set.Text = texttemplate.Must(texttemplate.Must(textLayout.Clone()).ParseFS(renderTemplateFS, "templates/"+spec.Template+".txt.tmpl"))
		required := []string{}
		if spec.Email {
			set.HTML = htmltemplate.Must(htmltemplate.Must(htmlLayout.Clone()).ParseFS(renderTemplateFS, "templates/"+spec.Template+".html.tmpl"))
			if set.HTML.Lookup("content") == nil {
				panic(fmt.Sprintf("templates/%s.html.tmpl must define \"content\"", spec.Template))
			}
			required = append(required, "subject", "content")
		}
		if spec.Alert != noticeAlertNever {
			required = append(required, "alert")
		}
		for _, name := range required {
			if set.Text.Lookup(name) == nil {
				panic(fmt.Sprintf("templates/%s.txt.tmpl must define %q", spec.Template, name))
			}
		}
		sets[spec.Template] = set
	}
	return sets
}

// renderedEmail is one notice ready to send or store.
type renderedEmail struct {
	Subject string
	HTML    string
	Text    string
}

// renderMoment is one point in time in the instance's zone and in UTC.
type renderMoment struct {
	Local string // "Sat 24 Oct 2026 22:00 CEST"
	UTC   string // "Sat 24 Oct 2026 20:00 UTC"
}

// renderWindow is an update window in the instance's zone and in UTC.
type renderWindow struct {
	Start renderMoment
	End   renderMoment
}

// renderData is what every template sees. Everything is computed here so
// the templates only lay text out.
type renderData struct {
	Kind           workflows.NoticeKind
	Banner         noticeBanner
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
	Primary        renderWindow
	Secondary      renderWindow
	HasSecondary   bool
	// Current is the window the notice's slot is in (the one running, for
	// in-progress; the primary otherwise).
	Current     renderWindow
	Deadline    renderMoment
	HasDeadline bool
	StartsIn    string // reminders: "30 days", "7 days", "2 minutes"
	LastError   string // the latest failed attempt's error, if any
}

// renderLastErrorLimit keeps an executor's long output out of the email.
const renderLastErrorLimit = 400

// renderNewData prepares in for the templates, with windows in timeZone.
func renderNewData(in workflows.SendNoticeInput, spec noticeSpec, timeZone string) (renderData, error) {
	u := in.Update
	if u.Primary.Start.IsZero() {
		return renderData{}, fmt.Errorf("notice %q for workflow %s has no primary window start", in.Kind, in.WorkflowID)
	}
	primary, err := renderNewWindow(u.Primary, timeZone)
	if err != nil {
		return renderData{}, err
	}
	data := renderData{
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
	}
	if !u.Secondary.Start.IsZero() {
		if data.Secondary, err = renderNewWindow(u.Secondary, timeZone); err != nil {
			return renderData{}, err
		}
		data.HasSecondary = true
		if in.SlotStart.Equal(u.Secondary.Start) {
			data.Current = data.Secondary
		}
	}
	if !in.Deadline.IsZero() {
		if data.Deadline, err = renderNewMoment(in.Deadline, timeZone); err != nil {
			return renderData{}, err
		}
		data.HasDeadline = true
	}
	if in.Kind.IsReminder() {
		data.StartsIn = renderDuration(in.Offset)
	}
	for i := len(u.Attempts) - 1; i >= 0; i-- {
		if msg := u.Attempts[i].Error; msg != "" {
			data.LastError = renderTruncate(msg, renderLastErrorLimit)
			break
		}
	}
	return data, nil
}

// renderNewWindow renders w in timeZone and UTC. A window without an end
// (a StatusView filled before its length was known) gets the default length.
func renderNewWindow(w workflows.Window, timeZone string) (renderWindow, error) {
	end := w.End
	if !end.After(w.Start) {
		end = w.Start.Add(workflows.DefaultWindowLength)
	}
	start, err := renderNewMoment(w.Start, timeZone)
	if err != nil {
		return renderWindow{}, err
	}
	endMoment, err := renderNewMoment(end, timeZone)
	if err != nil {
		return renderWindow{}, err
	}
	return renderWindow{Start: start, End: endMoment}, nil
}

// renderNewMoment renders one instant the way windows are rendered.
func renderNewMoment(t time.Time, timeZone string) (renderMoment, error) {
	local, err := workflows.NewWindow(t, t, timeZone)
	if err != nil {
		return renderMoment{}, err
	}
	utc, err := workflows.NewWindow(t, t, "UTC")
	if err != nil {
		return renderMoment{}, err
	}
	return renderMoment{Local: local.LocalStart, UTC: utc.LocalStart}, nil
}

// renderDuration says how far ahead a reminder is, in the largest whole
// unit: "30 days", "1 day", "6 hours", "2 minutes".
func renderDuration(d time.Duration) string {
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

func renderTruncate(s string, limit int) string {
	r := []rune(strings.TrimSpace(s))
	if len(r) <= limit {
		return string(r)
	}
	return string(r[:limit]) + "…"
}

// renderOneLine folds a rendered subject or alert onto one line: a newline
// in an instance name must never reach a mail header.
func renderOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// renderEmail renders the subject, HTML and text bodies of an email kind.
func renderEmail(in workflows.SendNoticeInput, spec noticeSpec, timeZone string) (renderedEmail, error) {
	if !spec.Email {
		return renderedEmail{}, fmt.Errorf("notice kind %q is not sent by email", in.Kind)
	}
	data, err := renderNewData(in, spec, timeZone)
	if err != nil {
		return renderedEmail{}, err
	}
	set := renderTemplates[spec.Template]
	var buf bytes.Buffer
	if err := set.Text.ExecuteTemplate(&buf, "subject", data); err != nil {
		return renderedEmail{}, fmt.Errorf("render subject of %q: %w", in.Kind, err)
	}
	data.Subject = renderOneLine(buf.String())
	buf.Reset()
	if err := set.HTML.ExecuteTemplate(&buf, "layout", data); err != nil {
		return renderedEmail{}, fmt.Errorf("render HTML of %q: %w", in.Kind, err)
	}
	html := buf.String()
	buf.Reset()
	if err := set.Text.ExecuteTemplate(&buf, "layout", data); err != nil {
		return renderedEmail{}, fmt.Errorf("render text of %q: %w", in.Kind, err)
	}
	return renderedEmail{Subject: data.Subject, HTML: html, Text: buf.String()}, nil
}

// renderAlert renders the one-line message of an in-product alert.
func renderAlert(in workflows.SendNoticeInput, spec noticeSpec, timeZone string) (string, error) {
	data, err := renderNewData(in, spec, timeZone)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := renderTemplates[spec.Template].Text.ExecuteTemplate(&buf, "alert", data); err != nil {
		return "", fmt.Errorf("render alert of %q: %w", in.Kind, err)
	}
	return renderOneLine(buf.String()), nil
}
