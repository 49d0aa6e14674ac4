// Package tracing is the bridge's OpenTelemetry tracing, off unless an
// OTLP endpoint is configured (--otlp-endpoint).
//
// What is traced:
//   - every RPC, as a server span (otelgrpc's stats handler), continuing
//     the caller's W3C trace context from its gRPC metadata;
//   - every REST request, as a server span (otelhttp) named by its route
//     template, continuing the trace context of its traceparent header;
//     a REST stream's call to the gRPC server in process is its child;
//   - every published message, as a producer span "publish" (child of the
//     message's own traceparent header when it has one, else of the call),
//     whose context is written into the message's NATS headers as
//     traceparent and tracestate, so any consumer in any language
//     continues it;
//   - every delivered message, as a consumer span "deliver" in the trace of
//     the call that receives it (Subscribe, Consume, Fetch), linked to the
//     producer's span read back from the message's headers.
//
// Off, nothing is recorded and nothing is installed on the request paths
// but bridge.PassTrace, which copies a caller's traceparent into the
// messages it publishes.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"

	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// ServiceName is the service.name of the bridge's spans unless
// OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) says otherwise.
const ServiceName = "jetway-bridge"

// scope is the instrumentation scope of the bridge's own spans.
const scope = "github.com/jetway-dev/jetway"

// Propagator is the W3C trace context (traceparent, tracestate), the only
// format the bridge reads and writes.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracing is the tracer provider, or nothing when tracing is off.
type Tracing struct {
	tp     *sdktrace.TracerProvider // nil: off
	tracer trace.Tracer
}

// Start makes the exporter and the provider from cfg; with no endpoint it
// returns an off Tracing. The exporter connects lazily: a collector that is
// down delays nothing (spans it cannot take are dropped, as the batch
// processor's queue fills).
func Start(ctx context.Context, cfg config.Tracing) (*Tracing, error) {
	if cfg.Endpoint == "" {
		return &Tracing{}, nil
	}
	exp, err := exporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", ServiceName), attribute.String("service.version", version())),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	return &Tracing{tp: tp, tracer: tp.Tracer(scope)}, nil
}

func exporter(ctx context.Context, cfg config.Tracing) (*otlptrace.Exporter, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("tracing: --otlp-endpoint: %w", err)
	}
	var exp *otlptrace.Exporter
	switch cfg.Protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	case "http/protobuf":
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(cfg.Endpoint)}
		if u.Path == "" || u.Path == "/" {
			opts = append(opts, otlptracehttp.WithURLPath("/v1/traces")) // the OTLP default
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("tracing: --otlp-protocol %q: want grpc or http/protobuf", cfg.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	return exp, nil
}

// version is the module version go build stamped.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t.tp != nil }

// Shutdown exports what is buffered and stops the exporter, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// untraced are the calls without spans: health checks and reflection.
var untraced = filters.Not(filters.Any(filters.ServicePrefix("grpc.health."), filters.ServicePrefix("grpc.reflection.")))

// ServerHandler is the gRPC server's stats handler, nil when off.
func (t *Tracing) ServerHandler() stats.Handler {
	if t.tp == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(Propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()), otelgrpc.WithFilter(untraced))
}

// ClientHandler is the stats handler of the gateway's in-process gRPC
// connection, which carries a REST request's span to the server; nil when
// off.
func (t *Tracing) ClientHandler() stats.Handler {
	if t.tp == nil {
		return nil
	}
	return otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(Propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))
}

// HTTP wraps the REST handler with a server span per API request (h
// itself when off). The span is named "METHOD path" until the gateway
// finds the route and names it by its template (NameRoute).
func (t *Tracing) HTTP(h http.Handler) http.Handler {
	if t.tp == nil {
		return h
	}
	// The handler gets a copy of the request: http.ServeMux sets Pattern
	// on the request it serves ("/" for the API), and otelhttp renames
	// the span after it by that pattern, over NameRoute's route template.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r.WithContext(r.Context())) })
	return otelhttp.NewHandler(inner, "jetway-rest",
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(Propagator),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithFilter(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
}

// NameRoute names the REST request's span of ctx by its route (a template
// such as /v1/streams/{name}, never the path, which holds names).
func NameRoute(ctx context.Context, method, template string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetName(method + " " + template)
		span.SetAttributes(attribute.String("http.route", template))
	}
}

// Tracer is the bridge.Tracer: spans when on, bridge.PassTrace when off.
func (t *Tracing) Tracer() bridge.Tracer {
	if t.tp == nil {
		return bridge.PassTrace{}
	}
	return tracer{t.tracer}
}

type tracer struct{ t trace.Tracer }

// Publish starts the producer span of msg and writes its context into
// msg's headers.
func (t tracer) Publish(ctx context.Context, msg *nats.Msg) func(*jetwayv1.PublishResponse, error) {
	if bridge.HasTraceContext(msg.Header) {
		// The message's own context (a PublishStream client's per
		// message) is the producer's parent, rather than the stream's.
		ctx = Propagator.Extract(ctx, headers(msg.Header))
	}
	ctx, span := t.t.Start(ctx, "publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", msg.Subject)))
	if msg.Header == nil {
		msg.Header = make(nats.Header, 2)
	}
	delete(msg.Header, "Traceparent") // the W3C spelling replaces a canonical one
	delete(msg.Header, "Tracestate")
	Propagator.Inject(ctx, headers(msg.Header))
	return func(ack *jetwayv1.PublishResponse, err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish failed")
		} else if ack != nil {
			span.SetAttributes(attribute.String("jetway.stream", ack.GetStream()), attribute.Int64("jetway.sequence", int64(ack.GetSequence())),
				attribute.Bool("jetway.duplicate", ack.GetDuplicate()))
		}
		span.End()
	}
}

// Deliver records the consumer span of msg in ctx's trace, linked to the
// producer's span from msg's headers.
func (t tracer) Deliver(ctx context.Context, msg *nats.Msg) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "receive"),
			attribute.String("messaging.destination.name", msg.Subject))}
	if bridge.HasTraceContext(msg.Header) {
		if sc := trace.SpanContextFromContext(Propagator.Extract(context.Background(), headers(msg.Header))); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	_, span := t.t.Start(ctx, "deliver", opts...)
	span.End()
}

// headers is a TextMapCarrier over NATS headers in the W3C's spelling
// (lower case): NATS headers are case-sensitive, and the canonical forms
// net/http's carrier would write (Traceparent) are not what other
// languages' clients look up. Get also finds the canonical form.
type headers nats.Header

func (h headers) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	if v := h[http.CanonicalHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h headers) Set(key, value string) { h[key] = []string{value} }

func (h headers) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
