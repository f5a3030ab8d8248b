package workflows

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/devtest"
)

// The saved views of README's "Operating from the Web UI", run with the
// stock CLI against a dev server holding one update in each state a view
// tells apart.

// Instances of the views test, one per state; instanceViewsFailed fails in
// both slots (recordedExecutor).
const (
	instanceViewsScheduled   = "views-scheduled"
	instanceViewsSucceeded   = "views-succeeded"
	instanceViewsNotApproved = "views-not-approved"
	instanceViewsFailed      = "views-failed"
)

// viewsWant lists, per README view, the views test's instances it shows.
var viewsWant = map[string][]string{
	"Failed":               {instanceViewsFailed},
	"Not approved":         {instanceViewsNotApproved},
	"Waiting for approval": {instanceViewsScheduled},
	"Succeeded":            {instanceViewsSucceeded},
	"Needs attention":      {instanceViewsFailed, instanceViewsNotApproved},
	"One release":          {instanceViewsFailed, instanceViewsNotApproved, instanceViewsScheduled, instanceViewsSucceeded},
	"One tenant":           {instanceViewsFailed, instanceViewsNotApproved, instanceViewsScheduled, instanceViewsSucceeded},
}

func TestWebUIViews(t *testing.T) {
	views := readmeViews(t)
	require.ElementsMatch(t, keys(viewsWant), keys(views), "README's saved views and the ones this test checks")
	c, _ := startDevServer(t)

	now := time.Now()
	runs := map[string]Status{
		instanceViewsScheduled: StatusScheduled, instanceViewsSucceeded: StatusSucceeded,
		instanceViewsNotApproved: StatusNotApproved, instanceViewsFailed: StatusFailed,
	}
	for instance, want := range runs {
		in := compressedInput(instance, now)
		switch instance {
		case instanceViewsScheduled:
			in.PrimaryStart = now.Add(30 * time.Minute).UTC()
			in.SecondaryStart = in.PrimaryStart.Add(in.WindowLength + in.SecondaryMinGap)
		case instanceViewsSucceeded, instanceViewsFailed:
			in.Mandatory = true
		}
		run := startUpdate(t, c, in)
		awaitStatusWithin(t, c, run, time.Minute, func(v StatusView) bool { return v.Status == want })
	}

	cli, err := devtest.CLIPath()
	require.NoError(t, err)
	for name, query := range views {
		t.Run(name, func(t *testing.T) {
			require.Eventually(t, func() bool {
				got := listed(t, cli, query)
				return slices.Equal(got, sorted(viewsWant[name]))
			}, 30*time.Second, 200*time.Millisecond, "%s: %q lists %v of this test's updates, want %v", name, query, listed(t, cli, query), viewsWant[name])
		})
	}
}

// readmeViews reads the saved views table of README's "Operating from the
// Web UI": view name to query.
func readmeViews(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../README.md")
	require.NoError(t, err)
	defer f.Close()
	row := regexp.MustCompile("^\\| ([^|]+?) \\| `([^`]+)` \\|$")
	views := map[string]string{}
	in := false
	for scan := bufio.NewScanner(f); scan.Scan(); {
		line := scan.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Operating from the Web UI"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			views[m[1]] = m[2]
		}
	}
	require.NotEmpty(t, views, "README has no saved views under \"Operating from the Web UI\"")
	return views
}

// listed runs the stock CLI's workflow list with query and returns the
// instances of this test's updates it lists, sorted.
func listed(t *testing.T, cli, query string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, "workflow", "list", "--address", devServer.server.FrontendHostPort(),
		"--query", query, "--limit", "1000", "-o", "json").Output()
	require.NoError(t, err, "bin/temporal workflow list --query %q: %s", query, exitText(err))
	var executions []struct {
		Execution struct {
			WorkflowID string `json:"workflowId"`
		} `json:"execution"`
	}
	require.NoError(t, json.Unmarshal(out, &executions), "the CLI's JSON: %s", out)
	var instances []string
	for _, e := range executions {
		for _, instance := range []string{instanceViewsScheduled, instanceViewsSucceeded, instanceViewsNotApproved, instanceViewsFailed} {
			if e.Execution.WorkflowID == WorkflowID(instance, "9.2.0") {
				instances = append(instances, instance)
			}
		}
	}
	return sorted(instances)
}

func exitText(err error) string {
	if exit, ok := err.(*exec.ExitError); ok {
		return string(exit.Stderr)
	}
	return fmt.Sprint(err)
}

func awaitStatusWithin(t *testing.T, c client.Client, run client.WorkflowRun, within time.Duration, cond func(StatusView) bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		value, err := c.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), QueryStatus)
		var view StatusView
		return err == nil && value.Get(&view) == nil && cond(view)
	}, within, 100*time.Millisecond, "%s did not reach the state its view shows", run.GetID())
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
