package activities

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/semver"
)

const (
	// probeTimeout bounds one run of the version probe: it reads a
	// version, it does not update anything, so one that takes longer is
	// stuck, and the attempt is better retried than left waiting.
	probeTimeout = 2 * time.Minute
	// probeOutputBytes is how much of the probe's stdout is read.
	probeOutputBytes = 1024
)

// Stages of the version probe, in its SVCUPDATE_PROBE variable.
const (
	probeBefore = "before"
	probeAfter  = "after"
)

// versionPattern is what a probe may print: one version, such as 9.2.0,
// v9.2.0-rc.1 or a release name, on one line.
var versionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$`)

// probe runs EXECUTOR_PROBE_COMMAND under the lease and returns the
// version it printed. A probe that fails, hangs or prints something that
// is not a version fails the attempt retryably, with the probe's words.
func (a *attempt) probe(ctx context.Context, lease *heldLease, stage string) (string, error) {
	phase := phaseProbe
	if stage == probeAfter {
		phase = phaseVerify
	}
	stdout := &limitedBuffer{limit: probeOutputBytes}
	stderr := &outputTail{}
	now := time.Now()
	windowStop := stopTime(now, a.in.WindowEnd, a.e.KillGrace)
	stopAt := now.Add(probeTimeout)
	if windowStop.Before(stopAt) {
		stopAt = windowStop
	}
	x, err := a.supervise(ctx, lease, program{
		what: "version probe", argv: a.e.Probe, env: append(a.env(), "SVCUPDATE_PROBE="+stage),
		stdout: stdout, stderr: stderr, phase: phase,
	}, stopAt)
	if err != nil {
		return "", err
	}
	what := fmt.Sprintf("the version probe %q (%s the update)", a.e.Probe[0], stage)
	switch {
	case x.stopped == stoppedLimit && !time.Now().Before(windowStop):
		return "", windowElapsed(a.in, what+" was stopped so as to be gone by then", stderr.String())
	case x.stopped == stoppedLimit:
		return "", withOutput(fmt.Sprintf("%s did not answer within %s", what, probeTimeout), stderr.String())
	case x.stopped != ranToEnd:
		return "", a.stoppedError(ctx, what, x, stderr.String())
	case !x.state.Success():
		return "", withOutput(fmt.Sprintf("%s failed: %s", what, exitText(x)), stderr.String())
	}
	version := strings.TrimSpace(stdout.String())
	if !versionPattern.MatchString(version) {
		return "", withOutput(fmt.Sprintf("%s printed %q, which is not a version (accepted: one line holding the instance's version, such as %s)",
			what, truncate(stdout.String(), 80), a.in.TargetVersion), stderr.String())
	}
	a.logger.Info("Version probed", "instanceId", a.in.InstanceID, "stage", stage, "version", version, "target", a.in.TargetVersion)
	return version, nil
}

// withOutput is a retryable error whose message ends with what the
// program printed on stderr.
func withOutput(msg, output string) error {
	if output != "" {
		msg += ": " + output
	}
	return errors.New(msg)
}

// canonicalSemver returns v as golang.org/x/mod/semver reads it ("v"
// prefixed), or "" when v is not a semantic version.
func canonicalSemver(v string) string {
	c := "v" + strings.TrimPrefix(v, "v")
	if !semver.IsValid(c) {
		return ""
	}
	return c
}

// sameVersion reports whether two versions are the same: equal, or equal
// as semantic versions (9.2.0 and v9.2.0).
func sameVersion(a, b string) bool {
	if a == b {
		return true
	}
	ca, cb := canonicalSemver(a), canonicalSemver(b)
	return ca != "" && cb != "" && semver.Compare(ca, cb) == 0
}

// reached reports whether an instance at version needs no update to
// target: it is the target, or later as semantic versions. Versions that
// are not semantic versions are only compared for equality.
func reached(version, target string) bool {
	if sameVersion(version, target) {
		return true
	}
	cv, ct := canonicalSemver(version), canonicalSemver(target)
	return cv != "" && ct != "" && semver.Compare(cv, ct) > 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// limitedBuffer keeps the first limit bytes written to it and discards
// the rest, so a probe that prints without end cannot fill memory.
type limitedBuffer struct {
	mu    sync.Mutex
	limit int
	data  []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - len(b.data); room > 0 {
		b.data = append(b.data, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.data)
}
