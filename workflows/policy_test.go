package workflows

import "testing"

func TestEligibility(t *testing.T) {
	cases := []struct {
		current, target int
		want            EligibilityLevel
	}{
		{current: 3, target: 3, want: EligibilityNone},
		{current: 4, target: 3, want: EligibilityNone},
		{current: 2, target: 3, want: EligibilityOptional},
		{current: 1, target: 3, want: EligibilityMandatory},
		{current: 1, target: 9, want: EligibilityMandatory},
		{current: 1, target: 2, want: EligibilityOptional},
		{current: 1, target: 1, want: EligibilityNone},
	}
	for _, tc := range cases {
		if got := Eligibility(tc.current, tc.target); got != tc.want {
			t.Errorf("Eligibility(%d, %d) = %v, want %v", tc.current, tc.target, got, tc.want)
		}
	}
	for level, want := range map[EligibilityLevel]string{EligibilityNone: "not eligible", EligibilityOptional: "optional", EligibilityMandatory: "mandatory"} {
		if level.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(level), level.String(), want)
		}
	}
}
