package workflows

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReminderSchedule(t *testing.T) {
	start := time.Date(2026, 4, 15, 1, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		offsets []time.Duration
		armedAt time.Time
		want    []NoticeKind
	}{
		{"all ahead, earliest first", DefaultReminderOffsets, start.Add(-days(100)),
			[]NoticeKind{"reminder-90d", "reminder-30d", "reminder-15d", "reminder-7d", NoticeDayOf}},
		{"past ones skipped", DefaultReminderOffsets, start.Add(-days(20)),
			[]NoticeKind{"reminder-15d", "reminder-7d", NoticeDayOf}},
		{"a reminder due right now is kept", DefaultReminderOffsets, start.Add(-days(7)),
			[]NoticeKind{"reminder-7d", NoticeDayOf}},
		{"only day-of left", DefaultReminderOffsets, start.Add(-time.Hour), []NoticeKind{NoticeDayOf}},
		{"armed after the start: nothing", DefaultReminderOffsets, start.Add(time.Minute), []NoticeKind{}},
		{"unordered offsets and duplicates", []time.Duration{0, days(7), days(30), days(7)}, start.Add(-days(40)),
			[]NoticeKind{"reminder-30d", "reminder-7d", NoticeDayOf}},
		{"compressed demo clock", []time.Duration{90 * time.Second, 30 * time.Second, 0}, start.Add(-2 * time.Minute),
			[]NoticeKind{"reminder-90s", "reminder-30s", NoticeDayOf}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReminderSchedule(start, tt.offsets, tt.armedAt)
			gotKinds := []NoticeKind{}
			for _, r := range got {
				gotKinds = append(gotKinds, r.Kind)
				assert.Equal(t, start.Add(-r.Offset), r.At)
			}
			assert.Equal(t, tt.want, gotKinds)
		})
	}
}

func TestDueReminder(t *testing.T) {
	start := time.Date(2026, 4, 15, 1, 0, 0, 0, time.UTC)
	pending := ReminderSchedule(start, DefaultReminderOffsets, start.Add(-days(100)))
	tests := []struct {
		name      string
		now       time.Time
		wantDue   NoticeKind // empty: none due
		wantStale []NoticeKind
		wantRest  int
	}{
		{"nothing due yet", start.Add(-days(95)), "", nil, 5},
		{"exactly at its time", start.Add(-days(90)), "reminder-90d", []NoticeKind{}, 4},
		{"late timer: only the latest is sent", start.Add(-days(10)), "reminder-15d", []NoticeKind{"reminder-90d", "reminder-30d"}, 2},
		{"at the start", start, NoticeDayOf, []NoticeKind{"reminder-90d", "reminder-30d", "reminder-15d", "reminder-7d"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			due, stale, rest := DueReminder(pending, tt.now)
			if tt.wantDue == "" {
				assert.Nil(t, due)
			} else {
				require.NotNil(t, due)
				assert.Equal(t, tt.wantDue, due.Kind)
			}
			staleKinds := []NoticeKind{}
			for _, r := range stale {
				staleKinds = append(staleKinds, r.Kind)
			}
			if tt.wantStale != nil {
				assert.Equal(t, tt.wantStale, staleKinds)
			}
			assert.Len(t, rest, tt.wantRest)
		})
	}
}

func TestChooseTargetVersion(t *testing.T) {
	releases := []ReleaseOption{{Version: "9.2.0"}, {Version: "9.3.0"}, {Version: "9.4.0"}}
	tests := []struct {
		name, current, requested string
		want, wantErr            string
	}{
		{"empty keeps the current target", "9.2.0", "", "9.2.0", ""},
		{"a later release", "9.2.0", "9.4.0", "9.4.0", ""},
		{"the same release", "9.3.0", "9.3.0", "9.3.0", ""},
		{"an older release", "9.3.0", "9.2.0", "", `target version "9.2.0" is older than the current target "9.3.0"; choose one of 9.3.0, 9.4.0`},
		{"an unknown release", "9.2.0", "8.0.0", "", `target version "8.0.0" is not offered for this update; choose one of 9.2.0, 9.3.0, 9.4.0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseTargetVersion(releases, tt.current, tt.requested)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Version)
		})
	}
}

func TestValidateSlots(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	release := ReleaseOption{Version: "9.2.0", PeriodStart: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	base := SlotChoice{
		PrimaryStart: time.Date(2026, 4, 1, 1, 0, 0, 0, time.UTC), PrimaryWindow: 12 * time.Hour,
		SecondaryStart: time.Date(2026, 4, 8, 1, 0, 0, 0, time.UTC), SecondaryWindow: 12 * time.Hour,
		SecondaryMinGap: 24 * time.Hour, Release: release, Region: "emea",
	}
	otherRelease := OfferedSlot{Version: "9.3.0", Start: time.Date(2026, 4, 2, 1, 0, 0, 0, time.UTC), WindowLength: 12 * time.Hour}
	offered := []OfferedSlot{otherRelease}
	for day := 9; day >= 4; day-- { // out of order: the refusal sorts them
		offered = append(offered, OfferedSlot{Version: "9.2.0", Start: time.Date(2026, 4, day, 1, 0, 0, 0, time.UTC), WindowLength: 12 * time.Hour})
	}
	offered = append(offered, OfferedSlot{Version: "9.2.0", Start: base.PrimaryStart, WindowLength: 12 * time.Hour},
		OfferedSlot{Version: "9.2.0", Start: time.Date(2026, 2, 1, 1, 0, 0, 0, time.UTC), WindowLength: 12 * time.Hour}) // past
	tests := []struct {
		name    string
		change  func(*SlotChoice)
		wantErr string
	}{
		{"valid", func(*SlotChoice) {}, ""},
		{"secondary exactly at the earliest allowed", func(c *SlotChoice) { c.SecondaryStart = c.EarliestSecondary() }, ""},
		{"primary now", func(c *SlotChoice) { c.PrimaryStart = now }, "primary start 2026-03-01T12:00:00Z is not in the future (now 2026-03-01T12:00:00Z); choose a later slot"},
		{"secondary one second early", func(c *SlotChoice) { c.SecondaryStart = c.EarliestSecondary().Add(-time.Second) },
			"secondary start 2026-04-02T12:59:59Z is too early: it must be at or after 2026-04-02T13:00:00Z (primary window end 2026-04-01T13:00:00Z plus a gap of 24h)"},
		{"secondary before primary", func(c *SlotChoice) { c.SecondaryStart = c.PrimaryStart.Add(-days(2)) }, "secondary start 2026-03-30T01:00:00Z is too early"},
		{"primary before the period", func(c *SlotChoice) {
			c.Release.PeriodStart = time.Date(2026, 4, 5, 0, 0, 0, 0, time.UTC)
		}, "the primary window 2026-04-01T01:00:00Z to 2026-04-01T13:00:00Z lies outside the release period of 9.2.0 (2026-04-05T00:00:00Z to 2026-06-01T00:00:00Z); choose a slot inside it"},
		{"secondary window ends after the period", func(c *SlotChoice) { c.SecondaryStart = release.PeriodEnd.Add(-time.Hour) },
			"the secondary window 2026-05-31T23:00:00Z to 2026-06-01T11:00:00Z lies outside the release period of 9.2.0"},
		// Each slot is judged by its own window.
		{"long primary window pushes the secondary", func(c *SlotChoice) { c.PrimaryWindow = days(7) },
			"secondary start 2026-04-08T01:00:00Z is too early: it must be at or after 2026-04-09T01:00:00Z (primary window end 2026-04-08T01:00:00Z plus a gap of 24h)"},
		{"short secondary window near the period end", func(c *SlotChoice) {
			c.SecondaryStart, c.SecondaryWindow = release.PeriodEnd.Add(-6*time.Hour), 6*time.Hour
		}, ""},
		{"long secondary window past the period end", func(c *SlotChoice) {
			c.SecondaryStart, c.SecondaryWindow = release.PeriodEnd.Add(-13*time.Hour), 24*time.Hour
		}, "the secondary window 2026-05-31T11:00:00Z to 2026-06-01T11:00:00Z lies outside the release period of 9.2.0"},
		// The minimum notice: zero asks only for a start ahead.
		{"primary exactly the minimum notice ahead", func(c *SlotChoice) { c.MinNotice, c.PrimaryStart = time.Hour, now.Add(time.Hour) }, ""},
		{"primary sooner than the minimum notice", func(c *SlotChoice) { c.MinNotice, c.PrimaryStart = time.Hour, now.Add(59*time.Minute) },
			"primary start 2026-03-01T12:59:00Z is too soon (now 2026-03-01T12:00:00Z): choose a primary slot at least 1h ahead, starting at or after 2026-03-01T13:00:00Z"},
		// Offered slots, when known: each start must be one of the
		// release's, and the refusal lists those that would do.
		{"both slots offered", func(c *SlotChoice) { c.Offered = offered }, ""},
		{"primary not offered", func(c *SlotChoice) { c.Offered, c.PrimaryStart = offered, c.PrimaryStart.Add(time.Hour) },
			"the primary slot 2026-04-01T02:00:00Z is not offered in emea for 9.2.0; offered from 2026-03-01T12:00:00Z: " +
				"2026-04-01T01:00:00Z (12h window), 2026-04-04T01:00:00Z (12h window), 2026-04-05T01:00:00Z (12h window), " +
				"2026-04-06T01:00:00Z (12h window), 2026-04-07T01:00:00Z (12h window) and 2 later"},
		{"secondary not offered", func(c *SlotChoice) { c.Offered, c.SecondaryStart = offered, c.SecondaryStart.Add(time.Minute) },
			"the secondary slot 2026-04-08T01:01:00Z is not offered in emea for 9.2.0; offered from 2026-04-02T13:00:00Z: " +
				"2026-04-04T01:00:00Z (12h window), 2026-04-05T01:00:00Z (12h window), 2026-04-06T01:00:00Z (12h window), " +
				"2026-04-07T01:00:00Z (12h window), 2026-04-08T01:00:00Z (12h window) and 1 later"},
		{"nothing offered late enough", func(c *SlotChoice) {
			c.Offered, c.MinNotice = offered, days(60)
		}, "primary start 2026-04-01T01:00:00Z is too soon (now 2026-03-01T12:00:00Z): choose a primary slot at least 1440h ahead, starting at or after 2026-04-30T12:00:00Z; " +
			"no slot of 9.2.0 in emea starts at or after 2026-04-30T12:00:00Z inside the release period (ending 2026-06-01T00:00:00Z)"},
		{"an offered secondary whose window overruns the period", func(c *SlotChoice) {
			overrunning := OfferedSlot{Version: "9.2.0", Start: release.PeriodEnd.Add(-time.Hour), WindowLength: 12 * time.Hour}
			c.Offered, c.SecondaryStart = append(offered[:len(offered):len(offered)], overrunning), overrunning.Start
		}, "the secondary window 2026-05-31T23:00:00Z to 2026-06-01T11:00:00Z lies outside the release period of 9.2.0 (2026-02-01T00:00:00Z to 2026-06-01T00:00:00Z); " +
			"choose a slot inside it; offered from 2026-04-02T13:00:00Z: 2026-04-04T01:00:00Z (12h window)"},
		{"a slot of another release", func(c *SlotChoice) { c.Offered = offered; c.PrimaryStart = otherRelease.Start },
			"the primary slot 2026-04-02T01:00:00Z is not offered in emea for 9.2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			err := ValidateSlots(c, now)
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tt.wantErr), "got %q", err)
		})
	}
}

func TestAdmins(t *testing.T) {
	admins := []string{"Admin@Acme.example", "ops@acme.example"}
	found, ok := FindAdmin(admins, " ADMIN@acme.EXAMPLE ")
	assert.True(t, ok)
	assert.Equal(t, "Admin@Acme.example", found)
	_, ok = FindAdmin(admins, "admin@acme.example.evil")
	assert.False(t, ok)

	tests := []struct {
		name    string
		admins  []string
		wantErr string
	}{
		{"valid", admins, ""},
		{"empty", nil, "the admin list is empty; give at least one e-mail address"},
		{"no at sign", []string{"ops"}, `admin "ops" is not a plain e-mail address (like admin@example.com)`},
		{"display name", []string{"Ops <ops@acme.example>"}, `admin "Ops <ops@acme.example>" is not a plain e-mail address`},
		{"list in one entry", []string{"a@acme.example, b@acme.example"}, `admin "a@acme.example, b@acme.example" is not a plain e-mail address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAdmins(tt.admins)
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestValidateInput(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Input)
		wantErr string
	}{
		{"valid", func(*Input) {}, ""},
		{"no instance", func(in *Input) { in.Instance.ID = "" }, "instance.id is empty"},
		{"no tenant", func(in *Input) { in.Instance.TenantID = "" }, "instance.tenantId is empty"},
		{"unknown zone", func(in *Input) { in.Instance.TimeZone = "CEST" }, `instance.timeZone "CEST" is not an IANA time zone name (like Europe/Berlin)`},
		{"empty zone", func(in *Input) { in.Instance.TimeZone = "" }, `instance.timeZone "" is not an IANA time zone name`},
		{"no admins", func(in *Input) { in.Admins = nil }, "admins: the admin list is empty"},
		{"no current version", func(in *Input) { in.CurrentVersion = "" }, "currentVersion is empty"},
		{"target not in releases", func(in *Input) { in.TargetVersion = "9.9.0" }, `releases: targetVersion "9.9.0" is not among them (9.2.0, 9.3.0)`},
		{"no primary", func(in *Input) { in.PrimaryStart = time.Time{} }, "primaryStart is not set"},
		{"secondary inside primary window", func(in *Input) { in.SecondaryStart = in.PrimaryStart.Add(time.Hour) },
			"primaryStart/secondaryStart: secondary start 2026-04-15T02:00:00Z is too early"},
		{"negative offset", func(in *Input) { in.ReminderOffsets = []time.Duration{-time.Hour} }, "reminderOffsets: -1h0m0s is negative"},
		{"negative window", func(in *Input) { in.WindowLength = -time.Hour }, "windowLength -1h0m0s is negative"},
		{"period backwards", func(in *Input) { in.Releases[1].PeriodEnd = in.Releases[1].PeriodStart.Add(-time.Hour) },
			"releases: the period of 9.3.0 ends (2026-02-04T00:00:00Z) before it starts (2026-02-04T01:00:00Z)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := scenarioInput()
			in.Releases = []ReleaseOption{release92, release93}
			tt.change(&in)
			err := validateInput(in.WithDefaults())
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tt.wantErr), "got %q", err)
		})
	}
}

func TestWithDefaults(t *testing.T) {
	in := Input{}.WithDefaults()
	assert.Equal(t, DefaultReminderOffsets, in.ReminderOffsets)
	assert.Equal(t, DefaultWindowLength, in.WindowLength)
	assert.True(t, in.LeanLifecycle, "every update the starter starts takes the lean lifecycle without asking GetVersion")
	in.ReminderOffsets[0] = time.Hour
	assert.Equal(t, 90*24*time.Hour, DefaultReminderOffsets[0], "defaults are copied, not shared")

	custom := Input{ReminderOffsets: []time.Duration{time.Minute}, WindowLength: time.Hour}.WithDefaults()
	assert.Equal(t, []time.Duration{time.Minute}, custom.ReminderOffsets)
	assert.Equal(t, time.Hour, custom.WindowLength)

	old := withRelease1Defaults(Input{})
	assert.Equal(t, release1ReminderOffsets, old.ReminderOffsets)
	assert.Equal(t, 12*time.Hour, old.WindowLength)
	old.ReminderOffsets[0] = time.Hour
	assert.Equal(t, 90*24*time.Hour, release1ReminderOffsets[0], "release 1's defaults are copied, not shared")
}

func TestHeartbeatTimeout(t *testing.T) {
	for window, want := range map[time.Duration]time.Duration{
		12 * time.Hour:   time.Minute,
		5 * time.Minute:  30 * time.Second,
		10 * time.Second: 5 * time.Second,
	} {
		assert.Equal(t, want, HeartbeatTimeout(window), "window %s", window)
	}
}

// The deadline told to admins is exactly the last start the validator takes.
func TestLatestPrimaryStartIsTheLastValidChoice(t *testing.T) {
	release := ReleaseOption{Version: "9.2.0", PeriodStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	for _, tt := range []struct {
		window, gap time.Duration
		want        time.Time
	}{
		{12 * time.Hour, 24 * time.Hour, time.Date(2026, 5, 30, 0, 0, 0, 0, time.UTC)},
		{45 * time.Second, 15 * time.Second, time.Date(2026, 5, 31, 23, 58, 15, 0, time.UTC)},
	} {
		latest := LatestPrimaryStart(release, tt.window, tt.gap)
		if !latest.Equal(tt.want) {
			t.Errorf("window %s, gap %s: latest primary start %s, want %s", tt.window, tt.gap, latest, tt.want)
		}
		choice := func(primary time.Time) SlotChoice {
			return SlotChoice{PrimaryStart: primary, PrimaryWindow: tt.window, SecondaryStart: primary.Add(tt.window + tt.gap), SecondaryWindow: tt.window,
				SecondaryMinGap: tt.gap, Release: release}
		}
		if err := validateSlotOrder(choice(latest)); err != nil {
			t.Errorf("window %s, gap %s: the latest start is refused: %v", tt.window, tt.gap, err)
		}
		if err := validateSlotOrder(choice(latest.Add(time.Second))); err == nil {
			t.Errorf("window %s, gap %s: a start after the latest one is accepted", tt.window, tt.gap)
		}
	}
}

// With the offered slots known, the deadline is the latest slot that a
// later slot can still back up, each judged by its own window.
func TestLatestOfferedPrimaryStart(t *testing.T) {
	release := ReleaseOption{Version: "9.2.0", PeriodStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	slot := func(version string, month, day int, window time.Duration) OfferedSlot {
		return OfferedSlot{Version: version, Start: time.Date(2026, time.Month(month), day, 1, 0, 0, 0, time.UTC), WindowLength: window}
	}
	tests := []struct {
		name  string
		slots []OfferedSlot
		want  time.Time // zero: none
	}{
		{"the last slot has no secondary after it", []OfferedSlot{slot("9.2.0", 5, 1, 12*time.Hour), slot("9.2.0", 5, 10, 12*time.Hour), slot("9.2.0", 5, 20, 12*time.Hour)},
			time.Date(2026, 5, 10, 1, 0, 0, 0, time.UTC)},
		{"a long window leaves no room for the secondary", []OfferedSlot{slot("9.2.0", 5, 1, 12*time.Hour), slot("9.2.0", 5, 10, days(10)), slot("9.2.0", 5, 20, 12*time.Hour)},
			time.Date(2026, 5, 1, 1, 0, 0, 0, time.UTC)},
		{"a secondary whose window overruns the period does not count", []OfferedSlot{slot("9.2.0", 5, 1, 12*time.Hour), slot("9.2.0", 5, 31, 24*time.Hour)},
			time.Time{}},
		{"other releases' slots do not count", []OfferedSlot{slot("9.2.0", 5, 1, 12*time.Hour), slot("9.3.0", 5, 10, 12*time.Hour)}, time.Time{}},
		{"no slots", nil, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := LatestOfferedPrimaryStart(tt.slots, release, 24*time.Hour)
			assert.Equal(t, !tt.want.IsZero(), ok)
			assert.Equal(t, tt.want, got)
		})
	}
}
