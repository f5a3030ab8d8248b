package e2e

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/svcupdate/svcupdate/internal/config"
)

// loadCompose parses the repository's docker-compose.yml the way docker
// compose does, with every profile enabled.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(context.Background(), details,
		loader.WithProfiles([]string{"*"}),
		func(o *loader.Options) { o.SetProjectName("svcupdate", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return project
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
		{"postgres", "5432", 5432},
		{"temporal", "7233", 7233},
		{"temporal-ui", "8233", 8080},
		{"worker", "9090", 9090},
	} {
		s := composeService(t, p, want.service)
		if !slices.ContainsFunc(s.Ports, func(port types.ServicePortConfig) bool {
			return port.Published == want.published && port.Target == want.target
		}) {
			t.Errorf("service %s publishes %+v, want %s:%d", want.service, s.Ports, want.published, want.target)
		}
	}
	for _, name := range []string{"setup", "starter"} {
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
