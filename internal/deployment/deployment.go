// Package deployment ties a Postgres database and a Temporal namespace to
// one deployment of svcupdate: `starter setup` writes one identity into
// both, and a worker refuses to start when they disagree, so a worker left
// pointing at another database cannot poll the namespace and fail the
// notices of a fleet it does not know.
package deployment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/store"
)

// DataKey is the key of the namespace's data that holds the identity.
const DataKey = "svcupdate-deployment"

// ErrMismatch: the database and the namespace belong to different
// deployments.
var ErrMismatch = errors.New("database and Temporal namespace belong to different deployments")

// namespaceIdentity reads the identity from the namespace's data, "" when
// it has none.
func namespaceIdentity(ctx context.Context, c client.Client, namespace string) (string, error) {
	resp, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	if err != nil {
		return "", fmt.Errorf("describe namespace %s: %w", namespace, err)
	}
	return resp.GetNamespaceInfo().GetData()[DataKey], nil
}

func databaseIdentity(ctx context.Context, st *store.Store) (store.Deployment, bool, error) {
	d, err := st.Deployment(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return store.Deployment{}, false, nil
	}
	return d, err == nil, err
}

// Bind is `starter setup`'s part: it gives a database and namespace that
// have no identity a new one, gives the namespace the database's when
// only the database has one (a namespace recreated, say), and returns the
// identity. A namespace already bound to a deployment is never taken over
// by a database without its identity or with another one.
func Bind(ctx context.Context, c client.Client, namespace string, st *store.Store) (string, error) {
	inNamespace, err := namespaceIdentity(ctx, c, namespace)
	if err != nil {
		return "", err
	}
	inDatabase, bound, err := databaseIdentity(ctx, st)
	if err != nil {
		return "", err
	}
	switch {
	case inNamespace != "" && bound && inNamespace == inDatabase.ID:
		return inNamespace, nil
	case inNamespace != "":
		return "", mismatch(namespace, inNamespace, inDatabase, bound)
	case !bound:
		claimed, err := st.ClaimDeployment(ctx, store.Deployment{ID: rand.Text(), Namespace: namespace})
		if err != nil {
			return "", err
		}
		inDatabase = claimed
	}
	_, err = c.WorkflowService().UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
		Namespace:  namespace,
		UpdateInfo: &namespacepb.UpdateNamespaceInfo{Data: map[string]string{DataKey: inDatabase.ID}},
	})
	if err != nil {
		return "", fmt.Errorf("write the deployment identity into namespace %s's data: %w", namespace, err)
	}
	return inDatabase.ID, nil
}

// Check is the worker's part, before it polls: nil when the database and
// the namespace belong to one deployment; ErrUnbound when neither has an
// identity yet (`starter setup` not run since this check came, which the
// worker only warns about); an ErrMismatch error naming both otherwise.
func Check(ctx context.Context, c client.Client, namespace string, st *store.Store) error {
	inNamespace, err := namespaceIdentity(ctx, c, namespace)
	if err != nil {
		return err
	}
	inDatabase, bound, err := databaseIdentity(ctx, st)
	if err != nil {
		return err
	}
	switch {
	case inNamespace == "" && !bound:
		return ErrUnbound
	case inNamespace == "" && inDatabase.Namespace == namespace:
		// The namespace lost its data (recreated): setup writes it again.
		return ErrUnbound
	case inNamespace != "" && bound && inNamespace == inDatabase.ID:
		return nil
	}
	return mismatch(namespace, inNamespace, inDatabase, bound)
}

// ErrUnbound: neither side has an identity yet.
var ErrUnbound = errors.New("the database and the Temporal namespace are not bound to a deployment yet: run `starter setup`")

func mismatch(namespace, inNamespace string, inDatabase store.Deployment, bound bool) error {
	database := "the database has none (a database of no deployment)"
	if bound {
		database = fmt.Sprintf("the database belongs to deployment %s (namespace %s)", inDatabase.ID, inDatabase.Namespace)
	}
	ns := "namespace " + namespace + " has none"
	if inNamespace != "" {
		ns = fmt.Sprintf("namespace %s belongs to deployment %s", namespace, inNamespace)
	}
	return fmt.Errorf("%w: %s, %s; point DATABASE_URL at the namespace's database, or TEMPORAL_NAMESPACE at the database's namespace", ErrMismatch, ns, database)
}
