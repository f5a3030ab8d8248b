// Package progress reports how far a long operation of the starter has come,
// on stderr so stdout keeps only the result: a bar redrawn in place on a
// terminal, and otherwise (a log, a CI job, a pipe) one plain line every
// few seconds and one at the end.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Interval is how often a plain reporter writes a line while work advances.
const Interval = 5 * time.Second

// Reporter counts finished items of a known total. Its methods are safe
// for concurrent use; a nil *Reporter reports nothing.
type Reporter struct {
	mu       sync.Mutex
	w        io.Writer
	what     string
	total    int
	done     int
	started  time.Time
	lastLine time.Time
	now      func() time.Time
	bar      *progressbar.ProgressBar // nil when w is not a terminal
}

// New starts reporting on w the progress of what (such as "rollout
// 9.2.0") over total items: a bar when w is a terminal, lines otherwise;
// nowhere when w is nil.
func New(w io.Writer, what string, total int) *Reporter {
	if w == nil {
		return nil
	}
	r := newPlain(w, what, total, time.Now)
	if IsTerminal(w) {
		r.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish())
	}
	return r
}

// newPlain is a line reporter on the clock now.
func newPlain(w io.Writer, what string, total int, now func() time.Time) *Reporter {
	start := now()
	return &Reporter{w: w, what: what, total: total, started: start, lastLine: start, now: now}
}

// Add counts n more items done.
func (r *Reporter) Add(n int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done += n
	if r.bar != nil {
		_ = r.bar.Add(n) // drawing only: an error loses one redraw
		return
	}
	if now := r.now(); now.Sub(r.lastLine) >= Interval {
		r.lastLine = now
		r.line(now)
	}
}

// Finish ends the report: the bar is cleared (the result follows on
// stdout), a plain report writes its last line.
func (r *Reporter) Finish() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil {
		_ = r.bar.Finish()
		return
	}
	r.line(r.now())
}

func (r *Reporter) line(now time.Time) {
	percent := 100
	if r.total > 0 {
		percent = r.done * 100 / r.total
	}
	fmt.Fprintf(r.w, "%s: %d/%d (%d%%) after %s\n", r.what, r.done, r.total, percent, now.Sub(r.started).Round(time.Second))
}

// IsTerminal reports whether w is a terminal, where progress is drawn in
// place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
