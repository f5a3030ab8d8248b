package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// This file holds the pure schedule math of the workflow: reminder times,
// slot and version checks, input validation. No clock, no I/O: callers pass
// workflow.Now, so the same functions serve validators, the main loop and
// table tests.

// timeLayout renders instants in error messages and summaries.
const timeLayout = time.RFC3339

// Reminder is one reminder notice due before a primary slot.
type Reminder struct {
	Kind   NoticeKind
	Offset time.Duration
	At     time.Time
}

// ReminderSchedule lists the reminders for a primary slot starting at
// primaryStart, earliest first. Reminders whose time is already past at
// armedAt (the workflow start or the reschedule) are left out: an admin who
// reschedules 10 days ahead gets the 7-day reminder, not a late 30-day one.
func ReminderSchedule(primaryStart time.Time, offsets []time.Duration, armedAt time.Time) []Reminder {
	reminders := make([]Reminder, 0, len(offsets))
	for _, offset := range offsets {
		at := primaryStart.Add(-offset)
		if at.Before(armedAt) {
			continue
		}
		reminders = append(reminders, Reminder{Kind: ReminderKind(offset), Offset: offset, At: at})
	}
	slices.SortStableFunc(reminders, func(a, b Reminder) int { return a.At.Compare(b.At) })
	return slices.CompactFunc(reminders, func(a, b Reminder) bool { return a.Kind == b.Kind })
}

// DueReminder splits pending reminders (earliest first) at now: the latest
// reminder whose time has come is due, earlier ones that came due with it
// are stale (a worker outage or a delayed timer must not send a burst of
// superseded reminders), and the rest are still pending.
func DueReminder(pending []Reminder, now time.Time) (due *Reminder, stale, rest []Reminder) {
	n := 0
	for n < len(pending) && !pending[n].At.After(now) {
		n++
	}
	if n == 0 {
		return nil, nil, pending
	}
	last := pending[n-1]
	return &last, pending[:n-1], pending[n:]
}

// FindRelease returns the release option for version and its position in
// releases (oldest first).
func FindRelease(releases []ReleaseOption, version string) (ReleaseOption, int, bool) {
	for i, r := range releases {
		if r.Version == version {
			return r, i, true
		}
	}
	return ReleaseOption{}, -1, false
}

// ChooseTargetVersion checks a requested target version against the
// releases an update may target: it must be offered, and not older than the
// current target. An empty request keeps the current target.
func ChooseTargetVersion(releases []ReleaseOption, current, requested string) (ReleaseOption, error) {
	if requested == "" {
		requested = current
	}
	_, currentIndex, _ := FindRelease(releases, current)
	release, index, ok := FindRelease(releases, requested)
	accepted := releaseVersions(releases[max(currentIndex, 0):])
	switch {
	case !ok:
		return ReleaseOption{}, fmt.Errorf("target version %q is not offered for this update; choose one of %s", requested, accepted)
	case index < currentIndex:
		return ReleaseOption{}, fmt.Errorf("target version %q is older than the current target %q; choose one of %s", requested, current, accepted)
	}
	return release, nil
}

func releaseVersions(releases []ReleaseOption) string {
	versions := make([]string, len(releases))
	for i, r := range releases {
		versions[i] = r.Version
	}
	return strings.Join(versions, ", ")
}

// SlotChoice is a primary and secondary slot proposed for an update, each
// with its own window length.
type SlotChoice struct {
	PrimaryStart    time.Time
	PrimaryWindow   time.Duration
	SecondaryStart  time.Time
	SecondaryWindow time.Duration
	SecondaryMinGap time.Duration
	Release         ReleaseOption
	// MinNotice is the least time from now to the primary start; zero
	// asks only that it lies ahead.
	MinNotice time.Duration
	// Offered lists the slots offered in Region (those of Release count).
	// Nil when they are not known (inputs of release 1): any start is
	// then left to the booking, which refuses one that is not offered.
	Offered []OfferedSlot
	Region  string
}

// PrimaryEnd is the end of the primary window.
func (c SlotChoice) PrimaryEnd() time.Time { return c.PrimaryStart.Add(c.PrimaryWindow) }

// EarliestSecondary is the earliest start allowed for the secondary slot.
func (c SlotChoice) EarliestSecondary() time.Time { return c.PrimaryEnd().Add(c.SecondaryMinGap) }

// LatestPrimaryStart is the last primary start a reschedule within release
// may choose: both windows, with the minimum gap between them, must end
// inside the release period. It is the deadline an admin is told.
func LatestPrimaryStart(release ReleaseOption, window, secondaryMinGap time.Duration) time.Time {
	return release.PeriodEnd.Add(-(2*window + secondaryMinGap))
}

// LatestOfferedPrimaryStart is the last primary start a reschedule within
// release may choose among slots, each with its own window: the latest
// slot of the release that some later slot can back up as secondary. It
// reports false when slots holds no such pair.
func LatestOfferedPrimaryStart(slots []OfferedSlot, release ReleaseOption, secondaryMinGap time.Duration) (time.Time, bool) {
	var latest time.Time
	found := false
	for _, p := range slots {
		if p.Version != release.Version || (found && !p.Start.After(latest)) {
			continue
		}
		for _, s := range slots {
			choice := SlotChoice{
				PrimaryStart: p.Start, PrimaryWindow: p.WindowLength, SecondaryStart: s.Start, SecondaryWindow: s.WindowLength,
				SecondaryMinGap: secondaryMinGap, Release: release,
			}
			if s.Version == release.Version && validateSlotOrder(choice) == nil {
				latest, found = p.Start, true
				break
			}
		}
	}
	return latest, found
}

// ValidateSlots checks a slot choice made at now: both slots are offered
// (when Offered is known), the primary starts at least MinNotice from now
// (and in the future), the secondary starts after the primary window plus
// the minimum gap, and each window, with its own length, lies inside the
// release period. The error says what was wrong and what is accepted.
func ValidateSlots(c SlotChoice, now time.Time) error {
	earliest := now.Add(c.MinNotice)
	if err := c.checkOffered(SlotPrimary, c.PrimaryStart, earliest); err != nil {
		return err
	}
	switch {
	case !c.PrimaryStart.After(now):
		return fmt.Errorf("primary start %s is not in the future (now %s); choose a later slot%s",
			c.PrimaryStart.UTC().Format(timeLayout), now.UTC().Format(timeLayout), c.offeredHint(earliest))
	case c.PrimaryStart.Before(earliest):
		return fmt.Errorf("primary start %s is too soon (now %s): choose a primary slot at least %s ahead, starting at or after %s%s",
			c.PrimaryStart.UTC().Format(timeLayout), now.UTC().Format(timeLayout), durationText(c.MinNotice),
			earliest.UTC().Format(timeLayout), c.offeredHint(earliest))
	}
	if err := checkSecondaryAfterPrimary(c); err != nil {
		return err
	}
	if err := c.checkOffered(SlotSecondary, c.SecondaryStart, c.EarliestSecondary()); err != nil {
		return err
	}
	return checkInsidePeriod(c, earliest)
}

// validateSlotOrder checks everything ValidateSlots does except the
// relation to the present, which a workflow started late may not meet,
// and whether the slots are offered.
func validateSlotOrder(c SlotChoice) error {
	if err := checkSecondaryAfterPrimary(c); err != nil {
		return err
	}
	return checkInsidePeriod(c, time.Time{})
}

func checkSecondaryAfterPrimary(c SlotChoice) error {
	if c.SecondaryStart.Before(c.EarliestSecondary()) {
		return fmt.Errorf("secondary start %s is too early: it must be at or after %s (primary window end %s plus a gap of %s)%s",
			c.SecondaryStart.UTC().Format(timeLayout), c.EarliestSecondary().UTC().Format(timeLayout),
			c.PrimaryEnd().UTC().Format(timeLayout), durationText(c.SecondaryMinGap), c.offeredHint(c.EarliestSecondary()))
	}
	return nil
}

// checkInsidePeriod checks that both windows lie inside the release
// period; a refusal of the primary lists the offered slots from
// earliestPrimary on, one of the secondary those after the primary's.
func checkInsidePeriod(c SlotChoice, earliestPrimary time.Time) error {
	for _, slot := range []struct {
		role   SlotRole
		start  time.Time
		window time.Duration
		from   time.Time
	}{
		{SlotPrimary, c.PrimaryStart, c.PrimaryWindow, earliestPrimary},
		{SlotSecondary, c.SecondaryStart, c.SecondaryWindow, c.EarliestSecondary()},
	} {
		end := slot.start.Add(slot.window)
		if slot.start.Before(c.Release.PeriodStart) || end.After(c.Release.PeriodEnd) {
			return fmt.Errorf("the %s window %s to %s lies outside the release period of %s (%s to %s); choose a slot inside it%s",
				slot.role, slot.start.UTC().Format(timeLayout), end.UTC().Format(timeLayout), c.Release.Version,
				c.Release.PeriodStart.UTC().Format(timeLayout), c.Release.PeriodEnd.UTC().Format(timeLayout), c.offeredHint(slot.from))
		}
	}
	return nil
}

// checkOffered refuses a start that Release does not offer in Region, when
// the offered slots are known, naming the offered ones from from on.
func (c SlotChoice) checkOffered(role SlotRole, start, from time.Time) error {
	if c.Offered == nil {
		return nil
	}
	for _, slot := range c.Offered {
		if slot.Version == c.Release.Version && slot.Start.Equal(start) {
			return nil
		}
	}
	return fmt.Errorf("the %s slot %s is not offered in %s for %s%s",
		role, start.UTC().Format(timeLayout), c.Region, c.Release.Version, c.offeredHint(from))
}

// offeredListed is how many offered slots a refusal names.
const offeredListed = 5

// offeredHint completes a refusal with the first slots of Release that
// start at or after from with their window inside its period: what the
// admin may choose instead. Empty when the offered slots are not known.
func (c SlotChoice) offeredHint(from time.Time) string {
	if c.Offered == nil {
		return ""
	}
	var fitting []OfferedSlot
	for _, slot := range c.Offered {
		if slot.Version == c.Release.Version && !slot.Start.Before(from) &&
			!slot.Start.Before(c.Release.PeriodStart) && !slot.Start.Add(slot.WindowLength).After(c.Release.PeriodEnd) {
			fitting = append(fitting, slot)
		}
	}
	if len(fitting) == 0 {
		return fmt.Sprintf("; no slot of %s in %s starts at or after %s inside the release period (ending %s)",
			c.Release.Version, c.Region, from.UTC().Format(timeLayout), c.Release.PeriodEnd.UTC().Format(timeLayout))
	}
	slices.SortFunc(fitting, func(a, b OfferedSlot) int { return a.Start.Compare(b.Start) })
	listed := make([]string, 0, offeredListed)
	for _, slot := range fitting[:min(len(fitting), offeredListed)] {
		listed = append(listed, fmt.Sprintf("%s (%s window)", slot.Start.UTC().Format(timeLayout), durationText(slot.WindowLength)))
	}
	hint := fmt.Sprintf("; offered from %s: %s", from.UTC().Format(timeLayout), strings.Join(listed, ", "))
	if more := len(fitting) - len(listed); more > 0 {
		hint += fmt.Sprintf(" and %d later", more)
	}
	return hint
}

// durationText writes d as people do: "1h", "30m", "1h30m", "24h".
func durationText(d time.Duration) string {
	text := d.String()
	if strings.HasSuffix(text, "m0s") {
		text = strings.TrimSuffix(text, "0s")
	}
	if strings.HasSuffix(text, "h0m") {
		text = strings.TrimSuffix(text, "0m")
	}
	return text
}

// FindAdmin returns the entry of admins that matches email, compared
// case-insensitively as mail systems do in practice.
func FindAdmin(admins []string, email string) (string, bool) {
	email = strings.TrimSpace(email)
	for _, admin := range admins {
		if strings.EqualFold(strings.TrimSpace(admin), email) {
			return admin, true
		}
	}
	return "", false
}

// ValidateAdmins checks an admin list: not empty, every entry a plain
// e-mail address.
func ValidateAdmins(admins []string) error {
	if len(admins) == 0 {
		return errors.New("the admin list is empty; give at least one e-mail address")
	}
	for _, admin := range admins {
		// net/mail is pure; workflowcheck only sees its debug logging,
		// which is compiled in but never enabled.
		addr, err := mail.ParseAddress(admin) //workflowcheck:ignore
		if err != nil || addr.Address != strings.TrimSpace(admin) {
			return fmt.Errorf("admin %q is not a plain e-mail address (like admin@example.com)", admin)
		}
	}
	return nil
}

// validateInput checks a workflow input once release 1's defaults filled
// what it lacks. The error names the field at fault and what it accepts.
func validateInput(in Input) error {
	switch {
	case in.Instance.ID == "":
		return errors.New("instance.id is empty")
	case in.Instance.TenantID == "":
		return errors.New("instance.tenantId is empty")
	case in.CurrentVersion == "":
		return errors.New("currentVersion is empty")
	case in.TargetVersion == "":
		return errors.New("targetVersion is empty")
	case in.PrimaryStart.IsZero():
		return errors.New("primaryStart is not set")
	case in.SecondaryStart.IsZero():
		return errors.New("secondaryStart is not set")
	case in.WindowLength < 0:
		return fmt.Errorf("windowLength %s is negative; give a positive duration", in.WindowLength)
	case in.SecondaryWindowLength < 0:
		return fmt.Errorf("secondaryWindowLength %s is negative; give a positive duration, or zero for windowLength", in.SecondaryWindowLength)
	case in.SecondaryMinGap < 0:
		return fmt.Errorf("secondaryMinGap %s is negative; give zero or a positive duration", in.SecondaryMinGap)
	}
	if _, err := time.LoadLocation(in.Instance.TimeZone); err != nil || in.Instance.TimeZone == "" {
		return fmt.Errorf("instance.timeZone %q is not an IANA time zone name (like Europe/Berlin)", in.Instance.TimeZone)
	}
	if err := ValidateAdmins(in.Admins); err != nil {
		return fmt.Errorf("admins: %w", err)
	}
	for _, offset := range in.ReminderOffsets {
		if offset < 0 {
			return fmt.Errorf("reminderOffsets: %s is negative; offsets count back from the primary start and must be zero or positive", offset)
		}
	}
	release, _, ok := FindRelease(in.Releases, in.TargetVersion)
	if !ok {
		return fmt.Errorf("releases: targetVersion %q is not among them (%s)", in.TargetVersion, releaseVersions(in.Releases))
	}
	for _, r := range in.Releases {
		if !r.PeriodEnd.After(r.PeriodStart) {
			return fmt.Errorf("releases: the period of %s ends (%s) before it starts (%s)", r.Version,
				r.PeriodEnd.UTC().Format(timeLayout), r.PeriodStart.UTC().Format(timeLayout))
		}
	}
	for _, slot := range in.Slots {
		if slot.WindowLength <= 0 {
			return fmt.Errorf("slots: the slot of %s at %s has window %s; give a positive duration",
				slot.Version, slot.Start.UTC().Format(timeLayout), slot.WindowLength)
		}
	}
	choice := SlotChoice{
		PrimaryStart: in.PrimaryStart, PrimaryWindow: in.WindowLength,
		SecondaryStart: in.SecondaryStart, SecondaryWindow: cmp.Or(in.SecondaryWindowLength, in.WindowLength),
		SecondaryMinGap: in.SecondaryMinGap, Release: release,
	}
	if err := validateSlotOrder(choice); err != nil {
		return fmt.Errorf("primaryStart/secondaryStart: %w", err)
	}
	return nil
}

// HeartbeatTimeout scales the executor's heartbeat timeout to its window:
// a tenth of it, at least 5 seconds (so a busy executor is not declared
// dead) and at most a minute (so a dead one is noticed soon).
func HeartbeatTimeout(window time.Duration) time.Duration {
	return min(max(window/10, 5*time.Second), time.Minute)
}
