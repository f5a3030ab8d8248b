// Package duration reads the durations people type (environment variables,
// flags, the fleet file): Go durations such as 36h or 90m, and days, which
// Go does not have, such as 90d or 1d12h. A day is 24 hours here: offsets
// before a slot, not calendar days.
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day is the length of the d unit.
const Day = 24 * time.Hour

// Accepted says what Parse accepts, for error messages.
const Accepted = "a duration such as 90d, 1d12h, 36h or 90m"

// Parse reads a Go duration optionally led by whole or fractional days:
// "90d", "1d12h", "-2d", "1.5d", "168h", "0".
func Parse(s string) (time.Duration, error) {
	text := strings.TrimSpace(s)
	sign := time.Duration(1)
	rest := text
	if strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		if rest[0] == '-' {
			sign = -1
		}
		rest = rest[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || n < 0 || rest[:i] == "" || strings.ContainsAny(rest[:i], "eE+-") {
			return 0, fmt.Errorf("%q is not a duration (accepted: %s)", s, Accepted)
		}
		days = time.Duration(n * float64(Day))
		rest = rest[i+1:]
		if rest == "" {
			return sign * days, nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || (days != 0 && d < 0) || strings.HasPrefix(rest, "+") {
		return 0, fmt.Errorf("%q is not a duration (accepted: %s)", s, Accepted)
	}
	return sign * (days + d), nil
}

// ParseList reads comma-separated durations; blanks around items are ignored.
func ParseList(s string) ([]time.Duration, error) {
	var list []time.Duration
	for item := range strings.SplitSeq(s, ",") {
		d, err := Parse(item)
		if err != nil {
			return nil, err
		}
		list = append(list, d)
	}
	return list, nil
}

// Value is a duration flag that accepts days (pflag.Value).
type Value struct{ D *time.Duration }

// NewValue returns a flag value that sets *d, which starts as def.
func NewValue(d *time.Duration, def time.Duration) Value {
	*d = def
	return Value{D: d}
}

func (v Value) String() string {
	if v.D == nil {
		return ""
	}
	return v.D.String()
}

// Set parses value into the flag.
func (v Value) Set(value string) error {
	d, err := Parse(value)
	if err != nil {
		return err
	}
	*v.D = d
	return nil
}

// Type names the value in help.
func (Value) Type() string { return "duration" }

// FormatDays writes d as whole days where it is some ("90d", "0d"), else as
// a Go duration; Parse reads either back.
func FormatDays(d time.Duration) string {
	if d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	return d.String()
}
