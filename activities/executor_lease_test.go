package activities

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// leaseEvery is the heartbeat and renewal interval of the lease tests:
// short so they run quickly, long enough that a renewal on a loaded
// machine does not miss missedRenewals of them.
const leaseEvery = 200 * time.Millisecond

// running is an ApplyUpdate running in the background.
type running struct {
	res  workflows.ApplyUpdateResult
	err  error
	done chan struct{}
}

// start runs e as ApplyUpdate with in in the background.
func (env *applyEnv) start(e Executor, in workflows.ApplyUpdateInput) *running {
	r := &running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.res, r.err = env.run(e, in)
	}()
	return r
}

func (r *running) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ApplyUpdate did not return within 30s")
	}
}

func fileContains(path, want string) func() bool {
	return func() bool {
		data, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(data), want)
	}
}

// updating reports whether env's attempt has heartbeat while its update
// command ran, which it does once the command is recorded in the lease.
func (env *applyEnv) updating() bool {
	return slices.ContainsFunc(env.heartbeats.snapshot(), func(d heartbeatDetails) bool { return d.Phase == phaseUpdate })
}

// waitedFor reports whether env's attempt has heartbeat while waiting for
// a lease held by a holder whose description contains holder.
func (env *applyEnv) waitedFor(holder string) bool {
	return slices.ContainsFunc(env.heartbeats.snapshot(), func(d heartbeatDetails) bool {
		return d.Phase == phaseLease && strings.Contains(d.WaitingFor, holder)
	})
}

// foreignLease takes the lease of instance for a worker of another host.
func foreignLease(t *testing.T, leases *store.Store, instance string, timeout time.Duration) store.Lease {
	t.Helper()
	taken, err := leases.TakeLease(context.Background(), store.LeaseClaim{
		InstanceID: instance, Holder: "an attempt on exec-2", Timeout: timeout,
		Worker: store.WorkerProcess{Host: "exec-2", BootID: "another-boot", PID: 1, Started: 1},
	})
	if err != nil || !taken.Taken {
		t.Fatalf("take the foreign lease: %+v, %v", taken, err)
	}
	return taken.Lease
}

func TestCommandExecutorRunsOneUpdatePerInstanceAtATime(t *testing.T) {
	dir := t.TempDir()
	// Each run logs its start and end with its fence, and the first holds
	// on until the test has seen the second wait.
	script := `echo "start $SVCUPDATE_FENCE" >> "$1/log"
	while [ ! -e "$1/release" ]; do sleep 0.02; done
	echo "end $SVCUPDATE_FENCE" >> "$1/log"
	echo "fence $SVCUPDATE_FENCE"`
	executor := shellExecutor(t, script, dir)
	executor.HeartbeatEvery = leaseEvery
	first, second := newApplyEnv(t, worker.Options{}), newApplyEnv(t, worker.Options{})
	in := applyInput(time.Now().Add(time.Minute))

	a := first.start(executor, in)
	waitFor(t, 10*time.Second, "the first update to start", fileContains(filepath.Join(dir, "log"), "start"))
	// Another attempt at the same instance: a retry of this update, or
	// another workflow's.
	b := second.start(executor, in)
	waitFor(t, 10*time.Second, "the second attempt to wait for the first's lease", func() bool { return second.waitedFor("worker pid") })
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a.wait(t)
	b.wait(t)
	if a.err != nil || b.err != nil {
		t.Fatalf("errors: %v; %v", a.err, b.err)
	}

	fenceA := strings.TrimPrefix(a.res.Output, "fence ")
	fenceB := strings.TrimPrefix(b.res.Output, "fence ")
	nA, errA := strconv.ParseInt(fenceA, 10, 64)
	nB, errB := strconv.ParseInt(fenceB, 10, 64)
	if errA != nil || errB != nil || nB <= nA {
		t.Fatalf("SVCUPDATE_FENCE %q then %q; want numbers, the second larger", fenceA, fenceB)
	}
	log, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join([]string{"start " + fenceA, "end " + fenceA, "start " + fenceB, "end " + fenceB, ""}, "\n"); string(log) != want {
		t.Errorf("runs overlapped:\n%s\nwant one after the other:\n%s", log, want)
	}
	me, err := thisWorker()
	if err != nil {
		t.Fatal(err)
	}
	if leases, err := executor.Leases.HostLeases(context.Background(), me.Host); err != nil || len(leases) != 0 {
		t.Errorf("leases left after both attempts: %+v, %v", leases, err)
	}
}

// A holder that cannot be seen to be dead (another host) is waited for
// until its kill deadline, by which it has promised its command is gone.
func TestCommandExecutorBreaksALeaseOnlyAfterItsKillDeadline(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	dir := t.TempDir()
	executor := shellExecutor(t, `echo "$SVCUPDATE_FENCE $(date +%s%N)" > "$1/started"`, dir)
	executor.HeartbeatEvery = leaseEvery
	held := foreignLease(t, executor.Leases, "acme-prod", 1500*time.Millisecond)

	if _, err := env.run(executor, applyInput(time.Now().Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	var (
		fence     int64
		startedNs int64
	)
	if _, err := fmt.Sscan(readText(t, filepath.Join(dir, "started")), &fence, &startedNs); err != nil {
		t.Fatal(err)
	}
	if started := time.Unix(0, startedNs); !started.After(held.KillDeadline) {
		t.Errorf("the command started at %s, before the holder's kill deadline %s", started, held.KillDeadline)
	}
	if !env.waitedFor("an attempt on exec-2") {
		t.Errorf("no heartbeat while waiting names the holder: %+v", env.heartbeats.snapshot())
	}
	if fence <= held.Fence {
		t.Errorf("the command ran under fence %d, want one larger than the broken lease's %d", fence, held.Fence)
	}
}

func TestCommandExecutorStopsWaitingForALiveHolderAtTheWindowEnd(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	marker := filepath.Join(t.TempDir(), "ran")
	executor := shellExecutor(t, `touch "$1"`, marker)
	executor.HeartbeatEvery = leaseEvery
	foreignLease(t, executor.Leases, "acme-prod", time.Hour)

	started := time.Now()
	_, err := env.run(executor, applyInput(started.Add(time.Second)))
	appErr := appError(t, err)
	if appErr.Type() != workflows.ErrTypeWindowElapsed || !appErr.NonRetryable() ||
		!strings.Contains(appErr.Message(), "it ended while the attempt waited for the executor lease, held by an attempt on exec-2") {
		t.Errorf("error %q (type %s, non-retryable %v), want a non-retryable %s naming the holder", appErr.Message(), appErr.Type(), appErr.NonRetryable(), workflows.ErrTypeWindowElapsed)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Errorf("returned after %s, want about the second the window had left", took)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran while another attempt held the lease")
	}
}

// An attempt whose lease was broken (released here, as a breaker would
// replace it) kills its command at once: someone else may run by now.
func TestCommandExecutorKillsItsCommandWhenItsLeaseIsBroken(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	dir := t.TempDir()
	executor := shellExecutor(t, `sleep 1000 & echo $! > "$1/child"; echo $$ > "$1/leader"; wait`, dir)
	executor.HeartbeatEvery = leaseEvery
	r := env.start(executor, applyInput(time.Now().Add(time.Minute)))
	waitFor(t, 10*time.Second, "the command to start", func() bool { _, err := os.Stat(filepath.Join(dir, "leader")); return err == nil && env.updating() })
	me, err := thisWorker()
	if err != nil {
		t.Fatal(err)
	}
	leases, err := executor.Leases.HostLeases(context.Background(), me.Host)
	if err != nil || len(leases) != 1 || leases[0].PGID != readPID(t, dir, "leader") {
		t.Fatalf("leases while the command runs: %+v, %v; want one recording the command's process group", leases, err)
	}
	if _, err := executor.Leases.ReleaseLease(context.Background(), "acme-prod", leases[0].Fence); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	if r.err == nil || !strings.Contains(r.err.Error(), "another attempt broke this attempt's executor lease") {
		t.Fatalf("error %v, want the broken lease named", r.err)
	}
	if appErr := appError(t, r.err); appErr.NonRetryable() {
		t.Error("a broken lease is retryable: the next attempt's probe or lease decides")
	}
	for _, name := range []string{"leader", "child"} {
		pid := readPID(t, dir, name)
		waitFor(t, time.Second, name+" process gone", func() bool { return processGone(pid) })
	}
}

// A holder that cannot renew its lease (Postgres gone) stops its command
// before the kill deadline, on which others rely to break the lease.
func TestCommandExecutorStopsItsCommandWhenTheLeaseCannotBeRenewed(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	dir := t.TempDir()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	executor := shellExecutor(t, `echo $$ > "$1/leader"; echo "updating"; exec sleep 1000`, dir)
	executor.Leases, executor.HeartbeatEvery = store.New(pool), leaseEvery
	r := env.start(executor, applyInput(time.Now().Add(time.Minute)))
	waitFor(t, 10*time.Second, "the command to start", func() bool { _, err := os.Stat(filepath.Join(dir, "leader")); return err == nil && env.updating() })
	cut := time.Now()
	pool.Close()
	r.wait(t)
	took := time.Since(cut)
	if r.err == nil || !strings.Contains(r.err.Error(), "could not be renewed") {
		t.Fatalf("error %v, want the lease's renewal named", r.err)
	}
	// Stopped missedRenewals intervals after the last renewal, SIGKILL a
	// kill grace later at the latest: within the lease's timeout.
	if limit := leaseTimeout(leaseEvery, executor.KillGrace) + time.Second; took > limit {
		t.Errorf("stopped %s after Postgres went away, want within %s", took, limit)
	}
	pid := readPID(t, dir, "leader")
	waitFor(t, time.Second, "the command gone", func() bool { return processGone(pid) })
}
