package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/jetway-dev/jetway/internal/logsafe"
)

// CertSubjectMetadata carries the subject of a client certificate the
// gateway verified on its HTTPS listener. The interceptor trusts it only
// on the gateway's in-memory connection (InMemoryNetwork), never from the
// network, and the gateway never forwards a client's header of that name.
const CertSubjectMetadata = "x-jetway-verified-cert-subject"

// InMemoryNetwork is the net.Addr network of the gateway's in-memory
// connection to the gRPC server.
const InMemoryNetwork = "bufconn"

// Defaults of quotas when neither the identity nor the configuration sets
// them.
const (
	DefaultConcurrentStreams = 100
	DefaultRequestsPerSecond = 1000
)

// Refused credentials are logged at info, at most RefusalLinesPerSecond
// lines a second (in bursts of RefusalLineBurst); each line that passes
// counts, as "suppressed", the refusals dropped since the one before.
const (
	RefusalLinesPerSecond = 10
	RefusalLineBurst      = 10
)

// maxLoggedReason bounds the reason of a refusal in its log line
// (Authenticate's reasons are shorter; this holds whatever changes).
const maxLoggedReason = 256

// Interceptor authenticates every call once, for gRPC and (through the
// gateway) REST alike, puts the identity in the context and applies the
// identity's quotas. With a nil Config every call is Anonymous.
type Interceptor struct {
	config   *Config
	now      func() time.Time
	refusals *logsafe.Limiter
	// refusalMsg is the message of a refusal's line.
	refusalMsg string

	mu     sync.Mutex
	quotas map[string]*quota

	// onQuota hears each quota refusal: the identity's name and the limit
	// ("rate" or "streams"). Set by OnQuota before serving.
	onQuota func(identity, limit string)
}

// OnQuota makes f hear every quota refusal (for metrics): the identity
// (named in the configuration, so a bounded set) and the limit, "rate" or
// "streams". Call it before the interceptor serves.
func (a *Interceptor) OnQuota(f func(identity, limit string)) { a.onQuota = f }

type quota struct {
	limiter *rate.Limiter
	streams int
}

// NewInterceptor returns the interceptor; cfg nil turns authentication off.
func NewInterceptor(cfg *Config, log *slog.Logger) *Interceptor {
	return &Interceptor{
		config: cfg, now: time.Now, quotas: map[string]*quota{},
		refusals:   logsafe.NewLimiter(log, RefusalLinesPerSecond, RefusalLineBurst),
		refusalMsg: "authentication failed",
	}
}

// Check refuses, as the interceptors would, credentials that prove no
// identity: authz is the Authorization value and certSubject the subject
// of a verified client certificate; call names the request for the log
// (clipped). It lets a transport refuse a request before reading it (the
// gateway checks before reading a body); the interceptors still
// authenticate every call that passes. With authentication off it
// accepts everything. The error is the interceptors' (it wraps
// ErrUnauthenticated and says nothing of the check that failed).
func (a *Interceptor) Check(ctx context.Context, authz, certSubject, call, peer string) error {
	if a.config == nil {
		return nil
	}
	if _, err := a.config.Authenticate(authz, certSubject, a.now()); err != nil {
		a.refused(ctx, call, peer, err)
		return errUnauthenticated
	}
	return nil
}

// refused logs a refusal, rate-limited; call and the reason are clipped.
// With AuditTo, the line is an audit record (event
// authentication.refused) on the audit log.
func (a *Interceptor) refused(ctx context.Context, call, peer string, reason error) {
	a.refusals.Log(ctx, slog.LevelInfo, a.refusalMsg,
		slog.String("event", "authentication.refused"),
		slog.String("method", logsafe.Clip(call, 128)), slog.String("peer", peer),
		slog.String("reason", logsafe.Clip(reason.Error(), maxLoggedReason)))
}

// AuditTo writes the refused credentials to log, with msg as the
// message, instead of the logger NewInterceptor was given (package
// audit's). Call it before the interceptor serves.
func (a *Interceptor) AuditTo(log *slog.Logger, msg string) {
	a.refusals = logsafe.NewLimiter(log, RefusalLinesPerSecond, RefusalLineBurst)
	a.refusalMsg = msg
}

// public methods need no credentials: health checks and reflection.
func public(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

// Unauthenticated is what every refused credential gets: no detail for an
// attacker (the log has it).
var errUnauthenticated = fmt.Errorf("%w: missing or invalid credentials", ErrUnauthenticated)

// errTokenExpired ends a stream whose access token expired.
var errTokenExpired = fmt.Errorf("%w: the access token expired", ErrUnauthenticated)

// tapKey holds the identity Tap proved for a call; only this package sets
// it, and only from a verified credential.
type tapKey struct{}

// Tap authenticates a gRPC call from its headers, before grpc-go reads its
// request message (grpc.InTapHandle): a call without a credential the
// bridge accepts is refused without its (up to 12 × max payload) message
// ever being read into memory. The identity goes in the returned context,
// so the interceptor does not authenticate the call again. It returns the
// same error as the interceptor (wrapping ErrUnauthenticated) for the
// caller to turn into a status.
func (a *Interceptor) Tap(ctx context.Context, method string) (context.Context, error) {
	if a.config == nil || public(method) {
		return ctx, nil
	}
	id, err := a.authenticate(ctx, method)
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, tapKey{}, id), nil
}

func (a *Interceptor) authenticate(ctx context.Context, method string) (*Identity, error) {
	if a.config == nil {
		return Anonymous, nil
	}
	if id, ok := ctx.Value(tapKey{}).(*Identity); ok {
		return id, nil // proven by Tap for this very call
	}
	// (ValueFromIncomingContext copies one value, not the whole metadata.)
	authz := first(metadata.ValueFromIncomingContext(ctx, "authorization"))
	cert, from := "", ""
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			from = p.Addr.String()
		}
		if p.Addr != nil && p.Addr.Network() == InMemoryNetwork {
			cert = first(metadata.ValueFromIncomingContext(ctx, CertSubjectMetadata))
		} else if tls, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			cert = verifiedSubject(tls.State.VerifiedChains)
		}
	}
	id, err := a.config.Authenticate(authz, cert, a.now())
	if err != nil {
		a.refused(ctx, method, from, err)
		return nil, errUnauthenticated
	}
	return id, nil
}

func verifiedSubject(chains [][]*x509.Certificate) string {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return ""
	}
	return chains[0][0].Subject.String()
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (a *Interceptor) quota(id *Identity) *quota {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.quotas[id.Name]
	if q == nil {
		rps, burst := id.limits.RequestsPerSecond, id.limits.Burst
		if rps == 0 {
			rps = DefaultRequestsPerSecond
		}
		if burst == 0 {
			burst = int(math.Max(1, math.Ceil(rps)))
		}
		q = &quota{limiter: rate.NewLimiter(rate.Limit(rps), burst)}
		a.quotas[id.Name] = q
	}
	return q
}

// admit applies the request rate; the error carries a retry hint.
func (a *Interceptor) admit(ctx context.Context, id *Identity) error {
	if id.all {
		return nil
	}
	r := a.quota(id).limiter.ReserveN(a.now(), 1)
	if d := r.DelayFrom(a.now()); d > 0 {
		r.CancelAt(a.now())
		secs := max(1, int(math.Ceil(d.Seconds())))
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(secs)))
		if a.onQuota != nil {
			a.onQuota(id.Name, "rate")
		}
		// The message says what Retry-After says (a delay under a
		// millisecond read "retry in 0s").
		return &QuotaError{RetryAfter: d, msg: fmt.Sprintf("%s is over its request rate; retry in %ds", id.Name, secs)}
	}
	return nil
}

// QuotaError is a call refused by a quota, with when to retry.
type QuotaError struct {
	RetryAfter time.Duration
	msg        string
}

func (e *QuotaError) Error() string { return ErrQuota.Error() + ": " + e.msg }

// Unwrap returns ErrQuota.
func (e *QuotaError) Unwrap() error { return ErrQuota }

// Unary authenticates a unary call.
func (a *Interceptor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if public(info.FullMethod) {
		return handler(ctx, req)
	}
	id, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := id.allowsMethod(info.FullMethod); err != nil {
		return nil, err
	}
	if err := a.admit(ctx, id); err != nil {
		return nil, err
	}
	return handler(NewContext(ctx, id), req)
}

// Stream authenticates a streaming call and holds one of its identity's
// concurrent streams while it runs.
func (a *Interceptor) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if public(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx := ss.Context()
	id, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return err
	}
	if err := id.allowsMethod(info.FullMethod); err != nil {
		return err
	}
	if err := a.admit(ctx, id); err != nil {
		return err
	}
	// Every stream holds one of its identity's concurrent streams, an
	// access token's included (they share the identity's quota).
	if !id.all {
		release, err := a.acquireStream(ctx, id)
		if err != nil {
			return err
		}
		defer release()
	}
	if exp := id.Expires(); !exp.IsZero() {
		// A stream opened with an access token ends when the token does
		// (a shared live-tail link stops working at its expiry, open or
		// not).
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, exp, errTokenExpired)
		defer cancel()
		err := handler(srv, &identityStream{ServerStream: ss, ctx: NewContext(ctx, id)})
		if err != nil && errors.Is(context.Cause(ctx), errTokenExpired) && ss.Context().Err() == nil {
			// The stream ended for its token, not for JetStream.
			return errTokenExpired
		}
		return err
	}
	return handler(srv, &identityStream{ServerStream: ss, ctx: NewContext(ctx, id)})
}

func (a *Interceptor) acquireStream(ctx context.Context, id *Identity) (func(), error) {
	limit := id.limits.ConcurrentStreams
	if limit == 0 {
		limit = DefaultConcurrentStreams
	}
	q := a.quota(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	if q.streams >= limit {
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", "1"))
		if a.onQuota != nil {
			a.onQuota(id.Name, "streams")
		}
		return nil, &QuotaError{RetryAfter: time.Second, msg: fmt.Sprintf("%s has %d streams open, its limit", id.Name, limit)}
	}
	q.streams++
	return func() {
		a.mu.Lock()
		q.streams--
		a.mu.Unlock()
	}, nil
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
