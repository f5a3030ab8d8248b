package notice

import (
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// The communications table of DESIGN.md, row by row.
func TestSpecsMatchTheCommunicationsTable(t *testing.T) {
	cases := []struct {
		kind     workflows.NoticeKind
		audience Audience
		email    bool
		alert    AlertRule
	}{
		{workflows.NoticeScheduled, adminsExtra, true, alertAlways},
		{workflows.ReminderKind(90 * 24 * time.Hour), adminsExtra, true, alertSevenDayReminderWhenApproved},
		{workflows.ReminderKind(30 * 24 * time.Hour), adminsExtra, true, alertSevenDayReminderWhenApproved},
		{workflows.ReminderKind(15 * 24 * time.Hour), adminsExtra, true, alertSevenDayReminderWhenApproved},
		{workflows.ReminderKind(7 * 24 * time.Hour), adminsExtra, true, alertSevenDayReminderWhenApproved},
		{workflows.NoticeDayOf, adminsExtra, true, alertNever},
		{workflows.NoticeConfirmed, adminsExtra, true, alertNever},
		{workflows.NoticeRescheduled, adminsExtra, true, alertNever},
		{workflows.NoticeInProgress, adminsUsers, false, alertAlways},
		{workflows.NoticeSucceeded, adminsUsers, true, alertNever},
		{workflows.NoticeFallback, adminsExtra, true, alertNever},
		{workflows.NoticeFailed, adminsExtra, true, alertNever},
		{workflows.NoticeNotApproved, adminsExtra, true, alertNever},
		{workflows.NoticeCancelled, adminsExtra, true, alertNever},
		{workflows.NoticeSuperseded, adminsExtra, true, alertNever},
		{workflows.NoticeMoved, adminsExtra, true, alertAlways},
	}
	for _, tc := range cases {
		spec, err := For(tc.kind)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if spec.Audience.Name != tc.audience.Name || spec.Email != tc.email || spec.Alert != tc.alert {
			t.Errorf("%s: audience %s, email %t, alert rule %d; want %s, %t, %d",
				tc.kind, spec.Audience.Name, spec.Email, spec.Alert, tc.audience.Name, tc.email, tc.alert)
		}
	}
	if len(cases) != len(specs)+4 {
		t.Errorf("the table has %d fixed kinds; this test covers %d (plus 4 reminders): add the new kind here", len(specs), len(cases)-4)
	}
}

func TestAudiencesAddressTheRightGroups(t *testing.T) {
	if got := adminsExtra.Groups; len(got) != 2 || got[0] != Admins || got[1] != ExtraRecipients {
		t.Errorf("admins+extra addresses groups %v", got)
	}
	if got := adminsUsers.Groups; len(got) != 2 || got[0] != Admins || got[1] != Users {
		t.Errorf("admins+users addresses groups %v", got)
	}
	// Extra recipients are mail-only addresses, not product users.
	if adminsExtra.AlertAudience != "admins" || adminsUsers.AlertAudience != "admins+users" {
		t.Errorf("alert audiences %q and %q", adminsExtra.AlertAudience, adminsUsers.AlertAudience)
	}
}

func TestAlertRules(t *testing.T) {
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
		spec, err := For(tc.in.Kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := spec.Alert.Applies(tc.in); got != tc.want {
			t.Errorf("%s: alert %t, want %t", tc.name, got, tc.want)
		}
	}
	for kind, spec := range specs {
		in := workflows.SendNoticeInput{Kind: kind, Update: workflows.StatusView{ApprovedBy: "ada@contoso.example"}}
		want := kind == workflows.NoticeScheduled || kind == workflows.NoticeInProgress || kind == workflows.NoticeMoved
		if got := spec.Alert.Applies(in); got != want {
			t.Errorf("%s: alert %t, want %t", kind, got, want)
		}
	}
}

func TestForUnknownKindNamesTheAccepted(t *testing.T) {
	_, err := For("postponed")
	if err == nil {
		t.Fatal("unknown kind accepted")
	}
	for _, want := range []string{`"postponed"`, "scheduled", "cancelled", "reminder-30d"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
