package workflows

import (
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// Since release 3 every admin Update carries a signed assertion, which
// the handler reads on replay too (for the audit row, and to spend its
// nonce). These paths pin that: recorded into testdata/release-3/ under
// names of their own, beside whatever else release 3 records, by
// go test ./workflows/ -run TestRecordSignedHistories -record-signed.
var recordSignedHistories = flag.Bool("record-signed", false, "record the signed admin paths into testdata/"+signedRelease+"/ (never overwrites)")

const signedRelease = "release-3"

// signedPath is a recorded path and how many admin Updates it sends.
type signedPath struct {
	recordedPath
	updates int
}

var signedPaths = []signedPath{
	{updates: 1, recordedPath: recordedPath{name: "signed-portal-approved-succeeded", instanceID: "inst-signed-approved", wantStatus: StatusSucceeded, since: signedRelease,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, _ Input) {
			awaitStatus(t, c, run, announced)
			_, err := sendUpdate(c, run, UpdateApprove, ApproveInput{Admin: adminTyped, Note: "signed through the portal"})
			require.NoError(t, err)
		}}},
	{updates: 2, recordedPath: recordedPath{name: "signed-operator-set-admins-rescheduled-succeeded", instanceID: "inst-signed-operator", wantStatus: StatusSucceeded, since: signedRelease,
		drive: func(t *testing.T, c client.Client, run client.WorkflowRun, in Input) {
			awaitStatus(t, c, run, announced)
			const newAdmin = "new@acme.example"
			_, err := sendUpdate(c, run, UpdateSetAdmins, SetAdminsInput{Admins: []string{newAdmin}})
			require.NoError(t, err)
			primary := in.PrimaryStart.Add(2 * time.Second)
			forAdmin := actor.Claims{Actor: newAdmin, Operator: testOperator, Channel: actor.ChannelOperatorCLI,
				WorkflowID: run.GetID(), Action: actor.ActionReschedule, IssuedAt: time.Now()}
			view, err := sendUpdateAsIs(c, run, UpdateReschedule, RescheduleInput{Admin: newAdmin,
				PrimaryStart: primary, SecondaryStart: primary.Add(4 * time.Second), Assertion: mustSign(t, testSigner, forAdmin)})
			require.NoError(t, err)
			require.Len(t, view.Approvals, 1)
			assert.Equal(t, Approval{By: newAdmin, Operator: testOperator, At: view.Approvals[0].At, Action: actionRescheduled,
				Channel: string(actor.ChannelOperatorCLI), Detail: view.Approvals[0].Detail}, view.Approvals[0])
		}}},
}

// eventsPerExtraUpdate bounds what an admin Update beyond the first adds
// to a history: its workflow tasks, its accepted and completed events and
// its audit activity.
const eventsPerExtraUpdate = 15

// TestRecordSignedHistories runs the signed paths on the dev server; with
// -record-signed it writes them, refusing to replace a recorded history.
func TestRecordSignedHistories(t *testing.T) {
	path := func(p signedPath) string { return filepath.Join(historyDir, signedRelease, p.name+".json") }
	if *recordSignedHistories {
		for _, p := range signedPaths {
			_, err := os.Stat(path(p))
			require.ErrorIs(t, err, os.ErrNotExist, "%s exists: recorded histories are never overwritten", path(p))
		}
	}
	c, _ := startDevServer(t)
	var wg sync.WaitGroup
	for _, p := range signedPaths {
		wg.Go(func() {
			t.Run(p.name, func(t *testing.T) {
				events := runPath(t, c, p.recordedPath)
				assert.Less(t, len(events), maxHistoryEvents+(p.updates-1)*eventsPerExtraUpdate, "history of %s", p.name)
				if *recordSignedHistories {
					writeHistory(t, path(p), events)
				}
			})
		})
	}
	wg.Wait()
}
