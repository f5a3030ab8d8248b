package activities

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
)

// startedProgramEnv makes the test binary a stand-in worker: it starts a
// program the way the executor does, writes the program's PID to the file
// the variable names, and waits to be killed.
const startedProgramEnv = "ACTIVITIES_TEST_START_PROGRAM"

func TestMain(m *testing.M) {
	if pidFile := os.Getenv(startedProgramEnv); pidFile != "" {
		cmd := exec.Command("sleep", "1000")
		cmd.SysProcAttr = processAttributes(nil)
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			os.Exit(4)
		}
		select {}
	}
	os.Exit(m.Run())
}

// The kernel kills an update command whose worker dies (Pdeathsig).
func TestCommandDiesWithItsWorker(t *testing.T) {
	dir := t.TempDir()
	standIn := exec.Command(os.Args[0], "-test.run=^$")
	standIn.Env = append(os.Environ(), startedProgramEnv+"="+filepath.Join(dir, "program"))
	if err := standIn.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stand-in worker to start its program", func() bool {
		_, err := os.Stat(filepath.Join(dir, "program"))
		return err == nil
	})
	pid := readPID(t, dir, "program")
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if processGone(pid) {
		t.Fatal("the program is not running")
	}
	if err := standIn.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = standIn.Wait()
	waitFor(t, 5*time.Second, "the program to die with its worker", func() bool { return processGone(pid) })
}

// orphanGroup starts a program in a process group of its own, as a dead
// worker's command would have left it, and returns the group's ID.
func orphanGroup(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }() // collect it once killed
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd.Process.Pid
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// leaseOf records a lease for instance held by worker, with group pgid
// running under it (0: none).
func leaseOf(t *testing.T, leases *store.Store, instance string, holder store.WorkerProcess, pgid int, timeout time.Duration) store.Lease {
	t.Helper()
	ctx := context.Background()
	taken, err := leases.TakeLease(ctx, store.LeaseClaim{InstanceID: instance, Holder: "holder of " + instance, Worker: holder, Timeout: timeout})
	if err != nil || !taken.Taken {
		t.Fatalf("lease of %s: %+v, %v", instance, taken, err)
	}
	if pgid != 0 {
		started, err := processStarted(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if err := leases.RecordLeaseProcess(ctx, instance, taken.Lease.Fence, pgid, started); err != nil {
			t.Fatal(err)
		}
	}
	return taken.Lease
}

func TestReapOrphansKillsWhatDeadWorkersOfThisHostLeft(t *testing.T) {
	ctx := context.Background()
	me, err := thisWorker()
	if err != nil {
		t.Fatal(err)
	}
	leases := store.New(pgtest.NewPool(t))
	dead := store.WorkerProcess{Host: me.Host, BootID: me.BootID, PID: deadPID(t), Started: 1}
	rebooted := store.WorkerProcess{Host: me.Host, BootID: "an-earlier-boot", PID: me.PID, Started: me.Started}
	elsewhere := store.WorkerProcess{Host: "exec-2", BootID: "another-boot", PID: 1, Started: 1}

	orphan := orphanGroup(t)
	leaseOf(t, leases, "orphaned", dead, orphan, time.Hour)
	leaseOf(t, leases, "finished", dead, 0, time.Hour)
	// A group whose number another process now bears is not the dead
	// worker's: left alone.
	reused := orphanGroup(t)
	reusedLease := leaseOf(t, leases, "reused", dead, 0, time.Hour)
	if err := leases.RecordLeaseProcess(ctx, "reused", reusedLease.Fence, reused, 12345); err != nil {
		t.Fatal(err)
	}
	// PIDs of an earlier boot name nothing now: cleared, nothing killed.
	stranger := orphanGroup(t)
	leaseOf(t, leases, "rebooted", rebooted, stranger, time.Hour)
	leaseOf(t, leases, "live", me, orphanGroup(t), time.Hour)
	leaseOf(t, leases, "remote", elsewhere, 0, time.Hour)

	var logged bytes.Buffer
	executor := &CommandExecutor{Leases: leases}
	if err := executor.ReapOrphans(ctx, log.NewStructuredLogger(slog.New(slog.NewTextHandler(&logged, nil)))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the orphaned group gone", func() bool { return !groupRunning(orphan) })
	for name, pgid := range map[string]int{"the group whose number was reused": reused, "the group of an earlier boot's PID": stranger} {
		if !groupRunning(pgid) {
			t.Errorf("%s was killed", name)
		}
	}
	var left []string
	for _, host := range []string{me.Host, "exec-2"} {
		held, err := leases.HostLeases(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range held {
			left = append(left, l.InstanceID)
		}
	}
	if want := []string{"live", "remote"}; strings.Join(left, ",") != strings.Join(want, ",") {
		t.Errorf("leases left %v, want %v (a live worker's and another host's)", left, want)
	}
	for _, want := range []string{
		`msg="Cleared the executor lease of a dead worker of this host" instanceId=orphaned fence=1 holder="holder of orphaned" pgid=` + strconv.Itoa(orphan) + " killedProcessGroup=true",
		"instanceId=finished",
		"instanceId=rebooted",
		"cleared=4",
	} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logged.String())
		}
	}
}

// An attempt does not wait for the kill deadline of a holder it can see
// dead: a worker of this host, whose program it kills first.
func TestCommandExecutorDoesNotWaitForADeadHolderOfThisHost(t *testing.T) {
	env := newApplyEnv(t, worker.Options{})
	me, err := thisWorker()
	if err != nil {
		t.Fatal(err)
	}
	orphan := orphanGroup(t)
	// The new command reports whether the dead worker's program still ran
	// as it started.
	script := `state=$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null || echo gone)
	case "$state" in Z|X|gone) echo "orphan gone";; *) echo "orphan running ($state)";; esac`
	executor := shellExecutor(t, script, strconv.Itoa(orphan))
	executor.HeartbeatEvery = leaseEvery
	leaseOf(t, executor.Leases, "acme-prod", store.WorkerProcess{Host: me.Host, BootID: me.BootID, PID: deadPID(t), Started: 1}, orphan, time.Hour)

	started := time.Now()
	res, err := env.run(executor, applyInput(time.Now().Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Output != "orphan gone" {
		t.Errorf("the command ran beside the dead worker's: %q", res.Output)
	}
	if took := time.Since(started); took > 10*time.Second {
		t.Errorf("took %s: waited for the dead holder's kill deadline", took)
	}
}

// A worker killed between starting a program and recording its process
// group in the lease leaves a group the lease does not name: the reaper
// finds it by the fence every program of the attempt carries.
func TestKillMarkedProcessesFindsAGroupTheLeaseDidNotRecord(t *testing.T) {
	fence := time.Now().UnixNano() // unique on this host for the test
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 61 & wait")
	cmd.Env = append(os.Environ(), fenceVariable(fence), workerVariable(4242))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	deadline := time.Now().Add(10 * time.Second)
	for countGroup(pgid) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // until the shell has started both sleeps
	}
	if found := killMarkedProcesses(fenceVariable(fence), workerVariable(4243)); found != 0 {
		t.Fatalf("another worker's marks matched %d processes", found)
	}
	if found := killMarkedProcesses(fenceVariable(fence), workerVariable(4242)); found == 0 {
		t.Fatal("found no process carrying the fence and the worker PID")
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the program carrying the fence still runs")
	}
	for time.Now().Before(deadline) && groupRunning(pgid) {
		time.Sleep(20 * time.Millisecond)
	}
	if groupRunning(pgid) {
		t.Error("a process of the group carrying the fence still runs")
	}
}

// countGroup counts the live processes of group pgid.
func countGroup(pgid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fields, err := processStat(pid); err == nil && fields[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}
