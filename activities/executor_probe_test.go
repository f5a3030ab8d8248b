package activities

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/workflows"
)

// The probe tests' instance keeps its version in dir/version. The update
// command counts its runs in dir/runs and writes dir/next-version (the
// target when absent) as the new version; the probe prints the version
// and logs each stage it ran in, in dir/probes.
const (
	countingUpdate = `runs=$(cat "$1/runs" 2>/dev/null || echo 0); echo $((runs + 1)) > "$1/runs"
	cat "$1/next-version" 2>/dev/null > "$1/version" || echo "$TARGET_VERSION" > "$1/version"
	echo "updated under fence $SVCUPDATE_FENCE, previous ${SVCUPDATE_PREVIOUS_FENCE:-none}"`
	versionProbe = `echo "$SVCUPDATE_PROBE" >> "$1/probes"; cat "$1/version" 2>/dev/null || echo "$CURRENT_VERSION"`
)

// probedInstance returns a command executor with the probe tests' update
// command and probe (or the probe script given) and their directory.
func probedInstance(t *testing.T, probe string) (*CommandExecutor, string) {
	t.Helper()
	dir := t.TempDir()
	executor := shellExecutor(t, countingUpdate, dir)
	executor.Probe = []string{"sh", "-c", probe, "sh", dir}
	executor.HeartbeatEvery = leaseEvery
	return executor, dir
}

func readText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCommandExecutorProbesBeforeAndAfterTheUpdate(t *testing.T) {
	executor, dir := probedInstance(t, versionProbe)
	res, err := newApplyEnv(t, worker.Options{}).run(executor, applyInput(time.Now().Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyCurrent || res.ProbedVersion != "9.2.0" || !strings.HasPrefix(res.Output, "updated under fence") {
		t.Errorf("result %+v, want the update run and 9.2.0 probed after it", res)
	}
	if runs, probes := readText(t, filepath.Join(dir, "runs")), readText(t, filepath.Join(dir, "probes")); runs != "1" || probes != "before\nafter" {
		t.Errorf("runs %q, probes %q; want one run between a probe before and one after", runs, probes)
	}
}

// An instance at or past the target is not updated again: the case of a
// worker lost as its update finished, whose retry finds the update done.
func TestCommandExecutorDoesNotUpdateAnInstanceAlreadyAtTheTarget(t *testing.T) {
	for _, version := range []string{"9.2.0", "v9.2.0", "9.3.0"} {
		t.Run(version, func(t *testing.T) {
			executor, dir := probedInstance(t, versionProbe)
			writeText(t, filepath.Join(dir, "version"), version)
			res, err := newApplyEnv(t, worker.Options{}).run(executor, applyInput(time.Now().Add(time.Minute)))
			if err != nil {
				t.Fatal(err)
			}
			want := "already up to date: the version probe says acme-prod runs " + version + " (target 9.2.0); the update command was not run"
			if !res.AlreadyCurrent || res.ProbedVersion != version || res.Output != want {
				t.Errorf("result %+v, want already current at %s", res, version)
			}
			if runs := readText(t, filepath.Join(dir, "runs")); runs != "" {
				t.Errorf("the update ran %s time(s)", runs)
			}
		})
	}
}

// The crash at completion: the lost attempt's command had updated the
// instance; its retry, knowing from the heartbeat details that the
// command had started, probes and succeeds without running it again.
func TestCommandExecutorRetryAfterALostCompletedUpdateDoesNotRunItAgain(t *testing.T) {
	executor, dir := probedInstance(t, versionProbe)
	writeText(t, filepath.Join(dir, "runs"), "1")
	writeText(t, filepath.Join(dir, "version"), "9.2.0")
	env := newApplyEnv(t, worker.Options{})
	env.SetHeartbeatDetails(heartbeatDetails{Phase: phaseUpdate, Fence: 41, CommandStarted: time.Now().Add(-time.Minute), Elapsed: "1m0s"})
	res, err := env.run(executor, applyInput(time.Now().Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.AlreadyCurrent || res.ProbedVersion != "9.2.0" {
		t.Errorf("result %+v, want already current", res)
	}
	if runs := readText(t, filepath.Join(dir, "runs")); runs != "1" {
		t.Errorf("the update ran %s times in all, want once", runs)
	}
}

// A retry whose predecessor did not finish runs the update again, and
// tells it the predecessor's fence.
func TestCommandExecutorRetryTellsTheCommandItsPredecessorsFence(t *testing.T) {
	executor, _ := probedInstance(t, versionProbe)
	env := newApplyEnv(t, worker.Options{})
	env.SetHeartbeatDetails(heartbeatDetails{Phase: phaseUpdate, Fence: 41, CommandStarted: time.Now().Add(-time.Minute)})
	res, err := env.run(executor, applyInput(time.Now().Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyCurrent || !strings.HasSuffix(res.Output, ", previous 41") {
		t.Errorf("result %+v, want the update run and told of fence 41", res)
	}
}

func TestCommandExecutorFailsWhenTheUpdateMissesTheTarget(t *testing.T) {
	executor, dir := probedInstance(t, versionProbe)
	writeText(t, filepath.Join(dir, "next-version"), "9.1.5")
	_, err := newApplyEnv(t, worker.Options{}).run(executor, applyInput(time.Now().Add(time.Minute)))
	appErr := appError(t, err)
	want := "the update command succeeded, but the version probe says acme-prod runs 9.1.5, not the target 9.2.0; update output: updated under fence"
	if appErr.Type() != workflows.ErrTypeUpdateFailed || !appErr.NonRetryable() || !strings.HasPrefix(appErr.Message(), want) {
		t.Errorf("error %q (type %s, non-retryable %v), want a non-retryable %s starting %q", appErr.Message(), appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeUpdateFailed, want)
	}
}

// A probe that fails, or prints no version, fails the attempt retryably
// with its words, and nothing is updated.
func TestCommandExecutorFailsRetryablyOnABadProbe(t *testing.T) {
	for _, tt := range []struct{ name, probe, want string }{
		{"non-zero exit", `echo "cannot reach the instance" >&2; exit 2`,
			`the version probe "sh" (before the update) failed: exited with status 2: cannot reach the instance`},
		{"garbage", `echo "<html>"`, `the version probe "sh" (before the update) printed "<html>\n", which is not a version (accepted: one line holding the instance's version, such as 9.2.0)`},
		{"two lines", `echo 9.1.0; echo 9.2.0`, `printed "9.1.0\n9.2.0\n", which is not a version`},
		{"nothing", `true`, `printed "", which is not a version`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			executor, dir := probedInstance(t, tt.probe)
			_, err := newApplyEnv(t, worker.Options{}).run(executor, applyInput(time.Now().Add(time.Minute)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if appErr := appError(t, err); appErr.NonRetryable() {
				t.Error("a probe failure is non-retryable; the probe may work on the next attempt")
			}
			if runs := readText(t, filepath.Join(dir, "runs")); runs != "" {
				t.Errorf("the update ran %s time(s) after a failed probe", runs)
			}
		})
	}
}

func TestVersionComparison(t *testing.T) {
	for _, tt := range []struct {
		version, target string
		same, reached   bool
	}{
		{"9.2.0", "9.2.0", true, true},
		{"v9.2.0", "9.2.0", true, true},
		{"9.3.0", "9.2.0", false, true},
		{"9.10.0", "9.9.0", false, true},
		{"9.1.0", "9.2.0", false, false},
		{"9.2.0-rc.1", "9.2.0", false, false},
		{"2027.1", "2026.2", false, true},
		{"winter27", "winter27", true, true},
		{"summer27", "winter27", false, false}, // names: only equality is known
	} {
		if got := sameVersion(tt.version, tt.target); got != tt.same {
			t.Errorf("sameVersion(%s, %s) = %v, want %v", tt.version, tt.target, got, tt.same)
		}
		if got := reached(tt.version, tt.target); got != tt.reached {
			t.Errorf("reached(%s, %s) = %v, want %v", tt.version, tt.target, got, tt.reached)
		}
	}
}
