package bridge

import (
	"context"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/metadata"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// The W3C trace context headers, in gRPC metadata and in NATS message
// headers alike (lower case, as the W3C spells them: NATS headers are
// case-sensitive, and other languages' clients look them up so).
const (
	TraceparentHeader = "traceparent"
	TracestateHeader  = "tracestate"
)

// Tracer carries W3C trace context through the bridge: from a call into
// the messages it publishes, and from a delivered message's headers into
// the trace of the call that receives it (package tracing implements it
// with OpenTelemetry spans). Its methods are called on request paths: they
// must be fast, never block, and be safe for concurrent use.
type Tracer interface {
	// Publish is called with each message about to be published for ctx's
	// call; it may write trace headers into msg. It returns the function
	// to call with the publish's outcome.
	Publish(ctx context.Context, msg *nats.Msg) func(*jetwayv1.PublishResponse, error)
	// Deliver is called with each message about to be handed to the
	// client of ctx's call.
	Deliver(ctx context.Context, msg *nats.Msg)
}

// PassTrace is the Tracer without tracing: a message that carries no trace
// context of its own gets the caller's traceparent and tracestate (gRPC
// metadata, or the HTTP headers of a REST call), so that a traced producer
// and its consumers stay in one trace through a bridge that traces
// nothing itself.
type PassTrace struct{}

func endNothing(*jetwayv1.PublishResponse, error) {}

// Publish copies the caller's trace context into msg.
func (PassTrace) Publish(ctx context.Context, msg *nats.Msg) func(*jetwayv1.PublishResponse, error) {
	if HasTraceContext(msg.Header) {
		return endNothing
	}
	// (ValueFromIncomingContext copies one value, not the whole metadata.)
	tp := metadata.ValueFromIncomingContext(ctx, TraceparentHeader)
	if len(tp) == 0 || tp[0] == "" {
		return endNothing
	}
	if msg.Header == nil {
		msg.Header = make(nats.Header, 2)
	}
	msg.Header[TraceparentHeader] = tp[:1:1]
	if ts := metadata.ValueFromIncomingContext(ctx, TracestateHeader); len(ts) > 0 && ts[0] != "" {
		msg.Header[TracestateHeader] = ts[:1:1]
	}
	return endNothing
}

// Deliver does nothing: the message's headers reach the client as they are.
func (PassTrace) Deliver(context.Context, *nats.Msg) {}

// HasTraceContext reports whether h carries a traceparent, in the W3C's
// spelling or net/http's canonical one.
func HasTraceContext(h nats.Header) bool {
	if h == nil {
		return false
	}
	_, lower := h[TraceparentHeader]
	_, canonical := h["Traceparent"]
	return lower || canonical
}
