// Package devtest starts a Temporal dev server for a test from the
// repository's bin/temporal (`make test` builds it), on a free port, and
// stops it when the test ends, so each package does not grow its own copy.
// Against a cluster (ExternalAddressVariable) it gives each test a fresh
// namespace instead.
package devtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/pgtest"
)

// startTimeout bounds the server's start, which on a loaded machine takes
// seconds.
const startTimeout = 2 * time.Minute

// CLIPath returns the absolute path of <repository>/bin/temporal, found by
// walking up from the working directory (a test's package directory) to
// the directory that holds go.mod.
func CLIPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: cannot find bin/temporal")
		}
		dir = parent
	}
	path := filepath.Join(dir, "bin", "temporal")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("the Temporal CLI is missing at %s (`make test` builds it): %w", path, err)
	}
	return path, nil
}

// ExternalAddressVariable names the variable that points the tests at a
// running Temporal cluster (`make test-cluster`) instead of a dev server of
// their own; each Start then gets a fresh namespace on that cluster.
const ExternalAddressVariable = "SVCUPDATE_TEST_TEMPORAL_ADDRESS"

// DatabaseFileVariable, set to "file", gives each dev server a database
// file of its own (--db-filename in a fresh directory), as `make
// dev-server` runs it, instead of the in-memory one. `make bench-scale`
// sets it unless told "memory".
const DatabaseFileVariable = "SVCUPDATE_TEST_DEV_SERVER_DB"

// Server is the Temporal server of a test: a dev server started for it, or
// a namespace of its own on the cluster ExternalAddressVariable names.
type Server struct {
	client    client.Client
	address   string
	namespace string
	stop      func() error
}

// Client returns a client of the server's namespace.
func (s *Server) Client() client.Client { return s.client }

// FrontendHostPort returns the address clients dial.
func (s *Server) FrontendHostPort() string { return s.address }

// Stop closes the client and stops the dev server (on a cluster: deletes
// the namespace).
func (s *Server) Stop() error { return s.stop() }

// SetProgramEnv points the programs a test runs at the server through
// TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.
func (s *Server) SetProgramEnv(t testing.TB) {
	t.Setenv("TEMPORAL_ADDRESS", s.address)
	t.Setenv("TEMPORAL_NAMESPACE", s.namespace)
}

// Start starts a server with searchAttributes registered (none when the
// test registers them itself, as `starter setup` does) and stops it when
// the test ends. Its client logs nothing below warnings.
func Start(t testing.TB, searchAttributes ...temporal.SearchAttributeKey) *Server {
	t.Helper()
	server, err := StartServer(searchAttributes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Stop(); err != nil {
			t.Logf("stop the Temporal server: %v", err)
		}
	})
	return server
}

// StartForPrograms starts a server (without search attributes: the tests
// register them with `starter setup`) and a fresh Postgres database, and
// points the programs run by the test at both through TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE and DATABASE_URL; with SetActionKeys, they sign and
// trust one new key. It returns the server's client and the database's URL.
func StartForPrograms(t *testing.T) (client.Client, string) {
	t.Helper()
	server := Start(t)
	dbURL := pgtest.NewDatabase(t)
	server.SetProgramEnv(t)
	t.Setenv("DATABASE_URL", dbURL)
	SetActionKeys(t)
	return server.Client(), dbURL
}

// SetActionKeys makes a new key pair for the test: the programs it runs
// sign admin actions with ACTION_SIGNING_KEY and trust ACTION_TRUSTED_KEYS;
// config.Load gives in-process workers and senders the same.
func SetActionKeys(t *testing.T) {
	t.Helper()
	signing, trusted, err := actor.GenerateKeyPair("test-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACTION_SIGNING_KEY", signing)
	t.Setenv("ACTION_TRUSTED_KEYS", trusted)
}

// StartServer is Start for a server shared by a package's tests (from
// TestMain): the caller stops it.
func StartServer(searchAttributes ...temporal.SearchAttributeKey) (*Server, error) {
	if address := os.Getenv(ExternalAddressVariable); address != "" {
		return newNamespace(address, searchAttributes)
	}
	path, err := CLIPath()
	if err != nil {
		return nil, err
	}
	var args []string
	for _, key := range searchAttributes {
		args = append(args, "--search-attribute", key.GetName()+"="+cliAttributeType(key.GetValueType()))
	}
	removeDatabase := func() error { return nil }
	switch db := os.Getenv(DatabaseFileVariable); db {
	case "", "memory":
	case "file":
		dir, err := os.MkdirTemp("", "devtest-temporal-")
		if err != nil {
			return nil, err
		}
		args = append(args, "--db-filename", filepath.Join(dir, "temporal.db"))
		removeDatabase = func() error { return os.RemoveAll(dir) }
	default:
		return nil, fmt.Errorf("%s=%q: accepted: memory (the default) or file", DatabaseFileVariable, db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	const namespace = "default"
	server, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  path,
		ClientOptions: &client.Options{Namespace: namespace, Logger: quietLogger()},
		LogLevel:      "error",
		ExtraArgs:     args,
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start the Temporal dev server from %s: %w", path, err), removeDatabase())
	}
	stop := func() error { return errors.Join(server.Stop(), removeDatabase()) }
	// A server with a database file creates its namespace at start and its
	// history service learns of it on a cache refresh: until then, starts
	// fail with NamespaceNotFound.
	if err := waitUntil(ctx, "namespace "+namespace+" served", func() error { return served(ctx, server.Client()) }); err != nil {
		return nil, errors.Join(err, stop())
	}
	return &Server{client: server.Client(), address: server.FrontendHostPort(), namespace: namespace, stop: stop}, nil
}

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// cliAttributeType names a search attribute type as the CLI's
// --search-attribute flag accepts it.
func cliAttributeType(t enumspb.IndexedValueType) string {
	switch t {
	case enumspb.INDEXED_VALUE_TYPE_KEYWORD:
		return "Keyword"
	case enumspb.INDEXED_VALUE_TYPE_DATETIME:
		return "Datetime"
	case enumspb.INDEXED_VALUE_TYPE_BOOL:
		return "Bool"
	case enumspb.INDEXED_VALUE_TYPE_TEXT:
		return "Text"
	case enumspb.INDEXED_VALUE_TYPE_INT:
		return "Int"
	case enumspb.INDEXED_VALUE_TYPE_DOUBLE:
		return "Double"
	}
	return "KeywordList"
}
