package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
)

// readinessTimeout bounds the checks of one /readyz request, below a
// probe's usual timeout.
const readinessTimeout = 3 * time.Second

// health answers /healthz (the process serves HTTP) and /readyz (Temporal
// and Postgres answer and the workers poll), for a load balancer or a
// Kubernetes probe on METRICS_ADDR.
type health struct {
	// stage says what the worker does while it is not ready yet.
	stage    atomic.Pointer[string]
	pool     atomic.Pointer[pgxpool.Pool]
	temporal atomic.Pointer[client.Client]
	polling  atomic.Bool
}

func newHealth() *health {
	h := &health{}
	h.setStage("connecting to Postgres")
	return h
}

func (h *health) setStage(stage string) { h.stage.Store(&stage) }

// polled records that every worker polls (true) or stops polling (false).
func (h *health) polled(polling bool) {
	h.polling.Store(polling)
	if polling {
		h.setStage("polling")
	} else {
		h.setStage("stopping")
	}
}

func (h *health) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// ready checks, in the order the worker needs them, everything that
// running updates and sending notices depend on.
func (h *health) ready(ctx context.Context) error {
	pool, temporal := h.pool.Load(), h.temporal.Load()
	if pool == nil || temporal == nil || !h.polling.Load() {
		return errors.New(*h.stage.Load())
	}
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if _, err := (*temporal).CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	return nil
}
