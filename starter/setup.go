package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/connect"
	"github.com/svcupdate/svcupdate/internal/deployment"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

func newSetupCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "setup",
		Short: "register the search attributes with the Temporal server",
		Args:  maxArgs(0),
		RunE:  func(cmd *cobra.Command, _ []string) error { return runSetup(cmd.Context(), e) },
	}
}

func runSetup(ctx context.Context, e *env) error {
	c, err := e.temporalWhenUp(ctx)
	if err != nil {
		return err
	}
	// A server that has just come up may not have created its namespace yet.
	var added []string
	if err := e.waitFor(ctx, "namespace "+e.cfg.TemporalNamespace, func(ctx context.Context) (err error) {
		added, err = registerSearchAttributes(ctx, c, e.cfg.TemporalNamespace)
		if err != nil && !namespaceMayAppear(err) {
			return connect.Permanent(err)
		}
		return err
	}); err != nil {
		return err
	}
	if len(added) == 0 {
		fmt.Fprintf(e.stdout, "search attributes already registered in namespace %s\n", e.cfg.TemporalNamespace)
	}
	for _, name := range added {
		fmt.Fprintf(e.stdout, "registered search attribute %s\n", name)
	}
	pool, err := e.postgres(ctx)
	if err != nil {
		return err
	}
	id, err := deployment.Bind(ctx, c, e.cfg.TemporalNamespace, store.New(pool))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "namespace %s and the database belong to deployment %s\n", e.cfg.TemporalNamespace, id)
	return nil
}

// registerSearchAttributes adds every key of workflows.SearchAttributeKeys
// that the namespace lacks and returns the names added. A name registered
// with another type is an error: the workflows could not set it.
func registerSearchAttributes(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	existing, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	missing := map[string]enums.IndexedValueType{}
	var added []string
	for _, key := range workflows.SearchAttributeKeys {
		have, ok := existing.GetCustomAttributes()[key.GetName()]
		switch {
		case !ok:
			missing[key.GetName()] = key.GetValueType()
			added = append(added, key.GetName())
		case have != key.GetValueType():
			return nil, fmt.Errorf("search attribute %s is registered as %s in namespace %s; svcupdate needs %s",
				key.GetName(), have, namespace, key.GetValueType())
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	}); err != nil {
		var exists *serviceerror.AlreadyExists
		if errors.As(err, &exists) {
			return nil, nil // registered by a concurrent setup
		}
		return nil, fmt.Errorf("register search attributes in namespace %s: %w", namespace, err)
	}
	return added, nil
}

// namespaceMayAppear reports whether err may pass by waiting: the namespace
// is not registered yet or the server is still starting.
func namespaceMayAppear(err error) bool {
	var (
		nsNotFound  *serviceerror.NamespaceNotFound
		notFound    *serviceerror.NotFound
		unavailable *serviceerror.Unavailable
	)
	return errors.As(err, &nsNotFound) || errors.As(err, &notFound) || errors.As(err, &unavailable)
}
