package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// Shell completion (`starter completion bash|zsh|fish|powershell`, from
// cobra) completes subcommands and flags by itself; the flags that name an
// instance, a release or a status complete from Postgres and the contract.

// namesOffered bounds the names offered at once; typing more narrows them.
const namesOffered = 200

// lookupTimeout bounds a look-up: a shell waits for it on every tab.
const lookupTimeout = 3 * time.Second

// registerCompletions gives every flag of the tree that names an instance
// (--instance), a release (--version, --target) or a status (--status) its
// completion.
func registerCompletions(cmd *cobra.Command, e *env) {
	instances := e.completeFromStore(func(ctx context.Context, st *store.Store, prefix string) ([]string, error) {
		return st.InstanceIDs(ctx, prefix, namesOffered)
	})
	versions := e.completeFromStore(func(ctx context.Context, st *store.Store, prefix string) ([]string, error) {
		return st.ReleaseVersions(ctx, prefix, namesOffered)
	})
	for name, complete := range map[string]cobra.CompletionFunc{
		"instance": instances,
		"version":  versions,
		"target":   versions,
		"status":   completeStatuses,
	} {
		if cmd.Flags().Lookup(name) != nil {
			_ = cmd.RegisterFlagCompletionFunc(name, complete)
		}
	}
	for _, sub := range cmd.Commands() {
		registerCompletions(sub, e)
	}
}

// completeFromStore completes from what lookup finds in Postgres. The
// completion request runs no subcommand, so it loads the configuration
// itself; a failure offers nothing rather than an error in the shell.
func (e *env) completeFromStore(lookup func(context.Context, *store.Store, string) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		cfg, err := config.Load()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		e.cfg = cfg
		ctx, cancel := context.WithTimeout(cmd.Context(), lookupTimeout)
		defer cancel()
		pool, err := e.postgres(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		names, err := lookup(ctx, store.New(pool), toComplete)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeStatuses offers the statuses of the contract, in any case typed.
func completeStatuses(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	var names []string
	for _, s := range workflows.AllStatuses {
		if strings.HasPrefix(strings.ToLower(string(s)), strings.ToLower(toComplete)) {
			names = append(names, string(s))
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
