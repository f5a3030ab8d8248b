package e2e

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// The programs under test are built once for all the package's tests.
func TestMain(m *testing.M) { testkit.Main(m) }

// starterFailed is a run of the starter that exited with a non-zero status.
type starterFailed struct {
	status int
	stderr string // ends with the error message
}

func (f *starterFailed) Error() string {
	return fmt.Sprintf("exit status %d: %s", f.status, strings.TrimSpace(f.stderr))
}

// runStarter runs the starter with the test's environment and returns its
// output and, when it exits non-zero, a *starterFailed.
func runStarter(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runStarterBinary(t, testkit.Build(t, "./starter"), args...)
}

// runStarterBinary is runStarter with the starter built elsewhere, such as
// an earlier release's.
func runStarterBinary(t *testing.T, binary string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = &starterFailed{status: exit.ExitCode(), stderr: errOut.String()}
	} else if err != nil {
		t.Fatalf("run the starter: %v", err)
	}
	return out.String(), errOut.String(), err
}

// mustRun runs the starter and fails the test on an error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	return mustRunBinary(t, testkit.Build(t, "./starter"), args...)
}

// mustRunBinary is mustRun with the starter built elsewhere.
func mustRunBinary(t *testing.T, binary string, args ...string) string {
	t.Helper()
	out, errOut, err := runStarterBinary(t, binary, args...)
	if err != nil {
		t.Fatalf("starter %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func connectDB(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func countRows(t *testing.T, dbURL, table string) int {
	t.Helper()
	var n int
	if err := connectDB(t, dbURL).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func isNotFound(err error) bool {
	var notFound *serviceerror.NotFound
	return errors.As(err, &notFound)
}

// left is the time until ctx's deadline.
func left(ctx context.Context) time.Duration {
	deadline, _ := ctx.Deadline()
	return time.Until(deadline)
}

// workerProcess is the worker binary running beside the test.
type workerProcess struct {
	name    string // which worker, in messages
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process has been waited for
}

// startWorker runs the worker with the test's environment plus extra,
// logging to a file that is shown when the test fails. The process is
// killed at the end of the test unless stop ended it.
func startWorker(t *testing.T, extra []string) *workerProcess {
	t.Helper()
	return startWorkerBinary(t, "worker", testkit.Build(t, "./worker"), extra)
}

// startWorkerBinary is startWorker with the worker built elsewhere, such as
// an earlier release's; name tells the workers apart in messages.
func startWorkerBinary(t *testing.T, name, binary string, extra []string) *workerProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), extra...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the %s: %v", name, err)
	}
	w := &workerProcess{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		logFile.Close()
		close(w.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			_ = cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", w.name, w.log())
		}
	})
	return w
}

func (w *workerProcess) log() string {
	data, err := os.ReadFile(w.logPath)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// waitUntilPolling waits until the worker polls both of its task queues.
// It looks for this process's pollers (the SDK's default identity starts
// with the process ID): the server lists a stopped worker's for minutes.
func (w *workerProcess) waitUntilPolling(t *testing.T, c client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type queue struct {
		name string
		kind enums.TaskQueueType
	}
	queues := []queue{{cmp.Or(lastEnvValue(w.cmd.Env, "TASK_QUEUE"), workflows.TaskQueue), enums.TASK_QUEUE_TYPE_WORKFLOW}}
	if lastEnvValue(w.cmd.Env, "EXECUTOR") != "none" {
		queues = append(queues, queue{workflows.ExecutorTaskQueue, enums.TASK_QUEUE_TYPE_ACTIVITY})
	}
	testkit.WaitFor(t, time.Minute, "the "+w.name+" to poll its task queues", func() (bool, string) {
		select {
		case <-w.exited:
			t.Fatalf("the %s exited at start (%s):\n%s", w.name, w.cmd.ProcessState, w.log())
		default:
		}
		for _, q := range queues {
			resp, err := c.DescribeTaskQueue(ctx, q.name, q.kind)
			if err != nil {
				return false, "describe " + q.name + ": " + err.Error()
			}
			if !slices.ContainsFunc(resp.GetPollers(), func(p *taskqueuepb.PollerInfo) bool {
				return strings.HasPrefix(p.GetIdentity(), strconv.Itoa(w.cmd.Process.Pid)+"@")
			}) {
				return false, "no poller of process " + strconv.Itoa(w.cmd.Process.Pid) + " on " + q.name
			}
		}
		return true, ""
	})
}

// lastEnvValue is the value a process started with env sees for name: the
// last assignment wins, as in os/exec.
func lastEnvValue(env []string, name string) string {
	value := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			value = v
		}
	}
	return value
}

// stop sends SIGTERM and expects a clean exit: status 0, both workers
// stopped.
func (w *workerProcess) stop(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to the %s: %v", w.name, err)
	}
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the %s did not exit within 30s of SIGTERM", w.name)
	}
	if !w.cmd.ProcessState.Success() {
		t.Errorf("the %s exited with %s after SIGTERM", w.name, w.cmd.ProcessState)
	}
	log := w.log()
	for _, q := range []string{workflows.TaskQueue, workflows.ExecutorTaskQueue} {
		if !strings.Contains(log, "Worker stopped") || !strings.Contains(log, "taskQueue="+q) {
			t.Errorf("the %s's log does not show the worker on %s stopping", w.name, q)
		}
	}
}
