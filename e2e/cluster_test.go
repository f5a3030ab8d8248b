//go:build cluster

// The tests of `make test-cluster`: they need the cluster of `make cluster`
// (scripts/cluster.sh), whose processes they kill and restart.

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	farm "github.com/dgryski/go-farm"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// serverLogTime is the layout of the server's log times (zap's ISO 8601).
const serverLogTime = "2006-01-02T15:04:05.000Z0700"

// historyHosts are the history processes of scripts/cluster.sh.
var historyHosts = []string{"history1", "history2"}

// failoverTimeout bounds how long the surviving host takes to own a killed
// host's shards: membership notices the loss within seconds.
const failoverTimeout = 2 * time.Minute

// TestHistoryHostKilledMidLifecycle runs the end-to-end lifecycle on the
// cluster and, once every update is scheduled and approved and before any
// reminder is due, SIGKILLs the history host that owns most of the updates'
// shards. The other host takes its shards over, and every update still
// sends each notice once and ends as it must. The killed host is restarted
// when the test ends; make test-cluster runs this test after the rest of
// the suite, whose timers are seconds apart, so that none of them runs
// while the restarted host takes its shards back.
func TestHistoryHostKilledMidLifecycle(t *testing.T) {
	runEndToEnd(t, func(ctx context.Context, c client.Client, workflowIDs []string) {
		namespace := os.Getenv("TEMPORAL_NAMESPACE") // set by devtest.StartForPrograms
		described, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
		if err != nil {
			t.Fatal(err)
		}
		shards, err := strconv.Atoi(envFile(t, "deploy/temporal/server.env")["NUM_HISTORY_SHARDS"])
		if err != nil {
			t.Fatal(err)
		}
		owners := shardOwners(t)
		onHost := map[string][]string{}
		for _, id := range workflowIDs {
			shard := historyShard(described.GetNamespaceInfo().GetId(), id, shards)
			owner, ok := owners[shard]
			if !ok {
				t.Fatalf("no history host has acquired shard %d (of %s) by the logs: %v", shard, id, owners)
			}
			onHost[owner.host] = append(onHost[owner.host], id)
		}
		victim := slices.MaxFunc(historyHosts, func(a, b string) int { return len(onHost[a]) - len(onHost[b]) })
		survivor := historyHosts[0]
		if survivor == victim {
			survivor = historyHosts[1]
		}
		var lost []int
		for shard, owner := range owners {
			if owner.host == victim {
				lost = append(lost, shard)
			}
		}
		slices.Sort(lost)
		t.Logf("killing %s, owner of shards %v and of %v; %s keeps %v", victim, lost, onHost[victim], survivor, onHost[survivor])
		killedAt := time.Now()
		runCluster(t, "kill", victim)
		t.Cleanup(func() { restartHistoryHost(t, victim) })

		testkit.WaitFor(t, failoverTimeout, survivor+" to own the shards of "+victim, func() (bool, string) {
			owners := shardOwners(t)
			for _, shard := range lost {
				if owners[shard].host != survivor {
					return false, fmt.Sprintf("shard %d is owned by %+v", shard, owners[shard])
				}
			}
			return true, ""
		})
		t.Logf("%s owned every shard of %s %s after the kill", survivor, victim, time.Since(killedAt).Round(100*time.Millisecond))
	})
}

// TestClusterHasTheSearchAttributes checks that `make cluster` registered
// svcupdate's search attributes in its default namespace, as compose does
// (both by `starter setup`).
func TestClusterHasTheSearchAttributes(t *testing.T) {
	c, err := client.Dial(client.Options{HostPort: os.Getenv(devtest.ExternalAddressVariable), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	listed, err := c.OperatorService().ListSearchAttributes(context.Background(), &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range workflows.SearchAttributeKeys {
		if got := listed.GetCustomAttributes()[key.GetName()]; got != key.GetValueType() {
			t.Errorf("search attribute %s is %s in the cluster's default namespace, want %s (listed: %v)",
				key.GetName(), got, key.GetValueType(), slices.Sorted(maps.Keys(listed.GetCustomAttributes())))
		}
	}
}

// historyShard is the history shard of a workflow, computed the way the
// Temporal server does (common.WorkflowIDToHistoryShard).
func historyShard(namespaceID, workflowID string, shards int) int {
	return int(farm.Fingerprint32([]byte(namespaceID+"_"+workflowID))%uint32(shards)) + 1
}

// shardOwner is the host that acquired a shard last, and when.
type shardOwner struct {
	host string
	at   time.Time
}

// shardOwners reads from the history hosts' logs which host acquired each
// shard last.
func shardOwners(t *testing.T) map[int]shardOwner {
	t.Helper()
	type acquired struct {
		Msg   string `json:"msg"`
		TS    string `json:"ts"`
		Shard int    `json:"shard-id"`
	}
	owners := map[int]shardOwner{}
	for _, host := range historyHosts {
		f, err := os.Open(filepath.Join(repoRoot(t), ".data", "cluster", host+".log"))
		if err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(f)
		lines.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for lines.Scan() {
			var line acquired
			if json.Unmarshal(lines.Bytes(), &line) != nil || line.Msg != "Acquired shard" {
				continue
			}
			at, err := time.Parse(serverLogTime, line.TS)
			if err != nil {
				t.Fatalf("%s.log: time %q: %v", host, line.TS, err)
			}
			if at.After(owners[line.Shard].at) {
				owners[line.Shard] = shardOwner{host: host, at: at}
			}
		}
		if err := lines.Err(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return owners
}

// restartHistoryHost starts a killed history host again and waits until
// it has acquired shards since.
func restartHistoryHost(t *testing.T, host string) {
	t.Helper()
	restartedAt := time.Now()
	runCluster(t, "restart", host)
	testkit.WaitFor(t, failoverTimeout, host+" to own shards again", func() (bool, string) {
		owners := shardOwners(t)
		for _, owner := range owners {
			if owner.host == host && owner.at.After(restartedAt) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("owners %v", owners)
	})
	t.Logf("%s restarted and owning shards within %s", host, time.Since(restartedAt).Round(100*time.Millisecond))
}

// runCluster runs scripts/cluster.sh with args (CLUSTER_BIN comes from
// make test-cluster).
func runCluster(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts", "cluster.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/cluster.sh %v: %v\n%s", args, err, out)
	}
}
