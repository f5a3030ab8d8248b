// Package cli holds what the command lines of both programs share: a
// mistake in how the program was invoked exits 2, any other failure 1.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// UsageError is a bad flag, argument or setting rather than a failure of
// the work asked for: the program prints its one-line message and exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with the formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode reports err on stderr as "program: err" and returns the exit
// status: 0 for success and -h, 2 for a *UsageError, 1 otherwise.
func ExitCode(program string, err error, stderr io.Writer) int {
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 1
	}
}
