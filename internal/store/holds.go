package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svcupdate/svcupdate/workflows"
)

// closedStatuses end an update's hold on its instance; an update in any
// other status is open, and at most one is open per instance. The unique
// index of schemas/002 (oneOpenUpdateIndex) lists the same statuses.
var closedStatuses = []string{
	string(workflows.StatusSucceeded), string(workflows.StatusFailed), string(workflows.StatusNotApproved),
	string(workflows.StatusCancelled), string(workflows.StatusSuperseded),
}

// Holder is the open update that holds an instance.
type Holder struct {
	WorkflowID     string
	OfferedVersion string
	TargetVersion  string // later than OfferedVersion when an admin chose a later release
	Mandatory      bool
	Status         workflows.Status
}

// String names the update for people: "service-update:x:9.1.0 (Approved)",
// with its target when an admin chose a later one and whether it is
// mandatory.
func (h Holder) String() string {
	notes := []string{string(h.Status)}
	if h.TargetVersion != h.OfferedVersion {
		notes = append(notes, "target "+h.TargetVersion)
	}
	if h.Mandatory {
		notes = append(notes, "mandatory")
	}
	return fmt.Sprintf("%s (%s)", h.WorkflowID, strings.Join(notes, ", "))
}

// HeldError is an ErrInstanceHeld: Holder, another open update, holds
// the instance.
type HeldError struct {
	InstanceID string
	Holder     Holder
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("instance %q is held by open update %s", e.InstanceID, e.Holder)
}

func (e *HeldError) Unwrap() error { return ErrInstanceHeld }

// holderSQL finds the open update of an instance other than the one
// asking ($2; empty asks for any).
const holderSQL = `
SELECT workflow_id, offered_version, target_version, mandatory, status FROM updates
WHERE instance_id = $1 AND workflow_id <> $2 AND status <> ALL($3::text[])`

// claimSQL writes the row of an update a rollout books, as Scheduled, so
// the instance is held from its booking on. The row of an earlier run of
// the same workflow ID is replaced only when that run had closed; an open
// one (a start whose answer was lost, or the claim of an earlier try) is
// kept as the workflow recorded it.
const claimSQL = `
INSERT INTO updates (workflow_id, instance_id, offered_version, target_version, current_version, mandatory, status,
                     primary_start, secondary_start, snapshot)
VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (workflow_id) DO UPDATE SET
    target_version = EXCLUDED.target_version, current_version = EXCLUDED.current_version,
    mandatory = EXCLUDED.mandatory, status = EXCLUDED.status,
    primary_start = EXCLUDED.primary_start, secondary_start = EXCLUDED.secondary_start,
    approved_by = NULL, approved_at = NULL, attempts = 0, last_error = NULL,
    snapshot = EXCLUDED.snapshot, updated_at = now()
WHERE updates.status = ANY($10::text[])`

// reopenSQL makes a closed update hold its instance again when it books
// slots (a Reschedule after NotApproved). A booking comes from a
// Reschedule, which implies approval; the workflow's next transition
// records its real state.
const reopenSQL = `
UPDATE updates SET status = $2, updated_at = now() WHERE workflow_id = $1 AND status = ANY($3::text[])`

// dropClaimSQL deletes the row a rollout claimed for an update whose
// workflow never started.
const dropClaimSQL = `DELETE FROM updates WHERE workflow_id = $1 AND status = $2`

// OpenUpdate returns the open update of an instance, if it has one: what a
// rollout of another version meets there, and what a supersede closes.
func (s *Store) OpenUpdate(ctx context.Context, instanceID string) (Holder, bool, error) {
	return holder(ctx, s.db, instanceID, "")
}

func holder(ctx context.Context, db DBTX, instanceID, except string) (Holder, bool, error) {
	var h Holder
	var status string
	err := db.QueryRow(ctx, holderSQL, instanceID, except, closedStatuses).
		Scan(&h.WorkflowID, &h.OfferedVersion, &h.TargetVersion, &h.Mandatory, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, mapError(err, fmt.Sprintf("look up the open update of instance %q", instanceID))
	}
	h.Status = workflows.Status(status)
	return h, true, nil
}

// heldOnConflict turns err, when it is the one-open-update index refusing
// workflowID a hold on instanceID, into the HeldError naming the update
// that took the instance first (a concurrent rollout or reschedule).
func (s *Store) heldOnConflict(ctx context.Context, err error, instanceID, workflowID string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgUniqueViolation || pgErr.ConstraintName != oneOpenUpdateIndex {
		return err
	}
	h, found, lookupErr := holder(ctx, s.db, instanceID, workflowID)
	if lookupErr != nil || !found {
		// The other update closed meanwhile: trying again may succeed, so
		// this stays a transient error.
		return fmt.Errorf("instance %q was held by another open update while %s asked for it; try again (%v)", instanceID, workflowID, err)
	}
	return &HeldError{InstanceID: instanceID, Holder: h}
}

// claim writes the Scheduled row of the update in booked, holding the
// instance from now on.
func claim(ctx context.Context, tx pgx.Tx, workflowID string, in workflows.Input, primary, secondary timedSlot) error {
	snapshot, err := json.Marshal(workflows.StatusView{
		WorkflowID: workflowID, InstanceID: in.Instance.ID, InstanceName: in.Instance.Name, TenantID: in.Instance.TenantID,
		CurrentVersion: in.CurrentVersion, OfferedVersion: in.TargetVersion, TargetVersion: in.TargetVersion,
		Mandatory: in.Mandatory, Status: workflows.StatusScheduled,
		Primary:   claimedWindow(primary, in.Instance.TimeZone),
		Secondary: claimedWindow(secondary, in.Instance.TimeZone),
	})
	if err != nil {
		return fmt.Errorf("encode the claimed row of %s: %w", workflowID, err)
	}
	_, err = tx.Exec(ctx, claimSQL, workflowID, in.Instance.ID, in.TargetVersion, in.CurrentVersion, in.Mandatory,
		string(workflows.StatusScheduled), primary.Start, secondary.Start, snapshot, closedStatuses)
	return mapError(err, fmt.Sprintf("claim instance %q for %s", in.Instance.ID, workflowID))
}

func claimedWindow(slot timedSlot, timeZone string) workflows.Window {
	return workflows.Window{Start: slot.Start.UTC(), End: slot.end().UTC(), TimeZone: timeZone}
}

// AbandonUpdate gives back what a rollout took for an update whose
// workflow never started (the server says it does not exist): its slot
// reservations and the row that held the instance. It reports how many
// reservations it released; abandoning again releases nothing.
func (s *Store) AbandonUpdate(ctx context.Context, instanceID, version string) (int, error) {
	if instanceID == "" || version == "" {
		return 0, errorf(ErrInvalidRequest, "abandon update: instance ID and version required")
	}
	var released int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockUpdate(ctx, tx, instanceID, version); err != nil {
			return err
		}
		var err error
		released, err = abandon(ctx, tx, instanceID, version)
		return err
	})
	return released, err
}

// abandon releases an update's reservations, drops its claimed row and
// withdraws the notices still queued for it (the announcement the
// starter wrote, its reminders); the caller holds the update's lock.
func abandon(ctx context.Context, tx pgx.Tx, instanceID, version string) (int, error) {
	released, err := releaseBookings(ctx, tx, instanceID, version)
	if err != nil {
		return 0, err
	}
	workflowID := workflows.WorkflowID(instanceID, version)
	if _, err := tx.Exec(ctx, dropClaimSQL, workflowID, string(workflows.StatusScheduled)); err != nil {
		return 0, mapError(err, "drop the claim of "+workflowID)
	}
	_, err = tx.Exec(ctx, withdrawQueuedSQL, workflowID)
	return released, mapError(err, "withdraw the queued notices of "+workflowID)
}

// withdrawQueuedSQL withdraws every notice still queued for a workflow.
const withdrawQueuedSQL = `
UPDATE notice_queue SET state = 'withdrawn', finished_at = now()
WHERE workflow_id = $1 AND state = 'queued'`
