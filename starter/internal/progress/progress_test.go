package progress

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for the plain reporter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPlainReporterWritesALineEveryInterval(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)}
	r := newPlain(&out, "rollout 9.2.0", 10, c.now)
	for range 3 {
		r.Add(1) // within the first interval: no line yet
	}
	if out.Len() != 0 {
		t.Fatalf("wrote before an interval passed: %q", out.String())
	}
	c.advance(Interval)
	r.Add(2)
	c.advance(time.Second)
	r.Add(1) // one second later: no second line
	c.advance(Interval)
	r.Add(4)
	r.Finish()
	want := "rollout 9.2.0: 5/10 (50%) after 5s\n" +
		"rollout 9.2.0: 10/10 (100%) after 11s\n" +
		"rollout 9.2.0: 10/10 (100%) after 11s\n"
	if out.String() != want {
		t.Errorf("lines:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestReporterIsSafeConcurrentlyAndWhenNil(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, "sync", 100) // a buffer is no terminal: plain lines
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { r.Add(1) })
	}
	wg.Wait()
	r.Finish()
	if !strings.Contains(out.String(), "sync: 100/100 (100%) after ") {
		t.Errorf("last line: %q", out.String())
	}
	var none *Reporter
	none.Add(1)
	none.Finish()
}

func TestNoTerminalInTests(t *testing.T) {
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer counts as a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a file counts as a terminal")
	}
}
