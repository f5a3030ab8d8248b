package notice

import (
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// The actionable kinds as an admin and as an extra recipient receive them:
// the placeholders replaced by each one's block, as SendGrid does.
func TestRenderGoldenWithActions(t *testing.T) {
	free := []FreeSlot{{Version: "9.2.0", Start: time.Date(2026, 3, 28, 21, 0, 0, 0, time.UTC), Window: 12 * time.Hour}}
	for _, kind := range []workflows.NoticeKind{workflows.NoticeScheduled, workflows.NoticeNotApproved, workflows.NoticeFallback} {
		t.Run(string(kind), func(t *testing.T) {
			in := noticetest.Input(kind)
			spec, err := For(kind)
			if err != nil {
				t.Fatal(err)
			}
			email, err := RenderEmailWith(in, spec, zone, Options{Actions: true, FreeSlots: free})
			if err != nil {
				t.Fatal(err)
			}
			approve, choose, view := Links(in, spec)
			links := ActionLinks{Expires: in.Deadline}
			if approve {
				links.Approve = "https://updates.example.com/link/APPROVE"
			}
			if choose {
				links.Choose = "https://updates.example.com/link/CHOOSE"
			}
			if view {
				links.View = "https://updates.example.com/link/VIEW"
			}
			for who, l := range map[string]ActionLinks{"admin": links, "extra": {Expires: in.Deadline}} {
				subs, err := RenderActions(l, zone)
				if err != nil {
					t.Fatal(err)
				}
				html, text := email.HTML, email.Text
				for placeholder, value := range subs {
					html, text = strings.ReplaceAll(html, placeholder, value), strings.ReplaceAll(text, placeholder, value)
				}
				if strings.Contains(html+text, "%svcupdate-") {
					t.Errorf("%s copy keeps a placeholder", who)
				}
				checkGolden(t, string(kind)+".actions-"+who+".html", html)
				checkGolden(t, string(kind)+".actions-"+who+".txt", text)
			}
		})
	}
}
