package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svcupdate/svcupdate/workflows"
)

// lockUpdateSQL serialises the transactions of one update (instance
// and offered version) so two concurrent bookings of it cannot both insert
// its first reservation; different updates never wait on each other here.
const lockUpdateSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`

func updateLockKey(instanceID, offeredVersion string) string {
	return "slot-bookings:" + workflows.WorkflowID(instanceID, offeredVersion)
}

func lockUpdate(ctx context.Context, tx pgx.Tx, instanceID, offeredVersion string) error {
	_, err := tx.Exec(ctx, lockUpdateSQL, updateLockKey(instanceID, offeredVersion))
	return mapError(err, "lock the bookings of "+workflows.WorkflowID(instanceID, offeredVersion))
}

const findSlotsSQL = `
SELECT id, starts_at, capacity FROM slots
WHERE release_version = $1 AND region = $2 AND starts_at = ANY($3::timestamptz[])`

// offeredStartsSQL lists free slots, to tell an admin what is offered.
const offeredStartsSQL = `
SELECT starts_at FROM slots
WHERE release_version = $1 AND region = $2 AND booked < capacity AND starts_at > now()
ORDER BY starts_at LIMIT 5`

// takePlaceSQL is the only way a reservation is counted: one
// conditional statement, so concurrent bookings cannot exceed capacity.
const takePlaceSQL = `UPDATE slots SET booked = booked + 1 WHERE id = $1 AND booked < capacity`

const givePlaceSQL = `UPDATE slots SET booked = booked - 1 WHERE id = $1 AND booked > 0`

const updateBookingsSQL = `
SELECT role, slot_id FROM slot_bookings WHERE instance_id = $1 AND offered_version = $2`

const upsertBookingSQL = `
INSERT INTO slot_bookings (instance_id, offered_version, role, slot_id, workflow_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (instance_id, offered_version, role) DO UPDATE
SET slot_id = EXCLUDED.slot_id, workflow_id = EXCLUDED.workflow_id, booked_at = now()
WHERE slot_bookings.slot_id <> EXCLUDED.slot_id`

const deleteBookingsSQL = `
DELETE FROM slot_bookings WHERE instance_id = $1 AND offered_version = $2 RETURNING slot_id`

// resolvedSlot is one slot resolved for booking.
type resolvedSlot struct {
	ID       int64
	Capacity int
	Name     string
}

// slotNotOffered is the error for a start a release does not offer
// in a region; it lists the next free starts so the admin can pick one.
func slotNotOffered(ctx context.Context, tx pgx.Tx, release, region string, start time.Time) error {
	rows, err := tx.Query(ctx, offeredStartsSQL, release, region)
	if err != nil {
		return mapError(err, "list offered slots")
	}
	starts, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return mapError(err, "list offered slots")
	}
	offered := "none has free places"
	if len(starts) > 0 {
		texts := make([]string, len(starts))
		for i, s := range starts {
			texts[i] = timeText(s)
		}
		offered = "the next with free places start " + strings.Join(texts, ", ")
	}
	return errorf(ErrSlotNotOffered, "release %s offers no slot in %s starting %s (%s)", release, region, timeText(start), offered)
}

// moveReservations applies the change from the slots in old to the
// slots in new (role -> slot ID) to the booked counters: one conditional
// statement per slot, in slot-ID order so concurrent rebookings lock rows
// in one order, all sent in one round trip. A slot in both keeps its count.
func moveReservations(ctx context.Context, tx pgx.Tx, old map[string]int64, new map[string]resolvedSlot) error {
	delta := map[int64]int{}
	slots := map[int64]resolvedSlot{}
	for _, id := range old {
		delta[id]--
	}
	for _, slot := range new {
		delta[slot.ID]++
		slots[slot.ID] = slot
	}
	ids := make([]int64, 0, len(delta))
	for id, d := range delta {
		if d != 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	batch := &pgx.Batch{}
	for _, id := range ids {
		if delta[id] > 0 {
			slot := slots[id]
			batch.Queue(takePlaceSQL, id).Exec(func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() == 0 {
					return errorf(ErrSlotFull, "%s is full: all %d places are booked", slot.Name, slot.Capacity)
				}
				return nil
			})
		} else {
			batch.Queue(givePlaceSQL, id).Exec(func(tag pgconn.CommandTag) error { return givePlaceResult(id, tag) })
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	return mapError(tx.SendBatch(ctx, batch).Close(), "move reservations")
}

func givePlace(ctx context.Context, tx pgx.Tx, slotID int64) error {
	tag, err := tx.Exec(ctx, givePlaceSQL, slotID)
	if err != nil {
		return mapError(err, fmt.Sprintf("release a place of slot %d", slotID))
	}
	return givePlaceResult(slotID, tag)
}

func givePlaceResult(slotID int64, tag pgconn.CommandTag) error {
	if tag.RowsAffected() == 0 {
		// Counters move only together with slot_bookings rows, so this
		// means the data was edited by hand.
		return fmt.Errorf("release a place of slot %d: its booked count is already 0 although slot_bookings holds a reservation", slotID)
	}
	return nil
}

// BookSlots reserves the primary and secondary slot of an update, or moves
// its reservations there (rebooking): in one transaction, the old places
// are given back and the new ones taken. Booking the slots already held
// changes nothing. It fails with ErrSlotNotOffered or ErrSlotFull, naming
// the slot, and then leaves the previous reservations as they were.
//
// Booking takes the instance for the update: while another open update
// holds it the booking fails with a *HeldError; an update that had closed
// (NotApproved, booking again through a late Reschedule) is open again.
func (s *Store) BookSlots(ctx context.Context, in workflows.BookSlotsInput) (workflows.BookSlotsResult, error) {
	var res workflows.BookSlotsResult
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"instanceId", in.InstanceID}, {"region", in.Region}, {"offeredVersion", in.OfferedVersion}, {"targetVersion", in.TargetVersion},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if in.PrimaryStart.IsZero() || in.SecondaryStart.IsZero() {
		missing = append(missing, "primaryStart and secondaryStart")
	}
	if len(missing) > 0 {
		return res, errorf(ErrInvalidRequest, "book slots: %s required", strings.Join(missing, ", "))
	}
	if in.PrimaryStart.Equal(in.SecondaryStart) {
		return res, errorf(ErrInvalidRequest, "book slots: primary and secondary are the same slot (%s); the secondary must be a later one", timeText(in.PrimaryStart))
	}
	workflowID := in.WorkflowID
	if workflowID == "" {
		workflowID = workflows.WorkflowID(in.InstanceID, in.OfferedVersion)
	}
	roles := []workflows.SlotRole{workflows.SlotPrimary, workflows.SlotSecondary}
	starts := map[workflows.SlotRole]time.Time{workflows.SlotPrimary: in.PrimaryStart, workflows.SlotSecondary: in.SecondaryStart}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// One round trip: the update's lock, both slots, its bookings.
		found := map[int64]resolvedSlot{} // by start, Unix microseconds
		old := map[string]int64{}
		batch := &pgx.Batch{}
		batch.Queue(lockUpdateSQL, updateLockKey(in.InstanceID, in.OfferedVersion))
		batch.Queue(findSlotsSQL, in.TargetVersion, in.Region, []time.Time{in.PrimaryStart, in.SecondaryStart}).Query(func(rows pgx.Rows) error {
			var slot resolvedSlot
			var start time.Time
			_, err := pgx.ForEachRow(rows, []any{&slot.ID, &start, &slot.Capacity}, func() error {
				slot.Name = slotName(in.TargetVersion, in.Region, start)
				found[start.UnixMicro()] = slot
				return nil
			})
			return err
		})
		batch.Queue(updateBookingsSQL, in.InstanceID, in.OfferedVersion).Query(func(rows pgx.Rows) error {
			var role string
			var slotID int64
			_, err := pgx.ForEachRow(rows, []any{&role, &slotID}, func() error { old[role] = slotID; return nil })
			return err
		})
		var other *Holder
		batch.Queue(holderSQL, in.InstanceID, workflowID, closedStatuses).Query(func(rows pgx.Rows) error {
			var h Holder
			_, err := pgx.ForEachRow(rows, []any{&h.WorkflowID, &h.OfferedVersion, &h.TargetVersion, &h.Mandatory, &h.Status}, func() error {
				other = &h
				return nil
			})
			return err
		})
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return mapError(err, "read the slots and bookings of "+workflowID)
		}
		if other != nil {
			return &HeldError{InstanceID: in.InstanceID, Holder: *other}
		}
		wanted := map[string]resolvedSlot{}
		for _, r := range roles {
			slot, ok := found[starts[r].UnixMicro()]
			if !ok {
				return slotNotOffered(ctx, tx, in.TargetVersion, in.Region, starts[r])
			}
			wanted[string(r)] = slot
		}
		// Booking rows first, counters last: the slot rows, which every
		// update in those slots contends for, stay locked only for the
		// final round trip before the commit.
		batch = &pgx.Batch{}
		batch.Queue(reopenSQL, workflowID, string(workflows.StatusApproved), closedStatuses)
		for _, r := range roles {
			batch.Queue(upsertBookingSQL, in.InstanceID, in.OfferedVersion, string(r), wanted[string(r)].ID, workflowID)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return mapError(err, fmt.Sprintf("record the bookings of instance %q for %s", in.InstanceID, in.OfferedVersion))
		}
		if err := moveReservations(ctx, tx, old, wanted); err != nil {
			return err
		}
		res = workflows.BookSlotsResult{PrimarySlotID: wanted[string(workflows.SlotPrimary)].ID, SecondarySlotID: wanted[string(workflows.SlotSecondary)].ID}
		return nil
	})
	return res, s.heldOnConflict(ctx, err, in.InstanceID, workflowID)
}

// ReleaseSlots gives back every reservation of an update and reports how
// many it held; releasing again releases nothing.
func (s *Store) ReleaseSlots(ctx context.Context, in workflows.ReleaseSlotsInput) (workflows.ReleaseSlotsResult, error) {
	var res workflows.ReleaseSlotsResult
	if in.InstanceID == "" || in.OfferedVersion == "" {
		return res, errorf(ErrInvalidRequest, "release slots: instanceId and offeredVersion required")
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockUpdate(ctx, tx, in.InstanceID, in.OfferedVersion); err != nil {
			return err
		}
		released, err := releaseBookings(ctx, tx, in.InstanceID, in.OfferedVersion)
		res = workflows.ReleaseSlotsResult{Released: released}
		return err
	})
	return res, err
}

// releaseBookings deletes an update's reservations and gives their
// places back; the caller holds the update's lock.
func releaseBookings(ctx context.Context, tx pgx.Tx, instanceID, offeredVersion string) (int, error) {
	what := "delete the bookings of " + workflows.WorkflowID(instanceID, offeredVersion)
	rows, err := tx.Query(ctx, deleteBookingsSQL, instanceID, offeredVersion)
	if err != nil {
		return 0, mapError(err, what)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, mapError(err, what)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := givePlace(ctx, tx, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}
