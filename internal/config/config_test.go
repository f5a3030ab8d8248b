package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/sourcetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// clearEnv unsets every variable of Config for the test, so the developer's
// own environment cannot leak in; t.Setenv restores them afterwards.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, v := range Variables() {
		t.Setenv(v.Name, "")
		if err := os.Unsetenv(v.Name); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := Load()
	if err != nil {
		t.Fatalf("Load with an empty environment: %v", err)
	}
	want := Config{
		TemporalAddress:     "localhost:7233",
		TemporalNamespace:   "default",
		TaskQueue:           workflows.TaskQueue,
		DatabaseURL:         "postgres://postgres@127.0.0.1:5432/svcupdate?sslmode=disable",
		SendGridHost:        "https://api.sendgrid.com",
		MailFrom:            "svcupdate <updates@example.com>",
		ReminderOffsets:     workflows.DefaultReminderOffsets,
		UpdateWindow:        workflows.DefaultWindowLength,
		SecondaryMinGap:     24 * time.Hour,
		MinNotice:           168 * time.Hour,
		RescheduleMinNotice: time.Hour,
		RolloutStartRate:    200,
		NoticeDispatchLoops: 16,
		WorkflowCacheSize:   1000,
		Executor:            ExecutorSimulated,
		ExecutorKillGrace:   10 * time.Second,
		ExecutorStopTimeout: 10 * time.Minute,
		SimulatedDuration:   30 * time.Second,
		LogFormat:           LogFormatText,
		LogLevel:            slog.LevelInfo,
		MetricsAddr:         ":9090",
		ConnectTimeout:      2 * time.Minute,
		WorkerStopTimeout:   30 * time.Second,
		Temporal:            TemporalClient{Options: client.Options{HostPort: "localhost:7233", Namespace: "default"}},

		PortalAddr:            "127.0.0.1:8080",
		PortalBaseURL:         "http://127.0.0.1:8080",
		PortalLinkLifetime:    7 * 24 * time.Hour,
		PortalSessionLifetime: 12 * time.Hour,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadReadsEveryVariable(t *testing.T) {
	clearEnv(t)
	for name, value := range map[string]string{
		"TEMPORAL_ADDRESS":       "temporal:7233",
		"TEMPORAL_NAMESPACE":     "fleet",
		"TASK_QUEUE":             "updates-eu",
		"DATABASE_URL":           "postgres://svc:secret@db:5432/svc",
		"SENDGRID_API_KEY":       "SG.key",
		"SENDGRID_HOST":          "http://127.0.0.1:8025",
		"MAIL_FROM":              "Ops <ops@acme.test>",
		"REMINDER_OFFSETS":       "10m,5m,0s",
		"UPDATE_WINDOW":          "90s",
		"SECONDARY_MIN_GAP":      "0s",
		"MIN_NOTICE":             "336h",
		"RESCHEDULE_MIN_NOTICE":  "0s",
		"ROLLOUT_START_RATE":     "2.5",
		"WORKFLOW_CACHE_SIZE":    "250",
		"NOTICE_DISPATCH_LOOPS":  "8",
		"EXECUTOR":               "command",
		"EXECUTOR_COMMAND":       `/opt/acme/update --note "two words" 'it''s'`,
		"EXECUTOR_PROBE_COMMAND": "/opt/acme/version --instance-from-env",
		"EXECUTOR_KILL_GRACE":    "2s",
		"EXECUTOR_STOP_TIMEOUT":  "45m",
		"SIMULATED_DURATION":     "0s",
		"SIMULATED_FAILURES":     "acme-prod:primary, acme-test:all",
		"LOG_FORMAT":             "json",
		"LOG_LEVEL":              "debug",
		"METRICS_ADDR":           "",
		"CONNECT_TIMEOUT":        "5s",
		"WORKER_STOP_TIMEOUT":    "1m",
		"EXECUTOR_USER":          "nobody",
		"EXECUTOR_PASS_ENV":      "ACME_REGION,HTTPS_PROXY",
		"PAYLOAD_KEYS":           "k2:" + testKey(2) + ",k1:" + testKey(1),
		"CODEC_ADDR":             "127.0.0.1:8081",
		"CODEC_AUTH_TOKEN":       "t0ken",
		"CODEC_CORS_ORIGINS":     "http://localhost:8233",

		"PORTAL_ADDR":             ":8443",
		"PORTAL_BASE_URL":         "https://updates.acme.test",
		"PORTAL_SECRET":           "0123456789abcdef0123456789abcdef",
		"PORTAL_LINK_LIFETIME":    "72h",
		"PORTAL_SESSION_LIFETIME": "30m",
		"PORTAL_MAILBOX":          "true",
		"OIDC_ISSUER":             "https://login.acme.test",
		"OIDC_CLIENT_ID":          "svcupdate-portal",
		"OIDC_CLIENT_SECRET":      "oidc-secret",
	} {
		t.Setenv(name, value)
	}
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		TemporalAddress:      "temporal:7233",
		TemporalNamespace:    "fleet",
		TaskQueue:            "updates-eu",
		DatabaseURL:          "postgres://svc:secret@db:5432/svc",
		SendGridAPIKey:       "SG.key",
		SendGridHost:         "http://127.0.0.1:8025",
		MailFrom:             "Ops <ops@acme.test>",
		ReminderOffsets:      []time.Duration{10 * time.Minute, 5 * time.Minute, 0},
		UpdateWindow:         90 * time.Second,
		MinNotice:            336 * time.Hour,
		RolloutStartRate:     2.5,
		NoticeDispatchLoops:  8,
		WorkflowCacheSize:    250,
		Executor:             ExecutorCommand,
		ExecutorCommand:      `/opt/acme/update --note "two words" 'it''s'`,
		ExecutorArgv:         []string{"/opt/acme/update", "--note", "two words", "its"},
		ExecutorProbeCommand: "/opt/acme/version --instance-from-env",
		ExecutorProbeArgv:    []string{"/opt/acme/version", "--instance-from-env"},
		ExecutorKillGrace:    2 * time.Second,
		ExecutorStopTimeout:  45 * time.Minute,
		SimulatedFailures:    SimulatedFailures{"acme-prod": FailPrimary, "acme-test": FailAll},
		LogFormat:            LogFormatJSON,
		LogLevel:             slog.LevelDebug,
		ConnectTimeout:       5 * time.Second,
		WorkerStopTimeout:    time.Minute,
		ExecutorUser:         "nobody",
		ExecutorCredential:   nobody(t),
		ExecutorPassEnv:      []string{"ACME_REGION", "HTTPS_PROXY"},
		PayloadKeys:          PayloadKeys{{ID: "k2", Secret: bytes.Repeat([]byte{2}, 32)}, {ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}},
		CodecAddr:            "127.0.0.1:8081",
		CodecAuthToken:       "t0ken",
		CodecCORSOrigins:     []string{"http://localhost:8233"},
		Temporal:             TemporalClient{Options: client.Options{HostPort: "temporal:7233", Namespace: "fleet"}},

		PortalAddr:            ":8443",
		PortalBaseURL:         "https://updates.acme.test",
		PortalSecret:          "0123456789abcdef0123456789abcdef",
		PortalLinkLifetime:    72 * time.Hour,
		PortalSessionLifetime: 30 * time.Minute,
		PortalMailbox:         true,
		OIDCIssuer:            "https://login.acme.test",
		OIDCClientID:          "svcupdate-portal",
		OIDCClientSecret:      "oidc-secret",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded:\n got %+v\nwant %+v", cfg, want)
	}
}

// testKey is a 32-byte payload key of n bytes, in base64.
func testKey(n byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{n}, 32)) }

func nobody(t *testing.T) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// A temporal.toml profile supplies what TEMPORAL_ADDRESS and
// TEMPORAL_NAMESPACE leave unset, TLS and API key included; the
// variables win over it.
func TestLoadReadsTemporalProfiles(t *testing.T) {
	clearEnv(t)
	file := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(file, []byte(`
[profile.cloud]
address = "fleet.a1b2c.tmprl.cloud:7233"
namespace = "fleet.a1b2c"
api_key = "cloud-key"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", file)
	t.Setenv("TEMPORAL_PROFILE", "cloud")
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Temporal.Options
	if cfg.TemporalAddress != "fleet.a1b2c.tmprl.cloud:7233" || o.HostPort != cfg.TemporalAddress || o.Namespace != "fleet.a1b2c" ||
		o.Credentials == nil || o.ConnectionOptions.TLS == nil {
		t.Errorf("profile cloud: address %s, options %+v", cfg.TemporalAddress, o)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "config", cfg)
	if strings.Contains(logged.String(), "cloud-key") || !strings.Contains(logged.String(), "apiKey=true") {
		t.Errorf("log: %s", logged.String())
	}

	t.Setenv("TEMPORAL_ADDRESS", "localhost:7233")
	if cfg, err = Load(); err != nil || cfg.Temporal.Options.HostPort != "localhost:7233" || cfg.TemporalNamespace != "fleet.a1b2c" {
		t.Errorf("TEMPORAL_ADDRESS over the profile: %s / %s, %v", cfg.Temporal.Options.HostPort, cfg.TemporalNamespace, err)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		variable string
		// wantInMessage are fragments the one-line message must contain.
		wantInMessage []string
	}{
		{"unparsable duration", map[string]string{"UPDATE_WINDOW": "twelve hours"}, "UPDATE_WINDOW",
			[]string{`UPDATE_WINDOW="twelve hours"`, "a positive duration, such as 12h"}},
		{"zero window", map[string]string{"UPDATE_WINDOW": "0s"}, "UPDATE_WINDOW", []string{`"0s"`}},
		{"negative gap", map[string]string{"SECONDARY_MIN_GAP": "-1h"}, "SECONDARY_MIN_GAP", []string{`"-1h"`, "non-negative"}},
		{"unparsable days", map[string]string{"MIN_NOTICE": "7days"}, "MIN_NOTICE", []string{`MIN_NOTICE="7days"`, "a non-negative duration, such as 7d or 168h"}},
		{"negative notice", map[string]string{"MIN_NOTICE": "-1h"}, "MIN_NOTICE", []string{`"-1h"`, "non-negative"}},
		{"no start rate", map[string]string{"ROLLOUT_START_RATE": "0"}, "ROLLOUT_START_RATE", []string{`"0"`, "a positive number"}},
		{"no cache", map[string]string{"WORKFLOW_CACHE_SIZE": "0"}, "WORKFLOW_CACHE_SIZE", []string{`"0"`, "a positive whole number"}},
		{"no dispatch loop", map[string]string{"NOTICE_DISPATCH_LOOPS": "0"}, "NOTICE_DISPATCH_LOOPS", []string{`"0"`, "a whole number from 1 to 64"}},
		{"too many dispatch loops", map[string]string{"NOTICE_DISPATCH_LOOPS": "65"}, "NOTICE_DISPATCH_LOOPS", []string{`"65"`, "a whole number from 1 to 64"}},
		{"negative reschedule notice", map[string]string{"RESCHEDULE_MIN_NOTICE": "-30m"}, "RESCHEDULE_MIN_NOTICE", []string{`"-30m"`, "non-negative"}},
		{"negative simulated duration", map[string]string{"SIMULATED_DURATION": "-5s"}, "SIMULATED_DURATION", []string{`"-5s"`}},
		{"zero kill grace", map[string]string{"EXECUTOR_KILL_GRACE": "0s"}, "EXECUTOR_KILL_GRACE", []string{"positive"}},
		{"zero connect timeout", map[string]string{"CONNECT_TIMEOUT": "0s"}, "CONNECT_TIMEOUT", []string{"positive"}},
		{"negative stop timeout", map[string]string{"WORKER_STOP_TIMEOUT": "-1s"}, "WORKER_STOP_TIMEOUT", []string{`"-1s"`}},
		{"negative executor stop timeout", map[string]string{"EXECUTOR_STOP_TIMEOUT": "-10m"}, "EXECUTOR_STOP_TIMEOUT", []string{`"-10m"`, "non-negative"}},
		{"unparsable offset", map[string]string{"REMINDER_OFFSETS": "720h,7 days"}, "REMINDER_OFFSETS", []string{`"720h,7 days"`, "comma-separated"}},
		{"negative offset", map[string]string{"REMINDER_OFFSETS": "720h,-24h"}, "REMINDER_OFFSETS", []string{"offset -24h0m0s is negative"}},
		{"no offsets", map[string]string{"REMINDER_OFFSETS": ""}, "REMINDER_OFFSETS", []string{"no offsets"}},
		{"address without port", map[string]string{"TEMPORAL_ADDRESS": "localhost"}, "TEMPORAL_ADDRESS", []string{"not host:port", "localhost:7233"}},
		{"address without host", map[string]string{"TEMPORAL_ADDRESS": ":7233"}, "TEMPORAL_ADDRESS", []string{"no host"}},
		{"address with a bad port", map[string]string{"TEMPORAL_ADDRESS": "temporal:http"}, "TEMPORAL_ADDRESS", []string{"port is not a number"}},
		{"empty namespace", map[string]string{"TEMPORAL_NAMESPACE": ""}, "TEMPORAL_NAMESPACE", []string{"empty"}},
		{"empty task queue", map[string]string{"TASK_QUEUE": " "}, "TASK_QUEUE", []string{"empty"}},
		{"malformed database URL", map[string]string{"DATABASE_URL": "postgres://u:hunter2@db:notaport/x"}, "DATABASE_URL",
			[]string{"not a Postgres connection URL", "xxxxx"}},
		{"malformed keyword connection string", map[string]string{"DATABASE_URL": "host=db password=hunter2 port=x"}, "DATABASE_URL",
			[]string{"password=xxxxx"}},
		{"bad pool size", map[string]string{"DATABASE_URL": "postgres://u:hunter2@db:5432/x?pool_max_conns=0"}, "DATABASE_URL",
			[]string{"pool setting", "pool_max_conns=32", "xxxxx"}},
		{"empty database URL", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL", []string{"not a Postgres connection URL"}},
		{"SendGrid host without scheme", map[string]string{"SENDGRID_HOST": "api.sendgrid.com"}, "SENDGRID_HOST", []string{"http or https URL"}},
		{"SendGrid host with another scheme", map[string]string{"SENDGRID_HOST": "ftp://api.sendgrid.com"}, "SENDGRID_HOST", []string{`"ftp://api.sendgrid.com"`}},
		{"sender without address", map[string]string{"MAIL_FROM": "svcupdate"}, "MAIL_FROM", []string{"not an email address"}},
		{"unknown executor", map[string]string{"EXECUTOR": "ansible"}, "EXECUTOR", []string{`EXECUTOR="ansible"`, "simulated, command or none"}},
		{"command executor without command", map[string]string{"EXECUTOR": "command"}, "EXECUTOR_COMMAND", []string{"EXECUTOR=command needs a command"}},
		{"command of blanks", map[string]string{"EXECUTOR": "command", "EXECUTOR_COMMAND": "   "}, "EXECUTOR_COMMAND", []string{"needs a command"}},
		{"unterminated quote", map[string]string{"EXECUTOR_COMMAND": `update "--all`}, "EXECUTOR_COMMAND", []string{`unterminated " quote`}},
		{"lone backslash", map[string]string{"EXECUTOR_COMMAND": `update \`}, "EXECUTOR_COMMAND", []string{"lone backslash"}},
		{"probe without the command executor", map[string]string{"EXECUTOR_PROBE_COMMAND": "/opt/acme/version"}, "EXECUTOR_PROBE_COMMAND",
			[]string{"only the command executor runs a probe, and EXECUTOR is simulated", "only with EXECUTOR=command"}},
		{"probe with an unterminated quote", map[string]string{"EXECUTOR": "command", "EXECUTOR_COMMAND": "update", "EXECUTOR_PROBE_COMMAND": `version "--all`},
			"EXECUTOR_PROBE_COMMAND", []string{`unterminated " quote`}},
		{"short portal secret", map[string]string{"PORTAL_SECRET": "hunter2"}, "PORTAL_SECRET", []string{"7 bytes", "at least 32 random bytes", "xxxxx"}},
		{"portal base URL with a trailing slash", map[string]string{"PORTAL_BASE_URL": "https://updates.acme.test/"}, "PORTAL_BASE_URL", []string{"without a trailing slash"}},
		{"portal base URL without scheme", map[string]string{"PORTAL_BASE_URL": "updates.acme.test"}, "PORTAL_BASE_URL", []string{"http or https URL"}},
		{"portal address without port", map[string]string{"PORTAL_ADDR": "localhost"}, "PORTAL_ADDR", []string{"not host:port"}},
		{"zero session lifetime", map[string]string{"PORTAL_SESSION_LIFETIME": "0s"}, "PORTAL_SESSION_LIFETIME", []string{"positive"}},
		{"OIDC issuer without client", map[string]string{"OIDC_ISSUER": "https://login.acme.test"}, "OIDC_CLIENT_ID", []string{"OIDC_ISSUER is set", "required with OIDC_ISSUER"}},
		{"failure without attempt", map[string]string{"SIMULATED_FAILURES": "acme-prod"}, "SIMULATED_FAILURES",
			[]string{`item "acme-prod" has no :primary, :secondary or :all`, "instance-id:primary|secondary|all"}},
		{"failure with unknown attempt", map[string]string{"SIMULATED_FAILURES": "acme-prod:tertiary"}, "SIMULATED_FAILURES",
			[]string{`"tertiary" is not primary, secondary or all`}},
		{"failure without instance", map[string]string{"SIMULATED_FAILURES": ":all"}, "SIMULATED_FAILURES", []string{"no instance ID"}},
		{"instance listed twice", map[string]string{"SIMULATED_FAILURES": "a:primary,a:secondary"}, "SIMULATED_FAILURES", []string{"listed twice"}},
		{"unknown log format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT", []string{"text or json"}},
		{"unknown log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", []string{"debug, info, warn or error"}},
		{"metrics address without port", map[string]string{"METRICS_ADDR": "9090"}, "METRICS_ADDR", []string{"not host:port"}},
		{"short payload key", map[string]string{"PAYLOAD_KEYS": "k1:AAAA"}, "PAYLOAD_KEYS", []string{`key "k1" is not 32 bytes`, "openssl rand -base64 32"}},
		{"payload key without ID", map[string]string{"PAYLOAD_KEYS": testKey(1)}, "PAYLOAD_KEYS", []string{"not id:base64"}},
		{"codec server without token", map[string]string{"CODEC_ADDR": ":8081", "PAYLOAD_KEYS": "k1:" + testKey(1)}, "CODEC_AUTH_TOKEN", []string{"only to callers with the token"}},
		{"codec server without keys", map[string]string{"CODEC_ADDR": ":8081", "CODEC_AUTH_TOKEN": "t"}, "PAYLOAD_KEYS", []string{"no key to decode with"}},
		{"unknown executor user", map[string]string{"EXECUTOR": "command", "EXECUTOR_COMMAND": "update", "EXECUTOR_USER": "no-such-user-here"}, "EXECUTOR_USER", []string{"no such user"}},
		{"executor user without a command", map[string]string{"EXECUTOR_USER": "nobody"}, "EXECUTOR_USER", []string{"EXECUTOR is simulated"}},
		{"passing the worker's credentials on", map[string]string{"EXECUTOR_PASS_ENV": "PATH_EXTRA,DATABASE_URL"}, "EXECUTOR_PASS_ENV", []string{`"DATABASE_URL"`, "never reaches the command"}},
		{"missing TLS files", map[string]string{"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/nonexistent/ca.pem"}, "TEMPORAL_TLS_*", []string{"/nonexistent/ca.pem"}},
		{"unknown profile", map[string]string{"TEMPORAL_PROFILE": "cloud"}, "TEMPORAL_CONFIG_FILE", []string{`profile "cloud"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for name, value := range tt.env {
				t.Setenv(name, value)
			}
			_, err := Load()
			if err == nil {
				t.Fatalf("Load accepted %v", tt.env)
			}
			var cfgErr *Error
			if !errors.As(err, &cfgErr) {
				t.Fatalf("error %q is %T, not *config.Error", err, err)
			}
			if cfgErr.Variable != tt.variable {
				t.Errorf("error names %s, want %s", cfgErr.Variable, tt.variable)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || strings.Contains(msg, "envconfig") {
				t.Errorf("message is not one line of ours: %q", msg)
			}
			if !strings.HasPrefix(msg, "invalid "+tt.variable+"=") || !strings.Contains(msg, "(accepted: ") {
				t.Errorf("message %q does not name the variable and what is accepted", msg)
			}
			for _, fragment := range tt.wantInMessage {
				if !strings.Contains(msg, fragment) {
					t.Errorf("message %q lacks %q", msg, fragment)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("message %q shows a database password", msg)
			}
		})
	}
}

// EXECUTOR=none is for workers whose executor runs elsewhere: it needs no
// EXECUTOR_COMMAND, and a zero EXECUTOR_STOP_TIMEOUT is accepted.
func TestLoadExecutorNone(t *testing.T) {
	clearEnv(t)
	t.Setenv("EXECUTOR", "none")
	t.Setenv("EXECUTOR_STOP_TIMEOUT", "0s")
	cfg, err := Load()
	if err != nil {
		t.Fatalf("Load with EXECUTOR=none: %v", err)
	}
	if cfg.Executor != ExecutorNone || cfg.ExecutorStopTimeout != 0 || cfg.ExecutorArgv != nil {
		t.Errorf("loaded executor %q, stop timeout %s, argv %q; want none, 0s, no command", cfg.Executor, cfg.ExecutorStopTimeout, cfg.ExecutorArgv)
	}
}

// The attempt names of SIMULATED_FAILURES are the contract's slot roles,
// written once in package workflows and never again here.
func TestSlotRolesAreNotRepeated(t *testing.T) {
	roles := map[string]bool{string(workflows.SlotPrimary): true, string(workflows.SlotSecondary): true}
	for _, literal := range sourcetest.StringLiterals(t, ".") {
		if roles[literal.Value] {
			t.Errorf("%s repeats the slot role %q; use workflows.SlotPrimary or workflows.SlotSecondary", literal.Position, literal.Value)
		}
	}
}

func TestSimulatedFailuresString(t *testing.T) {
	var failures SimulatedFailures
	if err := failures.Decode("a:primary,b:secondary,c:all,"); err != nil {
		t.Fatal(err)
	}
	if got, want := failures.String(), "a:primary,b:secondary,c:all"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tt := range []struct {
		command string
		want    []string
	}{
		{"update", []string{"update"}},
		{"  /bin/update   --all\t--fast ", []string{"/bin/update", "--all", "--fast"}},
		{`sh -c 'exec update "$TARGET_VERSION" | tee log'`, []string{"sh", "-c", `exec update "$TARGET_VERSION" | tee log`}},
		{`update --note "say \"hi\" \\ there"`, []string{"update", "--note", `say "hi" \ there`}},
		{`update a\ b ""`, []string{"update", "a b", ""}},
		{"", nil},
	} {
		got, err := SplitCommand(tt.command)
		if err != nil {
			t.Errorf("SplitCommand(%q): %v", tt.command, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tt.command, got, tt.want)
		}
	}
}

func TestVariablesAndUsage(t *testing.T) {
	vars := Variables()
	byName := map[string]Variable{}
	for _, v := range vars {
		if v.Description == "" {
			t.Errorf("%s has no description", v.Name)
		}
		byName[v.Name] = v
	}
	for name, wantDefault := range map[string]string{
		"TEMPORAL_ADDRESS":      "localhost:7233",
		"TASK_QUEUE":            workflows.TaskQueue,
		"REMINDER_OFFSETS":      "90d,30d,15d,7d,0d",
		"UPDATE_WINDOW":         "12h",
		"EXECUTOR":              "simulated",
		"EXECUTOR_STOP_TIMEOUT": "10m",
		"SENDGRID_API_KEY":      "",
	} {
		v, ok := byName[name]
		if !ok {
			t.Errorf("Variables() lacks %s", name)
			continue
		}
		if v.Default != wantDefault {
			t.Errorf("%s default = %q, want %q", name, v.Default, wantDefault)
		}
	}
	if !byName["SENDGRID_API_KEY"].Secret {
		t.Error("SENDGRID_API_KEY is not marked secret")
	}

	var out bytes.Buffer
	if err := PrintUsage(&out, "worker"); err != nil {
		t.Fatal(err)
	}
	usage := out.String()
	if !strings.HasPrefix(usage, "Usage of worker:") {
		t.Errorf("usage does not name the program:\n%s", usage)
	}
	for _, v := range vars {
		line := lineStarting(usage, v.Name+" ")
		if line == "" {
			t.Errorf("usage lacks %s:\n%s", v.Name, usage)
			continue
		}
		if v.Default != "" && !strings.Contains(line, v.Default) {
			t.Errorf("usage line %q lacks the default %q", line, v.Default)
		}
	}
}

func lineStarting(text, prefix string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func TestLogValueHidesSecrets(t *testing.T) {
	clearEnv(t)
	t.Setenv("SENDGRID_API_KEY", "SG.very-secret")
	t.Setenv("DATABASE_URL", "postgres://svc:hunter2@db:5432/svc")
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("starting", "config", cfg)
	for _, secret := range []string{"SG.very-secret", "hunter2"} {
		if strings.Contains(logged.String(), secret) {
			t.Errorf("log shows %q: %s", secret, logged.String())
		}
	}
	for _, shown := range []string{"config.mail=sendgrid", "config.database=postgres://svc:xxxxx@db:5432/svc"} {
		if !strings.Contains(logged.String(), shown) {
			t.Errorf("log lacks %q: %s", shown, logged.String())
		}
	}
}

func TestLoadAcceptsDays(t *testing.T) {
	clearEnv(t)
	t.Setenv("REMINDER_OFFSETS", "90d,30d,15d,7d,0d")
	t.Setenv("MIN_NOTICE", "7d")
	t.Setenv("SECONDARY_MIN_GAP", "1d12h")
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	if want := []time.Duration{90 * day, 30 * day, 15 * day, 7 * day, 0}; !reflect.DeepEqual(cfg.ReminderOffsets, want) {
		t.Errorf("REMINDER_OFFSETS = %v, want %v", cfg.ReminderOffsets, want)
	}
	if cfg.MinNotice != 7*day || cfg.SecondaryMinGap != 36*time.Hour {
		t.Errorf("MIN_NOTICE = %v, SECONDARY_MIN_GAP = %v", cfg.MinNotice, cfg.SecondaryMinGap)
	}
}

func TestLoadActionKeys(t *testing.T) {
	clearEnv(t)
	signing, trusted, err := actor.GenerateKeyPair("ops-1")
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := actor.GenerateKeyPair("portal-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACTION_SIGNING_KEY", signing)
	t.Setenv("ACTION_TRUSTED_KEYS", trusted+","+other)
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ActionSigningKey.Signer.KeyID() != "ops-1" || cfg.ActionTrustedKeys.String() != "ops-1,portal-1" {
		t.Errorf("loaded signing key %s, trusted %s", cfg.ActionSigningKey, cfg.ActionTrustedKeys)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "config", cfg)
	if secret := signing[len("ops-1:"):]; strings.Contains(logged.String(), secret) {
		t.Errorf("the log shows the signing key: %s", logged.String())
	}

	// A mistyped signing key is refused without repeating it.
	t.Setenv("ACTION_SIGNING_KEY", signing[:len(signing)-2])
	_, err = Load()
	if err == nil || !strings.Contains(err.Error(), `invalid ACTION_SIGNING_KEY="(hidden)": the signing key of key ID "ops-1" is not 32 bytes`) ||
		strings.Contains(err.Error(), signing[len("ops-1:"):len(signing)-2]) {
		t.Errorf("Load with a cut signing key: %v", err)
	}
	t.Setenv("ACTION_SIGNING_KEY", "")
	t.Setenv("ACTION_TRUSTED_KEYS", trusted+","+trusted)
	if _, err = Load(); err == nil || !strings.Contains(err.Error(), `key ID "ops-1" is listed twice`) {
		t.Errorf("Load with a key trusted twice: %v", err)
	}
}
