package notice

import (
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/workflows"
)

func TestInvitesFollowTheScheduleInTheInstancesZone(t *testing.T) {
	now := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	render := func(kind workflows.NoticeKind, approvals int) (*ics.Calendar, bool) {
		t.Helper()
		in := noticetest.Input(kind)
		for range approvals {
			in.Update.Approvals = append(in.Update.Approvals, workflows.Approval{By: "ada@contoso.example", Action: "rescheduled"})
		}
		spec, err := For(kind)
		if err != nil {
			t.Fatal(err)
		}
		invite, ok, err := RenderInvite(in, spec, zone, "updates@provider.example", now)
		if err != nil || !ok {
			return nil, ok
		}
		if !strings.HasPrefix(invite.ContentType(), "text/calendar; method="+string(invite.Method)) {
			t.Errorf("%s: content type %q", kind, invite.ContentType())
		}
		cal, err := ics.ParseCalendar(strings.NewReader(string(invite.Content)))
		if err != nil {
			t.Fatalf("%s: the invite does not parse: %v\n%s", kind, err, invite.Content)
		}
		return cal, true
	}
	property := func(cal *ics.Calendar, p ics.ComponentProperty) *ics.IANAProperty {
		t.Helper()
		events := cal.Events()
		if len(events) != 1 {
			t.Fatalf("%d events, want the primary window only", len(events))
		}
		return events[0].GetProperty(p)
	}

	scheduled, _ := render(workflows.NoticeScheduled, 0)
	rescheduled, _ := render(workflows.NoticeRescheduled, 2)
	cancelled, _ := render(workflows.NoticeCancelled, 2)
	start := property(scheduled, ics.ComponentPropertyDtStart)
	// noticetest's primary starts 2026-03-14 21:00 UTC: 22:00 in Berlin.
	if start.Value != "20260314T220000" || start.ICalParameters["TZID"][0] != zone {
		t.Errorf("DTSTART %s %v, want 20260314T220000 in %s", start.Value, start.ICalParameters, zone)
	}
	uid := property(scheduled, ics.ComponentPropertyUniqueId).Value
	for _, c := range []struct {
		cal      *ics.Calendar
		method   string
		sequence string
	}{{scheduled, "REQUEST", "0"}, {rescheduled, "REQUEST", "2"}, {cancelled, "CANCEL", "3"}} {
		if got := property(c.cal, ics.ComponentPropertyUniqueId).Value; got != uid {
			t.Errorf("UID %s, want the same %s in every invite of the update", got, uid)
		}
		if got := property(c.cal, ics.ComponentPropertySequence).Value; got != c.sequence {
			t.Errorf("%s: SEQUENCE %s, want %s", c.method, got, c.sequence)
		}
		if !strings.Contains(c.cal.Serialize(), "METHOD:"+c.method) {
			t.Errorf("no METHOD:%s in\n%s", c.method, c.cal.Serialize())
		}
	}
	for _, kind := range []workflows.NoticeKind{workflows.NoticeNotApproved, workflows.NoticeSucceeded, workflows.ReminderKind(7 * 24 * time.Hour)} {
		if _, ok := render(kind, 0); ok {
			t.Errorf("%s carries an invite; only scheduled, confirmed, rescheduled (request) and cancelled, superseded (cancel) do", kind)
		}
	}
}
