package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"

	"github.com/svcupdate/svcupdate/internal/buildinfo"
)

// scrapeShutdownTimeout bounds the last scrapes at exit.
const scrapeShutdownTimeout = 5 * time.Second

// workerMetrics serves the SDK's metrics and svcupdate's own (recorded
// through activity.GetMetricsHandler) on one Prometheus endpoint.
type workerMetrics struct {
	handler client.MetricsHandler
	scope   io.Closer
	server  *http.Server
}

// startMetrics listens on addr and serves /metrics, /healthz and /readyz;
// an empty addr keeps them off (a no-op metrics handler).
func startMetrics(addr string, health *health, logger *slog.Logger) (*workerMetrics, error) {
	if addr == "" {
		logger.Info("Metrics endpoint disabled (METRICS_ADDR is empty)")
		return &workerMetrics{handler: client.MetricsNopHandler}, nil
	}
	registry := prom.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge(), outboxCollector{health})
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       registry,
		DefaultTimerType: tallyprom.HistogramTimerType,
		// From 1 ms (SDK requests) to about 18 h (the longest update
		// windows), four times wider each.
		DefaultHistogramBuckets: prom.ExponentialBuckets(0.001, 4, 14),
		OnRegisterError: func(err error) {
			logger.Error("Metric not registered with Prometheus", "error", err)
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)

	listener, err := net.Listen("tcp", addr)
	if err != nil {
		_ = closer.Close()
		return nil, fmt.Errorf("metrics endpoint METRICS_ADDR=%s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", reporter.HTTPHandler())
	health.register(mux)
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("Metrics endpoint stopped", "error", err)
		}
	}()
	logger.Info("Serving Prometheus metrics and health", "address", "http://"+listener.Addr().String()+"/metrics",
		"health", []string{"/healthz", "/readyz"})
	return &workerMetrics{
		handler: sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)),
		scope:   closer,
		server:  server,
	}, nil
}

// buildInfoGauge is build_info: 1, labelled with the running build, so a
// dashboard tells which version each worker runs.
func buildInfoGauge() prom.Gauge {
	info := buildinfo.Read()
	gauge := prom.NewGauge(prom.GaugeOpts{
		Name: "svcupdate_build_info",
		Help: "The running build of the svcupdate worker (always 1).",
		ConstLabels: prom.Labels{
			"version":    info.Version,
			"commit":     info.Commit,
			"go_version": info.GoVersion,
		},
	})
	gauge.Set(1)
	return gauge
}

func (m *workerMetrics) close(logger *slog.Logger) {
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeShutdownTimeout)
		defer cancel()
		if err := m.server.Shutdown(ctx); err != nil {
			logger.Warn("Metrics endpoint did not stop cleanly", "error", err)
		}
	}
	if m.scope != nil {
		_ = m.scope.Close()
	}
}
