package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/workflows"
)

// RolloutCandidate is an instance and what a rollout of one version asks
// of it.
type RolloutCandidate struct {
	Instance       workflows.Instance
	CurrentVersion string
	Eligibility    workflows.EligibilityLevel
	// Closed: the instance's update to the version has closed; it gave
	// its slots back and is never booked again.
	Closed bool
}

// rankedReleasesCTE numbers releases by order without gaps, the
// positions workflows.Eligibility counts in.
const rankedReleasesCTE = `
WITH ranked AS (SELECT version, ordinal, row_number() OVER (ORDER BY ordinal)::int AS position FROM releases)`

const releaseExistsSQL = `SELECT EXISTS (SELECT 1 FROM releases WHERE version = $1)`

// candidateSelect reads what scanCandidate takes, for the release $1;
// $2 is closedStatuses.
const candidateSelect = rankedReleasesCTE + `
SELECT i.id, i.name, i.tenant_id, i.kind, i.region, i.time_zone, i.current_version, cur.position, tgt.position,
       EXISTS (SELECT 1 FROM updates u WHERE u.instance_id = i.id AND u.offered_version = $1 AND u.status = ANY($2::text[]))
FROM instances i
JOIN ranked cur ON cur.version = i.current_version
JOIN ranked tgt ON tgt.version = $1`

// candidateOrder takes sandboxes first, then production, each by ID.
const candidateOrder = `
ORDER BY i.kind = '` + fleet.KindProduction + `', i.id`

const rolloutCandidatesSQL = candidateSelect + candidateOrder

func scanCandidate(row pgx.CollectableRow) (RolloutCandidate, error) {
	var c RolloutCandidate
	var cur, tgt int
	err := row.Scan(&c.Instance.ID, &c.Instance.Name, &c.Instance.TenantID, &c.Instance.Kind, &c.Instance.Region,
		&c.Instance.TimeZone, &c.CurrentVersion, &cur, &tgt, &c.Closed)
	c.Eligibility = workflows.Eligibility(cur, tgt)
	return c, err
}

// RolloutCandidates lists every instance with its eligibility for
// version: sandboxes first (they take a release before production does),
// then by ID. An unknown version is ErrNotFound.
func (s *Store) RolloutCandidates(ctx context.Context, version string) ([]RolloutCandidate, error) {
	if err := requireRelease(ctx, s.db, version); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, rolloutCandidatesSQL, version, closedStatuses)
	if err != nil {
		return nil, mapError(err, "list rollout candidates for "+version)
	}
	list, err := pgx.CollectRows(rows, scanCandidate)
	return list, mapError(err, "list rollout candidates for "+version)
}

func requireRelease(ctx context.Context, db DBTX, version string) error {
	var exists bool
	if err := db.QueryRow(ctx, releaseExistsSQL, version).Scan(&exists); err != nil {
		return mapError(err, "look up release "+version)
	}
	if !exists {
		return errorf(ErrNotFound, "release %q does not exist; load it with the fleet file first", version)
	}
	return nil
}

const instancePositionsSQL = rankedReleasesCTE + `
SELECT i.name, i.tenant_id, i.kind, i.region, i.time_zone, i.current_version, cur.position, tgt.position
FROM instances i
JOIN ranked cur ON cur.version = i.current_version
JOIN ranked tgt ON tgt.version = $2
WHERE i.id = $1`

// instanceCheckSQL reads an instance's version and the positions of it
// and of a target among today's releases; no row means no such instance
// (or no such target, told apart by requireRelease).
const instanceCheckSQL = rankedReleasesCTE + `
SELECT i.current_version, cur.position, tgt.position
FROM instances i
JOIN ranked cur ON cur.version = i.current_version
JOIN ranked tgt ON tgt.version = $2
WHERE i.id = $1`

// CheckInstance reads what an instance runs now and what the update
// policy asks of it for a target version against the releases loaded
// now: the workflow's look before an attempt, so an update already done
// (by a later one, or by hand) is not run again and eligibility follows
// versions recorded since the rollout. An unknown instance or target is
// ErrNotFound.
func (s *Store) CheckInstance(ctx context.Context, in workflows.CheckInstanceInput) (workflows.CheckInstanceResult, error) {
	var res workflows.CheckInstanceResult
	if in.InstanceID == "" || in.TargetVersion == "" {
		return res, errorf(ErrInvalidRequest, "check instance: instanceId and targetVersion required")
	}
	var cur, tgt int
	err := s.db.QueryRow(ctx, instanceCheckSQL, in.InstanceID, in.TargetVersion).Scan(&res.CurrentVersion, &cur, &tgt)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := requireRelease(ctx, s.db, in.TargetVersion); err != nil {
			return res, err
		}
		return res, errorf(ErrNotFound, "check instance: instance %q does not exist", in.InstanceID)
	}
	if err != nil {
		return res, mapError(err, fmt.Sprintf("check instance %q", in.InstanceID))
	}
	switch workflows.Eligibility(cur, tgt) {
	case workflows.EligibilityNone:
		res.UpToDate = true
		return res, nil
	case workflows.EligibilityMandatory:
		res.Mandatory = true
	}
	gate, err := waveGate(ctx, s.db, in.TargetVersion, in.InstanceID)
	res.Held = gate != workflows.WaveOpen
	return res, err
}

const heldSlotsSQL = `
SELECT b.role, s.id, s.starts_at, s.window_length
FROM slot_bookings b JOIN slots s ON s.id = b.slot_id
WHERE b.instance_id = $1 AND b.offered_version = $2`

// freeSlotsSQL lists candidate slots, earliest first. It only reads:
// each is then taken with the conditional takePlaceSQL, so a slot
// filled meanwhile is skipped, never overbooked.
const freeSlotsSQL = `
SELECT id, starts_at, window_length FROM slots
WHERE release_version = $1 AND region = $2 AND starts_at > $3 AND booked < capacity
ORDER BY starts_at, id`

// releaseOptionsSQL lists the target release and every later one
// that has a release period (only those offer slots).
const releaseOptionsSQL = `
SELECT version, period_start, period_end FROM releases
WHERE ordinal >= (SELECT ordinal FROM releases WHERE version = $1) AND period_start IS NOT NULL
ORDER BY ordinal`

// offeredSlotsSQL lists the slots in a region of the target release and
// every later one with a period: the windows the workflow may run in.
const offeredSlotsSQL = `
SELECT s.release_version, s.starts_at, s.window_length FROM slots s JOIN releases r ON r.version = s.release_version
WHERE s.region = $1 AND r.period_start IS NOT NULL AND r.ordinal >= (SELECT ordinal FROM releases WHERE version = $2)
ORDER BY r.ordinal, s.starts_at`

// timedSlot is a slot considered for a rollout booking.
type timedSlot struct {
	ID     int64
	Start  time.Time
	Window time.Duration
}

func (s timedSlot) end() time.Time { return s.Start.Add(s.Window) }

// BookRolloutSlotsParams says which update BookRolloutSlots prepares.
type BookRolloutSlotsParams struct {
	InstanceID string
	Version    string // the release rolled out
	// SecondaryMinGap is the least time from the end of the primary
	// window to the start of the secondary.
	SecondaryMinGap time.Duration
	// Now is the time after which slots must start to be booked.
	Now time.Time
	// MinNotice (MIN_NOTICE) is the least time from Now to the start of
	// the primary slot, so admins get their reminders before it.
	MinNotice time.Duration
	// TargetVersion is the release whose slots are booked: Version when
	// empty, a later release when an admin chose one (BookSlotsFrom).
	TargetVersion string
	// Until, when set, is when both windows must have ended by.
	Until time.Time
}

// BookRolloutSlots prepares the update of an instance to a version: in one
// transaction it books the earliest slot with free capacity in the
// instance's region that starts more than p.MinNotice after p.Now as
// primary, and the earliest
// one starting at least p.SecondaryMinGap after the primary window ends as
// secondary, writes the update's row (Scheduled), which holds the instance
// for it, and returns the workflow's complete Input (ReminderOffsets and
// SecondaryMinGap are the caller's) with the windows of both slots and of
// every slot the update may be moved to. When the update has its bookings
// already (a rollout re-run) they are returned as they are, unless their
// primary starts too soon for the notice: then they are booked anew.
//
// The caller has found no workflow for the update. The instance's version
// and eligibility are read again inside the transaction, so a stale
// candidate cannot book a wrong update: ErrNotEligible when it needs none,
// a *HeldError (ErrInstanceHeld) when another open update holds the
// instance, ErrNoCapacity when no pair is free far enough ahead. These
// release whatever an earlier try booked for the update, since no
// workflow holds it.
func (s *Store) BookRolloutSlots(ctx context.Context, p BookRolloutSlotsParams) (workflows.Input, error) {
	var in workflows.Input
	instanceID, version := p.InstanceID, p.Version
	if instanceID == "" || version == "" {
		return in, errorf(ErrInvalidRequest, "book rollout slots: instance ID and version required")
	}
	if p.SecondaryMinGap < 0 {
		return in, errorf(ErrInvalidRequest, "book rollout slots: secondary gap %s is negative", p.SecondaryMinGap)
	}
	workflowID := workflows.WorkflowID(instanceID, version)
	// refusal is an answer for the caller that still commits: releasing
	// what an earlier try left behind.
	var refusal error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		refusal = nil
		in = workflows.Input{Instance: workflows.Instance{ID: instanceID}, TargetVersion: version}
		if err := lockUpdate(ctx, tx, instanceID, version); err != nil {
			return err
		}
		var cur, tgt int
		err := tx.QueryRow(ctx, instancePositionsSQL, instanceID, version).Scan(&in.Instance.Name, &in.Instance.TenantID,
			&in.Instance.Kind, &in.Instance.Region, &in.Instance.TimeZone, &in.CurrentVersion, &cur, &tgt)
		if errors.Is(err, pgx.ErrNoRows) {
			if err := requireRelease(ctx, tx, version); err != nil {
				return err
			}
			return errorf(ErrNotFound, "instance %q does not exist", instanceID)
		}
		if err != nil {
			return mapError(err, fmt.Sprintf("read instance %q", instanceID))
		}
		switch workflows.Eligibility(cur, tgt) {
		case workflows.EligibilityNone:
			refusal = errorf(ErrNotEligible, "instance %q runs %s, which is not older than %s: no update needed", instanceID, in.CurrentVersion, version)
		case workflows.EligibilityMandatory:
			in.Mandatory = true
		}
		if refusal == nil {
			other, held, err := holder(ctx, tx, instanceID, workflowID)
			if err != nil {
				return err
			}
			if held {
				refusal = &HeldError{InstanceID: instanceID, Holder: other}
			}
		}
		if refusal != nil {
			_, err := abandon(ctx, tx, instanceID, version)
			return err
		}

		primary, secondary, err := bookPair(ctx, tx, p, in.Instance.Region, workflowID)
		if errors.Is(err, ErrNoCapacity) {
			// A held booking given back for lack of notice stays given back.
			refusal = err
			_, err = abandon(ctx, tx, instanceID, version)
			return err
		}
		if err != nil {
			return err
		}
		in.PrimaryStart, in.SecondaryStart, in.WindowLength = primary.Start.UTC(), secondary.Start.UTC(), primary.Window
		in.SecondaryWindowLength = secondary.Window
		if in.Slots, err = offeredSlots(ctx, tx, in.Instance.Region, version); err != nil {
			return err
		}
		if err := claim(ctx, tx, workflowID, in, primary, secondary); err != nil {
			return err
		}

		var recipients InstanceRecipients
		if err := readRecipients(ctx, tx, instanceID, &recipients); err != nil {
			return err
		}
		in.Admins = recipients.Admins
		rows, err := tx.Query(ctx, releaseOptionsSQL, version)
		if err != nil {
			return mapError(err, "read releases from "+version)
		}
		in.Releases, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (workflows.ReleaseOption, error) {
			var r workflows.ReleaseOption
			err := row.Scan(&r.Version, &r.PeriodStart, &r.PeriodEnd)
			r.PeriodStart, r.PeriodEnd = r.PeriodStart.UTC(), r.PeriodEnd.UTC()
			return r, err
		})
		return mapError(err, "read releases from "+version)
	})
	if err == nil {
		err = refusal
	}
	if err != nil {
		return workflows.Input{}, s.heldOnConflict(ctx, err, instanceID, workflowID)
	}
	return in, nil
}

// offeredSlots lists the slots offered in region by version and every
// later release, each with its window.
func offeredSlots(ctx context.Context, tx pgx.Tx, region, version string) ([]workflows.OfferedSlot, error) {
	rows, err := tx.Query(ctx, offeredSlotsSQL, region, version)
	if err != nil {
		return nil, mapError(err, "read the slots offered from "+version)
	}
	slots, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (workflows.OfferedSlot, error) {
		var slot workflows.OfferedSlot
		var window pgtype.Interval
		err := row.Scan(&slot.Version, &slot.Start, &window)
		slot.Start, slot.WindowLength = slot.Start.UTC(), duration(window)
		return slot, err
	})
	return slots, mapError(err, "read the slots offered from "+version)
}

// bookPair returns the update's booked slots, booking a pair when it has
// none or when its primary starts sooner than the minimum notice allows
// (the booking is given back first). Slots are taken earliest first,
// primary before secondary, each with one conditional statement.
func bookPair(ctx context.Context, tx pgx.Tx, p BookRolloutSlotsParams, region, workflowID string) (primary, secondary timedSlot, err error) {
	earliest := p.Now.Add(p.MinNotice)
	rows, err := tx.Query(ctx, heldSlotsSQL, p.InstanceID, p.Version)
	if err != nil {
		return primary, secondary, mapError(err, "read the bookings of "+workflowID)
	}
	held := map[string]timedSlot{}
	var role string
	var slot timedSlot
	var window pgtype.Interval
	_, err = pgx.ForEachRow(rows, []any{&role, &slot.ID, &slot.Start, &window}, func() error {
		slot.Window = duration(window)
		held[role] = slot
		return nil
	})
	if err != nil {
		return primary, secondary, mapError(err, "read the bookings of "+workflowID)
	}
	heldPrimary, okP := held[string(workflows.SlotPrimary)]
	heldSecondary, okS := held[string(workflows.SlotSecondary)]
	if okP && okS && heldPrimary.Start.After(earliest) && (p.Until.IsZero() || !heldSecondary.end().After(p.Until)) {
		return heldPrimary, heldSecondary, nil
	}
	// A lone reservation cannot come from BookSlots (it books both roles
	// at once), and a primary that came too close leaves no time for the
	// reminders: give them back and book a fresh pair.
	if len(held) > 0 {
		if _, err := releaseBookings(ctx, tx, p.InstanceID, p.Version); err != nil {
			return primary, secondary, err
		}
	}

	rows, err = tx.Query(ctx, freeSlotsSQL, cmp.Or(p.TargetVersion, p.Version), region, earliest)
	if err != nil {
		return primary, secondary, mapError(err, "list free slots of "+p.Version)
	}
	var free []timedSlot
	_, err = pgx.ForEachRow(rows, []any{&slot.ID, &slot.Start, &window}, func() error {
		slot.Window = duration(window)
		if p.Until.IsZero() || !slot.end().After(p.Until) {
			free = append(free, slot)
		}
		return nil
	})
	if err != nil {
		return primary, secondary, mapError(err, "list free slots of "+p.Version)
	}
	if len(free) == 0 {
		return primary, secondary, errorf(ErrNoCapacity, "no free slot of %s in %s starts after %s (MIN_NOTICE %s)",
			p.Version, region, timeText(earliest), config.FormatDuration(p.MinNotice))
	}
	for i, first := range free {
		taken, err := tryTake(ctx, tx, first.ID)
		if err != nil {
			return primary, secondary, err
		}
		if !taken {
			continue
		}
		for _, sec := range free[i+1:] {
			if sec.Start.Before(first.end().Add(p.SecondaryMinGap)) {
				continue
			}
			taken, err := tryTake(ctx, tx, sec.ID)
			if err != nil {
				return primary, secondary, err
			}
			if !taken {
				continue
			}
			for _, b := range []struct {
				role workflows.SlotRole
				id   int64
			}{{workflows.SlotPrimary, first.ID}, {workflows.SlotSecondary, sec.ID}} {
				if _, err := tx.Exec(ctx, upsertBookingSQL, p.InstanceID, p.Version, string(b.role), b.id, workflowID); err != nil {
					return primary, secondary, mapError(err, fmt.Sprintf("record the %s booking of %s", b.role, workflowID))
				}
			}
			return first, sec, nil
		}
		// No secondary after this primary: give it back; a later primary
		// with a shorter window may still have one.
		if err := givePlace(ctx, tx, first.ID); err != nil {
			return primary, secondary, err
		}
	}
	return primary, secondary, errorf(ErrNoCapacity,
		"no free primary and secondary slot pair of %s in region %s after %s (MIN_NOTICE %s; secondary at least %s after the primary window) for instance %q",
		p.Version, region, timeText(earliest), config.FormatDuration(p.MinNotice), config.FormatDuration(p.SecondaryMinGap), p.InstanceID)
}

func tryTake(ctx context.Context, tx pgx.Tx, slotID int64) (bool, error) {
	tag, err := tx.Exec(ctx, takePlaceSQL, slotID)
	if err != nil {
		return false, mapError(err, fmt.Sprintf("book slot %d", slotID))
	}
	return tag.RowsAffected() == 1, nil
}
