package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors of the store. Store errors wrap one of them (errors.Is)
// and carry a message naming the thing concerned.
var (
	ErrNotFound       = errors.New("not found")
	ErrDuplicate      = errors.New("already exists")
	ErrSlotFull       = errors.New("slot is full")
	ErrSlotNotOffered = errors.New("slot is not offered")
	// ErrNoCapacity: no primary + secondary slot pair with free capacity
	// is left in an instance's region.
	ErrNoCapacity = errors.New("no slot pair with free capacity")
	// ErrNotEligible: the instance needs no update to the version.
	ErrNotEligible = errors.New("not eligible for the update")
	// ErrInvalidRequest: a request that can never succeed as
	// asked (a required field missing, both roles on one slot).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrCapacityBelowBookings: a fleet load would cut a slot's capacity
	// below the reservations it already holds.
	ErrCapacityBelowBookings = errors.New("capacity below current bookings")
	// ErrInstanceHeld: another open update holds the instance (at most
	// one is open per instance). Errors of this kind are *HeldError.
	ErrInstanceHeld = errors.New("instance held by another open update")
)

// Postgres error codes the store acts on
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	pgUniqueViolation      = "23505"
	pgForeignKeyViolation  = "23503"
	pgCheckViolation       = "23514"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

// slotCapacityConstraint guards booked <= capacity in the schema.
const slotCapacityConstraint = "slots_booked_within_capacity"

// oneOpenUpdateIndex allows one open update per instance (schemas/002).
const oneOpenUpdateIndex = "updates_one_open_per_instance"

// sentinelError is a store failure with a message for people and a
// sentinel (and the driver's error, when there is one) for errors.Is /
// errors.As.
type sentinelError struct {
	msg   string
	kind  error
	cause error
}

func (e *sentinelError) Error() string { return e.msg }

func (e *sentinelError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// errorf builds an error of sentinel kind with a formatted message.
func errorf(kind error, format string, args ...any) error {
	return &sentinelError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// mapError turns a Postgres error from an operation on what (e.g.
// `instance "acme-prod"`) into a sentinel error naming it; other errors
// (network, cancellation) are wrapped unchanged and stay transient.
func mapError(err error, what string) error {
	if err == nil {
		return nil
	}
	var se *sentinelError
	if errors.As(err, &se) {
		return err
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch pgErr.Code {
	case pgUniqueViolation:
		return &sentinelError{msg: fmt.Sprintf("%s: already exists (%s)", what, pgErr.Detail), kind: ErrDuplicate, cause: err}
	case pgForeignKeyViolation:
		// Detail reads e.g. `Key (current_version)=(9.9.0) is not present
		// in table "releases".`: the missing referenced row.
		return &sentinelError{msg: fmt.Sprintf("%s: refers to something that does not exist (%s)", what, pgErr.Detail), kind: ErrNotFound, cause: err}
	case pgCheckViolation:
		if pgErr.ConstraintName == slotCapacityConstraint {
			return &sentinelError{msg: fmt.Sprintf("%s: the slot's bookings would exceed its capacity", what), kind: ErrSlotFull, cause: err}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// retryableTx reports whether a transaction failed only because of
// concurrent ones (deadlock victim, serialization failure) and can run again.
func retryableTx(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) &&
		(pgErr.Code == pgDeadlockDetected || pgErr.Code == pgSerializationFailure)
}
