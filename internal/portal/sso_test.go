package portal_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/portal"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
)

// TestOIDCSignInAgainstALocalIssuer signs in through a local OpenID
// Connect issuer: an admin's verified address opens a session, anyone
// else gets the not-an-admin page, and a callback the portal did not
// start is refused.
func TestOIDCSignInAgainstALocalIssuer(t *testing.T) {
	issuer, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = issuer.Shutdown() })
	st := storetest.Load(t, pgtest.NewPool(t), storetest.Fleet(3, 1))

	web := httptest.NewUnstartedServer(nil)
	base := "http://" + web.Listener.Addr().String()
	cfg := issuer.Config()
	p, err := portal.New(context.Background(), portal.Config{BaseURL: base, Secret: secret, LinkLifetime: time.Hour, SessionLifetime: time.Hour,
		OIDC: portal.OIDCConfig{Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret}},
		st, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	web.Config.Handler = p.Handler()
	web.Start()
	t.Cleanup(web.Close)

	signIn := func(email string) (status int, body string) {
		t.Helper()
		issuer.QueueUser(&mockoidc.MockUser{Subject: email, Email: email, EmailVerified: true})
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar}
		if page := fetch(t, client, base+"/sign-in"); !strings.Contains(page, "Sign in with your organization") {
			t.Fatalf("the sign-in page offers no OIDC sign-in:\n%s", page)
		}
		resp, err := client.Get(base + "/oidc/login")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}

	status, body := signIn("admin1@acme.example")
	if status != http.StatusOK || !strings.Contains(body, "<h1>My updates</h1>") || !strings.Contains(body, "admin1@acme.example") {
		t.Errorf("an admin signing in through OIDC: %d\n%s", status, body)
	}
	status, body = signIn("stranger@elsewhere.example")
	if status != http.StatusForbidden || !strings.Contains(body, "You are not an admin") {
		t.Errorf("a non-admin signing in through OIDC: %d\n%s", status, body)
	}

	// A callback with a state of its own making: no session.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(base + "/oidc/callback?state=forged&code=whatever")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a callback the portal did not start: %d, want 400", resp.StatusCode)
	}
	if page := fetch(t, client, base+"/"); !strings.Contains(page, "<h1>Sign in</h1>") {
		t.Errorf("after a forged callback the portal is signed in:\n%s", page)
	}
}

func fetch(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
