package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// withDeliveries shows what the notice queue delivered for an update on
// the lean lifecycle, whose workflow only knows what it queued: the
// answer with the queue's sent, failed and pending notices. Without
// Postgres the workflow's own answer is shown, and stderr says why.
func withDeliveries(ctx context.Context, e *env, view workflows.StatusView) workflows.StatusView {
	if !slices.ContainsFunc(view.Notices, func(n workflows.NoticeRecord) bool { return n.Queued }) {
		return view // the old path: the workflow sent its notices itself
	}
	pool, err := e.postgres(ctx)
	if err == nil {
		var delivered workflows.StatusView
		if delivered, err = store.New(pool).WithDeliveries(ctx, view, time.Now()); err == nil {
			return delivered
		}
	}
	fmt.Fprintf(e.stderr, "notice deliveries not read from Postgres, notices show as queued: %v\n", err)
	return view
}
