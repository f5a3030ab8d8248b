// Command starter is the CLI of operators and instance admins: it migrates
// the schema, registers the search attributes, loads the fleet, rolls a
// release out, approves, reschedules, inspects, lists and cancels updates,
// and runs the demo behind `make run`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	temporallog "go.temporal.io/sdk/log"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/connect"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil && interrupted {
		fmt.Fprintln(os.Stderr, "starter: interrupted")
		os.Exit(130)
	}
	os.Exit(cli.ExitCode("starter", err, os.Stderr))
}

// command is one subcommand.
type command struct {
	name     string
	synopsis string // flags and arguments, for -h
	summary  string
	run      func(ctx context.Context, e *env, args []string) error
}

// commands lists the subcommands in the order -h shows them. It is set in
// init because the subcommands print their own usage from it.
var commands []command

func init() {
	commands = []command{
		{"migrate", "[--create-database]", "apply the database migrations", runMigrate},
		{"setup", "", "register the search attributes with the Temporal server", runSetup},
		{"load", "FILE", "load (upsert) a fleet file: releases, slots, tenants, instances, recipients", runLoad},
		{"sync-admins", "[--instance I]... [--concurrency N]", "send running updates their instance's admins from the database (retries what load could not tell them)", runSyncAdmins},
		{"rollout", "--version V [--concurrency N] [--dry-run]", "book slots and start an update for every eligible instance", runRollout},
		{"approve", "--instance I --admin EMAIL [--version V]", "approve an instance's update as one of its admins", runApprove},
		{"reschedule", "--instance I --admin EMAIL --primary T --secondary T [--target V] [--version V]", "move an update to other slots (RFC 3339 times), optionally to a later version", runReschedule},
		{"status", "--instance I [--version V] [--json]", "show one update: status, windows, attempts, notices", runStatus},
		{"list", "[--version V] [--status S]", "list updates from Temporal visibility, with counts per status", runList},
		{"slots", "--version V [--holders=false]", "show a release's slots (UTC): capacity, booked, the updates holding them; warn where bookings and open updates disagree", runSlots},
		{"cancel", "--instance I [--version V] [--reason R]", "cancel an update (its slots are released, admins told)", runCancel},
		{"demo", "[--run ID]", "the demo behind `make run`: a small fleet through the whole lifecycle in minutes", runDemo},
	}
}

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return cli.Usagef("no subcommand given")
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		printUsage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		cfg, err := config.Load()
		if err != nil {
			return err
		}
		e := &env{cfg: cfg, stdout: stdout, stderr: stderr}
		defer e.close()
		if err := c.run(ctx, e, args[1:]); !errors.Is(err, errHelpShown) {
			return err
		}
		return nil
	}
	return cli.Usagef("unknown subcommand %q (one of: %s; see starter -h)", name, commandNames())
}

func commandNames() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: starter SUBCOMMAND [flags]   (starter SUBCOMMAND -h for its flags)")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(c.name+" "+c.synopsis), c.summary)
	}
	fmt.Fprintln(w)
	config.PrintUsage(w, "starter")
}

// newFlagSet returns a flag set that reports errors through parseFlags
// instead of printing them.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// errHelpShown ends a subcommand after its -h was printed.
var errHelpShown = errors.New("help shown")

// parseFlags parses args, printing the subcommand's flags on -h, and turns a
// parse error into one line that names the subcommand. maxArgs bounds the
// positional arguments.
func parseFlags(fs *flag.FlagSet, e *env, args []string, maxArgs int) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printFlags(fs, e.stdout)
		return errHelpShown
	}
	if err != nil {
		return cli.Usagef("%s: %v (see starter %s -h)", fs.Name(), err, fs.Name())
	}
	if fs.NArg() > maxArgs {
		return cli.Usagef("%s: unexpected argument %q (see starter %s -h)", fs.Name(), fs.Arg(maxArgs), fs.Name())
	}
	return nil
}

func printFlags(fs *flag.FlagSet, w io.Writer) {
	for _, c := range commands {
		if c.name == fs.Name() {
			fmt.Fprintf(w, "Usage: starter %s %s\n  %s\n\n", c.name, c.synopsis, c.summary)
		}
	}
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// required reports the first of the named flags left empty.
func required(fs *flag.FlagSet, names ...string) error {
	for _, name := range names {
		if fs.Lookup(name).Value.String() == "" {
			return cli.Usagef("%s: --%s is required (see starter %s -h)", fs.Name(), name, fs.Name())
		}
	}
	return nil
}

// env holds what subcommands share: the configuration, the output and the
// connections, opened on first use and closed when the subcommand ends.
type env struct {
	cfg            config.Config
	stdout, stderr io.Writer

	temporalClient client.Client
	pool           *pgxpool.Pool
}

// temporal returns the Temporal client, dialling on first use.
func (e *env) temporal(ctx context.Context) (client.Client, error) {
	if e.temporalClient != nil {
		return e.temporalClient, nil
	}
	c, err := client.DialContext(ctx, e.clientOptions())
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (TEMPORAL_ADDRESS): %w", e.cfg.TemporalAddress, err)
	}
	e.temporalClient = c
	return c, nil
}

func (e *env) clientOptions() client.Options {
	// The SDK logs connection chatter at info; an operator only needs warnings.
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Load validated the keys, so the codec builds.
	options, _ := e.cfg.ClientOptions()
	options.Logger = temporallog.NewStructuredLogger(logger)
	options.Identity = "starter@" + hostname()
	return options
}

// temporalWhenUp is temporal, but waits up to CONNECT_TIMEOUT for a server
// that is still starting (deployments start the setup beside the server).
func (e *env) temporalWhenUp(ctx context.Context) (client.Client, error) {
	var c client.Client
	err := e.waitFor(ctx, "Temporal at "+e.cfg.TemporalAddress, func(ctx context.Context) (err error) {
		c, err = e.temporal(ctx)
		return err
	})
	return c, err
}

// waitFor retries attempt until it succeeds or CONNECT_TIMEOUT passes,
// saying once on stderr what it waits for.
func (e *env) waitFor(ctx context.Context, what string, attempt func(context.Context) error) error {
	waiter := connect.Waiter{
		Timeout:  e.cfg.ConnectTimeout,
		Interval: time.Second,
		Waiting: func(_ connect.Target, n int, err error) {
			if n == 1 {
				fmt.Fprintf(e.stderr, "waiting up to %s (CONNECT_TIMEOUT) for %s: %v\n", e.cfg.ConnectTimeout, what, err)
			}
		},
	}
	err := waiter.Wait(ctx, connect.Target{Description: what}, attempt)
	var timeout *connect.TimeoutError
	if errors.As(err, &timeout) {
		// The CLI keeps its words: it waits for a server to answer, the
		// worker for one to be ready (its schema migrated, say).
		return fmt.Errorf("%s did not answer within %s (CONNECT_TIMEOUT): %w", what, timeout.Timeout, timeout.Err)
	}
	return err
}

// postgres returns the pool on DATABASE_URL, connecting on first use.
func (e *env) postgres(ctx context.Context) (*pgxpool.Pool, error) {
	if e.pool != nil {
		return e.pool, nil
	}
	pool, err := pgxpool.New(ctx, e.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		err = fmt.Errorf("connect to Postgres (DATABASE_URL): %w", err)
		if connect.PostgresAnswered(err) {
			return nil, connect.Permanent(err)
		}
		return nil, err
	}
	e.pool = pool
	return pool, nil
}

func (e *env) close() {
	if e.temporalClient != nil {
		e.temporalClient.Close()
	}
	if e.pool != nil {
		e.pool.Close()
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
