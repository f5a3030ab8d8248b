package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svcupdate/svcupdate/workflows"
)

// SlotRow is a slot of a release with its reservations.
type SlotRow struct {
	ID       int64
	Release  string
	Region   string
	Start    time.Time // UTC
	Window   time.Duration
	Capacity int
	Booked   int // the counter bookings are checked against
	// Reservations are the slot_bookings rows of the slot, by workflow ID.
	Reservations []Reservation
}

// Reservation is one place of a slot and the update holding it.
type Reservation struct {
	WorkflowID string
	Role       workflows.SlotRole
	// Status is the update's last recorded status; empty when the
	// updates projection has no row for it.
	Status workflows.Status
}

// Open reports whether an open update holds the reservation.
func (r Reservation) Open() bool {
	return r.Status != "" && !slices.Contains(closedStatuses, string(r.Status))
}

const releaseSlotsSQL = `
SELECT id, release_version, region, starts_at, window_length, capacity, booked FROM slots
WHERE release_version = $1
ORDER BY region, starts_at, id`

const releaseReservationsSQL = `
SELECT b.slot_id, b.workflow_id, b.role, coalesce(u.status, '')
FROM slot_bookings b
JOIN slots s ON s.id = b.slot_id
LEFT JOIN updates u ON u.workflow_id = b.workflow_id
WHERE s.release_version = $1
ORDER BY b.slot_id, b.workflow_id, b.role`

// Slots lists the slots of a release by region and start, each with the
// reservations it holds and the updates holding them. An unknown release
// is ErrNotFound.
func (s *Store) Slots(ctx context.Context, release string) ([]SlotRow, error) {
	if err := requireRelease(ctx, s.db, release); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, releaseSlotsSQL, release)
	if err != nil {
		return nil, mapError(err, "list the slots of "+release)
	}
	var slots []SlotRow
	byID := map[int64]int{}
	var r SlotRow
	var window pgtype.Interval
	_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.Release, &r.Region, &r.Start, &window, &r.Capacity, &r.Booked}, func() error {
		r.Start, r.Window = r.Start.UTC(), duration(window)
		byID[r.ID] = len(slots)
		slots = append(slots, r)
		return nil
	})
	if err != nil {
		return nil, mapError(err, "list the slots of "+release)
	}
	rows, err = s.db.Query(ctx, releaseReservationsSQL, release)
	if err != nil {
		return nil, mapError(err, "list the reservations of "+release)
	}
	var slotID int64
	var res Reservation
	_, err = pgx.ForEachRow(rows, []any{&slotID, &res.WorkflowID, &res.Role, &res.Status}, func() error {
		// The statements do not share a snapshot: a slot added in
		// between is left out.
		if i, ok := byID[slotID]; ok {
			slots[i].Reservations = append(slots[i].Reservations, res)
		}
		return nil
	})
	if err != nil {
		return nil, mapError(err, "list the reservations of "+release)
	}
	return slots, nil
}

// BookingMismatch is a slot whose counter disagrees with the reservations
// that open updates hold in it.
type BookingMismatch struct {
	SlotID  int64
	Release string
	Region  string
	Start   time.Time
	Booked  int // the slot's counter
	// Reservations counts its slot_bookings rows, Held those of them that
	// an open update holds.
	Reservations int
	Held         int
	// Stray lists the reservations no open update holds, as "workflow ID
	// (status)": a closed update that did not give its places back, or a
	// booking without any update.
	Stray []string
}

func (m BookingMismatch) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: booked %d, but open updates hold %d reservation(s)", slotName(m.Release, m.Region, m.Start), m.Booked, m.Held)
	if m.Reservations != m.Booked {
		fmt.Fprintf(&b, "; slot_bookings has %d row(s)", m.Reservations)
	}
	if len(m.Stray) > 0 {
		fmt.Fprintf(&b, "; held by no open update: %s", strings.Join(m.Stray, ", "))
	}
	return b.String()
}

// checkBookingsSQL finds every slot whose counter differs from the
// reservations that open updates hold.
const checkBookingsSQL = `
SELECT s.id, s.release_version, s.region, s.starts_at, s.booked,
       count(b.slot_id)::int,
       (count(b.slot_id) FILTER (WHERE u.status <> ALL($2::text[])))::int,
       coalesce(array_agg(b.workflow_id || ' (' || coalesce(u.status, 'no update recorded') || ')' ORDER BY b.workflow_id)
                FILTER (WHERE b.slot_id IS NOT NULL AND (u.status IS NULL OR u.status = ANY($2::text[]))), '{}')
FROM slots s
LEFT JOIN slot_bookings b ON b.slot_id = s.id
LEFT JOIN updates u ON u.workflow_id = b.workflow_id
WHERE $1 = '' OR s.release_version = $1
GROUP BY s.id
HAVING s.booked <> count(b.slot_id) FILTER (WHERE u.status <> ALL($2::text[]))
ORDER BY s.release_version, s.region, s.starts_at`

// CheckBookings reconciles the slots of a release (every slot when
// release is empty): each slot's booked counter must equal the
// reservations open updates hold in it. It returns the slots where it
// does not; none means the bookkeeping is sound.
func (s *Store) CheckBookings(ctx context.Context, release string) ([]BookingMismatch, error) {
	rows, err := s.db.Query(ctx, checkBookingsSQL, release, closedStatuses)
	if err != nil {
		return nil, mapError(err, "check the bookings")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BookingMismatch, error) {
		var m BookingMismatch
		err := row.Scan(&m.SlotID, &m.Release, &m.Region, &m.Start, &m.Booked, &m.Reservations, &m.Held, &m.Stray)
		m.Start = m.Start.UTC()
		return m, err
	})
	return list, mapError(err, "check the bookings")
}
