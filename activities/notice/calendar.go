package notice

import (
	"fmt"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/svcupdate/svcupdate/workflows"
)

// InviteMethod says whether a notice carries a calendar file, and which.
type InviteMethod string

const (
	inviteNone InviteMethod = ""
	// InviteRequest adds or moves the primary window in the recipient's
	// calendar.
	InviteRequest InviteMethod = InviteMethod(ics.MethodRequest)
	// InviteCancel removes it.
	InviteCancel InviteMethod = InviteMethod(ics.MethodCancel)
)

// Invite is a calendar file for the update's primary window.
type Invite struct {
	Method   InviteMethod
	Filename string
	Content  []byte
}

// ContentType is the MIME type mail clients recognise an invite by.
func (i Invite) ContentType() string {
	return fmt.Sprintf("text/calendar; method=%s; charset=UTF-8", i.Method)
}

// RenderInvite returns the calendar file of a notice whose kind carries
// one (ok false otherwise): one event for the primary window in the
// instance's zone, its UID the workflow's, so every later file updates the
// same entry. SEQUENCE counts the admins' decisions so far (each Approve
// and Reschedule), so a reschedule outranks the invite it moves; a cancel
// comes after all of them. organizer is the sender's address.
func RenderInvite(in workflows.SendNoticeInput, spec Spec, timeZone, organizer string, now time.Time) (Invite, bool, error) {
	if spec.Invite == inviteNone {
		return Invite{}, false, nil
	}
	loc, err := time.LoadLocation(timeZone)
	if err != nil {
		return Invite{}, false, fmt.Errorf("invite for %s: time zone %q: %w", in.WorkflowID, timeZone, err)
	}
	u := in.Update
	end := u.Primary.End
	if !end.After(u.Primary.Start) {
		end = u.Primary.Start.Add(workflows.DefaultWindowLength)
	}
	sequence := len(u.Approvals)
	if spec.Invite == InviteCancel {
		sequence++
	}
	name := u.InstanceName
	if name == "" {
		name = u.InstanceID
	}

	cal := ics.NewCalendarFor("svcupdate")
	cal.SetMethod(ics.Method(spec.Invite))
	cal.SetXWRTimezone(timeZone)
	event := cal.AddEvent(in.WorkflowID + "@svcupdate")
	event.SetDtStampTime(now)
	event.SetSequence(sequence)
	const local = "20060102T150405"
	event.SetProperty(ics.ComponentPropertyDtStart, u.Primary.Start.In(loc).Format(local), ics.WithTZID(timeZone))
	event.SetProperty(ics.ComponentPropertyDtEnd, end.In(loc).Format(local), ics.WithTZID(timeZone))
	event.SetSummary(fmt.Sprintf("Service update: %s %s → %s", name, u.CurrentVersion, u.TargetVersion))
	event.SetDescription(fmt.Sprintf("Update window of %s (%s) from %s to %s; %s may be unavailable for several hours. Reference: %s.",
		name, u.InstanceID, u.CurrentVersion, u.TargetVersion, name, in.WorkflowID))
	event.SetOrganizer("mailto:" + organizer)
	event.SetTimeTransparency(ics.TransparencyOpaque)
	if spec.Invite == InviteCancel {
		event.SetStatus(ics.ObjectStatusCancelled)
	} else {
		event.SetStatus(ics.ObjectStatusConfirmed)
	}
	return Invite{Method: spec.Invite, Filename: "service-update.ics", Content: []byte(cal.Serialize())}, true, nil
}
