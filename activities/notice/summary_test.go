package notice

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/svcupdate/svcupdate/activities/notice/noticetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// rawOutput is an update command's failure as the executor reports it:
// its own words, then the command's last lines, with what must never
// reach a customer's mailbox (H2).
const rawOutput = "update command exited with status 3: psql: connection to postgres://deploy:S3cr3t@db-eu-7.internal:5432/crm failed\n" +
	"  DEPLOY_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a\n" +
	"  at /opt/acme/upgrade.go:42\n"

func TestSummaryOfExecutorOutput(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"only the first line, URL with credentials removed", rawOutput,
			"update command exited with status 3: psql: connection to [removed] failed"},
		{"secrets in assignments", "step 4 failed: password=hunter2 api_key: 'abc def' SECRET_TOKEN=x",
			"step 4 failed: password=[removed] api_key=[removed] SECRET_TOKEN=[removed]"},
		{"bearer token", "401 from the API with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
			"401 from the API with Authorization=[removed]"},
		{"long tokens", "sent key SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789abcdefg to the mailer",
			"sent key [removed] to the mailer"},
		{"hosts, addresses and users", "ssh deploy@10.0.3.7 refused; fell back to db-eu-7.internal:5432 and 192.168.1.20",
			"ssh [removed] refused; fell back to [removed] and [removed]"},
		{"control and invisible characters", "done\x1b[31m in\u202e red\u200b\ttoday",
			"done[31m in red today"},
		{"versions and plain words stay", "migration 9.1.0 -> 9.2.0 stopped at step 4 of 9",
			"migration 9.1.0 -> 9.2.0 stopped at step 4 of 9"},
		{"blank first lines", "\n  \n  the window ended\nmore", "the window ended"},
		{"nothing left", "\x00\x01", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := summary(tc.in); got != tc.want {
				t.Errorf("summary(%q)\n = %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
	long := summary(strings.Repeat("word ", 100))
	if n := utf8.RuneCountInString(long); n != maxSummaryLength+1 || !strings.HasSuffix(long, "…") {
		t.Errorf("a long line is cut to %d runes (%q), want %d and an ellipsis", n, long, maxSummaryLength+1)
	}
}

// The fallback and failed emails carry the summary, never the raw output;
// the raw output stays in the Status view the notice was rendered from.
func TestEmailsCarryOnlyTheSummaryOfExecutorOutput(t *testing.T) {
	for _, kind := range []workflows.NoticeKind{workflows.NoticeFallback, workflows.NoticeFailed} {
		t.Run(string(kind), func(t *testing.T) {
			in := noticetest.Input(kind)
			in.Update.Attempts[len(in.Update.Attempts)-1].Error = rawOutput
			spec, err := For(kind)
			if err != nil {
				t.Fatal(err)
			}
			email, err := RenderEmail(in, spec, zone)
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range []string{email.Text, email.HTML} {
				for _, leak := range []string{"S3cr3t", "db-eu-7", "ghp_", "DEPLOY_TOKEN", "/opt/acme", "postgres://"} {
					if strings.Contains(body, leak) {
						t.Errorf("the email shows %q:\n%s", leak, body)
					}
				}
			}
			if want := "Reason: update command exited with status 3: psql: connection to [removed] failed"; !strings.Contains(email.Text, want) {
				t.Errorf("text lacks %q:\n%s", want, email.Text)
			}
		})
	}
}
