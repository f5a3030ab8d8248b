package e2e

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/svcupdate/svcupdate/internal/config"
)

// composePostgresPassword stands for the password an operator passes to
// docker compose.
const composePostgresPassword = "from-the-environment"

// loadCompose parses the repository's docker-compose.yml the way docker
// compose does, with every profile enabled.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	// Secrets come from the environment of docker compose.
	project, err := loadComposeWith(t, types.Mapping{"POSTGRES_PASSWORD": composePostgresPassword})
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return project
}

func loadComposeWith(t *testing.T, environment types.Mapping) (*types.Project, error) {
	t.Helper()
	root := repoRoot(t)
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: environment,
	}
	return loader.LoadWithContext(context.Background(), details,
		loader.WithProfiles([]string{"*"}),
		func(o *loader.Options) { o.SetProjectName("svcupdate", true) })
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func readRepoFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func composeService(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q (has %v)", name, p.ServiceNames())
	}
	return s
}

func TestComposeServicesAndPorts(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, want := range []struct {
		service   string
		published string
		target    uint32
	}{
		// Ports of make cluster, clear of a local Postgres and dev server.
		{"postgres", "15432", 5432},
		{"temporal", "7633", 7233},
		{"temporal-ui", "8633", 8080},
		{"worker", "9090", 9090},
	} {
		s := composeService(t, p, want.service)
		if !slices.ContainsFunc(s.Ports, func(port types.ServicePortConfig) bool {
			return port.Published == want.published && port.Target == want.target
		}) {
			t.Errorf("service %s publishes %+v, want %s:%d", want.service, s.Ports, want.published, want.target)
		}
	}
	for _, name := range []string{"setup", "starter", "temporal-schema", "temporal-namespace"} {
		composeService(t, p, name)
	}
	if setup := composeService(t, p, "setup"); !strings.Contains(strings.Join(setup.Command, " "), "starter migrate") ||
		!strings.Contains(strings.Join(setup.Command, " "), "starter setup") {
		t.Errorf("setup runs %q, want it to run starter migrate and starter setup", setup.Command)
	}
	worker := composeService(t, p, "worker")
	if dep, ok := worker.DependsOn["setup"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("worker depends on %+v, want setup with %s", worker.DependsOn, types.ServiceConditionCompletedSuccessfully)
	}
	if worker.Build == nil || worker.Build.Dockerfile != "Dockerfile" {
		t.Errorf("worker build = %+v, want the repository's Dockerfile", worker.Build)
	}
	ui := composeService(t, p, "temporal-ui")
	if addr := composeEnv(t, ui, "TEMPORAL_ADDRESS"); addr != "temporal:7233" {
		t.Errorf("temporal-ui TEMPORAL_ADDRESS = %q, want temporal:7233", addr)
	}
}

// TestComposeEnvironmentMatchesConfig checks that the svcupdate containers
// set only variables internal/config reads, that together they form a
// valid configuration, and that they point at the compose services.
func TestComposeEnvironmentMatchesConfig(t *testing.T) {
	p := loadCompose(t)
	known := map[string]bool{}
	for _, v := range config.Variables() {
		known[v.Name] = true
	}
	for _, name := range []string{"setup", "worker", "starter"} {
		s := composeService(t, p, name)
		if len(s.Environment) == 0 {
			t.Errorf("service %s sets no environment", name)
		}
		for variable := range s.Environment {
			if !known[variable] {
				t.Errorf("service %s sets %s, which internal/config does not read", name, variable)
			}
		}
	}

	worker := composeService(t, p, "worker")
	for variable, value := range worker.Environment {
		t.Setenv(variable, *value)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("the worker's compose environment is not a valid configuration: %v", err)
	}

	host, port, err := net.SplitHostPort(cfg.TemporalAddress)
	if err != nil {
		t.Fatal(err)
	}
	temporalService := composeService(t, p, "temporal")
	if host != temporalService.Name || port != "7233" || !slices.ContainsFunc(temporalService.Ports, func(p types.ServicePortConfig) bool {
		return p.Target == 7233
	}) {
		t.Errorf("worker TEMPORAL_ADDRESS = %s, want the temporal service's port 7233", cfg.TemporalAddress)
	}

	db, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	postgres := composeService(t, p, "postgres")
	password, _ := db.User.Password()
	for _, check := range []struct{ what, got, want string }{
		{"host", db.Hostname(), postgres.Name},
		{"port", db.Port(), "5432"},
		{"user", db.User.Username(), composeEnv(t, postgres, "POSTGRES_USER")},
		{"password", password, composeEnv(t, postgres, "POSTGRES_PASSWORD")},
		{"database", strings.TrimPrefix(db.Path, "/"), composeEnv(t, postgres, "POSTGRES_DB")},
	} {
		if check.got != check.want {
			t.Errorf("worker DATABASE_URL %s = %q, want %q (the postgres service)", check.what, check.got, check.want)
		}
	}
	// Docker stops a container after its stop_grace_period (10 s unless
	// set); the worker must be given the time it lets updates finish.
	needed := cfg.ExecutorStopTimeout + cfg.ExecutorKillGrace
	if worker.StopGracePeriod == nil || time.Duration(*worker.StopGracePeriod) < needed {
		t.Errorf("worker stop_grace_period = %v, want at least %v (EXECUTOR_STOP_TIMEOUT + EXECUTOR_KILL_GRACE)", worker.StopGracePeriod, needed)
	}
	if got := composeEnv(t, temporalService, "POSTGRES_SEEDS"); got != postgres.Name {
		t.Errorf("temporal persists to POSTGRES_SEEDS=%q, want the postgres service", got)
	}
}

func composeEnv(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := s.Environment[name]
	if !ok || v == nil {
		t.Fatalf("service %s does not set %s", s.Name, name)
	}
	return *v
}

// TestComposeRunsTheServerOfMakeCluster checks that docker-compose.yml and
// `make cluster` run one Temporal: the same server and Web UI versions, the
// same server settings (deploy/temporal/server.env: 8 history shards on
// Postgres with advanced visibility), the same dynamic config and schema
// script, and svcupdate's search attributes registered the same way, by
// `starter setup` (workflows.SearchAttributeKeys).
func TestComposeRunsTheServerOfMakeCluster(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	makefile := readRepoFile(t, "Makefile")
	script := readRepoFile(t, "scripts/cluster.sh")

	serverVersion := strings.TrimPrefix(makeVariable(t, makefile, "TEMPORAL_SERVER_VERSION"), "v")
	uiVersion := strings.TrimPrefix(makeVariable(t, makefile, "TEMPORAL_UI_SERVER_VERSION"), "v")
	for service, want := range map[string]string{
		"temporal":           "temporalio/server:" + serverVersion,
		"temporal-schema":    "temporalio/admin-tools:" + serverVersion,
		"temporal-namespace": "temporalio/admin-tools:" + serverVersion,
		"temporal-ui":        "temporalio/ui:" + uiVersion,
	} {
		if got := composeService(t, p, service).Image; got != want {
			t.Errorf("service %s runs %s, want %s (the version make cluster builds)", service, got, want)
		}
	}

	settings := envFile(t, "deploy/temporal/server.env")
	for name, want := range map[string]string{"DB": "postgres12", "NUM_HISTORY_SHARDS": "8"} {
		if settings[name] != want {
			t.Errorf("deploy/temporal/server.env sets %s=%q, want %q", name, settings[name], want)
		}
	}
	for _, service := range []string{"temporal", "temporal-schema"} {
		s := composeService(t, p, service)
		for name, want := range settings {
			if got := composeEnv(t, s, name); got != want {
				t.Errorf("service %s has %s=%q, want %q from deploy/temporal/server.env", service, name, got, want)
			}
		}
	}

	temporal := composeService(t, p, "temporal")
	dynamicConfig := composeEnv(t, temporal, "DYNAMIC_CONFIG_FILE_PATH")
	if !slices.ContainsFunc(temporal.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == dynamicConfig && v.Source == filepath.Join(repoRoot(t), "deploy", "temporal", "dynamicconfig.yaml")
	}) {
		t.Errorf("service temporal does not mount deploy/temporal/dynamicconfig.yaml at DYNAMIC_CONFIG_FILE_PATH %s: %+v", dynamicConfig, temporal.Volumes)
	}
	schema := composeService(t, p, "temporal-schema")
	if !slices.ContainsFunc(schema.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Source == filepath.Join(repoRoot(t), "deploy", "temporal", "setup-schema.sh") &&
			strings.Contains(strings.Join(schema.Entrypoint, " "), v.Target)
	}) {
		t.Errorf("service temporal-schema does not run deploy/temporal/setup-schema.sh: entrypoint %q, volumes %+v", schema.Entrypoint, schema.Volumes)
	}
	for _, want := range []string{
		". deploy/temporal/server.env",
		`DYNAMIC_CONFIG_FILE_PATH="$PWD/deploy/temporal/dynamicconfig.yaml"`,
		"deploy/temporal/setup-schema.sh",
		"bin/starter setup",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("scripts/cluster.sh (make cluster) does not contain %q, which docker-compose.yml's server relies on", want)
		}
	}
}

// TestComposeStartsInOrder checks that every service waits for what it
// needs by a condition, not merely for its start, and that each awaited
// health is one the service checks.
func TestComposeStartsInOrder(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, s := range p.Services {
		for name, dep := range s.DependsOn {
			switch dep.Condition {
			case types.ServiceConditionHealthy:
				if p.Services[name].HealthCheck == nil {
					t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", s.Name, name)
				}
			case types.ServiceConditionCompletedSuccessfully:
			default:
				t.Errorf("service %s waits for %s with condition %q, want %s or %s",
					s.Name, name, dep.Condition, types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully)
			}
		}
	}
}

// TestComposeWritesNoSecret checks that the Postgres password comes from
// the environment of docker compose: without it, compose refuses to start.
func TestComposeWritesNoSecret(t *testing.T) {
	t.Parallel()
	_, err := loadComposeWith(t, types.Mapping{})
	if err == nil || !strings.Contains(err.Error(), "POSTGRES_PASSWORD") {
		t.Errorf("docker-compose.yml without POSTGRES_PASSWORD in the environment: error %v, want one naming POSTGRES_PASSWORD", err)
	}
}

// makeVariable returns the value of a `NAME := value` line of the Makefile.
func makeVariable(t *testing.T, makefile, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` := (\S+)$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatalf("the Makefile has no %s := line", name)
	}
	return m[1]
}

// envFile reads the KEY=VALUE lines of a file shared by compose and a
// shell script.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	values := map[string]string{}
	for line := range strings.Lines(readRepoFile(t, path)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not NAME=value", path, line)
		}
		values[name] = value
	}
	return values
}
