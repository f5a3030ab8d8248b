package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svcupdate/svcupdate/workflows"
)

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

const listUpdatesSQL = `
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
		return nil, errorf(ErrInvalidRequest, "list updates: status %q is not one of %s", f.Status, strings.Join(names, ", "))
	}
	if f.Limit < 0 {
		return nil, errorf(ErrInvalidRequest, "list updates: limit %d is negative; want 0 (no limit) or more", f.Limit)
	}
	rows, err := s.db.Query(ctx, listUpdatesSQL, f.Version, f.Status, f.Limit)
	if err != nil {
		return nil, mapError(err, "list updates")
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
	return list, mapError(err, "list updates")
}

// RecordedView is the state of update workflowID as its last commit (or
// the announcement the starter wrote) recorded it; ErrNotFound when the
// projection has no such update.
func (s *Store) RecordedView(ctx context.Context, workflowID string) (workflows.StatusView, error) {
	var v workflows.StatusView
	var snapshot []byte
	err := s.db.QueryRow(ctx, `SELECT snapshot FROM updates WHERE workflow_id = $1`, workflowID).Scan(&snapshot)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, errorf(ErrNotFound, "no update %s is recorded", workflowID)
	}
	if err != nil {
		return v, mapError(err, "read the recorded state of "+workflowID)
	}
	if err := json.Unmarshal(snapshot, &v); err != nil {
		return v, fmt.Errorf("read the recorded state of %s: %w", workflowID, err)
	}
	return v, nil
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID         int64
	At         time.Time
	WorkflowID string
	InstanceID string
	Actor      string
	// Operator names the operator who acted for Actor; empty for an
	// admin's own action and the system's.
	Operator     string
	Channel      string
	Action       string
	Detail       string
	StatusBefore workflows.Status
	StatusAfter  workflows.Status
}

const auditLogSQL = `
SELECT id, at, workflow_id, instance_id, actor, coalesce(operator, ''), channel, action, coalesce(detail, ''), status_before, status_after
FROM audit_log WHERE workflow_id = $1 ORDER BY id`

// AuditLog returns the audit rows of one workflow, oldest first.
func (s *Store) AuditLog(ctx context.Context, workflowID string) ([]AuditEntry, error) {
	rows, err := s.db.Query(ctx, auditLogSQL, workflowID)
	if err != nil {
		return nil, mapError(err, "read the audit log of "+workflowID)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var before, after string
		err := row.Scan(&e.ID, &e.At, &e.WorkflowID, &e.InstanceID, &e.Actor, &e.Operator, &e.Channel, &e.Action, &e.Detail, &before, &after)
		e.At, e.StatusBefore, e.StatusAfter = e.At.UTC(), workflows.Status(before), workflows.Status(after)
		return e, err
	})
	return list, mapError(err, "read the audit log of "+workflowID)
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

const slotUsageSQL = `
SELECT s.id, s.release_version, s.region, s.starts_at, s.window_length, s.capacity, s.booked,
       (SELECT count(*) FROM slot_bookings b WHERE b.slot_id = s.id)
FROM slots s
WHERE $1 = '' OR s.release_version = $1
ORDER BY s.release_version, s.region, s.starts_at`

// SlotUsage lists the slots of a release (every slot when release is
// empty) by region and start.
func (s *Store) SlotUsage(ctx context.Context, release string) ([]SlotUsageRow, error) {
	rows, err := s.db.Query(ctx, slotUsageSQL, release)
	if err != nil {
		return nil, mapError(err, "read slot usage")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SlotUsageRow, error) {
		var u SlotUsageRow
		var window pgtype.Interval
		err := row.Scan(&u.ID, &u.Release, &u.Region, &u.Start, &window, &u.Capacity, &u.Booked, &u.Reservations)
		u.Start, u.Window = u.Start.UTC(), duration(window)
		return u, err
	})
	return list, mapError(err, "read slot usage")
}

// BookingRow is one reservation of an update.
type BookingRow struct {
	Role       workflows.SlotRole
	SlotID     int64
	Release    string
	Start      time.Time
	WorkflowID string
}

const bookingsSQL = `
SELECT b.role, b.slot_id, s.release_version, s.starts_at, b.workflow_id
FROM slot_bookings b JOIN slots s ON s.id = b.slot_id
WHERE b.instance_id = $1 AND b.offered_version = $2
ORDER BY b.role`

// Bookings returns the reservations of one update (primary first).
func (s *Store) Bookings(ctx context.Context, instanceID, offeredVersion string) ([]BookingRow, error) {
	rows, err := s.db.Query(ctx, bookingsSQL, instanceID, offeredVersion)
	if err != nil {
		return nil, mapError(err, "read the bookings of "+workflows.WorkflowID(instanceID, offeredVersion))
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BookingRow, error) {
		var b BookingRow
		var role string
		err := row.Scan(&role, &b.SlotID, &b.Release, &b.Start, &b.WorkflowID)
		b.Role, b.Start = workflows.SlotRole(role), b.Start.UTC()
		return b, err
	})
	return list, mapError(err, "read the bookings of "+workflows.WorkflowID(instanceID, offeredVersion))
}

const instanceSQL = `SELECT name, tenant_id, kind, region, time_zone FROM instances WHERE id = $1`

// Instance returns an instance as its workflow sees it; an unknown ID is
// ErrNotFound.
func (s *Store) Instance(ctx context.Context, instanceID string) (workflows.Instance, error) {
	in := workflows.Instance{ID: instanceID}
	err := s.db.QueryRow(ctx, instanceSQL, instanceID).Scan(&in.Name, &in.TenantID, &in.Kind, &in.Region, &in.TimeZone)
	if errors.Is(err, pgx.ErrNoRows) {
		return in, errorf(ErrNotFound, "instance %q does not exist", instanceID)
	}
	return in, mapError(err, fmt.Sprintf("read instance %q", instanceID))
}
