package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/cli"
)

func newKeysCmd(e *env) *cobra.Command {
	keys := &cobra.Command{
		Use:         "keys",
		Short:       "make the key pairs admin actions are signed with (README, Signing keys)",
		Args:        maxArgs(0),
		Annotations: map[string]string{withoutConfig: "true"},
	}
	generate := &cobra.Command{
		Use:   "generate --id KEY-ID",
		Short: "print a new ACTION_SIGNING_KEY and the ACTION_TRUSTED_KEYS entry that verifies it",
		Args:  maxArgs(0),
	}
	keyID := generate.Flags().String("id", "", "the key's ID, named in every assertion it signs, such as ops-2026-11 (required)")
	generate.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "id"); err != nil {
			return err
		}
		signing, trusted, err := actor.GenerateKeyPair(*keyID)
		if err != nil {
			return cli.Usagef("keys generate: %v", err)
		}
		fmt.Fprintf(e.stdout, "# the signer's secret (starter or portal): keep it in a secret store, never in git\nACTION_SIGNING_KEY=%s\n", signing)
		fmt.Fprintf(e.stdout, "# every worker: add this entry to its trusted keys (comma-separated while rotating);\n# append :operator-cli or :portal-link+portal-session+oidc to limit it to its signer's channels\nACTION_TRUSTED_KEYS=%s\n", trusted)
		return nil
	}
	keys.AddCommand(generate)
	return keys
}
