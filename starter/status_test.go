package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// statusFixture is an update that fell back to its secondary slot.
func statusFixture(t *testing.T) workflows.StatusView {
	t.Helper()
	window := func(start time.Time) workflows.Window {
		w, err := workflows.NewWindow(start, start.Add(12*time.Hour), "Europe/Berlin")
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	primary := time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC)
	secondary := time.Date(2026, 3, 10, 1, 0, 0, 0, time.UTC)
	return workflows.StatusView{
		WorkflowID:     "service-update:contoso-prod:9.2.0",
		InstanceID:     "contoso-prod",
		InstanceName:   "Contoso Production",
		TenantID:       "contoso",
		Admins:         []string{"ana@contoso.example", "ben@contoso.example"},
		CurrentVersion: "9.1.0",
		OfferedVersion: "9.2.0",
		TargetVersion:  "9.3.0",
		Status:         workflows.StatusFallbackScheduled,
		Primary:        window(primary),
		Secondary:      window(secondary),
		ApprovedBy:     "ana@contoso.example",
		ApprovedAt:     time.Date(2026, 2, 20, 9, 30, 0, 0, time.UTC),
		Attempts: []workflows.Attempt{{
			Slot: workflows.SlotPrimary, Started: primary, Finished: primary.Add(time.Hour),
			Outcome: workflows.OutcomeFailed, Error: "exit status 3",
		}},
		Notices: []workflows.NoticeRecord{
			{Kind: workflows.NoticeScheduled, At: time.Date(2026, 1, 2, 8, 0, 0, 0, time.UTC)},
			{Kind: workflows.NoticeFallback, At: primary.Add(time.Hour), Error: "no recipients"},
			{Kind: workflows.NoticeInProgress, At: primary.Add(2 * time.Hour), Queued: true, Error: "SendGrid is unavailable"},
		},
		Upcoming: []workflows.NoticeRecord{{Kind: workflows.NoticeDayOf, At: secondary}},
	}
}

func TestRenderStatusInTheInstancesZone(t *testing.T) {
	view := statusFixture(t)
	var out bytes.Buffer
	if err := renderStatus(&out, view); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"Contoso Production",
		"9.1.0 → 9.3.0 (offered 9.2.0), needs an admin's approval",
		"FallbackScheduled",
		// Windows: local (CET, UTC+1 in March) with UTC beside.
		"Tue 3 Mar 2026 02:00 CET – Tue 3 Mar 2026 14:00 CET (2026-03-03 01:00 UTC – 2026-03-03 13:00 UTC)",
		"Tue 10 Mar 2026 02:00 CET",
		"by ana@contoso.example, Fri 20 Feb 2026 10:30 CET (2026-02-20 09:30 UTC)",
		"primary slot, started Tue 3 Mar 2026 02:00 CET (2026-03-03 01:00 UTC), finished Tue 3 Mar 2026 03:00 CET (2026-03-03 02:00 UTC): failed (exit status 3)",
		"scheduled      Fri 2 Jan 2026 09:00 CET (2026-01-02 08:00 UTC)",
		"fallback       Tue 3 Mar 2026 03:00 CET (2026-03-03 02:00 UTC) — not delivered: no recipients",
		"in-progress    Tue 3 Mar 2026 04:00 CET (2026-03-03 03:00 UTC) — queued, retrying: SendGrid is unavailable",
		"Upcoming notices\n  day-of         Tue 10 Mar 2026 02:00 CET",
		"ana@contoso.example, ben@contoso.example",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
}

func TestRenderStatusFallsBackToUTC(t *testing.T) {
	at := time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC)
	if got, want := formatMoment(at, zoneOf(workflows.StatusView{})), "Tue 3 Mar 2026 01:00 UTC (2026-03-03 01:00 UTC)"; got != want {
		t.Errorf("formatMoment = %q, want %q", got, want)
	}
	if got := formatMoment(time.Time{}, time.UTC); got != "-" {
		t.Errorf("zero time renders as %q, want -", got)
	}
}
