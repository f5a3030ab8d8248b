package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/workflows"
)

// Store is svcupdate's Postgres data: releases and slots, the fleet, slot
// reservations, the updates projection and the audit log. It is safe for
// concurrent use; every change is made in one transaction.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// storeTxAttempts bounds how often a transaction chosen as a deadlock or
// serialization victim is run again before its error is returned.
const storeTxAttempts = 5

// inTx runs fn in a transaction, again when Postgres aborted it only
// because of a concurrent one. fn must have no effect outside tx.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || attempt == storeTxAttempts || !storeRetryableTx(err) || ctx.Err() != nil {
			return err
		}
	}
}

// Recipient roles (recipients.role).
const (
	storeRoleAdmin = "admin"
	storeRoleUser  = "user"
	storeRoleExtra = "extra"
)

// storeSlotName names a slot for people: "the 9.2.0 slot in eu-west at
// 2027-03-06 22:00 UTC".
func storeSlotName(release, region string, start time.Time) string {
	return fmt.Sprintf("the %s slot in %s at %s", release, region, storeTimeText(start))
}

func storeTimeText(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// storeInterval and storeDuration convert between Go durations and
// Postgres intervals (written as microseconds; a day counts 24 hours).
func storeInterval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

func storeDuration(iv pgtype.Interval) time.Duration {
	return time.Duration(iv.Microseconds)*time.Microsecond +
		time.Duration(iv.Days)*24*time.Hour +
		time.Duration(iv.Months)*30*24*time.Hour
}

func storeNullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func storeNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ---------------------------------------------------------------------
// Slot booking

// storeLockUpdateSQL serialises the transactions of one update (instance
// and offered version) so two concurrent bookings of it cannot both insert
// its first reservation; different updates never wait on each other here.
const storeLockUpdateSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`

func storeUpdateLockKey(instanceID, offeredVersion string) string {
	return "slot-bookings:" + workflows.WorkflowID(instanceID, offeredVersion)
}

func storeLockUpdate(ctx context.Context, tx pgx.Tx, instanceID, offeredVersion string) error {
	_, err := tx.Exec(ctx, storeLockUpdateSQL, storeUpdateLockKey(instanceID, offeredVersion))
	return storeMapError(err, "lock the bookings of "+workflows.WorkflowID(instanceID, offeredVersion))
}

const storeFindSlotsSQL = `
SELECT id, starts_at, capacity FROM slots
WHERE release_version = $1 AND region = $2 AND starts_at = ANY($3::timestamptz[])`

// storeOfferedStartsSQL lists free slots, to tell an admin what is offered.
const storeOfferedStartsSQL = `
SELECT starts_at FROM slots
WHERE release_version = $1 AND region = $2 AND booked < capacity AND starts_at > now()
ORDER BY starts_at LIMIT 5`

// storeTakePlaceSQL is the only way a reservation is counted: one
// conditional statement, so concurrent bookings cannot exceed capacity.
const storeTakePlaceSQL = `UPDATE slots SET booked = booked + 1 WHERE id = $1 AND booked < capacity`

const storeGivePlaceSQL = `UPDATE slots SET booked = booked - 1 WHERE id = $1 AND booked > 0`

const storeBookingsOfUpdateSQL = `
SELECT role, slot_id FROM slot_bookings WHERE instance_id = $1 AND offered_version = $2`

const storeUpsertBookingSQL = `
INSERT INTO slot_bookings (instance_id, offered_version, role, slot_id, workflow_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (instance_id, offered_version, role) DO UPDATE
SET slot_id = EXCLUDED.slot_id, workflow_id = EXCLUDED.workflow_id, booked_at = now()
WHERE slot_bookings.slot_id <> EXCLUDED.slot_id`

const storeDeleteBookingsSQL = `
DELETE FROM slot_bookings WHERE instance_id = $1 AND offered_version = $2 RETURNING slot_id`

// storeSlot is one slot resolved for booking.
type storeSlot struct {
	ID       int64
	Capacity int
	Name     string
}

// storeSlotNotOffered is the error for a start a release does not offer
// in a region; it lists the next free starts so the admin can pick one.
func storeSlotNotOffered(ctx context.Context, tx pgx.Tx, release, region string, start time.Time) error {
	rows, err := tx.Query(ctx, storeOfferedStartsSQL, release, region)
	if err != nil {
		return storeMapError(err, "list offered slots")
	}
	starts, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return storeMapError(err, "list offered slots")
	}
	offered := "none has free places"
	if len(starts) > 0 {
		texts := make([]string, len(starts))
		for i, s := range starts {
			texts[i] = storeTimeText(s)
		}
		offered = "the next with free places start " + strings.Join(texts, ", ")
	}
	return storeErrorf(ErrSlotNotOffered, "release %s offers no slot in %s starting %s (%s)", release, region, storeTimeText(start), offered)
}

// storeMoveReservations applies the change from the slots in old to the
// slots in new (role -> slot ID) to the booked counters: one conditional
// statement per slot, in slot-ID order so concurrent rebookings lock rows
// in one order, all sent in one round trip. A slot in both keeps its count.
func storeMoveReservations(ctx context.Context, tx pgx.Tx, old map[string]int64, new map[string]storeSlot) error {
	delta := map[int64]int{}
	slots := map[int64]storeSlot{}
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
			batch.Queue(storeTakePlaceSQL, id).Exec(func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() == 0 {
					return storeErrorf(ErrSlotFull, "%s is full: all %d places are booked", slot.Name, slot.Capacity)
				}
				return nil
			})
		} else {
			batch.Queue(storeGivePlaceSQL, id).Exec(func(tag pgconn.CommandTag) error { return storeGivePlaceResult(id, tag) })
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	return storeMapError(tx.SendBatch(ctx, batch).Close(), "move reservations")
}

func storeGivePlace(ctx context.Context, tx pgx.Tx, slotID int64) error {
	tag, err := tx.Exec(ctx, storeGivePlaceSQL, slotID)
	if err != nil {
		return storeMapError(err, fmt.Sprintf("release a place of slot %d", slotID))
	}
	return storeGivePlaceResult(slotID, tag)
}

func storeGivePlaceResult(slotID int64, tag pgconn.CommandTag) error {
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
		return res, storeErrorf(ErrInvalidRequest, "book slots: %s required", strings.Join(missing, ", "))
	}
	if in.PrimaryStart.Equal(in.SecondaryStart) {
		return res, storeErrorf(ErrInvalidRequest, "book slots: primary and secondary are the same slot (%s); the secondary must be a later one", storeTimeText(in.PrimaryStart))
	}
	workflowID := in.WorkflowID
	if workflowID == "" {
		workflowID = workflows.WorkflowID(in.InstanceID, in.OfferedVersion)
	}
	roles := []workflows.SlotRole{workflows.SlotPrimary, workflows.SlotSecondary}
	starts := map[workflows.SlotRole]time.Time{workflows.SlotPrimary: in.PrimaryStart, workflows.SlotSecondary: in.SecondaryStart}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// One round trip: the update's lock, both slots, its bookings.
		found := map[int64]storeSlot{} // by start, Unix microseconds
		old := map[string]int64{}
		batch := &pgx.Batch{}
		batch.Queue(storeLockUpdateSQL, storeUpdateLockKey(in.InstanceID, in.OfferedVersion))
		batch.Queue(storeFindSlotsSQL, in.TargetVersion, in.Region, []time.Time{in.PrimaryStart, in.SecondaryStart}).Query(func(rows pgx.Rows) error {
			var slot storeSlot
			var start time.Time
			_, err := pgx.ForEachRow(rows, []any{&slot.ID, &start, &slot.Capacity}, func() error {
				slot.Name = storeSlotName(in.TargetVersion, in.Region, start)
				found[start.UnixMicro()] = slot
				return nil
			})
			return err
		})
		batch.Queue(storeBookingsOfUpdateSQL, in.InstanceID, in.OfferedVersion).Query(func(rows pgx.Rows) error {
			var role string
			var slotID int64
			_, err := pgx.ForEachRow(rows, []any{&role, &slotID}, func() error { old[role] = slotID; return nil })
			return err
		})
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return storeMapError(err, "read the slots and bookings of "+workflowID)
		}
		wanted := map[string]storeSlot{}
		for _, r := range roles {
			slot, ok := found[starts[r].UnixMicro()]
			if !ok {
				return storeSlotNotOffered(ctx, tx, in.TargetVersion, in.Region, starts[r])
			}
			wanted[string(r)] = slot
		}
		// Booking rows first, counters last: the slot rows, which every
		// update in those slots contends for, stay locked only for the
		// final round trip before the commit.
		batch = &pgx.Batch{}
		for _, r := range roles {
			batch.Queue(storeUpsertBookingSQL, in.InstanceID, in.OfferedVersion, string(r), wanted[string(r)].ID, workflowID)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return storeMapError(err, fmt.Sprintf("record the bookings of instance %q for %s", in.InstanceID, in.OfferedVersion))
		}
		if err := storeMoveReservations(ctx, tx, old, wanted); err != nil {
			return err
		}
		res = workflows.BookSlotsResult{PrimarySlotID: wanted[string(workflows.SlotPrimary)].ID, SecondarySlotID: wanted[string(workflows.SlotSecondary)].ID}
		return nil
	})
	return res, err
}

// ReleaseSlots gives back every reservation of an update and reports how
// many it held; releasing again releases nothing.
func (s *Store) ReleaseSlots(ctx context.Context, in workflows.ReleaseSlotsInput) (workflows.ReleaseSlotsResult, error) {
	var res workflows.ReleaseSlotsResult
	if in.InstanceID == "" || in.OfferedVersion == "" {
		return res, storeErrorf(ErrInvalidRequest, "release slots: instanceId and offeredVersion required")
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := storeLockUpdate(ctx, tx, in.InstanceID, in.OfferedVersion); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, storeDeleteBookingsSQL, in.InstanceID, in.OfferedVersion)
		if err != nil {
			return storeMapError(err, "delete the bookings of "+workflows.WorkflowID(in.InstanceID, in.OfferedVersion))
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return storeMapError(err, "delete the bookings of "+workflows.WorkflowID(in.InstanceID, in.OfferedVersion))
		}
		slices.Sort(ids)
		for _, id := range ids {
			if err := storeGivePlace(ctx, tx, id); err != nil {
				return err
			}
		}
		res = workflows.ReleaseSlotsResult{Released: len(ids)}
		return nil
	})
	return res, err
}

// ---------------------------------------------------------------------
// Instance version, transitions and the updates projection

// storeRecordVersionSQL returns the version the instance ran before, read
// under the row lock the update takes.
const storeRecordVersionSQL = `
UPDATE instances AS i SET current_version = $2, updated_at = now()
FROM (SELECT id, current_version FROM instances WHERE id = $1 FOR UPDATE) AS prev
WHERE i.id = prev.id
RETURNING prev.current_version`

// RecordInstanceVersion records that an instance now runs version. A
// repeated call (a retried activity) reports the version itself as the
// previous one.
func (s *Store) RecordInstanceVersion(ctx context.Context, in workflows.RecordVersionInput) (workflows.RecordVersionResult, error) {
	var res workflows.RecordVersionResult
	if in.InstanceID == "" || in.Version == "" {
		return res, storeErrorf(ErrInvalidRequest, "record instance version: instanceId and version required")
	}
	err := s.pool.QueryRow(ctx, storeRecordVersionSQL, in.InstanceID, in.Version).Scan(&res.PreviousVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, storeErrorf(ErrNotFound, "record instance version: instance %q does not exist", in.InstanceID)
	}
	if err != nil {
		return res, storeMapError(err, fmt.Sprintf("record version %s on instance %q", in.Version, in.InstanceID))
	}
	return res, nil
}

// storeInsertAuditSQL writes the audit row once per idempotency key; a
// retried activity finds its row instead (storeAuditIDSQL).
const storeInsertAuditSQL = `
INSERT INTO audit_log (workflow_id, instance_id, actor, channel, action, detail, status_before, status_after, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`

const storeAuditIDSQL = `SELECT id FROM audit_log WHERE idempotency_key = $1`

const storeUpsertUpdateSQL = `
INSERT INTO updates (workflow_id, instance_id, offered_version, target_version, current_version, mandatory, status,
                     primary_start, secondary_start, approved_by, approved_at, attempts, last_error, snapshot)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (workflow_id) DO UPDATE SET
    target_version = EXCLUDED.target_version, current_version = EXCLUDED.current_version,
    mandatory = EXCLUDED.mandatory, status = EXCLUDED.status,
    primary_start = EXCLUDED.primary_start, secondary_start = EXCLUDED.secondary_start,
    approved_by = EXCLUDED.approved_by, approved_at = EXCLUDED.approved_at,
    attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
    snapshot = EXCLUDED.snapshot, updated_at = now()`

// RecordTransition appends the audit row of one transition and refreshes
// the updates projection from its snapshot, in one transaction.
// idempotencyKey identifies the caller (the activity's run and activity
// ID): a second call with the same key writes nothing and returns the
// audit ID of the first.
func (s *Store) RecordTransition(ctx context.Context, idempotencyKey string, in workflows.RecordTransitionInput) (workflows.RecordTransitionResult, error) {
	var res workflows.RecordTransitionResult
	snap := in.Snapshot
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"idempotency key", idempotencyKey}, {"actor", in.Actor}, {"channel", in.Channel}, {"action", in.Action},
		{"from", string(in.From)}, {"snapshot.workflowId", snap.WorkflowID}, {"snapshot.instanceId", snap.InstanceID},
		{"snapshot.offeredVersion", snap.OfferedVersion}, {"snapshot.targetVersion", snap.TargetVersion}, {"snapshot.status", string(snap.Status)},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return res, storeErrorf(ErrInvalidRequest, "record transition: %s required", strings.Join(missing, ", "))
	}
	snapshotJSON, err := json.Marshal(snap)
	if err != nil {
		return res, storeErrorf(ErrInvalidRequest, "record transition: snapshot of %s cannot be encoded: %v", snap.WorkflowID, err)
	}
	var lastError string
	if n := len(snap.Attempts); n > 0 {
		lastError = snap.Attempts[n-1].Error
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, storeInsertAuditSQL, snap.WorkflowID, snap.InstanceID, in.Actor, in.Channel, in.Action,
			storeNullText(in.Detail), string(in.From), string(snap.Status), idempotencyKey).Scan(&res.AuditID)
		if errors.Is(err, pgx.ErrNoRows) {
			// Written by an earlier attempt, together with the projection.
			return storeMapError(tx.QueryRow(ctx, storeAuditIDSQL, idempotencyKey).Scan(&res.AuditID), "read audit row "+idempotencyKey)
		}
		if err != nil {
			return storeMapError(err, "append the audit row of "+snap.WorkflowID)
		}
		_, err = tx.Exec(ctx, storeUpsertUpdateSQL, snap.WorkflowID, snap.InstanceID, snap.OfferedVersion, snap.TargetVersion,
			snap.CurrentVersion, snap.Mandatory, string(snap.Status), snap.Primary.Start, snap.Secondary.Start,
			storeNullText(snap.ApprovedBy), storeNullTime(snap.ApprovedAt), len(snap.Attempts), storeNullText(lastError), snapshotJSON)
		return storeMapError(err, fmt.Sprintf("update the projection of %s (instance %q)", snap.WorkflowID, snap.InstanceID))
	})
	return res, err
}

// ---------------------------------------------------------------------
// Readers for the CLI and tests

// UpdateFilter selects rows of the updates projection; empty fields match
// everything.
type UpdateFilter struct {
	// Version matches the version an update was offered for or the one
	// an admin chose instead.
	Version string
	Status  string // a workflows.Status
	Limit   int    // 0: no limit
}

// UpdateRow is one update as last recorded by its workflow.
type UpdateRow struct {
	WorkflowID     string
	InstanceID     string
	OfferedVersion string
	TargetVersion  string
	CurrentVersion string
	Mandatory      bool
	Status         workflows.Status
	PrimaryStart   time.Time
	SecondaryStart time.Time
	ApprovedBy     string
	ApprovedAt     time.Time // zero until approved
	Attempts       int
	LastError      string
	UpdatedAt      time.Time
}

const storeListUpdatesSQL = `
SELECT workflow_id, instance_id, offered_version, target_version, current_version, mandatory, status,
       primary_start, secondary_start, coalesce(approved_by, ''), approved_at, attempts, coalesce(last_error, ''), updated_at
FROM updates
WHERE ($1 = '' OR offered_version = $1 OR target_version = $1) AND ($2 = '' OR status = $2)
ORDER BY instance_id, offered_version
LIMIT nullif($3, 0)`

// ListUpdates lists the updates projection, by instance.
func (s *Store) ListUpdates(ctx context.Context, f UpdateFilter) ([]UpdateRow, error) {
	if f.Status != "" && !slices.Contains(workflows.AllStatuses, workflows.Status(f.Status)) {
		names := make([]string, len(workflows.AllStatuses))
		for i, st := range workflows.AllStatuses {
			names[i] = string(st)
		}
		return nil, storeErrorf(ErrInvalidRequest, "list updates: status %q is not one of %s", f.Status, strings.Join(names, ", "))
	}
	if f.Limit < 0 {
		return nil, storeErrorf(ErrInvalidRequest, "list updates: limit %d is negative; want 0 (no limit) or more", f.Limit)
	}
	rows, err := s.pool.Query(ctx, storeListUpdatesSQL, f.Version, f.Status, f.Limit)
	if err != nil {
		return nil, storeMapError(err, "list updates")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (UpdateRow, error) {
		var u UpdateRow
		var status string
		var approvedAt *time.Time
		err := row.Scan(&u.WorkflowID, &u.InstanceID, &u.OfferedVersion, &u.TargetVersion, &u.CurrentVersion, &u.Mandatory, &status,
			&u.PrimaryStart, &u.SecondaryStart, &u.ApprovedBy, &approvedAt, &u.Attempts, &u.LastError, &u.UpdatedAt)
		u.Status = workflows.Status(status)
		u.PrimaryStart, u.SecondaryStart, u.UpdatedAt = u.PrimaryStart.UTC(), u.SecondaryStart.UTC(), u.UpdatedAt.UTC()
		if approvedAt != nil {
			u.ApprovedAt = approvedAt.UTC()
		}
		return u, err
	})
	return list, storeMapError(err, "list updates")
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID           int64
	At           time.Time
	WorkflowID   string
	InstanceID   string
	Actor        string
	Channel      string
	Action       string
	Detail       string
	StatusBefore workflows.Status
	StatusAfter  workflows.Status
}

const storeAuditLogSQL = `
SELECT id, at, workflow_id, instance_id, actor, channel, action, coalesce(detail, ''), status_before, status_after
FROM audit_log WHERE workflow_id = $1 ORDER BY id`

// AuditLog returns the audit rows of one workflow, oldest first.
func (s *Store) AuditLog(ctx context.Context, workflowID string) ([]AuditEntry, error) {
	rows, err := s.pool.Query(ctx, storeAuditLogSQL, workflowID)
	if err != nil {
		return nil, storeMapError(err, "read the audit log of "+workflowID)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var before, after string
		err := row.Scan(&e.ID, &e.At, &e.WorkflowID, &e.InstanceID, &e.Actor, &e.Channel, &e.Action, &e.Detail, &before, &after)
		e.At, e.StatusBefore, e.StatusAfter = e.At.UTC(), workflows.Status(before), workflows.Status(after)
		return e, err
	})
	return list, storeMapError(err, "read the audit log of "+workflowID)
}

// SlotUsageRow is a slot with its counter and the reservations that back it.
type SlotUsageRow struct {
	ID       int64
	Release  string
	Region   string
	Start    time.Time
	Window   time.Duration
	Capacity int
	Booked   int // the counter bookings are checked against
	// Reservations counts slot_bookings rows; always equal to Booked.
	Reservations int
}

const storeSlotUsageSQL = `
SELECT s.id, s.release_version, s.region, s.starts_at, s.window_length, s.capacity, s.booked,
       (SELECT count(*) FROM slot_bookings b WHERE b.slot_id = s.id)
FROM slots s
WHERE $1 = '' OR s.release_version = $1
ORDER BY s.release_version, s.region, s.starts_at`

// SlotUsage lists the slots of a release (every slot when release is
// empty) by region and start.
func (s *Store) SlotUsage(ctx context.Context, release string) ([]SlotUsageRow, error) {
	rows, err := s.pool.Query(ctx, storeSlotUsageSQL, release)
	if err != nil {
		return nil, storeMapError(err, "read slot usage")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SlotUsageRow, error) {
		var u SlotUsageRow
		var window pgtype.Interval
		err := row.Scan(&u.ID, &u.Release, &u.Region, &u.Start, &window, &u.Capacity, &u.Booked, &u.Reservations)
		u.Start, u.Window = u.Start.UTC(), storeDuration(window)
		return u, err
	})
	return list, storeMapError(err, "read slot usage")
}

// BookingRow is one reservation of an update.
type BookingRow struct {
	Role       workflows.SlotRole
	SlotID     int64
	Release    string
	Start      time.Time
	WorkflowID string
}

const storeBookingsSQL = `
SELECT b.role, b.slot_id, s.release_version, s.starts_at, b.workflow_id
FROM slot_bookings b JOIN slots s ON s.id = b.slot_id
WHERE b.instance_id = $1 AND b.offered_version = $2
ORDER BY b.role`

// Bookings returns the reservations of one update (primary first).
func (s *Store) Bookings(ctx context.Context, instanceID, offeredVersion string) ([]BookingRow, error) {
	rows, err := s.pool.Query(ctx, storeBookingsSQL, instanceID, offeredVersion)
	if err != nil {
		return nil, storeMapError(err, "read the bookings of "+workflows.WorkflowID(instanceID, offeredVersion))
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BookingRow, error) {
		var b BookingRow
		var role string
		err := row.Scan(&role, &b.SlotID, &b.Release, &b.Start, &b.WorkflowID)
		b.Role, b.Start = workflows.SlotRole(role), b.Start.UTC()
		return b, err
	})
	return list, storeMapError(err, "read the bookings of "+workflows.WorkflowID(instanceID, offeredVersion))
}

// InstanceRecipients is who hears about an instance's updates.
type InstanceRecipients struct {
	CurrentVersion string
	Admins         []string
	Users          []string
	Extra          []string
}

const storeInstanceVersionSQL = `SELECT current_version FROM instances WHERE id = $1`

const storeRecipientsSQL = `
SELECT role, email FROM recipients WHERE instance_id = $1 ORDER BY role, lower(email)`

// Instance returns an instance's current version and recipients (each
// list sorted by address).
func (s *Store) Instance(ctx context.Context, instanceID string) (InstanceRecipients, error) {
	var r InstanceRecipients
	err := s.pool.QueryRow(ctx, storeInstanceVersionSQL, instanceID).Scan(&r.CurrentVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, storeErrorf(ErrNotFound, "instance %q does not exist", instanceID)
	}
	if err != nil {
		return r, storeMapError(err, fmt.Sprintf("read instance %q", instanceID))
	}
	rows, err := s.pool.Query(ctx, storeRecipientsSQL, instanceID)
	if err != nil {
		return r, storeMapError(err, fmt.Sprintf("read the recipients of instance %q", instanceID))
	}
	var role, email string
	_, err = pgx.ForEachRow(rows, []any{&role, &email}, func() error {
		switch role {
		case storeRoleAdmin:
			r.Admins = append(r.Admins, email)
		case storeRoleUser:
			r.Users = append(r.Users, email)
		case storeRoleExtra:
			r.Extra = append(r.Extra, email)
		}
		return nil
	})
	return r, storeMapError(err, fmt.Sprintf("read the recipients of instance %q", instanceID))
}

// ---------------------------------------------------------------------
// Fleet load

// FleetLoadCounts says what a load did to one kind of row.
type FleetLoadCounts struct {
	Inserted  int
	Updated   int
	Unchanged int
}

// AdminChange is an instance whose admins the load changed; the starter
// sends its running workflows the SetAdmins Update with Admins.
type AdminChange struct {
	InstanceID string
	Admins     []string
}

// FleetKeptVersion is an instance the file lists on an older version than
// the one a completed update recorded; the recorded version is kept.
type FleetKeptVersion struct {
	InstanceID     string
	FileVersion    string
	CurrentVersion string
}

// FleetLoadReport is what UpsertFleet changed. Loading the same file again
// reports everything Unchanged and no admin changes.
type FleetLoadReport struct {
	Releases          FleetLoadCounts
	Slots             FleetLoadCounts
	Tenants           FleetLoadCounts
	Instances         FleetLoadCounts
	RecipientsAdded   int
	RecipientsRemoved int
	KeptVersions      []FleetKeptVersion
	AdminChanges      []AdminChange
}

// Every fleet statement takes whole columns as arrays (unnest), so a
// million-instance file is a handful of statements, not a million.

// storeReleaseOrderClashSQL finds releases loaded earlier, missing from
// the file, whose order the file gives to another release.
const storeReleaseOrderClashSQL = `
SELECT r.version, r.ordinal, f.version
FROM releases r JOIN unnest($1::text[], $2::int[]) AS f(version, ordinal) ON f.ordinal = r.ordinal
WHERE r.version <> ALL($1::text[])
ORDER BY r.ordinal`

const storeUpsertReleasesSQL = `
INSERT INTO releases (version, name, ordinal, period_start, period_end)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[])
ON CONFLICT (version) DO UPDATE SET
    name = EXCLUDED.name, ordinal = EXCLUDED.ordinal, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end
WHERE (releases.name, releases.ordinal, releases.period_start, releases.period_end)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.ordinal, EXCLUDED.period_start, EXCLUDED.period_end)
RETURNING xmax = 0`

// storeLockFleetSlotsSQL locks the file's existing slots (in ID order, the
// order bookings lock them in) so no booking lands between the capacity
// check and the capacity change.
const storeLockFleetSlotsSQL = `
SELECT s.release_version, s.region, s.starts_at, s.booked, f.capacity
FROM slots s
JOIN unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) AS f(release_version, region, starts_at, capacity)
  USING (release_version, region, starts_at)
ORDER BY s.id
FOR UPDATE OF s`

const storeUpsertSlotsSQL = `
INSERT INTO slots (release_version, region, starts_at, window_length, capacity)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::interval[], $5::int[])
ON CONFLICT (release_version, region, starts_at) DO UPDATE SET
    window_length = EXCLUDED.window_length, capacity = EXCLUDED.capacity
WHERE (slots.window_length, slots.capacity) IS DISTINCT FROM (EXCLUDED.window_length, EXCLUDED.capacity)
RETURNING xmax = 0`

const storeUpsertTenantsSQL = `
INSERT INTO tenants (id, name)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
WHERE tenants.name IS DISTINCT FROM EXCLUDED.name
RETURNING xmax = 0`

const storeFleetInstancesCTE = `
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
        AS f(id, tenant_id, name, kind, region, time_zone, file_version)
)`

// storeKeptVersionsSQL finds instances a completed update moved past the
// version the file lists; the load keeps their recorded version, because a
// fleet file written before the update must not undo it.
const storeKeptVersionsSQL = storeFleetInstancesCTE + `
SELECT f.id, f.file_version, i.current_version
FROM f JOIN instances i ON i.id = f.id
JOIN releases fr ON fr.version = f.file_version
JOIN releases cr ON cr.version = i.current_version
WHERE cr.ordinal > fr.ordinal
ORDER BY f.id`

const storeUpsertInstancesSQL = storeFleetInstancesCTE + `
INSERT INTO instances (id, tenant_id, name, kind, region, time_zone, current_version)
SELECT f.id, f.tenant_id, f.name, f.kind, f.region, f.time_zone,
       CASE WHEN cr.ordinal > fr.ordinal THEN i.current_version ELSE f.file_version END
FROM f
JOIN releases fr ON fr.version = f.file_version
LEFT JOIN instances i ON i.id = f.id
LEFT JOIN releases cr ON cr.version = i.current_version
ON CONFLICT (id) DO UPDATE SET
    tenant_id = EXCLUDED.tenant_id, name = EXCLUDED.name, kind = EXCLUDED.kind, region = EXCLUDED.region,
    time_zone = EXCLUDED.time_zone, current_version = EXCLUDED.current_version, updated_at = now()
WHERE (instances.tenant_id, instances.name, instances.kind, instances.region, instances.time_zone, instances.current_version)
      IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.name, EXCLUDED.kind, EXCLUDED.region, EXCLUDED.time_zone, EXCLUDED.current_version)
RETURNING id, xmax = 0`

const storeAdminsOfInstancesSQL = `
SELECT instance_id, email FROM recipients WHERE role = $2 AND instance_id = ANY($1::text[])`

// storeDeleteRecipientsSQL removes the recipients of the file's instances
// that the file no longer lists (addresses compare case-insensitively).
const storeDeleteRecipientsSQL = `
DELETE FROM recipients r
WHERE r.instance_id = ANY($1::text[])
  AND NOT EXISTS (
      SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[]) AS f(instance_id, role, email)
      WHERE f.instance_id = r.instance_id AND f.role = r.role AND lower(f.email) = lower(r.email))`

const storeInsertRecipientsSQL = `
INSERT INTO recipients (instance_id, role, email)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (instance_id, role, lower(email)) DO UPDATE SET email = EXCLUDED.email
WHERE recipients.email <> EXCLUDED.email
RETURNING xmax = 0`

// UpsertFleet loads a validated fleet file in one transaction: releases,
// slots and tenants are inserted or updated, instances too (their version
// only ever moves forward, see FleetKeptVersion), and each listed
// instance's recipients become exactly the file's. Rows the file does not
// mention are kept: bookings and history refer to them. A slot's capacity
// cannot drop below its current bookings (ErrCapacityBelowBookings).
func (s *Store) UpsertFleet(ctx context.Context, fl *fleet.Fleet) (FleetLoadReport, error) {
	var report FleetLoadReport
	if fl == nil {
		return report, storeErrorf(ErrInvalidRequest, "load fleet: no fleet given")
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		report = FleetLoadReport{}
		if err := storeUpsertReleases(ctx, tx, fl, &report); err != nil {
			return err
		}
		if err := storeUpsertSlots(ctx, tx, fl, &report); err != nil {
			return err
		}
		var ids, names []string
		for _, t := range fl.Tenants {
			ids, names = append(ids, t.ID), append(names, t.Name)
		}
		var err error
		report.Tenants, err = storeCountUpserts(ctx, tx, len(fl.Tenants), "load tenants", storeUpsertTenantsSQL, ids, names)
		if err != nil {
			return err
		}
		inserted, err := storeUpsertInstances(ctx, tx, fl, &report)
		if err != nil {
			return err
		}
		return storeReplaceRecipients(ctx, tx, fl, inserted, &report)
	})
	return report, err
}

// storeCountUpserts runs an upsert returning "inserted" per changed row.
func storeCountUpserts(ctx context.Context, tx pgx.Tx, total int, what, sql string, args ...any) (FleetLoadCounts, error) {
	var c FleetLoadCounts
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return c, storeMapError(err, what)
	}
	var inserted bool
	_, err = pgx.ForEachRow(rows, []any{&inserted}, func() error {
		if inserted {
			c.Inserted++
		} else {
			c.Updated++
		}
		return nil
	})
	c.Unchanged = total - c.Inserted - c.Updated
	return c, storeMapError(err, what)
}

func storeUpsertReleases(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, report *FleetLoadReport) error {
	n := len(fl.Releases)
	versions, names, orders := make([]string, n), make([]string, n), make([]int32, n)
	starts, ends := make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	for i, r := range fl.Releases {
		versions[i], names[i], orders[i] = r.Version, r.Name, int32(r.Order)
		starts[i] = pgtype.Timestamptz{Time: r.PeriodStart, Valid: r.HasPeriod()}
		ends[i] = pgtype.Timestamptz{Time: r.PeriodEnd, Valid: r.HasPeriod()}
	}
	rows, err := tx.Query(ctx, storeReleaseOrderClashSQL, versions, orders)
	if err != nil {
		return storeMapError(err, "check release orders")
	}
	var clashes []string
	var loaded, wanted string
	var order int
	_, err = pgx.ForEachRow(rows, []any{&loaded, &order, &wanted}, func() error {
		clashes = append(clashes, fmt.Sprintf("release %s (loaded earlier, not in this file) has order %d, which the file gives to %s", loaded, order, wanted))
		return nil
	})
	if err != nil {
		return storeMapError(err, "check release orders")
	}
	if len(clashes) > 0 {
		return storeErrorf(ErrDuplicate, "load releases: %s; list every release in the file with its order", strings.Join(clashes, "; "))
	}
	report.Releases, err = storeCountUpserts(ctx, tx, n, "load releases", storeUpsertReleasesSQL, versions, names, orders, starts, ends)
	return err
}

func storeUpsertSlots(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, report *FleetLoadReport) error {
	var releases, regions []string
	var starts []time.Time
	var windows []pgtype.Interval
	var capacities []int32
	for _, r := range fl.Releases {
		for _, sl := range r.Slots {
			releases, regions, starts = append(releases, r.Version), append(regions, sl.Region), append(starts, sl.Start)
			windows, capacities = append(windows, storeInterval(time.Duration(sl.Window))), append(capacities, int32(sl.Capacity))
		}
	}
	rows, err := tx.Query(ctx, storeLockFleetSlotsSQL, releases, regions, starts, capacities)
	if err != nil {
		return storeMapError(err, "lock slots")
	}
	var refused []string
	var release, region string
	var start time.Time
	var booked, capacity int
	_, err = pgx.ForEachRow(rows, []any{&release, &region, &start, &booked, &capacity}, func() error {
		if capacity < booked {
			refused = append(refused, fmt.Sprintf("%s holds %d bookings, the file gives it capacity %d", storeSlotName(release, region, start), booked, capacity))
		}
		return nil
	})
	if err != nil {
		return storeMapError(err, "lock slots")
	}
	if len(refused) > 0 {
		return storeErrorf(ErrCapacityBelowBookings, "load slots: %s; keep each capacity at or above its bookings (instances can be moved by rescheduling)", strings.Join(refused, "; "))
	}
	report.Slots, err = storeCountUpserts(ctx, tx, len(releases), "load slots", storeUpsertSlotsSQL, releases, regions, starts, windows, capacities)
	return err
}

// storeUpsertInstances loads the instances and returns the IDs it inserted.
func storeUpsertInstances(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, report *FleetLoadReport) (map[string]bool, error) {
	n := len(fl.Instances)
	cols := make([][]string, 7)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, in := range fl.Instances {
		cols[0][i], cols[1][i], cols[2][i], cols[3][i] = in.ID, in.Tenant, in.Name, in.Kind
		cols[4][i], cols[5][i], cols[6][i] = in.Region, in.TimeZone, in.Version
	}
	args := make([]any, len(cols))
	for i := range cols {
		args[i] = cols[i]
	}
	rows, err := tx.Query(ctx, storeKeptVersionsSQL, args...)
	if err != nil {
		return nil, storeMapError(err, "compare instance versions")
	}
	report.KeptVersions, err = pgx.CollectRows(rows, pgx.RowToStructByPos[FleetKeptVersion])
	if err != nil {
		return nil, storeMapError(err, "compare instance versions")
	}
	if len(report.KeptVersions) == 0 {
		report.KeptVersions = nil // a report without changes compares equal to the zero report
	}
	rows, err = tx.Query(ctx, storeUpsertInstancesSQL, args...)
	if err != nil {
		return nil, storeMapError(err, "load instances")
	}
	inserted := map[string]bool{}
	var id string
	var isNew bool
	_, err = pgx.ForEachRow(rows, []any{&id, &isNew}, func() error {
		if isNew {
			inserted[id] = true
			report.Instances.Inserted++
		} else {
			report.Instances.Updated++
		}
		return nil
	})
	report.Instances.Unchanged = n - report.Instances.Inserted - report.Instances.Updated
	return inserted, storeMapError(err, "load instances")
}

// storeReplaceRecipients makes each instance's recipients the file's and
// reports the instances (loaded before) whose admin set changed.
func storeReplaceRecipients(ctx context.Context, tx pgx.Tx, fl *fleet.Fleet, inserted map[string]bool, report *FleetLoadReport) error {
	ids := make([]string, len(fl.Instances))
	var recInstances, recRoles, recEmails []string
	for i, in := range fl.Instances {
		ids[i] = in.ID
		for _, list := range []struct {
			role   string
			emails []string
		}{{storeRoleAdmin, in.Admins}, {storeRoleUser, in.Users}, {storeRoleExtra, in.ExtraRecipients}} {
			for _, e := range list.emails {
				recInstances, recRoles, recEmails = append(recInstances, in.ID), append(recRoles, list.role), append(recEmails, e)
			}
		}
	}

	rows, err := tx.Query(ctx, storeAdminsOfInstancesSQL, ids, storeRoleAdmin)
	if err != nil {
		return storeMapError(err, "read admins")
	}
	before := map[string]map[string]bool{}
	var id, email string
	_, err = pgx.ForEachRow(rows, []any{&id, &email}, func() error {
		if before[id] == nil {
			before[id] = map[string]bool{}
		}
		before[id][strings.ToLower(email)] = true
		return nil
	})
	if err != nil {
		return storeMapError(err, "read admins")
	}
	for _, in := range fl.Instances {
		if inserted[in.ID] {
			continue // no workflow can run for an instance loaded just now
		}
		after := map[string]bool{}
		for _, a := range in.Admins {
			after[strings.ToLower(a)] = true
		}
		if !maps.Equal(before[in.ID], after) {
			report.AdminChanges = append(report.AdminChanges, AdminChange{InstanceID: in.ID, Admins: slices.Clone(in.Admins)})
		}
	}

	tag, err := tx.Exec(ctx, storeDeleteRecipientsSQL, ids, recInstances, recRoles, recEmails)
	if err != nil {
		return storeMapError(err, "remove recipients")
	}
	report.RecipientsRemoved = int(tag.RowsAffected())
	counts, err := storeCountUpserts(ctx, tx, len(recEmails), "add recipients", storeInsertRecipientsSQL, recInstances, recRoles, recEmails)
	report.RecipientsAdded = counts.Inserted
	return err
}
