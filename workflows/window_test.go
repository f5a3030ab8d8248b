package workflows

import (
	"strings"
	"testing"
	"time"
)

func TestNewWindowAcrossDaylightSaving(t *testing.T) {
	tests := []struct {
		name, zone         string
		start              time.Time
		wantStart, wantEnd string
	}{
		{
			name:      "Berlin summer to winter time",
			zone:      "Europe/Berlin",
			start:     time.Date(2026, 10, 24, 20, 0, 0, 0, time.UTC),
			wantStart: "Sat 24 Oct 2026 22:00 CEST",
			wantEnd:   "Sun 25 Oct 2026 09:00 CET", // 11 wall-clock hours, 12 real ones,
		},
		{
			name:      "New York daylight to standard time",
			zone:      "America/New_York",
			start:     time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC),
			wantStart: "Sat 31 Oct 2026 22:00 EDT",
			wantEnd:   "Sun 1 Nov 2026 09:00 EST",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWindow(tt.start, tt.start.Add(12*time.Hour), tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			if w.LocalStart != tt.wantStart || w.LocalEnd != tt.wantEnd {
				t.Fatalf("got %q – %q, want %q – %q", w.LocalStart, w.LocalEnd, tt.wantStart, tt.wantEnd)
			}
			if !w.End.Equal(tt.start.Add(12 * time.Hour)) {
				t.Fatalf("UTC end %v is not 12 h after the start", w.End)
			}
		})
	}
}

func TestNewWindowRejectsUnknownZone(t *testing.T) {
	_, err := NewWindow(time.Now(), time.Now(), "Mars/Olympus")
	if err == nil || !strings.Contains(err.Error(), "Mars/Olympus") || !strings.Contains(err.Error(), "IANA") {
		t.Fatalf("want an error naming the zone and the accepted form, got %v", err)
	}
}
