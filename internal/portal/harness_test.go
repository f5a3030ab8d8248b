package portal_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/activities/sendgrid/sendgridtest"
	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/portal"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

// secret is the tests' PORTAL_SECRET: the worker signs with it, the
// portal checks with it, and the tests forge and expire links with it.
const secret = "test-secret-of-at-least-thirty-two-bytes"

// opsAdmin administers several instances (bulk approval); instances
// inst-001 ... are administered by admin1@acme.example ... too.
const opsAdmin = "ops@acme.example"

// harness is the whole system for the portal's tests: a Temporal dev
// server, a migrated database with the test fleet, a worker with the
// real activities mailing the SendGrid test server, and the portal.
type harness struct {
	t        *testing.T
	temporal client.Client
	pool     *pgxpool.Pool
	store    *store.Store
	mail     *sendgridtest.Server
	signer   *links.Signer
	url      string
	// trusted verifies the assertions the portal signs.
	trusted *actor.Verifier
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	server := devtest.Start(t, workflows.SearchAttributeKeys...)
	c := server.Client()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	fl := storetest.Fleet(10, 5)
	for _, i := range []int{3, 5, 7, 9} {
		fl.Instances[i].Admins = append(fl.Instances[i].Admins, opsAdmin)
	}
	fl.Instances[1].ExtraRecipients = []string{"noc@acme.example"}
	st := storetest.Load(t, pool, fl)
	h := &harness{t: t, temporal: c, pool: pool, store: st, mail: sendgridtest.NewServer(t)}
	if h.signer, err = links.NewSigner(secret, time.Now); err != nil {
		t.Fatal(err)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + listener.Addr().String()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	notifier, err := activities.NewNotifier(st, h.mail.Config())
	if err != nil {
		t.Fatal(err)
	}
	notifier.EnableActionLinks(activities.ActionLinks{Signer: h.signer, BaseURL: h.url, Lifetime: links.DefaultLinkLifetime})
	signingKey, trustedKey, err := actor.GenerateKeyPair("portal-test")
	if err != nil {
		t.Fatal(err)
	}
	actionSigner, err := actor.ParseSigningKey(signingKey)
	if err != nil {
		t.Fatal(err)
	}
	if h.trusted, err = actor.ParseTrustedKeys(trustedKey); err != nil {
		t.Fatal(err)
	}
	updates := worker.New(c, workflows.TaskQueue, worker.Options{})
	updates.RegisterWorkflowWithOptions(workflows.ServiceUpdates{Trusted: h.trusted}.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	(&activities.StoreActivities{Store: st}).Register(updates)
	notifier.Register(updates)
	admin := worker.New(c, workflows.AdminTaskQueue, worker.Options{DisableWorkflowWorker: true})
	(&activities.StoreActivities{Store: st}).Register(admin)
	for _, w := range []worker.Worker{updates, admin} {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
	// Workflows on the lean lifecycle queue their emails; the worker's
	// dispatcher sends them.
	dispatcher, err := activities.NewDispatcher(st, notifier, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	dispatchCtx, stopDispatch := context.WithCancel(context.Background())
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		dispatcher.Run(dispatchCtx, 4)
	}()
	t.Cleanup(func() { stopDispatch(); <-dispatched })

	mailer, err := sendgrid.NewClient(h.mail.Config(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := portal.New(context.Background(), portal.Config{BaseURL: h.url, Secret: secret, ActionSigner: actionSigner,
		LinkLifetime: links.DefaultLinkLifetime, SessionLifetime: 12 * time.Hour, Mailbox: true}, st, c, mailer, quiet)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewUnstartedServer(p.Handler())
	web.Listener.Close()
	web.Listener = listener
	web.Start()
	t.Cleanup(web.Close)
	return h
}

// start starts the update of instance to 9.2.0 as a rollout would and
// waits for its scheduled email.
func (h *harness) start(instance string) string {
	h.t.Helper()
	ctx := context.Background()
	in, err := h.store.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: instance, Version: "9.2.0",
		SecondaryMinGap: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		h.t.Fatal(err)
	}
	in = in.WithDefaults()
	id := workflows.WorkflowID(instance, "9.2.0")
	if _, err := h.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, workflows.WorkflowType, in); err != nil {
		h.t.Fatal(err)
	}
	testkit.WaitFor(h.t, time.Minute, "the scheduled notice of "+id, func() (bool, string) {
		v := h.status(id)
		for _, n := range v.Notices {
			if n.Kind == workflows.NoticeScheduled {
				return true, ""
			}
		}
		return false, "status " + string(v.Status) + ", no scheduled notice yet"
	})
	return id
}

func (h *harness) status(id string) workflows.StatusView {
	h.t.Helper()
	var v workflows.StatusView
	resp, err := h.temporal.QueryWorkflow(context.Background(), id, "", workflows.QueryStatus)
	if err == nil {
		err = resp.Get(&v)
	}
	if err != nil {
		h.t.Fatalf("query %s: %v", id, err)
	}
	return v
}

// events counts the workflow's history events: a refused action adds none.
func (h *harness) events(id string) int {
	h.t.Helper()
	n := 0
	it := h.temporal.GetWorkflowHistory(context.Background(), id, "", false, 0)
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			h.t.Fatal(err)
		}
		n++
	}
	return n
}

// assertions returns the claims of the signed assertions the workflow's
// accepted Updates carried, oldest first.
func (h *harness) assertions(t *testing.T, id string) []actor.Claims {
	t.Helper()
	var out []actor.Claims
	it := h.temporal.GetWorkflowHistory(context.Background(), id, "", false, 0)
	for it.HasNext() {
		event, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		accepted := event.GetWorkflowExecutionUpdateAcceptedEventAttributes()
		if accepted == nil {
			continue
		}
		var in struct {
			Assertion string `json:"assertion"`
		}
		payloads := accepted.GetAcceptedRequest().GetInput().GetArgs().GetPayloads()
		if len(payloads) != 1 || json.Unmarshal(payloads[0].GetData(), &in) != nil {
			t.Fatalf("update %s: cannot read its input", accepted.GetAcceptedRequest().GetInput().GetName())
		}
		name := accepted.GetAcceptedRequest().GetInput().GetName()
		claims, err := h.trusted.Verify(in.Assertion, actor.Expect{WorkflowID: id, Action: strings.ToLower(name), Now: time.Now(), MaxAge: time.Hour})
		if err != nil {
			t.Errorf("the %s Update's assertion does not verify: %v", name, err)
		}
		out = append(out, claims)
	}
	return out
}

// usedLinks counts the links recorded as used.
func (h *harness) usedLinks() int {
	h.t.Helper()
	var n int
	if err := h.pool.QueryRow(context.Background(), "SELECT count(*) FROM portal_used_links").Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// invite returns the calendar file of the latest mail of kind about
// workflow id.
func (h *harness) invite(t *testing.T, id string, kind workflows.NoticeKind) string {
	t.Helper()
	var found string
	testkit.WaitFor(t, 30*time.Second, "the "+string(kind)+" mail of "+id, func() (bool, string) {
		reqs := h.mail.Accepted()
		for i := len(reqs) - 1; i >= 0; i-- {
			r := reqs[i]
			if r.CustomArgs["workflow_id"] != id || r.CustomArgs["notice"] != string(kind) {
				continue
			}
			if len(r.Attachments) != 1 {
				return false, "the mail has " + strconv.Itoa(len(r.Attachments)) + " attachments"
			}
			raw, err := base64.StdEncoding.DecodeString(r.Attachments[0].Content)
			if err != nil {
				return false, err.Error()
			}
			found = string(raw)
			return true, ""
		}
		return false, "no such mail yet"
	})
	return found
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+/(link|sign-in)/[A-Za-z0-9_\-.]+`)

// mailedLinks returns the links of the latest accepted mail to address
// whose subject contains subject, in order.
func (h *harness) mailedLinks(t *testing.T, address, subject string) []string {
	t.Helper()
	var found []string
	testkit.WaitFor(t, 30*time.Second, "a mail to "+address+" about "+subject, func() (bool, string) {
		reqs := h.mail.Accepted()
		for i := len(reqs) - 1; i >= 0; i-- {
			if !strings.Contains(reqs[i].Subject, subject) {
				continue
			}
			if _, text, ok := reqs[i].CopyFor(address); ok {
				found = linkPattern.FindAllString(text, -1)
				return true, ""
			}
		}
		return false, "no such mail among " + strconv.Itoa(len(reqs))
	})
	return found
}

// mailedLink returns the link of the action path prefix ("/link/",
// "/sign-in/") that carries action.
func (h *harness) mailedLink(t *testing.T, address, subject, action string) string {
	t.Helper()
	for _, l := range h.mailedLinks(t, address, subject) {
		token := l[strings.LastIndex(l, "/")+1:]
		if c, err := h.signer.Verify(token); err == nil && c.Action == action {
			return l
		}
	}
	t.Fatalf("no %s link in the mail to %s about %q", action, address, subject)
	return ""
}

// screenshotDir holds the screenshots of every page and email kind
// (ignored by git): SCREENSHOT_DIR or .screenshots at the repository root.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", ".screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
