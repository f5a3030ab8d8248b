package workflows

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/devtest"
)

// Anyone who can reach the frontend can type an Update into the stock
// temporal CLI. Unsigned, forged or replayed, it is refused by the
// validator and leaves no event in the workflow's history.
func TestStockCLIUpdatesWithoutProofAreRefused(t *testing.T) {
	c, _ := startDevServer(t)
	cli, err := devtest.CLIPath()
	require.NoError(t, err)
	in, _ := offeredAnHourAhead("inst-cli")
	run := startUpdate(t, c, in)
	awaitStatus(t, c, run, announced)
	awaitIdle(t, c, run)

	// An approval the portal signed, accepted once, then captured.
	signedApprove := signed(t, run.GetID(), UpdateApprove, ApproveInput{Admin: adminTyped}, time.Now()).(ApproveInput)
	view, err := sendUpdateAsIs(c, run, UpdateApprove, signedApprove)
	require.NoError(t, err)
	require.Equal(t, StatusApproved, view.Status)
	awaitIdle(t, c, run)
	before := len(history(t, c, run))

	rogue, _ := newTestKeys("portal-test")
	forged := mustSign(t, rogue, actor.Claims{Actor: adminTyped, Channel: actor.ChannelPortalLink, WorkflowID: run.GetID(),
		Action: actor.ActionReschedule, IssuedAt: time.Now()})
	for _, tc := range []struct {
		name, update string
		input        any
		want         string
	}{
		{"unsigned approve", UpdateApprove, ApproveInput{Admin: adminTyped}, "carries no signed assertion"},
		{"unsigned set-admins", UpdateSetAdmins, SetAdminsInput{Admins: []string{"mallory@evil.example"}}, "carries no signed assertion"},
		{"forged reschedule", UpdateReschedule, RescheduleInput{Admin: adminTyped, PrimaryStart: in.SecondaryStart.Add(days(1)),
			SecondaryStart: in.SecondaryStart.Add(days(2)), Assertion: forged}, "signature does not verify"},
		{"replayed approve", UpdateApprove, signedApprove, "was used before"},
	} {
		input, err := json.Marshal(tc.input)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, cli, "workflow", "update", "execute",
			"--address", devServer.server.FrontendHostPort(), "--workflow-id", run.GetID(),
			"--name", tc.update, "--input", string(input)).CombinedOutput()
		cancel()
		assert.Error(t, err, "%s: the CLI reported success:\n%s", tc.name, out)
		assert.Contains(t, string(out), tc.want, tc.name)
	}
	assert.Equal(t, before, len(history(t, c, run)), "refused Updates must leave no event in history")
	assert.Equal(t, StatusApproved, awaitStatus(t, c, run, func(StatusView) bool { return true }).Status)

	require.NoError(t, c.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, run.Get(context.Background(), nil), &cancelled)
}
