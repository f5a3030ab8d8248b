package deployment

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
)

// One namespace, three databases: the deployment's own, a fresh one and
// one set up with another namespace. Only the first may serve it.
func TestOneDeploymentOneDatabase(t *testing.T) {
	ctx := context.Background()
	server := devtest.Start(t)
	c := server.Client()
	const namespace = "default"
	own, fresh, other := store.New(pgtest.NewPool(t)), store.New(pgtest.NewPool(t)), store.New(pgtest.NewPool(t))

	if err := Check(ctx, c, namespace, own); !errors.Is(err, ErrUnbound) {
		t.Fatalf("check before setup: %v, want ErrUnbound", err)
	}
	id, err := Bind(ctx, c, namespace, own)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Bind(ctx, c, namespace, own); err != nil || again != id {
		t.Errorf("a second setup: %s, %v; want %s kept", again, err, id)
	}
	if err := Check(ctx, c, namespace, own); err != nil {
		t.Errorf("the deployment's own database: %v", err)
	}
	d, err := own.Deployment(ctx)
	if err != nil || d.ID != id || d.Namespace != namespace {
		t.Errorf("database identity %+v, %v", d, err)
	}

	// A leftover worker pointed at a database of no deployment.
	err = Check(ctx, c, namespace, fresh)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "namespace default belongs to deployment "+id) ||
		!strings.Contains(err.Error(), "the database has none") {
		t.Errorf("fresh database: %v", err)
	}
	if _, err := Bind(ctx, c, namespace, fresh); !errors.Is(err, ErrMismatch) {
		t.Errorf("setup must not hand the namespace to a fresh database: %v", err)
	}

	// A database bound to another deployment and namespace.
	if _, err := other.ClaimDeployment(ctx, store.Deployment{ID: "elsewhere", Namespace: "fleet-eu"}); err != nil {
		t.Fatal(err)
	}
	err = Check(ctx, c, namespace, other)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "deployment elsewhere (namespace fleet-eu)") {
		t.Errorf("another deployment's database: %v", err)
	}

	// The first identity written stays.
	if d, err := other.ClaimDeployment(ctx, store.Deployment{ID: "later", Namespace: namespace}); err != nil || d.ID != "elsewhere" {
		t.Errorf("a second claim: %+v, %v; want elsewhere kept", d, err)
	}
}
