package main

import (
	"context"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/svcupdate/svcupdate/internal/store"
)

// outboxScrapeTimeout bounds the outbox query of one scrape.
const outboxScrapeTimeout = 2 * time.Second

var (
	pendingNoticesDesc = prom.NewDesc("svcupdate_outbox_pending_notices",
		"Notices written to the outbox and not yet accepted by SendGrid.", nil, nil)
	oldestPendingDesc = prom.NewDesc("svcupdate_outbox_oldest_pending_seconds",
		"How long the oldest notice not yet accepted by SendGrid has waited in the outbox.", nil, nil)
)

// outboxCollector reads the outbox's backlog from Postgres at each scrape,
// so an alert sees notices stuck there whichever worker wrote them.
type outboxCollector struct{ health *health }

func (c outboxCollector) Describe(ch chan<- *prom.Desc) {
	ch <- pendingNoticesDesc
	ch <- oldestPendingDesc
}

func (c outboxCollector) Collect(ch chan<- prom.Metric) {
	pool := c.health.pool.Load()
	if pool == nil {
		return // not connected yet: no sample rather than a false zero
	}
	ctx, cancel := context.WithTimeout(context.Background(), outboxScrapeTimeout)
	defer cancel()
	backlog, err := store.New(pool).PendingNotices(ctx)
	if err != nil {
		// An invalid metric would fail the whole scrape; /readyz reports
		// Postgres being unreachable.
		return
	}
	ch <- prom.MustNewConstMetric(pendingNoticesDesc, prom.GaugeValue, float64(backlog.Pending))
	ch <- prom.MustNewConstMetric(oldestPendingDesc, prom.GaugeValue, backlog.OldestAge.Seconds())
}
