package fleet_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/fleet"
)

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseFileAcceptsValidFleet(t *testing.T) {
	fl, err := fleet.ParseFile("testdata/valid.json")
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	if len(fl.Releases) != 3 || len(fl.Tenants) != 1 || len(fl.Instances) != 2 {
		t.Fatalf("got %d releases, %d tenants, %d instances; want 3, 1, 2", len(fl.Releases), len(fl.Tenants), len(fl.Instances))
	}
	old := fl.Releases[0]
	if old.HasPeriod() || len(old.Slots) != 0 || old.Order != 1 {
		t.Errorf("old release = %+v, want order 1 without period or slots", old)
	}
	spring := fl.Releases[2]
	wantSlots := []fleet.Slot{
		// "1d" in the file: windows take days as well as Go durations
		{Region: "eu-west", Start: time.Date(2027, 3, 6, 22, 0, 0, 0, time.UTC), Window: fleet.Duration(24 * time.Hour), Capacity: 50},
		// +01:00 in the file, UTC after parsing; no window means the default 12h
		{Region: "eu-west", Start: time.Date(2027, 3, 13, 21, 0, 0, 0, time.UTC), Window: fleet.Duration(12 * time.Hour), Capacity: 50},
		{Region: "us-east", Start: time.Date(2027, 3, 7, 4, 0, 0, 0, time.UTC), Window: fleet.Duration(6 * time.Hour), Capacity: 0},
	}
	if !reflect.DeepEqual(spring.Slots, wantSlots) {
		t.Errorf("slots = %+v\nwant %+v", spring.Slots, wantSlots)
	}
	if got := spring.Slots[2].End(); !got.Equal(time.Date(2027, 3, 7, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("End() = %v, want 10:00 UTC", got)
	}
	prod := fl.Instances[0]
	if prod.TimeZone != "Europe/Berlin" || !reflect.DeepEqual(prod.Users, []string{"ann@acme.example", "bob@acme.example"}) ||
		!reflect.DeepEqual(prod.ExtraRecipients, []string{"it-changes@acme.example"}) {
		t.Errorf("instance = %+v", prod)
	}
}

// A Fleet written back as JSON (what `starter demo` does) parses to itself.
func TestFleetRoundTripsThroughJSON(t *testing.T) {
	fl, err := fleet.ParseFile("testdata/valid.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(fl)
	if err != nil {
		t.Fatal(err)
	}
	again, err := fleet.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse marshalled fleet: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(fl, again) {
		t.Fatalf("round trip changed the fleet:\n%+v\n%+v", fl, again)
	}
}

func TestParseReportsEveryProblemWithItsPath(t *testing.T) {
	_, err := fleet.Parse(strings.NewReader(readFixture(t, "many_problems.json")))
	var verr *fleet.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want *fleet.ValidationError", err)
	}
	want := []string{
		`releases[0].periodEnd: 2026-08-01T00:00:00Z is not after periodStart 2026-09-01T00:00:00Z`,
		`releases[1].version: "9.1.0" is already the version of releases[0]; versions must be unique`,
		`releases[1].name: is required (the display name, e.g. "Spring '27")`,
		`releases[1].order: 2 is already the order of releases[0]; orders must be unique`,
		`releases[1].slots[0]: window 2027-01-06T22:00:00Z to 2027-01-07T10:00:00Z is not inside the release period 2027-02-01T00:00:00Z to 2027-05-01T00:00:00Z`,
		`releases[1].slots[1].start: "2027-03-06" is not an RFC 3339 time (e.g. 2027-03-06T22:00:00Z)`,
		`releases[1].slots[1].window: "-3h" is not a positive duration`,
		`releases[1].slots[1].capacity: -1 is negative; want 0 or more`,
		`releases[1].slots[2].region: is required`,
		`releases[1].slots[2].window: "12 hours" is not a duration (accepted: a duration such as 90d, 1d12h, 36h or 90m)`,
		`releases[1].slots[2].capacity: is required (how many instances may update in this window; 0 withdraws the slot)`,
		`tenants[1].id: "acme" is already the id of tenants[0]; tenant ids must be unique`,
		`tenants[1].name: is required`,
		`instances[0].id: "acme:prod" is not accepted: an instance id is 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes part of workflow IDs, search attributes, emails and the update command's environment)`,
		`instances[0].tenant: "globex" is not the id of a tenant in this file`,
		`instances[0].name: is required`,
		`instances[0].kind: "staging" is not an instance kind; want "production" or "sandbox"`,
		`instances[0].region: is required (slots are offered per region)`,
		`instances[0].timeZone: "Europe/Berln" is not an IANA time zone (e.g. Europe/Berlin)`,
		`instances[0].version: "8.0.0" is not the version of a release in this file`,
		`instances[0].admins: at least one admin is required (admins approve and reschedule updates)`,
		`instances[0].users[0]: "Ann <ann@acme.example>" is not an email address (want a bare address such as admin@example.com)`,
		`instances[0].users[1]: "bob@" is not an email address (want a bare address such as admin@example.com)`,
		`instances[0].extraRecipients[1]: "X@ACME.example" repeats instances[0].extraRecipients[0]`,
	}
	var got []string
	for _, p := range verr.Problems {
		got = append(got, p.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.HasPrefix(err.Error(), "fleet file refused, 24 problem(s):\n  releases[0].periodEnd") {
		t.Errorf("message starts %q", err.Error()[:80])
	}
}

// Each case changes one thing in the valid fixture and expects exactly that
// one problem, so every rule is proven on its own.
func TestParseValidationRules(t *testing.T) {
	valid := readFixture(t, "valid.json")
	cases := []struct {
		name, old, new string
		want           string
	}{
		{"period without end", `"periodEnd": "2026-12-01T00:00:00Z"`, `"other": 1`,
			`releases[1]: periodStart and periodEnd go together: give both or neither`},
		{"slots without period", `"periodStart": "2027-02-01T00:00:00Z", "periodEnd": "2027-05-01T00:00:00Z",`, ``,
			`releases[2].slots: a release with slots needs periodStart and periodEnd`},
		{"missing order", `"name": "Autumn '26", "order": 2,`, `"name": "Autumn '26",`,
			`releases[1].order: is required (the release's position in the version history; higher is newer)`},
		{"window ends after period", `"2027-03-13T22:00:00+01:00", "capacity": 50`, `"2027-04-30T22:00:00Z", "capacity": 50`,
			`releases[2].slots[1]: window 2027-04-30T22:00:00Z to 2027-05-01T10:00:00Z is not inside the release period 2027-02-01T00:00:00Z to 2027-05-01T00:00:00Z`},
		{"duplicate slot", `"2027-03-13T22:00:00+01:00"`, `"2027-03-06T23:00:00+01:00"`,
			`releases[2].slots[1]: region "eu-west" at 2027-03-06T22:00:00Z is already offered by slots[0]`},
		{"zero window", `"window": "6h"`, `"window": "0s"`,
			`releases[2].slots[2].window: "0s" is not a positive duration`},
		{"duplicate instance", `"id": "acme-sbx"`, `"id": "acme-prod"`,
			`instances[1].id: "acme-prod" is already the id of instances[0]; instance ids must be unique`},
		{"version with colon", `"version": "9.2.0"`, `"version": "9.2:0"`,
			`releases[2].version: "9.2:0" is not accepted: want MAJOR.MINOR.PATCH without leading zeros (9.2.0), optionally with a lower-case pre-release (9.2.0-rc.1), at most 64 characters`},
		{"no admins", `"admins": ["ops@acme.example", "dev-lead@acme.example"]`, `"admins": []`,
			`instances[1].admins: at least one admin is required (admins approve and reschedule updates)`},
		{"admins missing", `"admins": ["ops@acme.example", "dev-lead@acme.example"]`, `"users": []`,
			`instances[1].admins: at least one admin is required (admins approve and reschedule updates)`},
		{"local zone", `"America/New_York"`, `"Local"`,
			`instances[1].timeZone: "Local" is not an IANA time zone (e.g. Europe/Berlin)`},
		{"email with spaces", `"dev-lead@acme.example"`, `" dev-lead@acme.example"`,
			`instances[1].admins[1]: " dev-lead@acme.example" is not an email address (want a bare address such as admin@example.com)`},
		{"repeated admin", `"dev-lead@acme.example"`, `"OPS@acme.example"`,
			`instances[1].admins[1]: "OPS@acme.example" repeats instances[1].admins[0]`},
		{"empty tenant id", `{"id": "acme", "name": "Acme Corp"}`, `{"id": "acme", "name": "Acme Corp"}, {"name": "Nobody"}`,
			`tenants[1].id: is required`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(valid, tc.old) {
				t.Fatalf("fixture does not contain %q", tc.old)
			}
			_, err := fleet.Parse(strings.NewReader(strings.Replace(valid, tc.old, tc.new, 1)))
			var verr *fleet.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want *fleet.ValidationError", err)
			}
			if len(verr.Problems) != 1 || verr.Problems[0].String() != tc.want {
				t.Fatalf("problems = %q\nwant [%q]", verr.Problems, tc.want)
			}
		})
	}
}

func TestParseNamesLineAndColumnOfMalformedJSON(t *testing.T) {
	cases := []struct {
		name, doc    string
		line, column int
		msg          string
	}{
		{"empty", "  \n", 1, 1, "the fleet file is empty; want a JSON object with releases, tenants and instances"},
		{"missing comma", "{\n  \"releases\": []\n  \"tenants\": []\n}", 3, 3, `invalid character '"' after object key:value pair`},
		{"trailing comma", "{\"releases\": [\n  {\"version\": \"9.0.0\"},\n]}", 3, 1, "invalid character ']' looking for beginning of value"},
		{"truncated", "{\"releases\": [", 1, 14, "unexpected end of JSON input"},
		// type errors point at the last character of the offending value
		{"string for order", "{\"releases\": [\n  {\"version\": \"9.0.0\", \"order\": \"3\"}\n]}", 2, 35, `releases.order: got a JSON string, want a whole number`},
		{"string for admins", "{\"instances\": [{\n  \"admins\": \"ops@acme.example\"\n}]}", 2, 30, `instances.admins: got a JSON string, want an array`},
		{"number for time zone", "{\"instances\": [{\"timeZone\": 1}]}", 1, 29, `instances.timeZone: got a JSON number, want a string`},
		{"array document", "[]", 1, 1, `the document: got a JSON array, want an object`},
		{"two documents", "{}\n{}", 2, 1, `invalid character '{' after top-level value`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fleet.Parse(strings.NewReader(tc.doc))
			var serr *fleet.SyntaxError
			if !errors.As(err, &serr) {
				t.Fatalf("err = %v, want *fleet.SyntaxError", err)
			}
			if serr.Line != tc.line || serr.Column != tc.column || serr.Msg != tc.msg {
				t.Fatalf("got line %d column %d %q\nwant line %d column %d %q", serr.Line, serr.Column, serr.Msg, tc.line, tc.column, tc.msg)
			}
		})
	}
}

func TestParseFileNamesTheFile(t *testing.T) {
	_, err := fleet.ParseFile("testdata/many_problems.json")
	if err == nil || !strings.HasPrefix(err.Error(), "fleet file testdata/many_problems.json: fleet file refused, 24 problem(s)") {
		t.Fatalf("err = %v", err)
	}
	_, err = fleet.ParseFile("testdata/absent.json")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}
