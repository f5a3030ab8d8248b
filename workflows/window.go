package workflows

import (
	"fmt"
	"time"
)

// LocalTimeLayout renders a time for a person: weekday, date, clock and the
// zone's abbreviation, which changes across daylight-saving transitions.
// The CLI renders times in an instance's zone with it too.
const LocalTimeLayout = "Mon 2 Jan 2006 15:04 MST"

// NewWindow describes the window [start, end) in UTC and in the IANA time
// zone timeZone. It is pure (no clock, no I/O beyond the embedded or system
// zone database) so workflow queries and email templates render alike.
func NewWindow(start, end time.Time, timeZone string) (Window, error) {
	loc, err := time.LoadLocation(timeZone)
	if err != nil {
		return Window{}, fmt.Errorf("time zone %q is not an IANA zone name (e.g. Europe/Berlin): %w", timeZone, err)
	}
	return Window{
		Start:      start.UTC(),
		End:        end.UTC(),
		TimeZone:   timeZone,
		LocalStart: start.In(loc).Format(LocalTimeLayout),
		LocalEnd:   end.In(loc).Format(LocalTimeLayout),
	}, nil
}
