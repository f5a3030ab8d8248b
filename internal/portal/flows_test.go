package portal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

const scheduledSubject = "scheduled"

// TestPortalInABrowser drives the portal in chromium against the whole
// system: real workflows on a dev server, Postgres, the SendGrid test
// server. Each subtest works on an update of its own.
func TestPortalInABrowser(t *testing.T) {
	h := newHarness(t)

	t.Run("an emailed approve link approves once", func(t *testing.T) {
		id := h.start("inst-001")
		link := h.mailedLink(t, "admin1@acme.example", scheduledSubject, links.ActionApprove)
		if others := h.mailedLinks(t, "noc@acme.example", scheduledSubject); len(others) != 0 {
			t.Errorf("an extra recipient (not an admin) got action links: %v", others)
		}
		b := newBrowser(t, h.url)
		if got := b.open(link); got != "Approve this update" {
			t.Fatalf("the link's GET shows %q, want the confirmation page", got)
		}
		b.checkPage("link-confirm-approve")
		if st := h.status(id).Status; st != workflows.StatusScheduled {
			t.Fatalf("after the GET the update is %s: a GET must change nothing", st)
		}
		b.tabTo("form button.primary")
		b.do(chromedp.KeyEvent("\r"))
		b.waitHeading("Instance 1")
		b.checkPage("update-approved")
		if !strings.Contains(b.text(), "Approved. The update runs") {
			t.Errorf("the page after approving does not say so:\n%s", b.text())
		}
		if v := h.status(id); v.Status != workflows.StatusApproved || v.ApprovedBy != workflows.MaskEmail("admin1@acme.example") {
			t.Errorf("workflow after the link: status %s approved by %q", v.Status, v.ApprovedBy)
		}
		if got := h.assertions(t, id); len(got) != 1 || got[0].Actor != "admin1@acme.example" || got[0].Channel != actor.ChannelPortalLink {
			t.Errorf("the Approve sent through the link asserts %+v, want admin1 through %s", got, actor.ChannelPortalLink)
		}

		// Another approve link for the approved update says there is nothing
		// to approve, before any button.
		again := mint(t, h, links.Claims{Recipient: "admin1@acme.example", WorkflowID: id, Action: links.ActionApprove, Expires: time.Now().Add(time.Hour)})
		if got := b.open(again); got != "Nothing to approve" {
			t.Errorf("an approve link for an approved update shows %q", got)
		}
		b.checkPage("problem-nothing-to-approve")

		// The same link again: refused, nothing more written.
		events, used := h.events(id), h.usedLinks()
		if got := b.open(link); got != "This link was already used" {
			t.Errorf("a used link shows %q", got)
		}
		b.checkPage("problem-link-used")
		resp := postForm(t, h, link, nil)
		if resp.StatusCode != http.StatusGone {
			t.Errorf("POST of a used link: %d, want 410", resp.StatusCode)
		}
		if h.events(id) != events || h.usedLinks() != used {
			t.Errorf("a used link wrote something: events %d -> %d, used links %d -> %d", events, h.events(id), used, h.usedLinks())
		}
	})

	t.Run("expired, forged and other-workflow links are refused", func(t *testing.T) {
		id := h.start("inst-003")
		b := newBrowser(t, h.url)
		expired := mint(t, h, links.Claims{Recipient: "admin3@acme.example", WorkflowID: id, Action: links.ActionApprove, Expires: time.Now().Add(-time.Minute)})
		if got := b.open(expired); got != "This link has expired" {
			t.Errorf("an expired link shows %q", got)
		}
		b.checkPage("problem-link-expired")
		good := h.mailedLink(t, "admin3@acme.example", scheduledSubject, links.ActionApprove)
		forged := good[:len(good)-3] + "AAA"
		if got := b.open(forged); got != "This link is not valid" {
			t.Errorf("a forged link shows %q", got)
		}
		b.checkPage("problem-link-invalid")
		// admin1's own, well-signed link, but for another instance's update.
		other := mint(t, h, links.Claims{Recipient: "admin1@acme.example", WorkflowID: id, Action: links.ActionApprove, Expires: time.Now().Add(time.Hour)})
		if got := b.open(other); got != "You are not an admin of this instance" {
			t.Errorf("a link for another workflow shows %q", got)
		}
		b.checkPage("problem-not-admin")
		events := h.events(id)
		for _, l := range []string{expired, forged, other} {
			if resp := postForm(t, h, l, nil); resp.StatusCode < 400 {
				t.Errorf("POST %s: %d, want a refusal", l, resp.StatusCode)
			}
		}
		if h.events(id) != events || h.status(id).Status != workflows.StatusScheduled {
			t.Errorf("a refused link changed the update: events %d -> %d, status %s", events, h.events(id), h.status(id).Status)
		}

		// Once the update is closed, its links say so.
		if err := h.temporal.CancelWorkflow(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, time.Minute, "the cancelled update's projection", func() (bool, string) {
			u, err := h.store.AdminUpdateOf(context.Background(), "admin3@acme.example", id)
			return err == nil && u.View.Status == workflows.StatusCancelled, fmt.Sprint(u.View.Status, err)
		})
		closed := mint(t, h, links.Claims{Recipient: "admin3@acme.example", WorkflowID: id, Action: links.ActionApprove, Expires: time.Now().Add(time.Hour)})
		if got := b.open(closed); got != "Nothing to approve" || !strings.Contains(b.text(), "can no longer change") {
			t.Errorf("an approve link of a cancelled update shows %q:\n%s", got, b.text())
		}
		b.checkPage("problem-update-closed")
	})

	t.Run("an admin removed after the email was sent is refused", func(t *testing.T) {
		id := h.start("inst-005")
		link := h.mailedLink(t, "admin5@acme.example", scheduledSubject, links.ActionApprove)
		if _, err := h.pool.Exec(context.Background(), "DELETE FROM recipients WHERE lower(email) = 'admin5@acme.example'"); err != nil {
			t.Fatal(err)
		}
		events, used := h.events(id), h.usedLinks()
		b := newBrowser(t, h.url)
		if got := b.open(link); got != "You are not an admin of this instance" {
			t.Errorf("a removed admin's link shows %q", got)
		}
		if resp := postForm(t, h, link, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST by a removed admin: %d, want 403", resp.StatusCode)
		}
		if h.events(id) != events || h.usedLinks() != used || h.status(id).Status != workflows.StatusScheduled {
			t.Errorf("a removed admin changed something: events %d -> %d, used links %d -> %d, status %s",
				events, h.events(id), used, h.usedLinks(), h.status(id).Status)
		}
	})

	t.Run("sign in by link, bulk approve, choose other slots, a slot that fills", func(t *testing.T) {
		ids := []string{h.start("inst-007"), h.start("inst-009")}
		b := newBrowser(t, h.url)
		if got := b.open("/"); got != "Sign in" {
			t.Fatalf("the portal without a session shows %q", got)
		}
		b.checkPage("sign-in")
		b.do(chromedp.SendKeys(chromedp.CSS("#email"), opsAdmin))
		b.submit("form button.primary", "Check your email")
		b.checkPage("sign-in-sent")
		link := h.mailedLink(t, opsAdmin, "sign-in link", links.ActionSignIn)
		if got := b.open(link); got != "Sign in" {
			t.Fatalf("the sign-in link shows %q", got)
		}
		b.checkPage("sign-in-confirm")
		b.submit("form button.primary", "My updates")
		b.checkPage("my-updates")
		for _, name := range []string{"Instance 3", "Instance 7", "Instance 9"} {
			if !strings.Contains(b.text(), name) {
				t.Errorf("My updates lacks %s:\n%s", name, b.text())
			}
		}
		if strings.Contains(b.text(), "inst-001") {
			t.Errorf("My updates shows an instance %s does not administer", opsAdmin)
		}
		if got := b.open(link); got != "This link was already used" {
			t.Errorf("a sign-in link used twice shows %q", got)
		}

		// Bulk approve 7 and 9.
		b.open("/")
		b.do(chromedp.Click(chromedp.CSS("#pick-inst-007")), chromedp.Click(chromedp.CSS("#pick-inst-009")))
		b.submit("form button.primary", "Approval")
		b.checkPage("bulk-approve-result")
		for _, id := range ids {
			if v := h.status(id); v.Status != workflows.StatusApproved || v.ApprovedBy != workflows.MaskEmail(opsAdmin) {
				t.Errorf("%s after the bulk approval: %s by %q", id, v.Status, v.ApprovedBy)
			}
			if got := h.assertions(t, id); len(got) != 1 || got[0].Actor != opsAdmin || got[0].Channel != actor.ChannelPortalSession {
				t.Errorf("%s: the bulk Approve asserts %+v, want %s through %s", id, got, opsAdmin, actor.ChannelPortalSession)
			}
		}

		// Choose other slots for 7: the last two slots of 9.2.0.
		page := "/update?id=" + url.QueryEscape(ids[0])
		b.open(page)
		b.checkPage("update-choose-slots")
		primary, secondary := slotValue(4), slotValue(5)
		b.do(chromedp.SetValue(chromedp.CSS("#primary"), primary), chromedp.SetValue(chromedp.CSS("#secondary"), secondary))
		b.clickAndWaitText("section[aria-labelledby=choose] button.primary", "Moved to the slots you chose")
		b.checkPage("update-rescheduled")
		scheduledInvite, rescheduledInvite := h.invite(t, ids[0], workflows.NoticeScheduled), h.invite(t, ids[0], workflows.NoticeRescheduled)
		uid := "UID:" + ids[0] + "@svcupdate"
		for _, want := range []string{"METHOD:REQUEST", uid, "SEQUENCE:0", "DTSTART;TZID=Europe/Berlin:20270306T230000"} {
			if !strings.Contains(scheduledInvite, want) {
				t.Errorf("the scheduled invite lacks %s:\n%s", want, scheduledInvite)
			}
		}
		for _, want := range []string{"METHOD:REQUEST", uid, "SEQUENCE:2", "DTSTART;TZID=Europe/Berlin:20270327T230000"} {
			if !strings.Contains(rescheduledInvite, want) {
				t.Errorf("the rescheduled invite lacks %s (same UID, a higher SEQUENCE, the new window):\n%s", want, rescheduledInvite)
			}
		}
		if v := h.status(ids[0]); !v.Primary.Start.Equal(slotStart(4)) || !v.Secondary.Start.Equal(slotStart(5)) {
			t.Errorf("after choosing slots the update runs %s / %s", v.Primary.Start, v.Secondary.Start)
		}

		// The page of 9 is open when its chosen slot fills up.
		b.open("/update?id=" + url.QueryEscape(ids[1]))
		b.do(chromedp.SetValue(chromedp.CSS("#primary"), slotValue(3)), chromedp.SetValue(chromedp.CSS("#secondary"), slotValue(5)))
		if _, err := h.pool.Exec(context.Background(), "UPDATE slots SET capacity = booked WHERE starts_at = $1", slotStart(3)); err != nil {
			t.Fatal(err)
		}
		events := h.events(ids[1])
		b.submit("section[aria-labelledby=choose] button.primary", "That slot has just filled")
		b.checkPage("problem-slot-filled")
		if h.events(ids[1]) != events {
			t.Errorf("a filled slot added %d history events", h.events(ids[1])-events)
		}

		// Not an admin of instance 1's update.
		if got := b.open("/update?id=" + url.QueryEscape(workflows.WorkflowID("inst-001", "9.2.0"))); got != "You are not an admin of this instance" {
			t.Errorf("another admin's update shows %q", got)
		}

		// CSRF: the session cookie without the form token does nothing.
		session, err := h.signer.Mint(links.Claims{Recipient: opsAdmin, Action: links.ActionSession, Channel: "portal-session", Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		events = h.events(ids[1])
		req, _ := http.NewRequest(http.MethodPost, h.url+"/approve", strings.NewReader(url.Values{"id": {ids[1]}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "svcupdate_session", Value: session})
		req.AddCookie(&http.Cookie{Name: "svcupdate_csrf", Value: "0123456789abcdefghij"})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || h.events(ids[1]) != events {
			t.Errorf("a POST without its CSRF token: %d, events %d -> %d", resp.StatusCode, events, h.events(ids[1]))
		}
	})

	t.Run("the demo mailbox shows each recipient's copy", func(t *testing.T) {
		b := newBrowser(t, h.url)
		if got := b.open("/mailbox"); got != "Demo mailbox" {
			t.Fatalf("/mailbox shows %q", got)
		}
		b.checkPage("mailbox")
		// admin1's copy of instance 1's scheduled mail, with admin1's links.
		href := b.eval(`(() => {
		  for (const row of document.querySelectorAll('tbody tr')) {
		    if (row.cells[1].textContent !== 'scheduled') continue;
		    for (const a of row.querySelectorAll('a')) { if (a.textContent === 'admin1@acme.example') return a.getAttribute('href'); }
		  }
		  return '';
		})()`)
		if href == "" {
			t.Fatal("the mailbox lists no mail to admin1@acme.example")
		}
		b.open(href)
		b.shot("mailbox-copy")
		link := b.eval(`(() => { const a = document.querySelector('a[href*="/link/"]'); return a ? a.href : ''; })()`)
		token := link[strings.LastIndex(link, "/")+1:]
		if c, err := h.signer.Verify(token); err != nil || c.Recipient != "admin1@acme.example" {
			t.Errorf("the mailbox copy's link %q: %+v, %v; want admin1's own", link, c, err)
		}
	})
}

func slotStart(i int) time.Time {
	starts := []time.Time{
		time.Date(2027, 3, 6, 22, 0, 0, 0, time.UTC), time.Date(2027, 3, 13, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 20, 22, 0, 0, 0, time.UTC), time.Date(2027, 3, 27, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 4, 3, 22, 0, 0, 0, time.UTC),
	}
	return starts[i-1]
}

// slotValue is a slot's option value in the pickers.
func slotValue(i int) string { return "9.2.0|" + slotStart(i).Format(time.RFC3339) }

func mint(t *testing.T, h *harness, c links.Claims) string {
	t.Helper()
	// Mint refuses nothing about expiry: an expired link is signed as any.
	token, err := h.signer.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return h.url + "/link/" + token
}

// postForm posts to a link as a scripted client would: with a CSRF
// cookie and its token taken from the page, so only the link is judged.
func postForm(t *testing.T, h *harness, link string, values url.Values) *http.Response {
	t.Helper()
	nonce := "0123456789abcdefghij"
	if values == nil {
		values = url.Values{}
	}
	values.Set("csrf", h.signer.CSRF(nonce))
	req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "svcupdate_csrf", Value: nonce})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
