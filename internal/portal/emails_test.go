package portal_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/activities/notice"
	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestEveryEmailKindInABrowser renders every emailed kind as an admin
// receives it (their action links in place, the free slots listed) and
// saves a screenshot of each.
func TestEveryEmailKindInABrowser(t *testing.T) {
	kinds := []workflows.NoticeKind{workflows.NoticeScheduled, workflows.ReminderKind(30 * 24 * time.Hour), workflows.NoticeDayOf,
		workflows.NoticeConfirmed, workflows.NoticeRescheduled, workflows.NoticeSucceeded, workflows.NoticeFallback,
		workflows.NoticeFailed, workflows.NoticeNotApproved, workflows.NoticeCancelled, workflows.NoticeSuperseded, workflows.NoticeMoved}
	free := []notice.FreeSlot{
		{Version: "9.2.0", Start: time.Date(2027, 3, 20, 22, 0, 0, 0, time.UTC), Window: 12 * time.Hour},
		{Version: "9.2.0", Start: time.Date(2027, 3, 27, 22, 0, 0, 0, time.UTC), Window: 12 * time.Hour},
	}
	b := newBrowser(t, "")
	for _, kind := range kinds {
		spec, err := notice.For(kind)
		if err != nil {
			t.Fatal(err)
		}
		in := noticetest.Input(kind)
		email, err := notice.RenderEmailWith(in, spec, "Europe/Berlin", notice.Options{Actions: true, FreeSlots: free})
		if err != nil {
			t.Fatal(err)
		}
		approve, choose, view := notice.Links(in, spec)
		l := notice.ActionLinks{Expires: time.Date(2027, 3, 6, 22, 0, 0, 0, time.UTC)}
		if approve {
			l.Approve = "https://updates.example.com/link/approve-token"
		}
		if choose {
			l.Choose = "https://updates.example.com/link/choose-token"
		}
		if view {
			l.View = "https://updates.example.com/link/view-token"
		}
		subs, err := notice.RenderActions(l, "Europe/Berlin")
		if err != nil {
			t.Fatal(err)
		}
		html := email.HTML
		for placeholder, value := range subs {
			html = strings.ReplaceAll(html, placeholder, value)
		}
		if strings.Contains(html, "%svcupdate-") {
			t.Errorf("%s: a placeholder is left in the admin's copy", kind)
		}
		if spec.Actions && !strings.Contains(html, "updates.example.com/link/") {
			t.Errorf("%s: the admin's copy has no action link", kind)
		}
		b.open("data:text/html;base64," + base64.StdEncoding.EncodeToString([]byte(html)))
		b.shot("email-" + string(kind))
	}
}
