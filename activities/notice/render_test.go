package notice

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// updateGolden rewrites testdata/golden from the current templates:
// go test ./activities/notice -run TestRenderGolden -update
var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// zone is the time zone of noticetest.Input's instance.
const zone = "Europe/Berlin"

// emailKinds is every kind that is emailed, reminders at the default
// offsets included.
func emailKinds() []workflows.NoticeKind {
	kinds := []workflows.NoticeKind{workflows.NoticeScheduled}
	for _, offset := range workflows.DefaultReminderOffsets {
		kinds = append(kinds, workflows.ReminderKind(offset))
	}
	return append(kinds, workflows.NoticeConfirmed, workflows.NoticeRescheduled, workflows.NoticeSucceeded,
		workflows.NoticeFallback, workflows.NoticeFailed, workflows.NoticeNotApproved, workflows.NoticeCancelled, workflows.NoticeSuperseded, workflows.NoticeMoved)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendering (run with -update after checking the change):\n--- got ---\n%s", path, got)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, kind := range emailKinds() {
		t.Run(string(kind), func(t *testing.T) {
			spec, err := For(kind)
			if err != nil {
				t.Fatal(err)
			}
			email, err := RenderEmail(noticetest.Input(kind), spec, zone)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, string(kind)+".html", email.HTML)
			checkGolden(t, string(kind)+".txt", "Subject: "+email.Subject+"\n\n"+email.Text)
		})
	}
	// The variants of a kind that the workflow sends in some cases.
	for name, variant := range map[string]func(*workflows.SendNoticeInput){
		// A failure that leaves time for a new attempt in the period.
		"failed-reschedulable": func(in *workflows.SendNoticeInput) {
			in.Kind = workflows.NoticeFailed
			in.Deadline = time.Date(2026, 5, 29, 9, 0, 0, 0, time.UTC)
		},
		// An instance found already on the target (or later) at its slot.
		"succeeded-already-up-to-date": func(in *workflows.SendNoticeInput) {
			in.Kind = workflows.NoticeSucceeded
			in.Update.Status = workflows.StatusSucceeded
			in.Update.AlreadyUpToDate, in.Update.FoundVersion = true, "9.3.0"
		},
	} {
		t.Run(name, func(t *testing.T) {
			in := noticetest.Input(workflows.NoticeKind(strings.SplitN(name, "-", 2)[0]))
			variant(&in)
			spec, _ := For(in.Kind)
			email, err := RenderEmail(in, spec, zone)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name+".html", email.HTML)
			checkGolden(t, name+".txt", "Subject: "+email.Subject+"\n\n"+email.Text)
		})
	}
	t.Run("scheduled-mandatory", func(t *testing.T) {
		in := noticetest.Input(workflows.NoticeScheduled)
		in.Update.Mandatory = true
		in.Deadline = time.Date(2026, 5, 31, 22, 0, 0, 0, time.UTC) // end of the release period
		spec, _ := For(in.Kind)
		email, err := RenderEmail(in, spec, zone)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, "scheduled-mandatory.html", email.HTML)
		checkGolden(t, "scheduled-mandatory.txt", "Subject: "+email.Subject+"\n\n"+email.Text)
	})
}

func TestRenderAlertsGolden(t *testing.T) {
	var b strings.Builder
	for _, kind := range []workflows.NoticeKind{workflows.NoticeScheduled, workflows.ReminderKind(sevenDays), workflows.NoticeInProgress} {
		spec, err := For(kind)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := RenderAlert(noticetest.Input(kind), spec, zone)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(string(kind) + ": " + msg + "\n")
	}
	checkGolden(t, "alerts.txt", b.String())
}

// Every email shows the facts DESIGN.md asks for, whatever its kind.
func TestRenderEveryEmailCarriesTheFacts(t *testing.T) {
	for _, kind := range emailKinds() {
		in := noticetest.Input(kind)
		spec, _ := For(kind)
		email, err := RenderEmail(in, spec, zone)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		for _, body := range []string{email.HTML, email.Text} {
			for _, want := range []string{
				"Contoso Sales", "9.1.0", "9.2.0", spec.Banner.Label,
				"Sat 14 Mar 2026 22:00 CET", "Sat 14 Mar 2026 21:00 UTC", // primary, local and UTC
				"Sat 21 Mar 2026 22:00 CET", "Sat 21 Mar 2026 21:00 UTC", // secondary
				"What you can do", "Mandatory",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("%s: body lacks %q", kind, want)
				}
			}
		}
		if !strings.Contains(email.HTML, "background:"+spec.Banner.Background) {
			t.Errorf("%s: HTML lacks the %s banner colour %s", kind, spec.Banner.Category, spec.Banner.Background)
		}
		if !strings.Contains(email.HTML, "<title>"+email.Subject+"</title>") {
			t.Errorf("%s: HTML title is not the subject %q", kind, email.Subject)
		}
	}
}

func TestRenderBannerCategories(t *testing.T) {
	want := map[workflows.NoticeKind]Banner{
		workflows.NoticeScheduled:                   bannerScheduling,
		workflows.ReminderKind(30 * 24 * time.Hour): bannerScheduling,
		workflows.NoticeDayOf:                       bannerScheduling,
		workflows.NoticeConfirmed:                   bannerScheduling,
		workflows.NoticeRescheduled:                 bannerScheduling,
		workflows.NoticeInProgress:                  bannerProgress,
		workflows.NoticeFallback:                    bannerProgress,
		workflows.NoticeSucceeded:                   bannerSuccess,
		workflows.NoticeFailed:                      bannerFailure,
		workflows.NoticeNotApproved:                 bannerFailure,
		workflows.NoticeCancelled:                   bannerFailure,
		workflows.NoticeSuperseded:                  bannerScheduling,
		workflows.NoticeMoved:                       bannerScheduling,
	}
	for kind, banner := range want {
		spec, err := For(kind)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Banner != banner {
			t.Errorf("%s: banner %q, want %q", kind, spec.Banner.Category, banner.Category)
		}
	}
}

// A window that spans the end of daylight-saving time shows both zone
// abbreviations, with the UTC times unchanged.
func TestRenderWindowAcrossDaylightSavingChange(t *testing.T) {
	cases := []struct {
		zone             string
		start            time.Time
		localStart       string
		localEnd         string
		utcStart, utcEnd string
	}{
		{
			zone:       "Europe/Berlin", // CEST -> CET at 01:00 UTC on 25 Oct 2026
			start:      time.Date(2026, 10, 24, 20, 0, 0, 0, time.UTC),
			localStart: "Sat 24 Oct 2026 22:00 CEST", localEnd: "Sun 25 Oct 2026 09:00 CET",
			utcStart: "Sat 24 Oct 2026 20:00 UTC", utcEnd: "Sun 25 Oct 2026 08:00 UTC",
		},
		{
			zone:       "America/New_York", // EDT -> EST at 06:00 UTC on 1 Nov 2026
			start:      time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			localStart: "Sat 31 Oct 2026 20:00 EDT", localEnd: "Sun 1 Nov 2026 07:00 EST",
			utcStart: "Sun 1 Nov 2026 00:00 UTC", utcEnd: "Sun 1 Nov 2026 12:00 UTC",
		},
	}
	for _, tc := range cases {
		t.Run(tc.zone, func(t *testing.T) {
			in := noticetest.Input(workflows.NoticeScheduled)
			in.Update.Primary = workflows.Window{Start: tc.start, End: tc.start.Add(12 * time.Hour)}
			in.Update.Secondary = workflows.Window{}
			in.SlotStart, in.Deadline = tc.start, tc.start
			spec, _ := For(in.Kind)
			email, err := RenderEmail(in, spec, tc.zone)
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range []string{email.HTML, email.Text} {
				for _, want := range []string{tc.localStart, tc.localEnd, tc.utcStart, tc.utcEnd} {
					if !strings.Contains(body, want) {
						t.Errorf("body lacks %q:\n%s", want, body)
					}
				}
			}
		})
	}
}

func TestRenderEscapesInstanceNameInHTML(t *testing.T) {
	in := noticetest.Input(workflows.NoticeScheduled)
	in.Update.InstanceName = `<script>alert("x")</script> & Co`
	spec, _ := For(in.Kind)
	email, err := RenderEmail(in, spec, zone)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(email.HTML, "<script>") {
		t.Fatalf("HTML carries the raw <script> tag:\n%s", email.HTML)
	}
	if !strings.Contains(email.HTML, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co") {
		t.Errorf("HTML lacks the escaped instance name:\n%s", email.HTML)
	}
	// Plain text and subject are not HTML: they keep the name as typed.
	if !strings.Contains(email.Text, `<script>alert("x")</script> & Co`) || !strings.Contains(email.Subject, "<script>") {
		t.Errorf("text or subject altered the name: %q", email.Subject)
	}
}

func TestRenderSubjectIsOneLine(t *testing.T) {
	in := noticetest.Input(workflows.NoticeScheduled)
	in.Update.InstanceName = "Contoso\r\nBcc: attacker@example.com"
	spec, _ := For(in.Kind)
	email, err := RenderEmail(in, spec, zone)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(email.Subject, "\r\n") {
		t.Fatalf("subject spans lines: %q", email.Subject)
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	spec, _ := For(workflows.NoticeScheduled)
	in := noticetest.Input(workflows.NoticeScheduled)
	if _, err := RenderEmail(in, spec, "Mars/Olympus_Mons"); err == nil || !strings.Contains(err.Error(), "Mars/Olympus_Mons") {
		t.Errorf("unknown zone: err = %v, want one naming the zone", err)
	}
	in.Update.Primary = workflows.Window{}
	if _, err := RenderEmail(in, spec, zone); err == nil || !strings.Contains(err.Error(), "primary window") {
		t.Errorf("no primary window: err = %v", err)
	}
	inProgress, _ := For(workflows.NoticeInProgress)
	if _, err := RenderEmail(noticetest.Input(workflows.NoticeInProgress), inProgress, zone); err == nil {
		t.Error("in-progress rendered as an email; it is alert-only")
	}
}

func TestSpellDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * 24 * time.Hour: "90 days",
		24 * time.Hour:      "1 day",
		6 * time.Hour:       "6 hours",
		2 * time.Minute:     "2 minutes",
		90 * time.Second:    "90 seconds",
	} {
		if got := spellDuration(d); got != want {
			t.Errorf("spellDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
