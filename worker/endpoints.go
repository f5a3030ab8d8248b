package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/svcupdate/svcupdate/internal/codec"
	"github.com/svcupdate/svcupdate/internal/config"
)

// codecServer serves the payload codec to operators (the Web UI's codec
// endpoint, temporal --codec-endpoint) on CODEC_ADDR.
type codecServer struct{ server *http.Server }

// startCodecServer listens on CODEC_ADDR; without one it serves nothing.
func startCodecServer(cfg config.Config, logger *slog.Logger) (*codecServer, error) {
	if cfg.CodecAddr == "" {
		return &codecServer{}, nil
	}
	c, err := codec.New(codec.Keys(cfg.PayloadKeys))
	if err != nil {
		return nil, fmt.Errorf("PAYLOAD_KEYS: %w", err)
	}
	listener, err := net.Listen("tcp", cfg.CodecAddr)
	if err != nil {
		return nil, fmt.Errorf("codec server CODEC_ADDR=%s: %w", cfg.CodecAddr, err)
	}
	server := &http.Server{
		Handler:           codec.Handler(c, codec.ServerOptions{Token: cfg.CodecAuthToken, Origins: cfg.CodecCORSOrigins}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("Codec server stopped", "error", err)
		}
	}()
	logger.Info("Serving the payload codec", "endpoint", "http://"+listener.Addr().String(), "corsOrigins", cfg.CodecCORSOrigins)
	return &codecServer{server: server}, nil
}

func (s *codecServer) close(logger *slog.Logger) {
	if s.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeShutdownTimeout)
	defer cancel()
	if err := s.server.Shutdown(ctx); err != nil {
		logger.Warn("Codec server did not stop cleanly", "error", err)
	}
}
