package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/svcupdate/svcupdate/internal/buildinfo"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
)

// runStarter runs the CLI in-process and returns its output and error.
func runStarter(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestHelpListsSubcommandsAndVariables(t *testing.T) {
	t.Parallel()
	out, _, err := runStarter(t, "-h")
	if err != nil {
		t.Fatalf("starter -h: %v", err)
	}
	for _, c := range newRootCmd(&env{}).Commands() {
		if !regexp.MustCompile(`(?m)^  ` + c.Name() + ` `).MatchString(out) {
			t.Errorf("starter -h does not list subcommand %s:\n%s", c.Name(), out)
		}
	}
	for _, v := range config.Variables() {
		if !strings.Contains(out, v.Name) {
			t.Errorf("starter -h does not list variable %s", v.Name)
		}
	}
}

func TestSubcommandHelpShowsFlags(t *testing.T) {
	t.Parallel()
	out, _, err := runStarter(t, "reschedule", "-h")
	if err != nil {
		t.Fatalf("starter reschedule -h: %v", err)
	}
	for _, want := range []string{"starter reschedule --instance I", "--primary time", "--secondary time", "--pick", "--target string", "RFC 3339", "local time"} {
		if !strings.Contains(out, want) {
			t.Errorf("starter reschedule -h lacks %q:\n%s", want, out)
		}
	}
}

// TestCommandLineMistakes checks that every mistake is caught before any
// connection is made, as one line naming what is wrong.
func TestCommandLineMistakes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no subcommand given"},
		{[]string{"rollot"}, `unknown subcommand "rollot" (did you mean rollout? one of:`},
		{[]string{"deploy"}, `unknown subcommand "deploy" (one of: migrate, setup, load, sync-admins, rollout`},
		{[]string{"rollout"}, "rollout: --version is required"},
		{[]string{"rollout", "--version", "9.2.0", "--concurrency", "0"}, "--concurrency 0 is out of range (accepted: 1 to 1000)"},
		{[]string{"rollout", "--version", "9.2.0", "--concurency", "4"}, "rollout: unknown flag: --concurency (did you mean --concurrency? see starter rollout -h)"},
		{[]string{"list", "--tennant", "acme"}, "list: unknown flag: --tennant (did you mean --tenant? see starter list -h)"},
		{[]string{"list", "--everything"}, "list: unknown flag: --everything (see starter list -h)"},
		{[]string{"load"}, "load: name the fleet file: starter load FILE"},
		{[]string{"load", "a.json", "b.json"}, `load: unexpected argument "b.json"`},
		{[]string{"sync-admins", "--concurrency", "0"}, "sync-admins: --concurrency 0 is out of range (accepted: 1 to 1000)"},
		{[]string{"sync-admins", "--instance", " "}, `sync-admins: invalid argument " " for "--instance" flag: empty instance ID`},
		{[]string{"sync-admins", "acme-prod"}, `sync-admins: unexpected argument "acme-prod"`},
		{[]string{"approve", "--instance", "acme-prod"}, "approve: --admin is required"},
		{[]string{"approve", "--admin", "ann@acme.example"}, "approve: --instance is required"},
		{[]string{"reschedule", "--instance", "acme-prod", "--admin", "a@acme.example", "--primary", "tomorrow"},
			`reschedule: invalid argument "tomorrow" for "--primary" flag: not a time (accepted: RFC 3339 such as 2026-03-03T02:00:00+01:00, or the instance's local time such as "2026-03-03 02:00")`},
		{[]string{"reschedule", "--instance", "acme-prod", "--admin", "a@acme.example", "--pick"},
			"reschedule: --pick asks on a terminal; from a script give --primary and --secondary"},
		{[]string{"reschedule", "--instance", "acme-prod", "--admin", "a@acme.example", "--pick", "--primary", "2026-03-03 02:00"},
			"reschedule: --pick chooses both slots; give it without --primary and --secondary"},
		{[]string{"list", "--limit", "-1"}, "list: --limit -1 is negative"},
		{[]string{"list", "--count", "--limit", "5"}, "list: --count counts every update; it takes no --limit"},
		{[]string{"status", "--instance", "acme-prod", "-o", "yaml"}, `status: invalid argument "yaml" for "-o, --output" flag: "yaml" is not an output format (accepted: text, json)`},
		{[]string{"reschedule", "--instance", "acme-prod", "--admin", "a@acme.example", "--primary", "2026-03-03T02:00:00+01:00"},
			"reschedule: --secondary is required"},
		{[]string{"list", "--status", "Done"}, `list: --status "Done" is not a status (accepted: Scheduled, Approved, InProgress, FallbackScheduled, Succeeded, Failed, NotApproved, Cancelled, Superseded)`},
		{[]string{"list", "--version", "9.2'--"}, "--version 9.2'--: quotes and backslashes are not allowed"},
		{[]string{"status"}, "status: --instance is required"},
		{[]string{"cancel", "--instance", "acme-prod", "--wait", "soon"}, `cancel: invalid argument "soon" for "--wait" flag`},
		{[]string{"demo", "--run", "a:b"}, `demo: --run "a:b": use letters, digits and dashes`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			_, _, err := runStarter(t, tc.args...)
			var usage *cli.UsageError
			if !errors.As(err, &usage) {
				t.Fatalf("error = %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestBadConfigurationNamesTheVariable(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "localhost")
	_, _, err := runStarter(t, "list")
	if err == nil || !strings.Contains(err.Error(), `invalid TEMPORAL_ADDRESS="localhost"`) {
		t.Fatalf("error = %v, want one naming TEMPORAL_ADDRESS", err)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, err := runStarter(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if want := "starter " + buildinfo.Read().String() + "\n"; out != want {
		t.Errorf("starter --version = %q, want %q", out, want)
	}
}

// Help is there in every form operators know: -h, --help, help CMD.
func TestHelpForms(t *testing.T) {
	t.Parallel()
	want, _, err := runStarter(t, "list", "-h")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list", "--help"}, {"help", "list"}} {
		out, _, err := runStarter(t, args...)
		if err != nil || out != want {
			t.Errorf("starter %s = %q, %v; want the output of starter list -h", strings.Join(args, " "), out, err)
		}
	}
}
