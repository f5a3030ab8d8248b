package devtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	// namespaceRetention keeps a test's histories for a day after it,
	// the shortest retention a server accepts.
	namespaceRetention = 24 * time.Hour
	// servedProbes is how many workflow IDs served asks about: spread
	// over the shards, they reach every history host of a small cluster.
	servedProbes = 16
	pollInterval = 200 * time.Millisecond
)

// newNamespace registers a fresh namespace for one test on the cluster at
// address, waits until the cluster serves it, and registers
// searchAttributes in it. Stopping the server deletes the namespace.
func newNamespace(address string, searchAttributes []temporal.SearchAttributeKey) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	namespace := "svcupdate-test-" + strings.ToLower(rand.Text()[:12])
	namespaces, err := client.NewNamespaceClient(client.Options{HostPort: address, Logger: quietLogger()})
	if err != nil {
		return nil, fmt.Errorf("connect to the Temporal cluster at %s (%s): %w", address, ExternalAddressVariable, err)
	}
	defer namespaces.Close()
	if err := namespaces.Register(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(namespaceRetention),
	}); err != nil {
		return nil, fmt.Errorf("register namespace %s on %s: %w", namespace, address, err)
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: address, Namespace: namespace, Logger: quietLogger()})
	if err != nil {
		return nil, fmt.Errorf("connect to namespace %s on %s: %w", namespace, address, err)
	}
	server := &Server{client: c, address: address, namespace: namespace, stop: func() error {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		_, err := c.OperatorService().DeleteNamespace(ctx, &operatorservice.DeleteNamespaceRequest{Namespace: namespace})
		return err
	}}
	if err := waitUntil(ctx, "namespace "+namespace+" served by every history host", func() error { return served(ctx, c) }); err != nil {
		return nil, errors.Join(err, server.Stop())
	}
	if err := addSearchAttributes(ctx, c, namespace, searchAttributes); err != nil {
		return nil, errors.Join(err, server.Stop())
	}
	return server, nil
}

// served reports whether the history hosts know the namespace: each learns
// of a new one on its own cache refresh, and until then answers
// NamespaceNotFound for workflows of it.
func served(ctx context.Context, c client.Client) error {
	for i := range servedProbes {
		_, err := c.DescribeWorkflow(ctx, "namespace-probe-"+strconv.Itoa(i), "")
		var notFound *serviceerror.NotFound
		if !errors.As(err, &notFound) {
			return fmt.Errorf("describe a missing workflow: got %v, want NotFound", err)
		}
	}
	return nil
}

// addSearchAttributes registers keys in the namespace and waits until
// the cluster lists them.
func addSearchAttributes(ctx context.Context, c client.Client, namespace string, keys []temporal.SearchAttributeKey) error {
	if len(keys) == 0 {
		return nil
	}
	want := map[string]enums.IndexedValueType{}
	for _, key := range keys {
		want[key.GetName()] = key.GetValueType()
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: want,
	}); err != nil {
		return fmt.Errorf("register search attributes in namespace %s: %w", namespace, err)
	}
	return waitUntil(ctx, "search attributes listed in "+namespace, func() error {
		listed, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		if err != nil {
			return err
		}
		for name, valueType := range want {
			if listed.GetCustomAttributes()[name] != valueType {
				return fmt.Errorf("%s not listed yet (listed: %v)", name, slices.Sorted(maps.Keys(listed.GetCustomAttributes())))
			}
		}
		return nil
	})
}

// waitUntil polls check until it returns nil or ctx ends, and then
// reports check's last error.
func waitUntil(ctx context.Context, what string, check func() error) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-ticker.C:
		}
	}
}
