// Package gateway serves the REST/JSON mirror of the jetway.v1 API with
// grpc-gateway, plus health, readiness and the OpenAPI document.
//
// The gateway dials the bridge's own gRPC server (over an in-memory
// connection), so REST calls pass through the same interceptors as gRPC
// calls and streaming works.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/protoadapt"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/gen/openapi"
	"github.com/jetway-dev/jetway/internal/logsafe"
	"github.com/jetway-dev/jetway/requestid"
)

// Options configures the handler.
type Options struct {
	// MaxBodyBytes caps request bodies; larger ones get 413. Required.
	MaxBodyBytes int64
	// Ready reports whether the bridge can serve (NATS connected and
	// JetStream answering); /readyz calls it. Required.
	Ready func(context.Context) error
	// Logger receives request errors; nil discards.
	Logger *slog.Logger
	// Direct, when set, serves unary calls in process (see Direct);
	// otherwise every call takes conn.
	Direct *Direct
	// AllowedOrigins are the web origins (scheme://host[:port]) whose
	// pages may make cross-origin requests that change state; other
	// cross-origin browser requests get 403 (see browser.go).
	AllowedOrigins []string
	// LoopbackHostsOnly refuses requests whose Host is not a loopback name
	// (see LoopbackHostOnly): for a bridge without client authentication
	// on loopback listeners, which DNS rebinding would otherwise open to
	// any web page.
	LoopbackHostsOnly bool
	// ReadBodyTimeout bounds the reading of a request body, from the end
	// of its headers; a body that takes longer gets 408 and its connection
	// is closed. It bounds only the body: a streaming response (Subscribe)
	// lives on after it. Required.
	ReadBodyTimeout time.Duration
	// Authenticate, when set, checks the credentials of an API request
	// before its body is read: authz is its first Authorization value,
	// certSubject the subject of its verified client certificate ("" for
	// none), call its method and path and peer its remote address (both
	// for the log). An error refuses the request with the 401 the gRPC
	// interceptor would give, and the body is never read. It only refuses
	// early: what passes is authenticated again by the interceptor.
	// Health, readiness and the OpenAPI document are not checked.
	Authenticate func(ctx context.Context, authz, certSubject, call, peer string) error
	// Metrics, when set, serves GET /metrics (the caller sets it only
	// where that needs no authentication).
	Metrics http.Handler
	// CORS configures the CORS answers to AllowedOrigins.
	CORS CORS
	// Instrument, when set, wraps the handler inside what takes access
	// tokens out of URLs (the tracing of requests: no span sees a token).
	Instrument func(http.Handler) http.Handler
	// Console, when set, serves GET /console/ (package console): static
	// files, outside the API and its authentication.
	Console http.Handler
}

// Slow bodies are logged at info, at most slowBodyLinesPerSecond lines a
// second; each line that passes counts the ones dropped before it.
const slowBodyLinesPerSecond = 10

// New returns the HTTP handler of the REST API over conn.
func New(ctx context.Context, conn *grpc.ClientConn, o Options) (http.Handler, error) {
	if o.MaxBodyBytes <= 0 || o.Ready == nil || o.ReadBodyTimeout <= 0 {
		return nil, errors.New("gateway: MaxBodyBytes, ReadBodyTimeout and Ready are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	routes, err := loadRoutes(openapi.JSON)
	if err != nil {
		return nil, err
	}
	cop, err := newCrossOrigin(o.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	jsonpb := &runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true},
		// Unknown fields are an error: a misspelt field must not be
		// silently ignored.
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	newMux := func() *runtime.ServeMux {
		return runtime.NewServeMux(
			runtime.WithIncomingHeaderMatcher(IncomingHeader),
			runtime.WithOutgoingHeaderMatcher(outgoingHeader),
			// No Grpc-Trailer-* either (sent to clients asking TE: trailers).
			runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
			runtime.WithMetadata(verifiedCertificate),
			runtime.WithErrorHandler(errorHandler(routes, jsonpb)),
			runtime.WithRoutingErrorHandler(routingErrorHandler(routes)),
			// The wildcard marshals responses for any Accept; request
			// bodies are application/json only (guard).
			runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonpb),
			runtime.WithMarshalerOption(MIMEEventStream, &eventStream{JSONPb: jsonpb}),
			// The ingest route's raw bodies (guard gives them this type).
			runtime.WithMarshalerOption(mimeRawBody, rawBody{Marshaler: jsonpb}),
			runtime.WithMiddlewares(guard(routes, cop, o.Logger)),
			// No POST with a form body standing in for a GET (or, with
			// X-HTTP-Method-Override, for another method): a method is
			// what it says, for the cross-origin check and for Allow.
			runtime.WithDisablePathLengthFallback(),
			runtime.WithDisableHTTPMethodOverride(),
		)
	}
	gw := newMux()
	// grpc-gateway tries the most recently registered route first, and a
	// route without a verb also matches a path with one (GetStream's
	// /v1/streams/{name} matches /v1/streams/S:subscribe). MessageService
	// registers last so that its :subscribe and :fetch routes win.
	if err := jetwayv1.RegisterAdminServiceHandler(ctx, gw, conn); err != nil {
		return nil, fmt.Errorf("gateway: register AdminService: %w", err)
	}
	if err := jetwayv1.RegisterAccessServiceHandler(ctx, gw, conn); err != nil {
		return nil, fmt.Errorf("gateway: register AccessService: %w", err)
	}
	if err := jetwayv1.RegisterMessageServiceHandlerClient(ctx, gw, ingestClient{jetwayv1.NewMessageServiceClient(earlyStatusConn{conn})}); err != nil {
		return nil, fmt.Errorf("gateway: register MessageService: %w", err)
	}
	// KVService's paths (/v1/kv/…) are apart from the others'; its
	// streams (ListKeys, WatchBucket) refuse early as Subscribe does.
	kvClient := jetwayv1.NewKVServiceClient(earlyStatusConn{conn})
	if err := jetwayv1.RegisterKVServiceHandlerClient(ctx, gw, kvClient); err != nil {
		return nil, fmt.Errorf("gateway: register KVService: %w", err)
	}
	// DeadLetterService's paths (/v1/dead-letters/…) are apart too; its
	// redrive stream refuses early as Subscribe does.
	dlClient := jetwayv1.NewDeadLetterServiceClient(earlyStatusConn{conn})
	if err := jetwayv1.RegisterDeadLetterServiceHandlerClient(ctx, gw, dlClient); err != nil {
		return nil, fmt.Errorf("gateway: register DeadLetterService: %w", err)
	}
	// PushService's paths (/v1/push-subscriptions…) are apart too.
	pushClient := jetwayv1.NewPushServiceClient(conn)
	if err := jetwayv1.RegisterPushServiceHandlerClient(ctx, gw, pushClient); err != nil {
		return nil, fmt.Errorf("gateway: register PushService: %w", err)
	}
	var api http.Handler = gw
	if d := o.Direct; d != nil {
		if d.Messages == nil || d.Admin == nil || d.Access == nil || d.Interceptor == nil {
			return nil, errors.New("gateway: Direct needs Messages, Admin, Access and Interceptor")
		}
		direct := newMux()
		if err := jetwayv1.RegisterAdminServiceHandlerServer(ctx, direct, directAdmin{s: d.Admin, ic: d.Interceptor}); err != nil {
			return nil, fmt.Errorf("gateway: register AdminService: %w", err)
		}
		if err := jetwayv1.RegisterAccessServiceHandlerServer(ctx, direct, directAccess{s: d.Access, ic: d.Interceptor}); err != nil {
			return nil, fmt.Errorf("gateway: register AccessService: %w", err)
		}
		if err := jetwayv1.RegisterMessageServiceHandlerServer(ctx, direct, directMessages{s: d.Messages, ic: d.Interceptor}); err != nil {
			return nil, fmt.Errorf("gateway: register MessageService: %w", err)
		}
		// KVService takes the connection on both (it is not wrapped for
		// in-process calls).
		if err := jetwayv1.RegisterKVServiceHandlerClient(ctx, direct, kvClient); err != nil {
			return nil, fmt.Errorf("gateway: register KVService: %w", err)
		}
		if err := jetwayv1.RegisterDeadLetterServiceHandlerClient(ctx, direct, dlClient); err != nil {
			return nil, fmt.Errorf("gateway: register DeadLetterService: %w", err)
		}
		if err := jetwayv1.RegisterPushServiceHandlerClient(ctx, direct, pushClient); err != nil {
			return nil, fmt.Errorf("gateway: register PushService: %w", err)
		}
		api = streamsApart{streams: gw, unary: direct}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := o.Ready(rctx); err != nil {
			o.Logger.DebugContext(r.Context(), "not ready", slog.Any("error", err))
			writeJSON(w, http.StatusServiceUnavailable, `{"status":"unavailable"}`)
			return
		}
		writeJSON(w, http.StatusOK, `{"status":"ready"}`)
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Console != nil {
		mux.Handle("GET /console/", o.Console)
	}
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.V3)
	})
	mux.HandleFunc("GET /openapi.v2.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.JSON)
	})
	slow := logsafe.NewLimiter(o.Logger, slowBodyLinesPerSecond, slowBodyLinesPerSecond)
	mux.Handle("/", checkRequest(authFirst(gw, o.Authenticate, limitBody(streamSocket(api, o.Logger), o.MaxBodyBytes, slow))))
	// Every path refuses cross-origin browser requests of unsafe methods
	// before reading their body; every body is read within its deadline.
	// CORS answers preflights of allowed origins before the
	// cross-origin check sees them.
	var h http.Handler = cop.Handler(mux)
	if c := newCORS(o.AllowedOrigins, o.CORS); c != nil {
		h = c.Handler(h)
	}
	if o.LoopbackHostsOnly {
		h = LoopbackHostOnly(h)
	}
	h = bodyDeadline(h, o.ReadBodyTimeout)
	if o.Instrument != nil {
		h = o.Instrument(h)
	}
	return requestIDs(queryTokens(routes, h)), nil
}

// requestIDs gives every request its id (the caller's X-Request-Id when
// well formed, else a new one: package requestid), in its context for the
// log lines of the gateway and in its X-Request-Id header for the
// services, and sends it back on the response, refusals included.
func requestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := requestid.Choose(r.Header.Get(requestid.Header))
		r.Header.Set(requestid.Header, id)
		w.Header().Set(requestid.Header, id)
		next.ServeHTTP(w, r.WithContext(requestid.NewContext(r.Context(), id)))
	})
}

// streamsApart sends the streaming routes (Subscribe's :subscribe) to the
// gateway over the connection and every other route to the direct one.
type streamsApart struct {
	streams, unary http.Handler
}

func (s streamsApart) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isStream(r) {
		s.streams.ServeHTTP(w, r)
		return
	}
	s.unary.ServeHTTP(w, r)
}

// writeStatus answers with a status in grpc-gateway's error shape.
func writeStatus(w http.ResponseWriter, httpStatus int, st *status.Status) {
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(st.Proto())
	if err != nil {
		body = []byte(`{"code":13,"message":"internal error"}`)
	}
	writeJSON(w, httpStatus, string(body))
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}

// writeError answers in the shape of grpc-gateway's own errors, with an
// ErrorInfo reason, for requests refused before they reach gRPC.
func writeError(w http.ResponseWriter, httpStatus int, code codes.Code, reason, msg string) {
	body, _ := json.Marshal(map[string]any{
		"code":    int(code),
		"message": msg,
		"details": []any{map[string]string{
			"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": reason,
			"domain": bridge.ErrorDomain,
		}},
	})
	writeJSON(w, httpStatus, string(body))
}

// outgoingHeader passes on the one piece of gRPC response metadata HTTP
// clients use, the retry hint of quotas and unavailability, as
// Retry-After. Nothing else becomes a header: grpc-gateway's default
// Grpc-Metadata-* would leak the transport's own (content-type of the
// in-memory gRPC call) and whatever an interceptor adds; X-Request-Id is
// set by requestIDs.
func outgoingHeader(key string) (string, bool) {
	if key == "retry-after" {
		return "Retry-After", true
	}
	return "", false
}

// verifiedCertificate hands the subject of a client certificate that the
// HTTPS listener verified to the gRPC server, which trusts that metadata
// only on the gateway's in-memory connection. A client cannot set it: the
// incoming header matcher forwards no header of that name.
func verifiedCertificate(_ context.Context, r *http.Request) metadata.MD {
	subject := certSubject(r)
	if subject == "" {
		return nil
	}
	return metadata.Pairs(auth.CertSubjectMetadata, subject)
}

// certSubject is the subject of the client certificate the HTTPS listener
// verified, "" for none.
func certSubject(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.String()
}

// authFirst refuses an API request whose credentials check refuses before
// anything reads its body, with the 401 grpc-gateway writes for the
// interceptor's refusal (the same status through the same error handler
// and marshaler). A refused request's body stays unread: its connection
// is closed rather than drained. check nil passes everything.
func authFirst(mux *runtime.ServeMux, check func(ctx context.Context, authz, certSubject, call, peer string) error, next http.Handler) http.Handler {
	if check == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := check(r.Context(), r.Header.Get("Authorization"), certSubject(r), r.Method+" "+r.URL.Path, r.RemoteAddr)
		if err == nil {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength != 0 {
			// net/http would otherwise read up to 256 KiB of the body
			// to keep the connection.
			w.Header().Set("Connection", "close")
		}
		st, _ := bridge.Status(err)
		_, out := runtime.MarshalerForRequest(mux, r)
		runtime.HTTPError(r.Context(), mux, out, w, r, st.Err()) // the mux's own error handler
	})
}

// Challenge is the WWW-Authenticate value of a 401.
const Challenge = `Bearer realm="jetway", ApiKey realm="jetway"`

// errorHandler is grpc-gateway's, with a proper challenge on a 401
// (grpc-gateway would put the status message there), a clean message and
// field violation for path and query parameters grpc-gateway could not
// parse (see badParameter), and JSON for errors asked for as Server-Sent
// Events (an error is not an event stream).
func errorHandler(rt *routeTable, plain runtime.Marshaler) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		if _, ok := m.(*eventStream); ok {
			m = plain
		}
		var hse *runtime.HTTPStatusError
		if !errors.As(err, &hse) {
			if st := badParameter(ctx, rt, r, status.Convert(err)); st != nil {
				err = st.Err()
			}
			err = withErrorInfo(status.Convert(err)).Err()
		} else {
			err = &runtime.HTTPStatusError{HTTPStatus: hse.HTTPStatus, Err: withErrorInfo(status.Convert(hse.Err)).Err()}
		}
		if status.Code(err) == codes.Unauthenticated {
			w = challengeWriter{w}
		}
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
	}
}

// withErrorInfo gives an error grpc-gateway made itself (a body that is
// not JSON or names an unknown field, an unknown route) what every error
// of the API carries: an ErrorInfo with a reason, the code's name. A body
// protojson could not decode says so, without the "proto:" of its library.
func withErrorInfo(st *status.Status) *status.Status {
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.ErrorInfo); ok {
			return st
		}
	}
	msg := st.Message()
	var details []protoadapt.MessageV1
	if st.Code() == codes.InvalidArgument && (strings.HasPrefix(msg, "proto:") || msg == io.ErrUnexpectedEOF.Error()) {
		msg = "request body: " + strings.TrimSpace(strings.TrimPrefix(msg, "proto:"))
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "body", Description: msg, Reason: "INVALID_ARGUMENT"},
		}})
	}
	out := status.New(st.Code(), msg)
	info := &errdetails.ErrorInfo{Reason: codeReason(st.Code()), Domain: bridge.ErrorDomain}
	if with, err := out.WithDetails(append([]protoadapt.MessageV1{info}, details...)...); err == nil {
		return with
	}
	return st
}

// codeReason is a code's name as a reason: InvalidArgument is
// INVALID_ARGUMENT.
func codeReason(c codes.Code) string {
	name := c.String()
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// routingErrorHandler answers a method a path does not take with 405 and
// Allow (grpc-gateway answers 501 Unimplemented, as if the server lacked
// the method); other routing errors as grpc-gateway does.
func routingErrorHandler(rt *routeTable) runtime.RoutingErrorHandlerFunc {
	return func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
		if httpStatus == http.StatusMethodNotAllowed {
			if allow := rt.allow(r.URL.Path); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				writeError(w, http.StatusMethodNotAllowed, codes.Unimplemented, "METHOD_NOT_ALLOWED",
					fmt.Sprintf("method %s not allowed on this path; it takes %s", r.Method, strings.Join(allow, ", ")))
				return
			}
		}
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
	}
}

type challengeWriter struct{ http.ResponseWriter }

func (c challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", Challenge)
	}
	c.ResponseWriter.WriteHeader(code)
}

// maxIdempotencyKey is the longest Idempotency-Key, as msg_id allows.
const maxIdempotencyKey = 255

// checkRequest refuses, with 400 and a reason, what grpc-gateway would
// otherwise mishandle: a path or query that is not UTF-8 (the gRPC client
// cannot marshal it and answers 500), and an Idempotency-Key that gRPC
// metadata cannot carry (grpc-gateway drops it silently, and the client's
// retries would not be deduplicated).
func checkRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !utf8.ValidString(r.URL.Path) {
			// Path parameters are subjects (publish) or stream and
			// consumer names (everything else).
			reason := "INVALID_NAME"
			if strings.HasPrefix(r.URL.Path, "/v1/subjects/") {
				reason = "INVALID_SUBJECT"
			}
			writeError(w, http.StatusBadRequest, codes.InvalidArgument, reason, "the request path is not valid UTF-8")
			return
		}
		for k, vs := range r.URL.Query() {
			for _, v := range append(vs, k) {
				if !utf8.ValidString(v) {
					writeError(w, http.StatusBadRequest, codes.InvalidArgument, "INVALID_ARGUMENT", "the query string is not valid UTF-8")
					return
				}
			}
		}
		for _, v := range r.Header.Values("Idempotency-Key") {
			if !printableASCII(v) || len(v) > maxIdempotencyKey || v != strings.TrimSpace(v) {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, "INVALID_ARGUMENT",
					"Idempotency-Key must be 1 to 255 printable ASCII characters without surrounding spaces")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// IncomingHeader decides which HTTP headers become gRPC metadata. Only the
// headers the API defines pass: Authorization (for the auth interceptor),
// Idempotency-Key (Publish's msg_id), Last-Event-ID (SSE resume),
// X-Request-Id (as requestIDs set it) and the W3C trace context
// (traceparent, tracestate). Grpc-Metadata-* and every other
// header are dropped, so a REST client can never forge metadata that the
// server would trust.
func IncomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "Authorization":
		return "authorization", true
	case "Idempotency-Key":
		return bridge.IdempotencyKeyMetadata, true
	case "Last-Event-Id":
		return bridge.LastEventIDMetadata, true
	case "X-Request-Id":
		// The id requestIDs chose (the caller's when well formed).
		return requestid.Metadata, true
	case "Traceparent":
		// W3C trace context: the bridge continues the caller's trace
		// and carries it into the messages it publishes.
		return "traceparent", true
	case "Tracestate":
		return "tracestate", true
	}
	return "", false
}

// bodyDeadline sets the read deadline of a request that has a body to
// timeout from now (the end of its headers), so that no body, read by a
// handler or drained by net/http after it, holds its connection longer;
// limitBody clears it once the body is read, so that it never bounds a
// streaming response. A request without a body gets no deadline. (Go
// 1.26's HTTP/1 server also clears the connection's deadline when a body
// ends, before its background read; the bound here does not rely on it,
// and starts after the headers, which ReadHeaderTimeout bounds.)
func bodyDeadline(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody reads at most limit bytes of a request body before the gateway
// sees it, answering 413 when the body is larger. (grpc-gateway would turn a
// truncated body into a JSON syntax error, 400.) The gateway reads the whole
// body to decode it anyway, so buffering here costs no extra memory bound.
// A body that misses bodyDeadline's deadline gets 408 and its connection
// closed, logged (without anything the client sent) through slow; a body
// read in time clears the deadline, so that a streaming response lives on.
func limitBody(next http.Handler, limit int64, slow *logsafe.Limiter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > limit {
			tooLarge(w, limit)
			return
		}
		start := time.Now()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			tooLarge(w, limit)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			slow.Log(r.Context(), slog.LevelInfo, "request body not read in time: connection closed",
				slog.String("peer", r.RemoteAddr), slog.Int("read_bytes", len(body)), slog.Duration("after", time.Since(start).Round(time.Millisecond)))
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, codes.DeadlineExceeded, "BODY_TIMEOUT", "the request body did not arrive in time")
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, codes.InvalidArgument, "INVALID_ARGUMENT", "could not read the request body")
			return
		}
		// The whole body is read: no deadline on what follows (a
		// streaming response's connection).
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, limit int64) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "BODY_TOO_LARGE",
		fmt.Sprintf("request body larger than %d bytes", limit))
}
