package store

// Internals the external tests check directly.
var (
	MapError    = mapError
	RetryableTx = retryableTx
	Errorf      = errorf
)

const (
	PgDeadlockDetected     = pgDeadlockDetected
	PgSerializationFailure = pgSerializationFailure
	PgUniqueViolation      = pgUniqueViolation
	WithdrawRemindersSQL   = withdrawRemindersSQL
)
