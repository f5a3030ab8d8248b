package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/svcupdate/svcupdate/internal/buildinfo"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
)

// subcommands lists the subcommands in the order help shows them. A new
// subcommand is a newXCmd in its own file, added here.
func subcommands(e *env) []*cobra.Command {
	return []*cobra.Command{
		newMigrateCmd(e),
		newSetupCmd(e),
		newLoadCmd(e),
		newSyncAdminsCmd(e),
		newRolloutCmd(e),
		newApproveCmd(e),
		newRescheduleCmd(e),
		newStatusCmd(e),
		newListCmd(e),
		newSlotsCmd(e),
		newCancelCmd(e),
		newPortalCmd(e),
		newKeysCmd(e),
		newDemoCmd(e),
	}
}

func init() {
	cobra.EnableCommandSorting = false // help lists subcommands in lifecycle order
}

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr}
	defer e.close()
	root := newRootCmd(e)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// withoutConfig marks the commands that run without loading the
// configuration (help and completion scripts work whatever it holds).
const withoutConfig = "svcupdate/without-config"

// newRootCmd builds the command tree; e receives the configuration before
// any subcommand runs.
func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "starter",
		Short: "the operators' CLI of svcupdate",
		Long: "starter migrates the schema, registers the search attributes, loads the fleet, rolls a\n" +
			"release out, approves, reschedules, inspects, lists and cancels updates, and runs the demo.",
		Version:                    buildinfo.Read().String(),
		SilenceErrors:              true, // main prints the one line, see cli.ExitCode
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
		Args:                       subcommandGiven,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Reached only without arguments: subcommandGiven refuses the rest.
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return cli.Usagef("no subcommand given (see starter -h)")
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if !needsConfig(cmd) {
				return nil
			}
			cfg, err := config.Load()
			if err != nil {
				return err
			}
			e.cfg = cfg
			return nil
		},
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetVersionTemplate("starter {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return cli.Usagef("%s: %v (%ssee %s -h)", cmd.Name(), err, flagSuggestion(cmd, err), cmd.CommandPath())
	})
	root.AddCommand(subcommands(e)...)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	registerCompletions(root, e)
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			c.Annotations = map[string]string{withoutConfig: "true"}
		}
	}
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		defaultHelp(cmd, args)
		if cmd == root {
			fmt.Fprintln(cmd.OutOrStdout())
			_ = config.PrintUsage(cmd.OutOrStdout(), "starter")
		}
	})
	return root
}

// needsConfig reports whether cmd runs with the configuration loaded.
// Completion requests load it only where they look names up.
func needsConfig(cmd *cobra.Command) bool {
	if cmd.Name() == cobra.ShellCompRequestCmd || cmd.Name() == cobra.ShellCompNoDescRequestCmd {
		return false
	}
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[withoutConfig] == "true" {
			return false
		}
	}
	return true
}

// subcommandGiven refuses an unknown subcommand, suggesting the nearest.
func subcommandGiven(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := ""
	if suggestions := cmd.SuggestionsFor(args[0]); len(suggestions) > 0 {
		hint = fmt.Sprintf("did you mean %s? ", strings.Join(suggestions, " or "))
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return cli.Usagef("unknown subcommand %q (%sone of: %s; see starter -h)", args[0], hint, strings.Join(names, ", "))
}

// maxArgs accepts at most n positional arguments.
func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return cli.Usagef("%s: unexpected argument %q (see %s -h)", cmd.Name(), args[n], cmd.CommandPath())
		}
		return nil
	}
}

// required reports the first of the named flags left empty.
func required(cmd *cobra.Command, names ...string) error {
	for _, name := range names {
		if cmd.Flags().Lookup(name).Value.String() == "" {
			return cli.Usagef("%s: --%s is required (see %s -h)", cmd.Name(), name, cmd.CommandPath())
		}
	}
	return nil
}

// flagSuggestion is "did you mean --concurrency? " for an unknown flag
// within two edits of one of cmd's, else empty.
func flagSuggestion(cmd *cobra.Command, err error) string {
	typed, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return ""
	}
	best, bestDistance := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if d := editDistance(typed, f.Name); d < bestDistance {
			best, bestDistance = f.Name, d
		}
	})
	if best == "" {
		return ""
	}
	return "did you mean --" + best + "? "
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
