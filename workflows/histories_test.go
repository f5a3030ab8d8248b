package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"
)

// Recorded histories are an archive: one folder per release under
// testdata/, each history recorded from a real dev server by the code of
// that release, never rewritten and never deleted. The replay test runs
// every one of them against the code in this tree, so a change that would
// break a workflow started by any release still in the field fails here.

// recordHistories makes TestRecordHistories write the histories of the
// current release that are missing from its folder (go test ./workflows/
// -run TestRecordHistories -record -timeout 30m: the held path waits a
// real heldRecheck). It is a flag like the golden files' -update, but it
// only ever adds files.
var recordHistories = flag.Bool("record", false, "record the lifecycle paths missing from testdata/"+currentRelease+"/ (never overwrites)")

const historyDir = "testdata"

// currentRelease is the folder the code in this tree records into: the
// release it will ship as. Move it on once that release is out, so its
// histories stay as they were recorded.
const currentRelease = "release-5"

// recordedPath is one lifecycle recorded into testdata/<release>/<name>.json.
type recordedPath struct {
	name       string
	instanceID string
	mandatory  bool
	// drive acts on the running workflow as admins and operators would.
	drive      func(t *testing.T, c client.Client, run client.WorkflowRun, in Input)
	wantStatus Status
	// since is the first release folder that holds the path; empty for
	// the paths release 1 recorded.
	since string
	// prepare adjusts the compressed input before the start; runFor
	// bounds the run (a minute when zero).
	prepare func(in *Input)
	runFor  time.Duration
}

var recordedPaths = []recordedPath{
	{name: "approved-succeeded", instanceID: "inst-approved", wantStatus: StatusSucceeded,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, announced)
			_, err := sendUpdate(c, run, UpdateApprove, ApproveInput{Admin: adminTyped, Note: "recorded"})
			require.NoError(t, err)
		}},
	{name: "mandatory-succeeded", instanceID: "inst-mandatory", mandatory: true, wantStatus: StatusSucceeded},
	{name: "rescheduled-later-version-succeeded", instanceID: "inst-rescheduled", wantStatus: StatusSucceeded,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, in Input) {
			awaitStatus(t, c, run, announced)
			primary := in.PrimaryStart.Add(2 * time.Second)
			_, err := sendUpdate(c, run, UpdateReschedule, RescheduleInput{
				Admin: adminTyped, PrimaryStart: primary, SecondaryStart: primary.Add(4 * time.Second), TargetVersion: "9.3.0",
			})
			require.NoError(t, err)
		}},
	{name: "fallback-succeeded", instanceID: "inst-fallback", mandatory: true, wantStatus: StatusSucceeded},
	{name: "window-elapsed-fallback-succeeded", instanceID: "inst-window", mandatory: true, wantStatus: StatusSucceeded},
	{name: "both-failed", instanceID: "inst-failed", mandatory: true, wantStatus: StatusFailed},
	{name: "not-approved", instanceID: "inst-not-approved", wantStatus: StatusNotApproved},
	{name: "cancelled", instanceID: "inst-cancelled", wantStatus: StatusCancelled,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, announced)
			require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
		}},
	{name: "already-up-to-date", instanceID: instanceUpToDate, mandatory: true, wantStatus: StatusSucceeded, since: "release-2"},
	{name: "superseded", instanceID: "inst-superseded", wantStatus: StatusSuperseded, since: "release-2",
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, announced)
			_, err := sendUpdate(c, run, UpdateSupersede, SupersedeInput{TargetVersion: "9.3.0", RequestedBy: "rollout of 9.3.0"})
			require.NoError(t, err)
		}},
	// At its slot's start the update finds its rollout wave held and
	// waits; the rollout's Abort cancels it.
	{name: "held-wave-aborted", instanceID: instanceHeldAborted, mandatory: true, wantStatus: StatusCancelled, since: "release-3",
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, func(view StatusView) bool { return view.Held })
			require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
		}},
	// Held at its slot's start, the update is moved by its rollout's
	// Resume (a Move, from ten seconds on) and then cancelled, still held.
	{name: "held-wave-moved", instanceID: instanceHeldMoved, mandatory: true, wantStatus: StatusCancelled, since: "release-3",
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, func(view StatusView) bool { return view.Held })
			from := time.Now().Add(10 * time.Second).Truncate(time.Second).UTC()
			view, err := sendUpdate(c, run, UpdateMove, MoveInput{From: from, RequestedBy: "rollout of 9.2.0, resumed by ops@provider.example", Reason: "wave 1 held"})
			require.NoError(t, err)
			require.Equal(t, from, view.Primary.Start.UTC())
			require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
		}},
	// The wave opens at the first recheck, a real heldRecheck after the
	// slot's start, and the update runs in what is left of its window.
	{name: "held-wave-opened", instanceID: instanceHeldOpened, mandatory: true, wantStatus: StatusSucceeded, since: "release-3",
		prepare: func(in *Input) {
			in.WindowLength = heldRecheck + 5*time.Minute
			in.SecondaryStart = in.PrimaryStart.Add(in.WindowLength + in.SecondaryMinGap)
		},
		runFor: heldRecheck + 2*time.Minute},
}

// TestRecordHistories runs the lifecycle paths on the dev server on a
// compressed clock. Normally it runs the happy path and checks its size;
// with -record it runs every path and writes testdata/<currentRelease>/,
// refusing to replace a history that is already there.
func TestRecordHistories(t *testing.T) {
	paths := recordedPaths[:1]
	if *recordHistories {
		paths = nil
		for _, p := range recordedPaths {
			if _, err := os.Stat(historyPath(p.name)); errors.Is(err, os.ErrNotExist) {
				paths = append(paths, p)
			}
		}
		require.NotEmpty(t, paths, "every path is recorded in testdata/%s already: recorded histories are never overwritten; record a new release into a new folder (currentRelease)", currentRelease)
	}
	c, _ := startDevServer(t)
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Go(func() {
			t.Run(p.name, func(t *testing.T) {
				events := runPath(t, c, p)
				t.Logf("%s: %d events", p.name, len(events))
				assert.Less(t, len(events), maxHistoryEvents, "history of %s", p.name)
				if p.name == happyPath {
					assert.LessOrEqual(t, len(events), maxHappyPathEvents, "the happy path on the lean lifecycle")
					assert.Empty(t, versionMarkers(events), "an update started as WithDefaults says asks no GetVersion")
				}
				if *recordHistories {
					writeHistory(t, historyPath(p.name), events)
				}
			})
		})
	}
	wg.Wait()
}

// maxHistoryEvents bounds every recorded lifecycle, far below Temporal's
// history limits.
const maxHistoryEvents = 150

// maxHappyPathEvents bounds the happy path (announce, approve, run in the
// primary window, succeed) since the lean lifecycle (release 3), which
// DESIGN.md ("Scale") asks of every update of a fleet.
const (
	maxHappyPathEvents = 60
	happyPath          = "approved-succeeded"
	leanSince          = "release-3"
)

func historyPath(name string) string {
	return filepath.Join(historyDir, currentRelease, name+".json")
}

func runPath(t *testing.T, c client.Client, p recordedPath) []*historypb.HistoryEvent {
	in := compressedInput(p.instanceID, time.Now())
	in.Mandatory = p.mandatory
	if p.prepare != nil {
		p.prepare(&in)
	}
	switch p.wantStatus {
	case StatusNotApproved:
		in.Releases[0].PeriodEnd = in.SecondaryStart.Add(2 * in.WindowLength)
	case StatusFailed:
		// Room for a new attempt after the failure, which is not made:
		// the update waits, then closes at the period's end.
		in.Releases[0].PeriodEnd = in.SecondaryStart.Add(5 * in.WindowLength)
	}
	run := startUpdate(t, c, in)
	if p.drive != nil {
		p.drive(t, c, run, in)
	}
	runFor := p.runFor
	if runFor == 0 {
		runFor = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	var res Result
	err := run.Get(ctx, &res)
	if p.wantStatus == StatusCancelled {
		var cancelled *temporal.CanceledError
		require.True(t, errors.As(err, &cancelled), "want a cancelled run, got %v", err)
	} else {
		require.NoError(t, err)
		assert.Equal(t, p.wantStatus, res.Status)
	}
	return history(t, c, run)
}

// writeHistory creates path; it fails rather than replace a history.
func writeHistory(t *testing.T, path string, events []*historypb.HistoryEvent) {
	data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&historypb.History{Events: events})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	require.NoError(t, err, "recorded histories are never overwritten")
	_, err = f.Write(append(data, '\n'))
	require.NoError(t, errors.Join(err, f.Close()))
}

// recordedHistories lists the history files of every release folder.
func recordedHistories(t *testing.T) []string {
	t.Helper()
	loose, err := filepath.Glob(filepath.Join(historyDir, "*.json"))
	require.NoError(t, err)
	require.Empty(t, loose, "histories belong in a release folder, testdata/<release>/")
	entries, err := os.ReadDir(historyDir)
	require.NoError(t, err)
	var files []string
	for _, entry := range entries {
		if !entry.IsDir() {
			continue
		}
		inRelease, err := filepath.Glob(filepath.Join(historyDir, entry.Name(), "*.json"))
		require.NoError(t, err)
		require.NotEmpty(t, inRelease, "%s holds no history", entry.Name())
		files = append(files, inRelease...)
	}
	// Release 1's corpus is complete (the paths without since); later
	// folders may add paths.
	for _, p := range recordedPaths {
		if p.since == "" {
			require.FileExists(t, filepath.Join(historyDir, "release-1", p.name+".json"))
		}
	}
	return files
}

// TestReplayRecordedHistories proves the current workflow code still
// replays every history recorded by every release: a change that would
// break running workflows fails here (and needs workflow.GetVersion).
func TestReplayRecordedHistories(t *testing.T) {
	replayer, quiet := newReplayer()
	for _, file := range recordedHistories(t) {
		name, err := filepath.Rel(historyDir, file)
		require.NoError(t, err)
		t.Run(name, func(t *testing.T) {
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(quiet, file))
		})
	}
}

// newReplayer replays both workflows with the code in this tree, and
// the logger that keeps its replay quiet.
func newReplayer() (worker.WorkflowReplayer, log.Logger) {
	replayer := worker.NewWorkflowReplayer()
	// Validators do not run on replay: a replaying worker needs no keys.
	replayer.RegisterWorkflowWithOptions(ServiceUpdates{}.ServiceUpdate, workflow.RegisterOptions{Name: WorkflowType})
	replayer.RegisterWorkflowWithOptions(Rollout, workflow.RegisterOptions{Name: RolloutWorkflowType})
	return replayer, log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// readHistory reads a recorded history file.
func readHistory(t *testing.T, file string) *historypb.History {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, errors.Join(err, f.Close()), file)
	return hist
}

// TestRecordedHistorySizes keeps every recorded lifecycle far from
// Temporal's history limits: each file, the full happy path included,
// stays under maxHistoryEvents events.
func TestRecordedHistorySizes(t *testing.T) {
	for _, file := range recordedHistories(t) {
		events := readHistory(t, file).GetEvents()
		t.Logf("%s: %d events", file, len(events))
		assert.Less(t, len(events), maxHistoryEvents, file)
		if release := filepath.Base(filepath.Dir(file)); release >= leanSince && strings.TrimSuffix(filepath.Base(file), ".json") == happyPath {
			assert.LessOrEqual(t, len(events), maxHappyPathEvents, file)
		}
		last := events[len(events)-1].GetEventType()
		assert.Contains(t, []enumspb.EventType{
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
		}, last, "%s must hold a closed run", file)
	}
}

// versionMarkers names the changes a history asked workflow.GetVersion.
func versionMarkers(events []*historypb.HistoryEvent) []string {
	var changes []string
	for _, e := range events {
		if marker := e.GetMarkerRecordedEventAttributes(); marker.GetMarkerName() == "Version" {
			var change string
			if json.Unmarshal(marker.GetDetails()["change-id"].GetPayloads()[0].GetData(), &change) != nil {
				change = "undecodable change-id"
			}
			changes = append(changes, change)
		}
	}
	return changes
}

// TestReplayLeanInputOverAMarker replays, under the code in this tree, the
// histories of release 3 (each asked lean-lifecycle in its first task) as
// if their input had said LeanLifecycle: what a rolling deploy records when
// a new starter's update runs its first task on a worker of release 3. The
// workflow then asks nothing, and replay must skip the marker.
func TestReplayLeanInputOverAMarker(t *testing.T) {
	replayer, quiet := newReplayer()
	files, err := filepath.Glob(filepath.Join(historyDir, leanSince, "*.json"))
	require.NoError(t, err)
	replayed := 0
	for _, file := range files {
		hist := readHistory(t, file)
		started := hist.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
		// Release 3 recorded a few paths on the older lifecycle; a worker
		// of release 3 puts every update it starts on the lean one.
		if started.GetWorkflowType().GetName() != WorkflowType || !slices.Contains(versionMarkers(hist.GetEvents()), changeLeanLifecycle) {
			continue
		}
		payload := started.GetInput().GetPayloads()[0]
		var in map[string]any
		require.NoError(t, json.Unmarshal(payload.GetData(), &in), file)
		require.NotContains(t, in, "leanLifecycle", file)
		in["leanLifecycle"] = true
		payload.Data, err = json.Marshal(in)
		require.NoError(t, err)
		t.Run(filepath.Base(file), func(t *testing.T) {
			require.NoError(t, replayer.ReplayWorkflowHistory(quiet, hist))
		})
		replayed++
	}
	require.NotZero(t, replayed, "no ServiceUpdate history of %s to replay", leanSince)
}
