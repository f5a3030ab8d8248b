package launch

import "testing"

// A rollout keeps its details as lines; the starter reads them back for
// its summary and -o json.
func TestLineReadsBack(t *testing.T) {
	for _, r := range []Result{
		{InstanceID: "acme-prod", Outcome: NoCapacity, Detail: "no free slot of 9.2.0 in emea starts after 2027-03-01 02:00 UTC (MIN_NOTICE 168h)"},
		{InstanceID: "globex-prod", Outcome: Held, Detail: "held by open update service-update:globex-prod:9.1.0 (InProgress)"},
		{InstanceID: "acme-test", Outcome: Planned, Detail: "sandbox Acme Test in emea, 9.1.0 → 9.2.0, optional"},
		{InstanceID: "initech-prod", Outcome: NotEligible, Detail: ""},
	} {
		got, ok := ParseLine(r.Line())
		if !ok || got.InstanceID != r.InstanceID || got.Outcome != r.Outcome || got.Detail != r.Detail {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v", r.Line(), got, ok, r)
		}
	}
	for _, line := range []string{"", "acme-prod", "acme-prod exploded: boom"} {
		if r, ok := ParseLine(line); ok {
			t.Errorf("ParseLine(%q) = %+v, want no result", line, r)
		}
	}
}
