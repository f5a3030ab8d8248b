package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/svcupdate/svcupdate/internal/buildinfo"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
)

// parseArgs rejects every argument but -h, which prints the usage, and
// --version, which prints the build; both end the program with status 0
// (flag.ErrHelp). The flag
// package's own messages are silenced: a bad flag is reported once, by
// cli.ExitCode.
func parseArgs(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(program, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	flags.Usage = func() {}
	version := flags.Bool("version", false, "print the build and exit")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "%s runs the svcupdate workflow, its activities and the update executor.\n\n", program)
			if err := config.PrintUsage(stdout, program); err != nil {
				return err
			}
			return flag.ErrHelp
		}
		return &cli.UsageError{Err: fmt.Errorf("%w (the worker takes -h and --version only; see -h)", err)}
	}
	if *version {
		fmt.Fprintf(stdout, "%s %s\n", program, buildinfo.Read())
		return flag.ErrHelp
	}
	if flags.NArg() > 0 {
		return cli.Usagef("unexpected argument %q: the worker takes its configuration from the environment (see -h)", flags.Arg(0))
	}
	return nil
}
