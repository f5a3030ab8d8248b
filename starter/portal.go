package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/portal"
	"github.com/svcupdate/svcupdate/internal/store"
)

// inFlightGrace lets requests in flight (an admin's Approve waits
// for the workflow's answer) finish when the portal stops.
const inFlightGrace = 10 * time.Second

func newPortalCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "portal",
		Short: "serve the admins' portal on PORTAL_ADDR: their updates, approvals, other slots, sign-in by emailed link or OIDC",
		Args:  maxArgs(0),
		RunE:  func(cmd *cobra.Command, _ []string) error { return runPortal(cmd.Context(), e) },
	}
}

// runPortal serves the admins' portal on PORTAL_ADDR until interrupted.
func runPortal(ctx context.Context, e *env) error {
	if e.cfg.PortalSecret == "" {
		return cli.Usagef("portal: PORTAL_SECRET is empty; set the same random key (32 bytes or more, such as `openssl rand -hex 32`) on the portal and the workers")
	}
	if e.cfg.ActionSigningKey.Signer == nil {
		return cli.Usagef("portal: ACTION_SIGNING_KEY is empty; the workflows refuse unsigned admin actions: give the portal a key (starter keys generate) whose public half the workers trust in ACTION_TRUSTED_KEYS")
	}
	pool, err := e.postgres(ctx)
	if err != nil {
		return err
	}
	c, err := e.temporalWhenUp(ctx)
	if err != nil {
		return err
	}
	var mailer portal.Mailer
	if e.cfg.SendGridAPIKey != "" {
		if mailer, err = sendgrid.NewClient(sendgrid.Config{Host: e.cfg.SendGridHost, APIKey: e.cfg.SendGridAPIKey, From: e.cfg.MailFrom}, time.Now); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, nil))
	server, err := portal.New(ctx, portal.Config{
		BaseURL: e.cfg.PortalBaseURL, Secret: e.cfg.PortalSecret,
		LinkLifetime: e.cfg.PortalLinkLifetime, SessionLifetime: e.cfg.PortalSessionLifetime,
		RescheduleMinNotice: e.cfg.RescheduleMinNotice, Mailbox: e.cfg.PortalMailbox, ActionSigner: e.cfg.ActionSigningKey.Signer,
		OIDC: portal.OIDCConfig{Issuer: e.cfg.OIDCIssuer, ClientID: e.cfg.OIDCClientID, ClientSecret: e.cfg.OIDCClientSecret},
	}, store.New(pool), c, mailer, logger)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", e.cfg.PortalAddr)
	if err != nil {
		return fmt.Errorf("portal: listen on %s (PORTAL_ADDR): %w", e.cfg.PortalAddr, err)
	}
	fmt.Fprintf(e.stdout, "portal: serving on http://%s, links point to %s (PORTAL_BASE_URL)\n", listener.Addr(), e.cfg.PortalBaseURL)
	if e.cfg.PortalMailbox {
		fmt.Fprintf(e.stdout, "portal: demo mailbox at %s/mailbox\n", e.cfg.PortalBaseURL)
	}
	httpServer := &http.Server{Handler: server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(listener) }()
	select {
	case err := <-served:
		return fmt.Errorf("portal: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inFlightGrace)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("portal: stop: %w", err)
	}
	return nil
}
