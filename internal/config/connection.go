package config

import (
	"errors"
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/client"
	temporalenv "go.temporal.io/sdk/contrib/envconfig"

	"github.com/svcupdate/svcupdate/internal/codec"
)

// clientVariables are the Temporal client's own settings, the temporal CLI's
// names, read by go.temporal.io/sdk/contrib/envconfig rather than by
// envconfig tags: TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, tags of Config,
// override a profile the same way.
var clientVariables = []Variable{
	{Name: "TEMPORAL_CONFIG_FILE", Description: "temporal.toml holding client profiles (the temporal CLI's file); default $HOME/.config/temporalio/temporal.toml when it exists"},
	{Name: "TEMPORAL_PROFILE", Description: "profile of TEMPORAL_CONFIG_FILE to connect with; default the file's \"default\" profile"},
	{Name: "TEMPORAL_API_KEY", Secret: true, Description: "API key sent to Temporal (Temporal Cloud); turns TLS on"},
	{Name: "TEMPORAL_TLS", Description: "true or false: connect to Temporal with TLS (on by itself with a client certificate, a server CA or an API key)"},
	{Name: "TEMPORAL_TLS_CLIENT_CERT_PATH", Description: "PEM client certificate for mTLS with Temporal"},
	{Name: "TEMPORAL_TLS_CLIENT_KEY_PATH", Description: "PEM private key of TEMPORAL_TLS_CLIENT_CERT_PATH"},
	{Name: "TEMPORAL_TLS_SERVER_CA_CERT_PATH", Description: "PEM CA that signed the Temporal frontend's certificate; default the system's roots"},
	{Name: "TEMPORAL_TLS_SERVER_NAME", Description: "name expected in the Temporal frontend's certificate when it differs from TEMPORAL_ADDRESS's host"},
}

// telemetryVariables are the OpenTelemetry SDK's own variables the worker
// documents; with an endpoint set, it exports traces over OTLP/HTTP. The
// SDK reads them and the rest of OTEL_* (package tracing).
var telemetryVariables = []Variable{
	{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Description: "OTLP/HTTP collector the worker sends traces of workflows and activities to, such as http://otel-collector:4318; empty sends none"},
	{Name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Description: "OTLP/HTTP traces URL, instead of OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces"},
	{Name: "OTEL_EXPORTER_OTLP_HEADERS", Secret: true, Description: "headers sent to the collector, such as authorization=Bearer%20TOKEN"},
	{Name: "OTEL_SERVICE_NAME", Description: "service.name of the traces; default svcupdate-worker"},
}

// TemporalClient is how both programs reach Temporal: the profile resolved
// from TEMPORAL_CONFIG_FILE and the variables above, on top of
// TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.
type TemporalClient struct {
	// Options carry the address, namespace, TLS, credentials and gRPC
	// metadata; callers add their logger, metrics, converters and identity.
	Options client.Options
	// Profile is the temporal.toml profile read, empty when none was.
	Profile string
}

// LogValue says how the programs connect, never with the API key.
func (t TemporalClient) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("address", t.Options.HostPort),
		slog.String("namespace", t.Options.Namespace),
		slog.Bool("tls", t.Options.ConnectionOptions.TLS != nil),
		slog.Bool("mTLS", t.Options.ConnectionOptions.TLS != nil && len(t.Options.ConnectionOptions.TLS.Certificates) > 0),
		slog.Bool("apiKey", t.Options.Credentials != nil),
		slog.String("profile", t.Profile),
	)
}

// loadTemporalClient resolves the connection. A profile's address and
// namespace apply unless TEMPORAL_ADDRESS or TEMPORAL_NAMESPACE is set;
// when neither says, Config's defaults do.
func (c *Config) loadTemporalClient(env temporalenv.EnvLookup) error {
	profile, err := temporalenv.LoadClientConfigProfile(temporalenv.LoadClientConfigProfileOptions{EnvLookup: env})
	if err != nil {
		// The profile named, or the file, cannot be used.
		file, _ := env.LookupEnv("TEMPORAL_CONFIG_FILE")
		name, _ := env.LookupEnv("TEMPORAL_PROFILE")
		return &Error{Variable: "TEMPORAL_CONFIG_FILE", Value: file, Reason: fmt.Sprintf("profile %q: %v", name, err),
			Accepted: "a readable temporal.toml holding the profile TEMPORAL_PROFILE names"}
	}
	if profile.Address == "" {
		profile.Address = c.TemporalAddress
	}
	if profile.Namespace == "" {
		profile.Namespace = c.TemporalNamespace
	}
	c.TemporalAddress, c.TemporalNamespace = profile.Address, profile.Namespace
	options, err := profile.ToClientOptions(temporalenv.ToClientOptionsRequest{})
	if err != nil {
		return &Error{Variable: "TEMPORAL_TLS_*", Value: tlsFiles(profile.TLS), Reason: errors.Unwrap(err).Error(),
			Accepted: "readable PEM files: a certificate with its key, and a CA"}
	}
	c.Temporal = TemporalClient{Options: options}
	if name, _ := env.LookupEnv("TEMPORAL_PROFILE"); name != "" {
		c.Temporal.Profile = name
	}
	return nil
}

// tlsFiles names the files of a TLS setting for an error message.
func tlsFiles(tls *temporalenv.ClientConfigTLS) string {
	if tls == nil {
		return ""
	}
	return fmt.Sprintf("cert %s, key %s, CA %s", tls.ClientCertPath, tls.ClientKeyPath, tls.ServerCACertPath)
}

// ClientOptions are the options of a Temporal client of this configuration,
// for every program (worker, starter, portal): the connection, and the
// codec of PAYLOAD_KEYS for payloads and failures. Callers add their
// logger, metrics and identity.
func (c Config) ClientOptions() (client.Options, error) {
	options := c.Temporal.Options
	data, failures, err := codec.Converters(codec.Keys(c.PayloadKeys))
	if err != nil {
		return client.Options{}, fmt.Errorf("PAYLOAD_KEYS: %w", err)
	}
	options.DataConverter, options.FailureConverter = data, failures
	return options, nil
}
