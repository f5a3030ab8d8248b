// Package tracing sends OpenTelemetry traces of workflows and activities
// (go.temporal.io/sdk/contrib/opentelemetry) to an OTLP collector when the
// standard OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set; the OTel SDK reads every other OTEL_* variable itself (headers,
// service name, resource attributes, sampler, batch delays).
package tracing

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"

	"github.com/svcupdate/svcupdate/internal/buildinfo"
)

// Enabled reports whether an OTLP endpoint is configured.
func Enabled() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Tracing is a running trace pipeline: the client interceptor that makes
// spans and the provider that exports them.
type Tracing struct {
	Interceptor interceptor.ClientInterceptor
	provider    *sdktrace.TracerProvider
}

// Start builds the pipeline for program (the default service.name) over
// OTLP/HTTP; it returns nil when no endpoint is configured.
func Start(ctx context.Context, program string) (*Tracing, error) {
	if !Enabled() {
		return nil, nil
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	// resource.Default reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
	// which win over the program's name.
	res, err := resource.Merge(
		resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("svcupdate-"+program), semconv.ServiceVersion(buildinfo.Read().Version)),
		resource.Default(),
	)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	tracingInterceptor, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: provider.Tracer("svcupdate")})
	if err != nil {
		return nil, err
	}
	return &Tracing{Interceptor: tracingInterceptor, provider: provider}, nil
}

// Shutdown exports the spans still buffered.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
