// Package requestid gives every call a request id and every log line of a
// call that id (and, with tracing on, its trace and span ids).
//
// The id is the caller's X-Request-Id (HTTP) or x-request-id (gRPC
// metadata) when it is a well-formed one (1 to 128 characters of
// [A-Za-z0-9._:/+=@-]: the forms proxies, load balancers and tracing
// systems make), otherwise one made here (32 hex digits). It is sent back
// on the response (X-Request-Id; gRPC header x-request-id), so a client
// can quote it when it reports a problem, and an operator finds every
// line of that call with one grep. A malformed id is replaced rather than
// refused: it is a log aid, not part of the API.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Metadata is the gRPC metadata key (and, canonicalised, the HTTP header
// X-Request-Id) that carries the id both ways.
const Metadata = "x-request-id"

// Header is the HTTP header.
const Header = "X-Request-Id"

// maxLen bounds an id taken from a caller.
const maxLen = 128

type key struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// FromContext returns the id of ctx's call, "" when it has none.
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}

// Valid reports whether a caller's id is kept as it is.
func Valid(id string) bool {
	if id == "" || len(id) > maxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '/', c == '+', c == '=', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// New makes an id: 128 random bits in hex.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Choose returns the caller's id when it is valid, a new one otherwise.
func Choose(fromCaller string) string {
	if Valid(fromCaller) {
		return fromCaller
	}
	return New()
}

// Ensure returns ctx with an id: the one ctx already carries (the HTTP
// layer or the gRPC tap put it there), else the caller's from the
// incoming metadata when valid, else a new one.
func Ensure(ctx context.Context) (context.Context, string) {
	if id := FromContext(ctx); id != "" {
		return ctx, id
	}
	var from string
	if v := metadata.ValueFromIncomingContext(ctx, Metadata); len(v) > 0 {
		from = v[0]
	}
	id := Choose(from)
	return NewContext(ctx, id), id
}

// UnaryServerInterceptor gives each unary call its id and sends it back
// in the response header.
func UnaryServerInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, id := Ensure(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(Metadata, id))
	return handler(ctx, req)
}

// StreamServerInterceptor gives each streaming call its id and sends it
// back: in the response header with the first message, or in the trailer
// of a stream that ends without one. (Set at once, it would make grpc-go
// send headers before a refusal, and the gateway would then answer the
// refusal in the stream's body rather than as an HTTP error.)
func StreamServerInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, id := Ensure(ss.Context())
	w := &stream{ServerStream: ss, ctx: ctx, id: id}
	err := handler(srv, w)
	if !w.sent {
		ss.SetTrailer(metadata.Pairs(Metadata, id))
	}
	return err
}

// stream is a server stream with the id in its context; its first
// message carries the id in the header. (Only the handler's goroutine
// sends, as grpc-go requires: sent needs no lock.)
type stream struct {
	grpc.ServerStream
	ctx  context.Context
	id   string
	sent bool
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) SendMsg(m any) error {
	if !s.sent {
		s.sent = true
		_ = s.ServerStream.SetHeader(metadata.Pairs(Metadata, s.id))
	}
	return s.ServerStream.SendMsg(m)
}

func (s *stream) SendHeader(md metadata.MD) error {
	if !s.sent {
		s.sent = true
		md = metadata.Join(md, metadata.Pairs(Metadata, s.id))
	}
	return s.ServerStream.SendHeader(md)
}

// Handler wraps h so that each record logged with a call's context (the
// *Context logging methods) carries request_id, and trace_id and span_id
// when the call is traced.
func Handler(h slog.Handler) slog.Handler { return handler{h} }

type handler struct{ slog.Handler }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if id := FromContext(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler { return handler{h.Handler.WithAttrs(as)} }
func (h handler) WithGroup(name string) slog.Handler    { return handler{h.Handler.WithGroup(name)} }
