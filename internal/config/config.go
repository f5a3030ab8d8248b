// Package config is the one configuration of the worker and the starter:
// environment variables only, read once in main with envconfig and passed
// down. A bad value stops the program at start with one line that names the
// variable, the value and what is accepted.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kelseyhightower/envconfig"
	temporalenv "go.temporal.io/sdk/contrib/envconfig"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/duration"
	"github.com/svcupdate/svcupdate/workflows"
)

// Config holds every setting of the worker and the starter.
//
// Tags: `envconfig` names the variable, `default` is its value when unset
// (fields without one take theirs from defaults(), which reads the contract
// in package workflows), `desc` describes it for -h, and `accepted` says
// what a valid value looks like, for the error when it is not one.
type Config struct {
	TemporalAddress   string `envconfig:"TEMPORAL_ADDRESS" default:"localhost:7233" desc:"Temporal frontend to connect to" accepted:"host:port, such as localhost:7233"`
	TemporalNamespace string `envconfig:"TEMPORAL_NAMESPACE" default:"default" desc:"Temporal namespace of the workflows" accepted:"a non-empty namespace name"`
	TaskQueue         string `envconfig:"TASK_QUEUE" desc:"task queue of the workflow and its activities (the executor has a fixed queue of its own)" accepted:"a non-empty task queue name"`

	DatabaseURL string `envconfig:"DATABASE_URL" default:"postgres://postgres@127.0.0.1:5432/svcupdate?sslmode=disable" desc:"Postgres holding the fleet, slots, audit log and outbox; its pool_max_conns sizes the worker's connection pool (32 when not given)" accepted:"a Postgres URL such as postgres://user:password@host:5432/database?sslmode=disable&pool_max_conns=32"`

	SendGridAPIKey string `envconfig:"SENDGRID_API_KEY" secret:"true" desc:"SendGrid API key; empty keeps the mailer in outbox mode (mails are stored and logged, none sent)" accepted:"a SendGrid API key"`
	SendGridHost   string `envconfig:"SENDGRID_HOST" default:"https://api.sendgrid.com" desc:"SendGrid API base URL (point it at a test server to capture mail)" accepted:"an http or https URL with a host, such as https://api.sendgrid.com"`
	MailFrom       string `envconfig:"MAIL_FROM" default:"svcupdate <updates@example.com>" desc:"sender of every notice email" accepted:"an email address, optionally with a display name: \"svcupdate <updates@example.com>\""`

	// Admin actions are signed (package actor): the starter signs with its
	// key, the worker's workflows accept what its trusted keys verify.
	ActionSigningKey  actor.SigningKey  `envconfig:"ACTION_SIGNING_KEY" secret:"true" desc:"the private key the starter signs admin actions with (approve, reschedule, sync-admins), and the worker the Supersede and Move its rollouts send to updates; never logged" accepted:"key-id:key as starter keys generate prints it"`
	ActionTrustedKeys actor.TrustedKeys `envconfig:"ACTION_TRUSTED_KEYS" desc:"public keys whose signed admin actions the worker's workflows accept; list the old and the new key while rotating; empty refuses every admin action" accepted:"comma-separated key-id:public-key as starter keys generate prints them, each optionally followed by :channel+channel to limit it, such as portal-1:KEY:portal-link+portal-session+oidc"`
	ActionOperator    string            `envconfig:"ACTION_OPERATOR" desc:"who the starter's signed admin actions name as the operator acting for the admin (default: user@host)" accepted:"a name or e-mail address, such as olga@provider.example"`

	ReminderOffsets []time.Duration `ignored:"true" envconfig:"REMINDER_OFFSETS" desc:"reminders before the primary slot for new updates; 0h is the day-of notice" accepted:"comma-separated non-negative durations, such as 90d,30d,15d,7d,0d or 2160h,720h,168h,0h"`
	UpdateWindow    time.Duration   `ignored:"true" envconfig:"UPDATE_WINDOW" desc:"length of each update window for new updates" accepted:"a positive duration, such as 12h, 90m or 1d"`
	SecondaryMinGap time.Duration   `ignored:"true" envconfig:"SECONDARY_MIN_GAP" default:"24h" desc:"least time between the end of the primary window and the secondary slot" accepted:"a non-negative duration, such as 24h"`
	// MinNotice keeps mandatory updates from running before their admins
	// were told: a rollout books no primary slot sooner than this.
	MinNotice time.Duration `ignored:"true" envconfig:"MIN_NOTICE" default:"168h" desc:"least time from a rollout to the primary slot it books; a re-run gives back a held booking whose primary has come closer and books anew" accepted:"a non-negative duration, such as 7d or 168h"`
	// RescheduleMinNotice travels in each update's input from its rollout;
	// the workflow refuses a Reschedule to a primary sooner than this.
	RescheduleMinNotice time.Duration `ignored:"true" envconfig:"RESCHEDULE_MIN_NOTICE" default:"1h" desc:"least time from a Reschedule to the new primary slot, for updates rolled out from now on" accepted:"a non-negative Go duration, such as 1h"`

	// RolloutStartRate paces the Rollout workflow's starts in this worker
	// so a rollout never floods the Temporal server.
	RolloutStartRate float64 `envconfig:"ROLLOUT_START_RATE" default:"200" desc:"most ServiceUpdates a worker's rollout batches start per second" accepted:"a positive number, such as 100 or 2.5"`
	// NoticeDispatchLoops is how many notices a worker's dispatcher sends
	// at once; each holds a pool connection while SendGrid answers.
	NoticeDispatchLoops int `envconfig:"NOTICE_DISPATCH_LOOPS" default:"16" desc:"notices a worker's dispatcher sends at once from the notice queue" accepted:"a whole number from 1 to 64"`
	// WorkflowCacheSize bounds the worker's sticky cache: updates sleep for
	// weeks, so a cached one is memory held for nothing; an evicted one is
	// replayed from its short history when its timer fires.
	WorkflowCacheSize int `envconfig:"WORKFLOW_CACHE_SIZE" default:"1000" desc:"workflows a worker keeps in memory between tasks (the sticky cache); the rest are replayed from history when they wake" accepted:"a positive whole number, such as 1000"`

	Executor            ExecutorKind      `envconfig:"EXECUTOR" default:"simulated" desc:"how ApplyUpdate runs an update: simulated (the default, for demos and tests: nothing is updated), command (runs EXECUTOR_COMMAND), or none (this worker hosts no executor; another worker polls its task queue)" accepted:"simulated, command or none"`
	ExecutorCommand     string            `envconfig:"EXECUTOR_COMMAND" desc:"program and arguments run by the command executor, split like a shell would (quotes, backslashes) but without a shell" accepted:"a program and its arguments, such as \"/opt/acme/update --verbose\"; required with EXECUTOR=command"`
	ExecutorKillGrace   time.Duration     `ignored:"true" envconfig:"EXECUTOR_KILL_GRACE" default:"10s" desc:"time between SIGTERM and SIGKILL when an update command is stopped; SIGTERM comes this long before the window's end so the command is gone by then" accepted:"a positive duration, such as 10s"`
	ExecutorStopTimeout time.Duration     `ignored:"true" envconfig:"EXECUTOR_STOP_TIMEOUT" default:"10m" desc:"how long a stopping worker lets in-flight updates finish before they are cancelled (stopping the update command) and retried elsewhere; give the process manager's stop grace at least this plus EXECUTOR_KILL_GRACE" accepted:"a non-negative duration, such as 10m"`
	SimulatedDuration   time.Duration     `ignored:"true" envconfig:"SIMULATED_DURATION" default:"30s" desc:"how long the simulated executor takes per update" accepted:"a non-negative duration, such as 30s"`
	SimulatedFailures   SimulatedFailures `envconfig:"SIMULATED_FAILURES" desc:"instances whose simulated update fails, and in which attempt" accepted:"comma-separated instance-id:primary|secondary|all, such as acme-prod:primary,acme-test:all"`
	// Read before and after each update of the command executor.
	ExecutorProbeCommand string `envconfig:"EXECUTOR_PROBE_COMMAND" desc:"optional program, run like EXECUTOR_COMMAND and with the same environment, that prints the instance's current version on stdout: before an attempt (an instance already at or past the target is not updated again) and after it (the update must have reached the target)" accepted:"a program and its arguments, such as \"/opt/acme/current-version\"; only with EXECUTOR=command"`

	// ExecutorUser keeps the worker's files and /proc out of the update
	// command's reach (H4): the command runs as another user.
	ExecutorUser    string   `envconfig:"EXECUTOR_USER" desc:"user (name or uid) the update command and probe run as; needs a worker running as root; empty runs them as the worker's user" accepted:"a user name or uid that exists on the host, such as svcupdate-exec"`
	ExecutorPassEnv []string `envconfig:"EXECUTOR_PASS_ENV" desc:"names of the worker's environment variables the update command also gets, beyond PATH, HOME, LANG, LC_*, TZ and TMPDIR" accepted:"comma-separated variable names, such as ACME_REGION,HTTPS_PROXY"`

	PayloadKeys      PayloadKeys `envconfig:"PAYLOAD_KEYS" secret:"true" desc:"AES-256 keys that encrypt workflow payloads and failure messages in Temporal: id:base64 pairs, the first encrypts, all decrypt (rotation); empty stores payloads in clear" accepted:"comma-separated id:base64 pairs of 32-byte keys, such as k2:BASE64,k1:BASE64 (openssl rand -base64 32)"`
	CodecAddr        string      `envconfig:"CODEC_ADDR" desc:"address of the worker's codec server (POST /encode, /decode) for the Web UI and temporal --codec-endpoint; empty disables it" accepted:"host:port or :port, such as 127.0.0.1:8081, or empty"`
	CodecAuthToken   string      `envconfig:"CODEC_AUTH_TOKEN" secret:"true" desc:"token the codec server requires as Authorization: Bearer TOKEN; required with CODEC_ADDR" accepted:"a non-empty token, such as the output of openssl rand -hex 32"`
	CodecCORSOrigins []string    `envconfig:"CODEC_CORS_ORIGINS" desc:"Web UI origins allowed to call the codec server from the browser" accepted:"comma-separated origins, such as http://localhost:8233"`

	LogFormat LogFormat  `envconfig:"LOG_FORMAT" default:"text" desc:"log format: text or json" accepted:"text or json"`
	LogLevel  slog.Level `envconfig:"LOG_LEVEL" default:"info" desc:"least level logged: debug, info, warn or error" accepted:"debug, info, warn or error"`

	MetricsAddr       string        `envconfig:"METRICS_ADDR" default:":9090" desc:"address of the Prometheus /metrics endpoint; empty disables it" accepted:"host:port or :port, such as :9090, or empty"`
	ConnectTimeout    time.Duration `ignored:"true" envconfig:"CONNECT_TIMEOUT" default:"2m" desc:"how long to wait for Temporal and Postgres to come up at start" accepted:"a positive duration, such as 2m"`
	WorkerStopTimeout time.Duration `ignored:"true" envconfig:"WORKER_STOP_TIMEOUT" default:"30s" desc:"how long a stopping worker lets in-flight activities of TASK_QUEUE (store, notices) finish before they are left to be retried; updates in flight have EXECUTOR_STOP_TIMEOUT" accepted:"a non-negative duration, such as 30s"`

	// Temporal is the resolved client connection (contrib/envconfig).
	Temporal TemporalClient `ignored:"true"`
	// ExecutorCredential is EXECUTOR_USER looked up; nil without one.
	ExecutorCredential *syscall.Credential `ignored:"true"`
	// The admins' portal (`starter portal`). The worker needs PORTAL_SECRET
	// and PORTAL_BASE_URL too: it signs the action links of the emails.
	PortalAddr            string        `envconfig:"PORTAL_ADDR" default:"127.0.0.1:8080" desc:"address the portal (starter portal) listens on" accepted:"host:port or :port, such as 127.0.0.1:8080"`
	PortalBaseURL         string        `envconfig:"PORTAL_BASE_URL" default:"http://127.0.0.1:8080" desc:"where admins reach the portal: the base of the links in emails" accepted:"an http or https URL without a trailing slash, such as https://updates.example.com"`
	PortalSecret          string        `envconfig:"PORTAL_SECRET" secret:"true" desc:"key that signs the emails' action links, sign-in links and sessions; the same on workers and portal; empty: emails carry no action links and the portal does not start" accepted:"at least 32 random bytes, such as the output of openssl rand -hex 32"`
	PortalLinkLifetime    time.Duration `envconfig:"PORTAL_LINK_LIFETIME" default:"168h" desc:"how long an email's action link works (never after the decision's deadline)" accepted:"a positive duration, such as 168h"`
	PortalSessionLifetime time.Duration `envconfig:"PORTAL_SESSION_LIFETIME" default:"12h" desc:"how long a portal session lasts after sign-in" accepted:"a positive duration, such as 12h"`
	PortalMailbox         bool          `envconfig:"PORTAL_MAILBOX" default:"false" desc:"serve the demo mailbox (/mailbox: every stored email with working links); for make run only, never where admins reach the portal" accepted:"true or false"`
	OIDCIssuer            string        `envconfig:"OIDC_ISSUER" desc:"OpenID Connect issuer for portal sign-in; empty: sign-in by emailed link only" accepted:"the issuer URL, such as https://login.example.com"`
	OIDCClientID          string        `envconfig:"OIDC_CLIENT_ID" desc:"the portal's client ID at OIDC_ISSUER" accepted:"a client ID; required with OIDC_ISSUER"`
	OIDCClientSecret      string        `envconfig:"OIDC_CLIENT_SECRET" secret:"true" desc:"the portal's client secret at OIDC_ISSUER" accepted:"a client secret"`

	// ExecutorArgv is EXECUTOR_COMMAND split into program and arguments.
	ExecutorArgv []string `ignored:"true"`
	// ExecutorProbeArgv is EXECUTOR_PROBE_COMMAND split likewise.
	ExecutorProbeArgv []string `ignored:"true"`
}

// defaults holds the defaults that come from the workflow contract rather
// than from a tag, so each value is written down once in the repository.
func defaults() Config {
	return Config{
		TaskQueue:       workflows.TaskQueue,
		ReminderOffsets: append([]time.Duration(nil), workflows.DefaultReminderOffsets...),
		UpdateWindow:    workflows.DefaultWindowLength,
	}
}

// maxNoticeDispatchLoops keeps the dispatcher within the worker's pool
// (32 connections unless DATABASE_URL says otherwise).
const maxNoticeDispatchLoops = 64

// ExecutorKind selects the ApplyUpdate implementation.
type ExecutorKind string

const (
	// ExecutorSimulated waits SIMULATED_DURATION and fails as SIMULATED_FAILURES says.
	ExecutorSimulated ExecutorKind = "simulated"
	// ExecutorCommand runs EXECUTOR_COMMAND.
	ExecutorCommand ExecutorKind = "command"
	// ExecutorNone hosts no executor: the provider runs ApplyUpdate in a
	// worker of its own on workflows.ExecutorTaskQueue.
	ExecutorNone ExecutorKind = "none"
)

// Decode implements envconfig.Decoder.
func (k *ExecutorKind) Decode(value string) error {
	switch ExecutorKind(value) {
	case ExecutorSimulated, ExecutorCommand, ExecutorNone:
		*k = ExecutorKind(value)
		return nil
	}
	return errors.New("unknown executor")
}

// LogFormat selects the slog handler.
type LogFormat string

const (
	LogFormatText LogFormat = "text"
	LogFormatJSON LogFormat = "json"
)

// Decode implements envconfig.Decoder.
func (f *LogFormat) Decode(value string) error {
	switch LogFormat(value) {
	case LogFormatText, LogFormatJSON:
		*f = LogFormat(value)
		return nil
	}
	return errors.New("unknown log format")
}

// Error is a configuration value that cannot be used. Its message is one
// line: the variable, its value (a password in a URL replaced by xxxxx) and
// what is accepted.
type Error struct {
	Variable string
	Value    string
	Reason   string
	Accepted string
}

func (e *Error) Error() string {
	reason := ""
	if e.Reason != "" {
		reason = ": " + e.Reason
	}
	return fmt.Sprintf("invalid %s=%q%s (accepted: %s)", e.Variable, e.Value, reason, e.Accepted)
}

// Load reads the configuration from the environment and validates it.
func Load() (Config, error) {
	cfg := defaults()
	if err := envconfig.Process("", &cfg); err != nil {
		var parseErr *envconfig.ParseError
		if errors.As(err, &parseErr) {
			value := parseErr.Value
			if field(parseErr.KeyName).Tag.Get("secret") == "true" {
				value = "(hidden)" // a mistyped secret is still a secret
			}
			return Config{}, invalid(parseErr.KeyName, value, decodeReason(parseErr.Err))
		}
		return Config{}, fmt.Errorf("reading the environment: %w", err)
	}
	if err := decodeDurations(&cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.loadTemporalClient(temporalenv.EnvLookupOS); err != nil {
		return Config{}, err
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decodeDurations reads the duration variables, which envconfig skips
// (ignored:"true") because it knows Go durations only: people write
// REMINDER_OFFSETS=90d,30d,15d,7d,0d.
func decodeDurations(cfg *Config) error {
	v := reflect.ValueOf(cfg).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name := f.Tag.Get("envconfig")
		value, ok := os.LookupEnv(name)
		if !ok {
			value, ok = f.Tag.Lookup("default")
		}
		if name == "" || !ok {
			continue // not a variable, or unset without a tag default: defaults() holds it
		}
		switch dst := v.Field(i).Addr().Interface().(type) {
		case *time.Duration:
			d, err := duration.Parse(value)
			if err != nil {
				return invalid(name, value, "")
			}
			*dst = d
		case *[]time.Duration:
			var list []time.Duration
			if strings.TrimSpace(value) != "" { // empty: no offsets, which validate names
				parsed, err := duration.ParseList(value)
				if err != nil {
					return invalid(name, value, "")
				}
				list = parsed
			}
			*dst = list
		}
	}
	return nil
}

// decodeReason keeps what a Decode method of this package said about the
// value and drops strconv's and time's restatements of it.
func decodeReason(err error) string {
	var specErr *valueError
	if errors.As(err, &specErr) {
		return specErr.Error()
	}
	var keyErr *actor.KeyTextError
	if errors.As(err, &keyErr) {
		return keyErr.Error()
	}
	return ""
}

func (c *Config) validate() error {
	if err := validateHostPort("TEMPORAL_ADDRESS", c.TemporalAddress, false); err != nil {
		return err
	}
	for _, v := range []struct{ name, value string }{
		{"TEMPORAL_NAMESPACE", c.TemporalNamespace},
		{"TASK_QUEUE", c.TaskQueue},
	} {
		if strings.TrimSpace(v.value) == "" {
			return invalid(v.name, v.value, "empty")
		}
	}
	if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil || c.DatabaseURL == "" {
		return invalid("DATABASE_URL", redactURL(c.DatabaseURL), "not a Postgres connection URL")
	}
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		return invalid("DATABASE_URL", redactURL(c.DatabaseURL), "a pool setting (pool_max_conns, pool_min_conns, ...) is not valid")
	}
	if u, err := url.Parse(c.SendGridHost); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("SENDGRID_HOST", c.SendGridHost, "")
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		return invalid("MAIL_FROM", c.MailFrom, "not an email address")
	}
	if len(c.ReminderOffsets) == 0 {
		return invalid("REMINDER_OFFSETS", "", "no offsets")
	}
	for _, offset := range c.ReminderOffsets {
		if offset < 0 {
			return invalid("REMINDER_OFFSETS", formatDurations(c.ReminderOffsets), "offset "+offset.String()+" is negative")
		}
	}
	for _, d := range []struct {
		name        string
		value       time.Duration
		zeroAllowed bool
	}{
		{"UPDATE_WINDOW", c.UpdateWindow, false},
		{"SECONDARY_MIN_GAP", c.SecondaryMinGap, true},
		{"MIN_NOTICE", c.MinNotice, true},
		{"RESCHEDULE_MIN_NOTICE", c.RescheduleMinNotice, true},
		{"EXECUTOR_KILL_GRACE", c.ExecutorKillGrace, false},
		{"SIMULATED_DURATION", c.SimulatedDuration, true},
		{"CONNECT_TIMEOUT", c.ConnectTimeout, false},
		{"WORKER_STOP_TIMEOUT", c.WorkerStopTimeout, true},
		{"EXECUTOR_STOP_TIMEOUT", c.ExecutorStopTimeout, true},
	} {
		if d.value < 0 || (d.value == 0 && !d.zeroAllowed) {
			return invalid(d.name, FormatDuration(d.value), "")
		}
	}
	if !(c.RolloutStartRate > 0) {
		return invalid("ROLLOUT_START_RATE", strconv.FormatFloat(c.RolloutStartRate, 'g', -1, 64), "")
	}
	if c.NoticeDispatchLoops < 1 || c.NoticeDispatchLoops > maxNoticeDispatchLoops {
		return invalid("NOTICE_DISPATCH_LOOPS", strconv.Itoa(c.NoticeDispatchLoops), "")
	}
	if c.WorkflowCacheSize < 1 {
		return invalid("WORKFLOW_CACHE_SIZE", strconv.Itoa(c.WorkflowCacheSize), "")
	}
	if c.ExecutorCommand != "" {
		argv, err := SplitCommand(c.ExecutorCommand)
		if err != nil {
			return invalid("EXECUTOR_COMMAND", c.ExecutorCommand, err.Error())
		}
		c.ExecutorArgv = argv
	}
	if c.Executor == ExecutorCommand && len(c.ExecutorArgv) == 0 {
		return invalid("EXECUTOR_COMMAND", c.ExecutorCommand, "EXECUTOR=command needs a command")
	}
	if c.ExecutorProbeCommand != "" {
		if c.Executor != ExecutorCommand {
			return invalid("EXECUTOR_PROBE_COMMAND", c.ExecutorProbeCommand, "only the command executor runs a probe, and EXECUTOR is "+string(c.Executor))
		}
		argv, err := SplitCommand(c.ExecutorProbeCommand)
		if err != nil {
			return invalid("EXECUTOR_PROBE_COMMAND", c.ExecutorProbeCommand, err.Error())
		}
		c.ExecutorProbeArgv = argv
	}
	for _, a := range []struct{ name, value string }{{"METRICS_ADDR", c.MetricsAddr}, {"CODEC_ADDR", c.CodecAddr}} {
		if a.value != "" {
			if err := validateHostPort(a.name, a.value, true); err != nil {
				return err
			}
		}
	}
	if c.CodecAddr != "" && c.CodecAuthToken == "" {
		return invalid("CODEC_AUTH_TOKEN", "", "CODEC_ADDR serves decrypted payloads only to callers with the token")
	}
	if c.CodecAddr != "" && len(c.PayloadKeys) == 0 {
		return invalid("PAYLOAD_KEYS", "", "CODEC_ADDR serves a codec, and there is no key to decode with")
	}
	if err := c.validateExecutorIsolation(); err != nil {
		return err
	}
	return c.validatePortal()
}

// validatePortal checks the portal's settings (the worker's links too).
func (c *Config) validatePortal() error {
	if err := validateHostPort("PORTAL_ADDR", c.PortalAddr, true); err != nil {
		return err
	}
	if u, err := url.Parse(c.PortalBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.HasSuffix(c.PortalBaseURL, "/") {
		return invalid("PORTAL_BASE_URL", c.PortalBaseURL, "")
	}
	if c.PortalSecret != "" && len(c.PortalSecret) < 32 {
		return invalid("PORTAL_SECRET", "xxxxx", fmt.Sprintf("%d bytes", len(c.PortalSecret)))
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"PORTAL_LINK_LIFETIME", c.PortalLinkLifetime}, {"PORTAL_SESSION_LIFETIME", c.PortalSessionLifetime}} {
		if d.value <= 0 {
			return invalid(d.name, FormatDuration(d.value), "")
		}
	}
	if c.OIDCIssuer != "" && c.OIDCClientID == "" {
		return invalid("OIDC_CLIENT_ID", "", "OIDC_ISSUER is set")
	}
	return nil
}

// validateHostPort accepts host:port; with emptyHostAllowed also :port.
func validateHostPort(name, value string, emptyHostAllowed bool) error {
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		return invalid(name, value, "not host:port")
	}
	if host == "" && !emptyHostAllowed {
		return invalid(name, value, "no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return invalid(name, value, "port is not a number from 0 to 65535")
	}
	return nil
}

// invalid builds the one-line error for variable name, reading what is
// accepted from the field's tag.
func invalid(name, value, reason string) *Error {
	return &Error{Variable: name, Value: value, Reason: reason, Accepted: field(name).Tag.Get("accepted")}
}

// field returns the struct field of the variable name.
func field(name string) reflect.StructField {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("envconfig") == name {
			return t.Field(i)
		}
	}
	panic("config: no variable " + name)
}

// redactURL hides the password of a connection string, URL or keyword
// form, even one too malformed to parse.
func redactURL(raw string) string {
	if scheme := strings.Index(raw, "://"); scheme >= 0 {
		rest := raw[scheme+3:]
		authority := rest
		if slash := strings.IndexAny(rest, "/?#"); slash >= 0 {
			authority = rest[:slash]
		}
		at := strings.LastIndex(authority, "@")
		if at < 0 {
			return raw
		}
		colon := strings.Index(authority[:at], ":")
		if colon < 0 {
			return raw
		}
		return raw[:scheme+3] + authority[:colon+1] + "xxxxx" + raw[scheme+3+at:]
	}
	return keywordPassword.ReplaceAllString(raw, "${1}xxxxx")
}

// keywordPassword matches the value of password= in a keyword/value
// connection string, quoted or not.
var keywordPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// LogValue implements slog.LogValuer so a logged Config shows what the
// program runs with and never the SendGrid key or a database password.
func (c Config) LogValue() slog.Value {
	mailMode := "outbox"
	if c.SendGridAPIKey != "" {
		mailMode = "sendgrid"
	}
	return slog.GroupValue(
		slog.Any("temporal", c.Temporal),
		slog.String("taskQueue", c.TaskQueue),
		slog.String("database", redactURL(c.DatabaseURL)),
		slog.String("mail", mailMode),
		slog.String("sendgridHost", c.SendGridHost),
		slog.String("mailFrom", c.MailFrom),
		slog.String("executor", string(c.Executor)),
		slog.Duration("executorStopTimeout", c.ExecutorStopTimeout),
		slog.Duration("workerStopTimeout", c.WorkerStopTimeout),
		slog.String("metricsAddr", c.MetricsAddr),
		slog.Any("payloadKeys", c.PayloadKeys),
		slog.String("codecAddr", c.CodecAddr),
		slog.String("executorUser", c.ExecutorUser),
		slog.String("actionSigningKey", c.ActionSigningKey.String()),
		slog.String("actionTrustedKeys", c.ActionTrustedKeys.String()),
	)
}
