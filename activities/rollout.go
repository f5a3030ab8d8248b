package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/workflows"
)

// EligibilityLevel is what the update policy asks of an instance for one
// target version.
type EligibilityLevel int

const (
	// EligibilityNone: the instance runs the target or a newer version.
	EligibilityNone EligibilityLevel = iota
	// EligibilityOptional: one version behind (n-1); the update runs
	// only when an admin approves it.
	EligibilityOptional
	// EligibilityMandatory: two or more versions behind (n-2); the update
	// runs without approval, admins may only move it.
	EligibilityMandatory
)

func (e EligibilityLevel) String() string {
	switch e {
	case EligibilityOptional:
		return "optional"
	case EligibilityMandatory:
		return "mandatory"
	}
	return "not eligible"
}

// Eligibility applies the update policy. Ordinals are positions in the
// version history (1, 2, 3, ... with no gaps), not the raw release order
// values, which may skip numbers.
func Eligibility(currentOrdinal, targetOrdinal int) EligibilityLevel {
	switch {
	case currentOrdinal >= targetOrdinal:
		return EligibilityNone
	case currentOrdinal == targetOrdinal-1:
		return EligibilityOptional
	default:
		return EligibilityMandatory
	}
}

// RolloutCandidate is an instance and what a rollout of one version asks
// of it.
type RolloutCandidate struct {
	Instance       workflows.Instance
	CurrentVersion string
	Eligibility    EligibilityLevel
}

// storeRankedReleasesCTE numbers releases by order without gaps, the
// positions Eligibility counts in.
const storeRankedReleasesCTE = `
WITH ranked AS (SELECT version, ordinal, row_number() OVER (ORDER BY ordinal)::int AS position FROM releases)`

const storeReleaseExistsSQL = `SELECT EXISTS (SELECT 1 FROM releases WHERE version = $1)`

const storeRolloutCandidatesSQL = storeRankedReleasesCTE + `
SELECT i.id, i.name, i.tenant_id, i.kind, i.region, i.time_zone, i.current_version, cur.position, tgt.position
FROM instances i
JOIN ranked cur ON cur.version = i.current_version
JOIN ranked tgt ON tgt.version = $1
ORDER BY i.kind = '` + fleet.KindProduction + `', i.id`

// RolloutCandidates lists every instance with its eligibility for
// version: sandboxes first (they take a release before production does),
// then by ID. An unknown version is ErrNotFound.
func (s *Store) RolloutCandidates(ctx context.Context, version string) ([]RolloutCandidate, error) {
	if err := storeRequireRelease(ctx, s.pool, version); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, storeRolloutCandidatesSQL, version)
	if err != nil {
		return nil, storeMapError(err, "list rollout candidates for "+version)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RolloutCandidate, error) {
		var c RolloutCandidate
		var cur, tgt int
		err := row.Scan(&c.Instance.ID, &c.Instance.Name, &c.Instance.TenantID, &c.Instance.Kind, &c.Instance.Region,
			&c.Instance.TimeZone, &c.CurrentVersion, &cur, &tgt)
		c.Eligibility = Eligibility(cur, tgt)
		return c, err
	})
	return list, storeMapError(err, "list rollout candidates for "+version)
}

// storeQuerier is what pool and transaction share for single queries.
type storeQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func storeRequireRelease(ctx context.Context, q storeQuerier, version string) error {
	var exists bool
	if err := q.QueryRow(ctx, storeReleaseExistsSQL, version).Scan(&exists); err != nil {
		return storeMapError(err, "look up release "+version)
	}
	if !exists {
		return storeErrorf(ErrNotFound, "release %q does not exist; load it with the fleet file first", version)
	}
	return nil
}

const storeRolloutInstanceSQL = storeRankedReleasesCTE + `
SELECT i.name, i.tenant_id, i.kind, i.region, i.time_zone, i.current_version, cur.position, tgt.position
FROM instances i
JOIN ranked cur ON cur.version = i.current_version
JOIN ranked tgt ON tgt.version = $2
WHERE i.id = $1`

const storeRolloutBookingsSQL = `
SELECT b.role, s.id, s.starts_at, s.window_length
FROM slot_bookings b JOIN slots s ON s.id = b.slot_id
WHERE b.instance_id = $1 AND b.offered_version = $2`

// storeFreeSlotsSQL lists candidate slots, earliest first. It only reads:
// each is then taken with the conditional storeTakePlaceSQL, so a slot
// filled meanwhile is skipped, never overbooked.
const storeFreeSlotsSQL = `
SELECT id, starts_at, window_length FROM slots
WHERE release_version = $1 AND region = $2 AND starts_at > $3 AND booked < capacity
ORDER BY starts_at, id`

const storeAdminsSQL = `
SELECT email FROM recipients WHERE instance_id = $1 AND role = $2 ORDER BY lower(email)`

// storeReleaseOptionsSQL lists the target release and every later one
// that has a release period (only those offer slots).
const storeReleaseOptionsSQL = `
SELECT version, period_start, period_end FROM releases
WHERE ordinal >= (SELECT ordinal FROM releases WHERE version = $1) AND period_start IS NOT NULL
ORDER BY ordinal`

// storeRolloutSlot is a slot considered for a rollout booking.
type storeRolloutSlot struct {
	ID     int64
	Start  time.Time
	Window time.Duration
}

func (s storeRolloutSlot) end() time.Time { return s.Start.Add(s.Window) }

// BookRolloutSlots prepares the update of c's instance to version: in one
// transaction it books the earliest slot with free capacity in the
// instance's region that starts after now as primary, and the earliest
// one starting at least secondaryMinGap after the primary window ends as
// secondary, and returns the workflow's complete Input (ReminderOffsets
// and SecondaryMinGap are the caller's). When the update has its bookings
// already (a rollout re-run) they are returned as they are. The
// instance's version and eligibility are read again inside the
// transaction, so a stale candidate cannot book a wrong update:
// ErrNotEligible when it needs none, ErrNoCapacity when no pair is free.
func (s *Store) BookRolloutSlots(ctx context.Context, c RolloutCandidate, version string, secondaryMinGap time.Duration, now time.Time) (workflows.Input, error) {
	var in workflows.Input
	instanceID := c.Instance.ID
	if instanceID == "" || version == "" {
		return in, storeErrorf(ErrInvalidRequest, "book rollout slots: instance ID and version required")
	}
	if secondaryMinGap < 0 {
		return in, storeErrorf(ErrInvalidRequest, "book rollout slots: secondary gap %s is negative", secondaryMinGap)
	}
	workflowID := workflows.WorkflowID(instanceID, version)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		in = workflows.Input{Instance: workflows.Instance{ID: instanceID}, TargetVersion: version}
		if err := storeLockUpdate(ctx, tx, instanceID, version); err != nil {
			return err
		}
		var cur, tgt int
		err := tx.QueryRow(ctx, storeRolloutInstanceSQL, instanceID, version).Scan(&in.Instance.Name, &in.Instance.TenantID,
			&in.Instance.Kind, &in.Instance.Region, &in.Instance.TimeZone, &in.CurrentVersion, &cur, &tgt)
		if errors.Is(err, pgx.ErrNoRows) {
			if err := storeRequireRelease(ctx, tx, version); err != nil {
				return err
			}
			return storeErrorf(ErrNotFound, "instance %q does not exist", instanceID)
		}
		if err != nil {
			return storeMapError(err, fmt.Sprintf("read instance %q", instanceID))
		}
		switch Eligibility(cur, tgt) {
		case EligibilityNone:
			return storeErrorf(ErrNotEligible, "instance %q runs %s, which is not older than %s: no update needed", instanceID, in.CurrentVersion, version)
		case EligibilityMandatory:
			in.Mandatory = true
		}

		primary, secondary, err := storeRolloutPair(ctx, tx, in.Instance, version, workflowID, secondaryMinGap, now)
		if err != nil {
			return err
		}
		in.PrimaryStart, in.SecondaryStart, in.WindowLength = primary.Start.UTC(), secondary.Start.UTC(), primary.Window

		rows, err := tx.Query(ctx, storeAdminsSQL, instanceID, storeRoleAdmin)
		if err != nil {
			return storeMapError(err, fmt.Sprintf("read the admins of instance %q", instanceID))
		}
		if in.Admins, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return storeMapError(err, fmt.Sprintf("read the admins of instance %q", instanceID))
		}
		rows, err = tx.Query(ctx, storeReleaseOptionsSQL, version)
		if err != nil {
			return storeMapError(err, "read releases from "+version)
		}
		in.Releases, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (workflows.ReleaseOption, error) {
			var r workflows.ReleaseOption
			err := row.Scan(&r.Version, &r.PeriodStart, &r.PeriodEnd)
			r.PeriodStart, r.PeriodEnd = r.PeriodStart.UTC(), r.PeriodEnd.UTC()
			return r, err
		})
		return storeMapError(err, "read releases from "+version)
	})
	if err != nil {
		return workflows.Input{}, err
	}
	return in, nil
}

// storeRolloutPair returns the update's booked slots, booking a pair when
// it has none. Slots are taken earliest first, primary before secondary,
// each with one conditional statement.
func storeRolloutPair(ctx context.Context, tx pgx.Tx, inst workflows.Instance, version, workflowID string, minGap time.Duration, now time.Time) (primary, secondary storeRolloutSlot, err error) {
	rows, err := tx.Query(ctx, storeRolloutBookingsSQL, inst.ID, version)
	if err != nil {
		return primary, secondary, storeMapError(err, "read the bookings of "+workflowID)
	}
	held := map[string]storeRolloutSlot{}
	var role string
	var slot storeRolloutSlot
	var window pgtype.Interval
	_, err = pgx.ForEachRow(rows, []any{&role, &slot.ID, &slot.Start, &window}, func() error {
		slot.Window = storeDuration(window)
		held[role] = slot
		return nil
	})
	if err != nil {
		return primary, secondary, storeMapError(err, "read the bookings of "+workflowID)
	}
	p, okP := held[string(workflows.SlotPrimary)]
	sec, okS := held[string(workflows.SlotSecondary)]
	if okP && okS {
		return p, sec, nil
	}
	// A lone reservation cannot come from BookSlots (it books both roles
	// at once); give it back and book a fresh pair.
	for _, h := range held {
		if err := storeGivePlace(ctx, tx, h.ID); err != nil {
			return primary, secondary, err
		}
	}

	rows, err = tx.Query(ctx, storeFreeSlotsSQL, version, inst.Region, now)
	if err != nil {
		return primary, secondary, storeMapError(err, "list free slots of "+version)
	}
	var free []storeRolloutSlot
	_, err = pgx.ForEachRow(rows, []any{&slot.ID, &slot.Start, &window}, func() error {
		slot.Window = storeDuration(window)
		free = append(free, slot)
		return nil
	})
	if err != nil {
		return primary, secondary, storeMapError(err, "list free slots of "+version)
	}
	for i, p := range free {
		taken, err := storeTryTake(ctx, tx, p.ID)
		if err != nil {
			return primary, secondary, err
		}
		if !taken {
			continue
		}
		for _, sec := range free[i+1:] {
			if sec.Start.Before(p.end().Add(minGap)) {
				continue
			}
			taken, err := storeTryTake(ctx, tx, sec.ID)
			if err != nil {
				return primary, secondary, err
			}
			if !taken {
				continue
			}
			for _, b := range []struct {
				role workflows.SlotRole
				id   int64
			}{{workflows.SlotPrimary, p.ID}, {workflows.SlotSecondary, sec.ID}} {
				if _, err := tx.Exec(ctx, storeUpsertBookingSQL, inst.ID, version, string(b.role), b.id, workflowID); err != nil {
					return primary, secondary, storeMapError(err, fmt.Sprintf("record the %s booking of %s", b.role, workflowID))
				}
			}
			return p, sec, nil
		}
		// No secondary after this primary: give it back; a later primary
		// with a shorter window may still have one.
		if err := storeGivePlace(ctx, tx, p.ID); err != nil {
			return primary, secondary, err
		}
	}
	return primary, secondary, storeErrorf(ErrNoCapacity,
		"no free primary and secondary slot pair of %s in region %s after %s (secondary at least %s after the primary window) for instance %q",
		version, inst.Region, storeTimeText(now), minGap, inst.ID)
}

func storeTryTake(ctx context.Context, tx pgx.Tx, slotID int64) (bool, error) {
	tag, err := tx.Exec(ctx, storeTakePlaceSQL, slotID)
	if err != nil {
		return false, storeMapError(err, fmt.Sprintf("book slot %d", slotID))
	}
	return tag.RowsAffected() == 1, nil
}
