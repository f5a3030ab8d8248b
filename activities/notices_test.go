package activities

import (
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// The communications table of DESIGN.md, row by row.
func TestNoticeSpecsMatchTheCommunicationsTable(t *testing.T) {
	cases := []struct {
		kind     workflows.NoticeKind
		audience noticeAudience
		email    bool
		alert    noticeAlertRule
	}{
		{workflows.NoticeScheduled, noticeAudienceAdminsExtra, true, noticeAlertAlways},
		{workflows.ReminderKind(90 * 24 * time.Hour), noticeAudienceAdminsExtra, true, noticeAlertSevenDayReminderWhenApproved},
		{workflows.ReminderKind(30 * 24 * time.Hour), noticeAudienceAdminsExtra, true, noticeAlertSevenDayReminderWhenApproved},
		{workflows.ReminderKind(15 * 24 * time.Hour), noticeAudienceAdminsExtra, true, noticeAlertSevenDayReminderWhenApproved},
		{workflows.ReminderKind(7 * 24 * time.Hour), noticeAudienceAdminsExtra, true, noticeAlertSevenDayReminderWhenApproved},
		{workflows.NoticeDayOf, noticeAudienceAdminsExtra, true, noticeAlertNever},
		{workflows.NoticeConfirmed, noticeAudienceAdminsExtra, true, noticeAlertNever},
		{workflows.NoticeRescheduled, noticeAudienceAdminsExtra, true, noticeAlertNever},
		{workflows.NoticeInProgress, noticeAudienceAdminsUsers, false, noticeAlertAlways},
		{workflows.NoticeSucceeded, noticeAudienceAdminsUsers, true, noticeAlertNever},
		{workflows.NoticeFallback, noticeAudienceAdminsExtra, true, noticeAlertNever},
		{workflows.NoticeFailed, noticeAudienceAdminsExtra, true, noticeAlertNever},
		{workflows.NoticeNotApproved, noticeAudienceAdminsExtra, true, noticeAlertNever},
		{workflows.NoticeCancelled, noticeAudienceAdminsExtra, true, noticeAlertNever},
	}
	for _, tc := range cases {
		spec, err := noticeSpecFor(tc.kind)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if spec.Audience.Name != tc.audience.Name || spec.Email != tc.email || spec.Alert != tc.alert {
			t.Errorf("%s: audience %s, email %t, alert rule %d; want %s, %t, %d",
				tc.kind, spec.Audience.Name, spec.Email, spec.Alert, tc.audience.Name, tc.email, tc.alert)
		}
	}
	if len(cases) != len(noticeSpecs)+4 {
		t.Errorf("the table has %d fixed kinds; this test covers %d (plus 4 reminders): add the new kind here", len(noticeSpecs), len(cases)-4)
	}
}

func TestNoticeAudiencesReadTheRightRoles(t *testing.T) {
	if got := strings.Join(noticeAudienceAdminsExtra.Roles, ","); got != "admin,extra" {
		t.Errorf("admins+extra reads roles %s", got)
	}
	if got := strings.Join(noticeAudienceAdminsUsers.Roles, ","); got != "admin,user" {
		t.Errorf("admins+users reads roles %s", got)
	}
	// Extra recipients are mail-only addresses, not product users.
	if noticeAudienceAdminsExtra.AlertAudience != "admins" || noticeAudienceAdminsUsers.AlertAudience != "admins+users" {
		t.Errorf("alert audiences %q and %q", noticeAudienceAdminsExtra.AlertAudience, noticeAudienceAdminsUsers.AlertAudience)
	}
}

func TestNoticeAlertRules(t *testing.T) {
	reminder := func(offset time.Duration, approvedBy string, status workflows.Status) workflows.SendNoticeInput {
		return workflows.SendNoticeInput{
			Kind: workflows.ReminderKind(offset), Offset: offset,
			Update: workflows.StatusView{ApprovedBy: approvedBy, Status: status},
		}
	}
	cases := []struct {
		name string
		in   workflows.SendNoticeInput
		want bool
	}{
		{"7-day reminder, approved by an admin", reminder(7*24*time.Hour, "ada@contoso.example", workflows.StatusApproved), true},
		{"7-day reminder, status approved", reminder(7*24*time.Hour, "", workflows.StatusApproved), true},
		{"7-day reminder, not approved", reminder(7*24*time.Hour, "", workflows.StatusScheduled), false},
		{"30-day reminder, approved", reminder(30*24*time.Hour, "ada@contoso.example", workflows.StatusApproved), false},
		{"7-hour reminder of a compressed clock, approved", reminder(7*time.Hour, "ada@contoso.example", workflows.StatusApproved), false},
	}
	for _, tc := range cases {
		spec, err := noticeSpecFor(tc.in.Kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := spec.Alert.applies(tc.in); got != tc.want {
			t.Errorf("%s: alert %t, want %t", tc.name, got, tc.want)
		}
	}
	for kind, spec := range noticeSpecs {
		in := workflows.SendNoticeInput{Kind: kind, Update: workflows.StatusView{ApprovedBy: "ada@contoso.example"}}
		want := kind == workflows.NoticeScheduled || kind == workflows.NoticeInProgress
		if got := spec.Alert.applies(in); got != want {
			t.Errorf("%s: alert %t, want %t", kind, got, want)
		}
	}
}

func TestNoticeSpecForUnknownKindNamesTheAccepted(t *testing.T) {
	_, err := noticeSpecFor("postponed")
	if err == nil {
		t.Fatal("unknown kind accepted")
	}
	for _, want := range []string{`"postponed"`, "scheduled", "cancelled", "reminder-30d"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
