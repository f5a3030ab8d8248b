package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// faultCampaign is the state of TestFaultCampaign's fault injector.
type faultCampaign struct {
	t         *testing.T
	ctx       context.Context
	temporal  client.Client
	updates   map[string]string // instance by update workflow ID
	dir       string
	env       []string
	executors []*workerProcess // the executor workers running now
	all       []*workerProcess // every executor worker started, for their logs
	runs      map[int64]*faultRun
	losses    map[string]int // runs of an instance lost with their worker
	rng       uint64
	kills     map[string]int // by when: mid-run, at completion
}

// faultRun is one attempt of ApplyUpdate, from its first probe, as far as
// the scripts it ran tell.
type faultRun struct {
	instance string
	worker   int
	over     bool // finished, or lost with its worker
}

const (
	// maxLosses bounds the runs of one instance killed with their worker,
	// so that every update can still finish in its primary window: each
	// loss costs a heartbeat timeout and a retry backoff (10 s, then 20 s).
	maxLosses = 2
	// Of the runs whose start or completion the injector sees, these
	// shares (per mille) get their worker killed there.
	killMidRunPerMille       = 300
	killAtCompletionPerMille = 400
)

// chance draws from a fixed-seed generator (xorshift), so a run of the
// test is reproducible from its log.
func (c *faultCampaign) chance(perMille uint64) bool {
	c.rng ^= c.rng << 13
	c.rng ^= c.rng >> 7
	c.rng ^= c.rng << 17
	return c.rng%1000 < perMille
}

// handle acts on one event of runs.log.
func (c *faultCampaign) handle(e runEvent) {
	switch e.kind {
	case "probe-before":
		c.runs[e.fence] = &faultRun{instance: e.instance, worker: e.worker}
	case "probe-after":
		// The attempt completes at once: nothing left to lose.
		if r := c.runs[e.fence]; r != nil {
			r.over = true
		}
	case "start":
		if c.runs[e.fence] == nil {
			c.t.Errorf("%s: the update command ran under fence %d without a probe before", e.instance, e.fence)
			c.runs[e.fence] = &faultRun{instance: e.instance, worker: e.worker}
		}
		if c.chance(killMidRunPerMille) && c.killable(e.worker) {
			c.kill(e.worker, "mid-run")
		}
	case "done":
		if c.chance(killAtCompletionPerMille) && c.killable(e.worker) {
			c.kill(e.worker, "at completion")
			return
		}
		release(c.t, c.dir, e.fence)
	}
}

// killable reports whether worker pid runs now and killing it loses no
// instance's run more than maxLosses times.
func (c *faultCampaign) killable(pid int) bool {
	if c.executor(pid) < 0 {
		return false
	}
	for instance := range c.held(pid) {
		if c.losses[instance] >= maxLosses {
			return false
		}
	}
	return true
}

// held returns the instances whose update attempt worker pid holds: those
// whose run it logged and that are not over, and those whose ApplyUpdate
// Temporal says it started. The runs log alone misses an attempt that has
// not reached its probe yet, or has passed its last probe but not reported
// its completion; a kill loses those too.
func (c *faultCampaign) held(pid int) map[string]bool {
	held := map[string]bool{}
	for _, r := range c.runs {
		if r.worker == pid && !r.over {
			held[r.instance] = true
		}
	}
	identity := strconv.Itoa(pid) + "@"
	for id, instance := range c.updates {
		desc, err := c.temporal.DescribeWorkflow(c.ctx, id, "")
		if err != nil {
			c.t.Fatalf("describe %s: %v", id, err)
		}
		for _, a := range desc.RawResponse.GetPendingActivities() {
			if a.GetState() == enums.PENDING_ACTIVITY_STATE_STARTED && strings.HasPrefix(a.GetLastWorkerIdentity(), identity) {
				held[instance] = true
			}
		}
	}
	return held
}

func (c *faultCampaign) executor(pid int) int {
	for i, w := range c.executors {
		if w.cmd.Process.Pid == pid {
			return i
		}
	}
	return -1
}

// kill SIGKILLs executor worker pid, counts the runs lost with it, and
// starts a new worker in its place.
func (c *faultCampaign) kill(pid int, when string) {
	i := c.executor(pid)
	held := c.held(pid)
	c.executors[i].kill(c.t)
	c.kills[when]++
	for instance := range held {
		c.losses[instance]++
	}
	for _, r := range c.runs {
		if r.worker == pid {
			r.over = true
		}
	}
	c.executors[i] = startWorker(c.t, c.env)
	c.all = append(c.all, c.executors[i])
}

// logLines counts the lines of every executor worker's log that contain s.
func (c *faultCampaign) logLines(s string) int {
	n := 0
	for _, w := range c.all {
		n += strings.Count(w.log(), s)
	}
	return n
}

// TestFaultCampaign kills executor workers with SIGKILL around update runs
// (as the command starts, and as it finishes) while 20 updates run in
// windows of two minutes on a compressed clock, restarting each killed worker
// at once. Workflows run on a worker that is not killed; two workers host
// the command executor. No update command may run twice at once, or after
// its update succeeded, and every update must still succeed in its primary
// slot with no fallback notice.
func TestFaultCampaign(t *testing.T) {
	began := time.Now()
	testkit.ClearConfigEnv(t)
	temporalClient, dbURL := devtest.StartForPrograms(t)
	sendgrid := newFakeSendGrid(t, sendGridKey)
	const (
		window    = 2 * time.Minute  // room for two lost runs with heartbeat timeouts and backoffs on a loaded machine
		lead      = 30 * time.Second // from the fleet file to the first primary
		stagger   = 10 * time.Second // between the regions' primaries
		regions   = 4
		perRegion = 5
	)
	dir := t.TempDir()
	baseEnv, executorEnv := faultEnv(t, window, dir, sendgrid)
	executorEnv = append(executorEnv, "TASK_QUEUE="+faultIdleQueue)
	campaign := &faultCampaign{t: t, temporal: temporalClient, updates: map[string]string{}, dir: dir, env: executorEnv,
		runs: map[int64]*faultRun{}, losses: map[string]int{}, rng: 0x5eed8, kills: map[string]int{}}
	for range 2 {
		w := startWorker(t, executorEnv)
		campaign.executors = append(campaign.executors, w)
		campaign.all = append(campaign.all, w)
	}
	workflowWorker := startWorker(t, append(baseEnv, "EXECUTOR=none"))
	workflowWorker.waitUntilPolling(t, temporalClient)
	mustRun(t, "migrate")
	mustRun(t, "setup")

	var instances []faultInstance
	for i := range regions * perRegion {
		in := faultInstance{id: fmt.Sprintf("fault-%02d", i), region: fmt.Sprintf("r%d", i%regions), version: "9.0.0"}
		if i%2 == 1 {
			in.version, in.approve = "9.1.0", true
		}
		instances = append(instances, in)
		campaign.updates[workflows.WorkflowID(in.id, targetVersion)] = in.id
	}
	start := time.Now().UTC().Truncate(time.Second)
	primaries := map[string]time.Time{}
	for r := range regions {
		primaries[fmt.Sprintf("r%d", r)] = start.Add(lead + time.Duration(r)*stagger)
	}
	lastWindowEnd := start.Add(lead + (regions-1)*stagger + window)
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(faultFleetFile(t, instances, primaries, window, start, lastWindowEnd.Add(2*window))))
	mustRun(t, "load", fleetPath)
	if out := mustRun(t, "rollout", "--version", targetVersion); !strings.Contains(out, fmt.Sprintf("started %d,", len(instances))) {
		t.Fatalf("rollout did not start %d updates:\n%s", len(instances), out)
	}
	// The admins approve all at once, so the first slot is not missed.
	starter := testkit.Build(t, "./starter")
	approved := make(chan error)
	for _, in := range instances {
		if in.approve {
			go func() {
				out, err := exec.Command(starter, "approve", "--instance", in.id, "--admin", in.admin(), "--version", targetVersion).CombinedOutput()
				if err != nil {
					err = fmt.Errorf("approve %s: %w\n%s", in.id, err, out)
				}
				approved <- err
			}()
		}
	}
	for range len(instances) / 2 {
		if err := <-approved; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if first := primaries["r0"]; time.Now().After(first) {
		t.Fatalf("the approvals ended at %s, after the first primary slot started (%s): the machine is too slow for this clock", time.Now().UTC().Format(time.RFC3339), first.Format(time.RFC3339))
	}

	// Inject the faults until every update has closed.
	ctx, cancel := context.WithDeadline(context.Background(), lastWindowEnd.Add(30*time.Second))
	defer cancel()
	campaign.ctx = ctx
	runs := &runLog{path: filepath.Join(dir, "runs.log")}
	conn := connectDB(t, dbURL)
	closed := []string{string(workflows.StatusSucceeded), string(workflows.StatusFailed), string(workflows.StatusNotApproved), string(workflows.StatusCancelled)}
	testkit.WaitFor(t, left(ctx), "every update to close while workers are killed", func() (bool, string) {
		for _, e := range runs.next(t) {
			campaign.handle(e)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM updates WHERE status = ANY($1)", closed).Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == len(instances), fmt.Sprintf("%d of %d updates closed", n, len(instances))
	})

	outcomes := map[string]int{}
	for _, in := range instances {
		id := workflows.WorkflowID(in.id, targetVersion)
		var result workflows.Result
		if err := temporalClient.GetWorkflow(ctx, id, "").Get(ctx, &result); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		view := queryStatus(t, ctx, temporalClient, id)
		var attempts []string
		for _, a := range view.Attempts {
			attempts = append(attempts, string(a.Slot)+":"+a.Outcome)
		}
		outcome := fmt.Sprintf("%s (%s)", result.Status, strings.Join(attempts, ", "))
		outcomes[outcome]++
		if result.Status != workflows.StatusSucceeded || strings.Join(attempts, ",") != "primary:succeeded" {
			logHistory(t, ctx, temporalClient, id)
			t.Errorf("%s ended %s, want Succeeded in the primary slot", id, outcome)
		}
	}
	for _, m := range sendgrid.sent() {
		if m.Kind == workflows.NoticeFallback || m.Kind == workflows.NoticeFailed {
			t.Errorf("%s: a %s notice was sent", m.InstanceID, m.Kind)
		}
	}
	runs.next(t)
	duplicates := checkRunsOnce(t, dir, runs)
	for _, in := range instances {
		if runs.count("done", in.id) == 0 {
			t.Errorf("%s: no run of the update command finished", in.id)
		}
	}
	// Nothing of any run is left: groups of finished runs are killed by
	// their executor, those of lost runs by the next worker of the host.
	var groups []int
	for _, in := range instances {
		data, _ := os.ReadFile(filepath.Join(dir, in.id+".groups"))
		for _, field := range strings.Fields(string(data)) {
			pgid, _ := strconv.Atoi(field)
			groups = append(groups, pgid)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "every run's process group to be gone", func() (bool, string) {
		for _, pgid := range groups {
			if groupRunning(pgid) {
				return false, fmt.Sprintf("process group %d still runs", pgid)
			}
		}
		return true, ""
	})

	probes, _ := os.ReadFile(filepath.Join(dir, "probes.log"))
	alreadyCurrent := 0
	for line := range strings.Lines(string(probes)) {
		if strings.HasPrefix(line, "before ") && strings.HasSuffix(strings.TrimSpace(line), " "+targetVersion) {
			alreadyCurrent++
		}
	}
	mostLost := 0
	for _, n := range campaign.losses {
		mostLost = max(mostLost, n)
	}
	t.Logf("fault campaign: %d instances in %d regions, windows of %s; %d worker kills (%d mid-run, %d at completion), "+
		"at most %d attempts of one update lost; %d command runs (%d finished), %d updates found done by the probe after a lost worker, %d duplicate runs; "+
		"%d dead workers' leases cleared, %d waits for a lease; outcomes %v; wall time %s",
		len(instances), regions, window, campaign.kills["mid-run"]+campaign.kills["at completion"], campaign.kills["mid-run"], campaign.kills["at completion"],
		mostLost, runs.count("start", ""), runs.count("done", ""), alreadyCurrent, duplicates,
		campaign.logLines("Cleared the executor lease of a dead worker"), campaign.logLines("Waiting for the executor lease"),
		outcomes, time.Since(began).Round(time.Second))
}
