package sendgrid

// The client's limits and default, for the tests in package sendgrid_test
// (which the fake in sendgridtest keeps out of this package).
const (
	DefaultHost         = defaultHost
	MaxPersonalizations = maxPersonalizations
	MaxRetryDelay       = maxRetryDelay
)
