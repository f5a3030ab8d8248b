package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
)

func TestPortalNeedsItsSecret(t *testing.T) {
	testkit.ClearConfigEnv(t)
	_, _, err := runStarter(t, "portal")
	var usage *cli.UsageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "PORTAL_SECRET is empty") {
		t.Errorf("starter portal without PORTAL_SECRET: %v, want a usage error naming PORTAL_SECRET", err)
	}
	t.Setenv("PORTAL_SECRET", strings.Repeat("k", 32))
	_, _, err = runStarter(t, "portal")
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "ACTION_SIGNING_KEY is empty") {
		t.Errorf("starter portal without ACTION_SIGNING_KEY: %v, want a usage error naming ACTION_SIGNING_KEY", err)
	}
}

// lockedBuffer is stdout shared with the running portal.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// starter portal serves on PORTAL_ADDR, says where, and stops cleanly on
// Ctrl-C.
func TestPortalServesUntilInterrupted(t *testing.T) {
	devtest.StartForPrograms(t)
	addr := testkit.FreeAddress(t)
	t.Setenv("PORTAL_ADDR", addr)
	t.Setenv("PORTAL_BASE_URL", "http://"+addr)
	t.Setenv("PORTAL_SECRET", strings.Repeat("k", 32))
	if _, _, err := runStarter(t, "migrate"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"portal"}, &out, io.Discard) }()

	testkit.WaitFor(t, time.Minute, "the portal's sign-in page", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/sign-in")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "<h1>Sign in</h1>"), resp.Status
	})
	if !strings.Contains(out.String(), "portal: serving on http://"+addr) {
		t.Errorf("starter portal does not say where it serves:\n%s", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("starter portal after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("starter portal did not stop within 30s of Ctrl-C")
	}
}
