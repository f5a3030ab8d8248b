package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// deliveredView waits until the worker's dispatcher has settled every
// notice an update on the lean lifecycle queued, and returns its Status
// answer with those deliveries (store.WithDeliveries), as `starter
// status` shows it. An update on the old path sent its notices itself:
// its answer comes back as it was.
func deliveredView(t *testing.T, dbURL string, view workflows.StatusView) workflows.StatusView {
	t.Helper()
	st := store.New(connectDB(t, dbURL))
	var delivered workflows.StatusView
	testkit.WaitFor(t, settleTimeout, "the notices of "+view.WorkflowID+" delivered", func() (bool, string) {
		v, err := st.WithDeliveries(context.Background(), view, time.Now())
		if err != nil {
			return false, err.Error()
		}
		for _, n := range v.Notices {
			if n.Queued {
				return false, string(n.Kind) + " is still queued: " + n.Error
			}
		}
		delivered = v
		return true, ""
	})
	return delivered
}
