package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/logsafe"
)

// errorEdge converts what a handler returned into the status sent, logging
// internal errors with their detail (which the client never sees), and
// turns a panic into Internal so that no request can crash the process.
// (go-grpc-middleware has a recovery interceptor; these few lines keep a
// dependency out.) An error's text may quote what the client sent (a
// subject, a name, a NATS error about them): it is clipped to
// maxLoggedError bytes in the log.
type errorEdge struct {
	log *slog.Logger
}

// maxLoggedError bounds an error's text in a log line.
const maxLoggedError = 512

func (e errorEdge) finish(ctx context.Context, method string, start time.Time, err error, recovered any) error {
	if recovered != nil {
		e.log.ErrorContext(ctx, "panic in handler", slog.String("method", method), slog.String("panic", logsafe.Clip(fmt.Sprint(recovered), maxLoggedError)), slog.String("stack", string(debug.Stack())))
		return status.Error(codes.Internal, "internal error")
	}
	if err == nil {
		e.log.DebugContext(ctx, "rpc", slog.String("method", method), slog.Duration("duration", time.Since(start)))
		return nil
	}
	_, wasStatus := status.FromError(err)
	st, internal := bridge.Status(err)
	if st.Code() == codes.DeadlineExceeded && !wasStatus && ctx.Err() == nil {
		// The caller's deadline has not passed: the bound was the
		// bridge's own (the call clamp, a JetStream request timeout).
		// JetStream did not answer, as while it restarts or elects a
		// leader: retryable, not the caller's timeout.
		err = fmt.Errorf("%s (JetStream did not answer in time): %w", err.Error(), bridge.ErrUnavailable)
		st, internal = bridge.Status(err)
	}
	if st.Code() == codes.Unavailable && !wasStatus {
		// Over REST, Retry-After (a stream's headers may be gone: then
		// only its RetryInfo says it).
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(int(bridge.UnavailableRetry/time.Second))))
	}
	if internal {
		e.log.ErrorContext(ctx, "rpc failed", slog.String("method", method), slog.String("error", logsafe.Clip(err.Error(), maxLoggedError)), slog.Duration("duration", time.Since(start)))
	} else {
		e.log.DebugContext(ctx, "rpc failed", slog.String("method", method), slog.String("code", st.Code().String()), slog.String("error", logsafe.Clip(err.Error(), maxLoggedError)), slog.Duration("duration", time.Since(start)))
	}
	return st.Err()
}

func (e errorEdge) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, e.finish(ctx, info.FullMethod, start, nil, r)
		}
	}()
	resp, err = handler(ctx, req)
	return resp, e.finish(ctx, info.FullMethod, start, err, nil)
}

func (e errorEdge) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = e.finish(ss.Context(), info.FullMethod, start, nil, r)
		}
	}()
	return e.finish(ss.Context(), info.FullMethod, start, handler(srv, ss), nil)
}

// clampDeadline bounds the deadline of unary calls: a client-sent
// Grpc-Timeout larger than max (or none at all) becomes max, so no unary
// call holds server resources longer than that. Publish is bounded by
// answer too (and Ingest, a Publish), the NATS request timeout: JetStream answers a publish in
// milliseconds, and one that has not answered in that time is restarting,
// electing a leader or cut off. errorEdge then answers UNAVAILABLE
// (retry), since the caller's own deadline has not passed. (Sync acks
// bound each of their requests alike; admin calls, which may rightly take
// longer, keep the caller's deadline.)
func clampDeadline(max, answer time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		bound := max
		publish := info.FullMethod == jetwayv1.MessageService_Publish_FullMethodName || info.FullMethod == jetwayv1.MessageService_Ingest_FullMethodName
		if answer > 0 && answer < bound && publish {
			bound = answer
		}
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > bound {
			var cancel context.CancelFunc
			// The cause tells the bridge the bound was the server's.
			ctx, cancel = context.WithTimeoutCause(ctx, bound, bridge.ErrNoAnswer)
			defer cancel()
		}
		return handler(ctx, req)
	}
}

// natsGate fails jetway.v1 calls at once with Unavailable while the NATS
// connection is down, rather than letting them wait out their deadline in
// the reconnect buffer: a client can retry on another replica at once.
// Health checks and reflection always pass.
type natsGate struct {
	connected func() bool
}

func (g natsGate) check(method string) error {
	if strings.HasPrefix(method, "/jetway.v1.") && !g.connected() {
		return fmt.Errorf("%w: the bridge is not connected to NATS", bridge.ErrUnavailable)
	}
	return nil
}

func (g natsGate) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.check(info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g natsGate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := g.check(info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// errCutShort is the cause with which shutdown ends the calls still
// running just before its timeout.
var errCutShort = errors.New("server: the call outlasted the shutdown")

// lastCall ends the calls still running when the shutdown timeout is
// about to pass: each handler's context is cancelled with errCutShort
// (ctx's cause), and what it then returns becomes UNAVAILABLE with its
// ErrorInfo, so that the client gets an answer rather than a connection
// the hard stop closes under it.
type lastCall struct {
	ctx context.Context
}

// bind is ctx, also cancelled when l's context ends.
func (l lastCall) bind(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(l.ctx, func() { cancel(context.Cause(l.ctx)) })
	return ctx, func() { stop(); cancel(nil) }
}

// result is the error of a call that ended with err in ctx.
func (l lastCall) result(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errCutShort) {
		return fmt.Errorf("%w: the bridge is shutting down and ended the call before it finished; its outcome is unknown: retry (a publish with a msg_id is not stored twice)", bridge.ErrUnavailable)
	}
	return err
}

func (l lastCall) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, done := l.bind(ctx)
	defer done()
	resp, err := handler(ctx, req)
	return resp, l.result(ctx, err)
}

func (l lastCall) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, done := l.bind(ss.Context())
	defer done()
	return l.result(ctx, handler(srv, ctxStream{ServerStream: ss, ctx: ctx}))
}

// ctxStream is a server stream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }
