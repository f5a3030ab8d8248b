package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParseAcceptsDaysAndGoDurations(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"90d":   90 * Day,
		"0d":    0,
		"0":     0,
		"1d12h": 36 * time.Hour,
		"1.5d":  36 * time.Hour,
		"-2d":   -2 * Day,
		"168h":  168 * time.Hour,
		"90m":   90 * time.Minute,
		" 7d ":  7 * Day,
		"2h30m": 150 * time.Minute,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestParseRefusesWithWhatIsAccepted(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "d", "90", "90x", "1d-2h", "d12h", "1e3d", "soon", "1dd", "--1d", "1d+2h"} {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), "accepted: "+Accepted) || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("Parse(%q) error %q does not name the value and what is accepted", in, err)
		}
	}
}

func TestParseList(t *testing.T) {
	t.Parallel()
	got, err := ParseList("90d, 30d,15d,7d,0d")
	want := []time.Duration{90 * Day, 30 * Day, 15 * Day, 7 * Day, 0}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseList = %v, %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := ParseList("90d,,7d"); err == nil {
		t.Error("ParseList accepted an empty item")
	}
}

func TestValueIsAFlag(t *testing.T) {
	t.Parallel()
	var d time.Duration
	v := NewValue(&d, 30*time.Second)
	if v.String() != "30s" || v.Type() != "duration" {
		t.Errorf("default renders %q (%s)", v.String(), v.Type())
	}
	if err := v.Set("2d"); err != nil || d != 2*Day {
		t.Errorf("Set(2d) = %v, d = %v", err, d)
	}
	if err := v.Set("later"); err == nil {
		t.Error("Set(later) accepted")
	}
}

func TestFormatDaysRoundTrips(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{90 * Day: "90d", 0: "0d", 36 * time.Hour: "36h0m0s", -Day: "-1d"} {
		got := FormatDays(d)
		if got != want {
			t.Errorf("FormatDays(%v) = %q, want %q", d, got, want)
		}
		if back, err := Parse(got); err != nil || back != d {
			t.Errorf("Parse(%q) = %v, %v; want %v", got, back, err, d)
		}
	}
}
