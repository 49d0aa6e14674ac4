// Package bridge implements the jetway.v1 MessageService and AdminService on
// top of NATS JetStream.
//
// Services return domain errors (the sentinels in errors.go, wrapping the
// NATS error for logs); Status turns them into gRPC statuses, once, at the
// edge. The bridge keeps no state between calls: streams and consumers live
// in JetStream, so any replica can serve any request.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/jetway-dev/jetway/bridge/acktoken"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// ErrInvalidOption is returned by New for an option with a bad value.
var ErrInvalidOption = errors.New("bridge: invalid option")

// Bridge holds the services and what they share.
type Bridge struct {
	messages *messageService
	admin    *adminService
	access   *accessService
}

// connWatch tells long-lived streams that the NATS connection was lost,
// or that the bridge began draining.
type connWatch struct {
	mu       sync.Mutex
	down     chan struct{} // closed while the connection is lost
	lost     bool
	end      chan struct{} // closed while the connection is lost, and once draining began
	draining bool
	drained  chan struct{} // closed once draining began
}

func newConnWatch() *connWatch {
	return &connWatch{down: make(chan struct{}), end: make(chan struct{}), drained: make(chan struct{})}
}

// drainedCh is closed once draining began (now, or later). It never
// changes, so it needs no lock.
func (w *connWatch) drainedCh() <-chan struct{} { return w.drained }

// lostCh is closed when the connection is lost (now, or later).
func (w *connWatch) lostCh() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down
}

// endCh is closed when the connection is lost or draining begins (now, or
// later): a stream waits on one channel for both, which keeps an idle
// stream's wait one entry smaller.
func (w *connWatch) endCh() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end
}

func (w *connWatch) setLost(lost bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case lost && !w.lost:
		close(w.down)
		if !w.draining {
			close(w.end)
		}
	case !lost && w.lost:
		w.down = make(chan struct{})
		if !w.draining {
			w.end = make(chan struct{})
		}
	}
	w.lost = lost
}

// drain closes the end channel for good.
func (w *connWatch) drain() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining {
		return
	}
	if !w.lost {
		close(w.end)
	}
	close(w.drained)
	w.draining = true
}

// ended says why a stream's end channel closed.
func (w *connWatch) ended() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining {
		return fmt.Errorf("%w: the bridge is shutting down; reconnect to resume", ErrUnavailable)
	}
	return fmt.Errorf("%w: the bridge lost its NATS connection; reconnect to resume", ErrUnavailable)
}

type options struct {
	log           *slog.Logger
	publishWindow int
	signer        *acktoken.Signer
	caps          Caps
	authz         Authorizer
	maxPayload    func() int64
	observer      Observer
	tracer        Tracer
	fleet         Fleet
	minter        AccessMinter
	terminator    Terminator
}

// Option configures New.
type Option func(*options) error

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.log = l
		return nil
	}
}

// WithPublishWindow sets how many publishes one PublishStream may have
// awaiting JetStream acks before the bridge stops reading from it (default
// 1024, at most 65536). Per-stream memory is bounded by window × the NATS
// maximum payload.
func WithPublishWindow(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 65536 {
			return fmt.Errorf("%w: publish window %d not in [1, 65536]", ErrInvalidOption, n)
		}
		o.publishWindow = n
		return nil
	}
}

// WithAckSigner sets the signer of ack tokens. Every replica behind one
// load balancer needs the same keys; the default is a random key, so that
// only this process can verify its tokens.
func WithAckSigner(s *acktoken.Signer) Option {
	return func(o *options) error {
		if s == nil {
			return fmt.Errorf("%w: nil ack signer", ErrInvalidOption)
		}
		o.signer = s
		return nil
	}
}

// WithAuthorizer makes every RPC ask a (auth.Authorizer) whether the
// caller may do it. Without it every call is allowed.
func WithAuthorizer(a Authorizer) Option {
	return func(o *options) error {
		if a == nil {
			return fmt.Errorf("%w: nil Authorizer", ErrInvalidOption)
		}
		o.authz = a
		return nil
	}
}

// WithMaxPayload sets where the NATS maximum payload comes from: f is
// asked at each publish (the bridge's connection may change, and learns
// it when it connects), and a message larger than it is refused with
// ErrPayloadTooLarge. 0 leaves the check to NATS. Without it, 0.
func WithMaxPayload(f func() int64) Option {
	return func(o *options) error {
		if f == nil {
			return fmt.Errorf("%w: nil max payload", ErrInvalidOption)
		}
		o.maxPayload = f
		return nil
	}
}

// WithObserver makes the services report what they do to o (metrics).
func WithObserver(o Observer) Option {
	return func(opts *options) error {
		if o == nil {
			return fmt.Errorf("%w: nil Observer", ErrInvalidOption)
		}
		opts.observer = o
		return nil
	}
}

// WithTracer makes the services carry trace context through t (package
// tracing); without it they pass the caller's on (PassTrace).
func WithTracer(t Tracer) Option {
	return func(opts *options) error {
		if t == nil {
			return fmt.Errorf("%w: nil Tracer", ErrInvalidOption)
		}
		opts.tracer = t
		return nil
	}
}

// WithCaps sets the server caps of consuming requests.
func WithCaps(c Caps) Option {
	return func(o *options) error {
		if c.MaxBatch < 1 || c.MaxBytes < 1 || c.MaxWait <= 0 || c.MaxAckBatch < 1 || c.MaxInFlight < 1 || c.MaxBytesInFlight < 1 {
			return fmt.Errorf("%w: caps must be positive: %+v", ErrInvalidOption, c)
		}
		o.caps = c
		return nil
	}
}

// Terminator is what a TERM through the bridge (Ack, Consume's acks)
// does besides sending +TERM (issue 19; package deadletter implements it,
// and the server passes it in, so that bridge does not import it).
type Terminator interface {
	// BeforeTerm copies the delivery reply (a $JS.ACK subject) names to
	// its consumer's dead-letter subject, when the consumer has one,
	// before the TERM is sent: on work-queue and interest streams the
	// TERM removes the message. It returns the reason to send with
	// +TERM (the client's, with the identity in a form the advisory path
	// trusts). An error leaves the message unterminated (the ack
	// operation fails with it; the client may retry).
	BeforeTerm(ctx context.Context, js jetstream.JetStream, reply, reason, identity string) (termReason string, err error)
}

// WithTerminator makes TERMs through the bridge dead-letter first.
func WithTerminator(t Terminator) Option {
	return func(o *options) error {
		if t == nil {
			return fmt.Errorf("%w: nil Terminator", ErrInvalidOption)
		}
		o.terminator = t
		return nil
	}
}

// DefaultPublishWindow is the PublishStream window when none is set.
const DefaultPublishWindow = 1024

// New builds the services over conns, which gives each call its JetStream
// connection (the bridge's own, or with identity propagation the caller's).
// A JetStream context's default timeout (jetstream.WithDefaultTimeout)
// also bounds the wait for the ack of a pipelined publish, so that one
// whose ack never comes fails rather than waiting forever.
func New(conns ConnProvider, opts ...Option) (*Bridge, error) {
	if conns == nil {
		return nil, fmt.Errorf("%w: nil connection provider", ErrInvalidOption)
	}
	o := options{
		log: slog.New(slog.DiscardHandler), publishWindow: DefaultPublishWindow, caps: DefaultCaps, authz: allowAll{},
		maxPayload: func() int64 { return 0 }, observer: noObserver{}, tracer: PassTrace{},
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.signer == nil {
		key, err := acktoken.RandomKey()
		if err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
		if o.signer, err = acktoken.New(key); err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
	}
	sessions := newRegistry()
	fl, err := newFleet(o.fleet, sessions, o.log)
	if err != nil {
		return nil, err
	}
	return &Bridge{
		messages: &messageService{
			conns: conns, maxPayload: o.maxPayload, window: o.publishWindow, log: o.log,
			signer: o.signer, caps: o.caps, conn: newConnWatch(), authz: o.authz, grid: newGridClock(),
			obs: o.observer, tracer: o.tracer, sessions: sessions, fleet: fl,
			terminator: o.terminator,
		},
		admin:  &adminService{conns: conns, log: o.log, authz: o.authz, fleet: fl, caps: o.caps},
		access: newAccessService(o.minter),
	}, nil
}

// Drain ends every Subscribe and Consume stream with UNAVAILABLE ("the
// bridge is shutting down"), NAKing the messages they hold so that other
// clients get them at once, and ends every Fetch long poll: one that holds
// messages returns them, one with none answers UNAVAILABLE, and whatever
// JetStream delivers to its inbox meanwhile is NAKed. A Fetch that starts
// after Drain answers UNAVAILABLE at once. Call it when shutdown begins;
// other unary calls and PublishStreams finish normally (the server ends
// those still running just before its shutdown timeout). Safe to call
// more than once.
func (b *Bridge) Drain() {
	b.messages.conn.drain()
}

// ConnectionLost ends every Subscribe and Consume stream with UNAVAILABLE
// (an in-band error for REST streams), so that clients reconnect, perhaps
// to a replica that still reaches NATS, rather than wait on a silent
// stream. Call it from the NATS disconnect handler.
func (b *Bridge) ConnectionLost() { b.messages.conn.setLost(true) }

// ConnectionRestored lets new streams run again after ConnectionLost.
func (b *Bridge) ConnectionRestored() { b.messages.conn.setLost(false) }

// Messages is the MessageService implementation, for in-process callers
// that apply the server's interceptors themselves (the gateway).
func (b *Bridge) Messages() jetwayv1.MessageServiceServer { return b.messages }

// Admin is the AdminService implementation (see Messages).
func (b *Bridge) Admin() jetwayv1.AdminServiceServer { return b.admin }

// Register adds the services to a gRPC server.
func (b *Bridge) Register(s grpc.ServiceRegistrar) {
	jetwayv1.RegisterMessageServiceServer(s, b.messages)
	jetwayv1.RegisterAdminServiceServer(s, b.admin)
	jetwayv1.RegisterAccessServiceServer(s, b.access)
}

// Access is the AccessService implementation (see Messages).
func (b *Bridge) Access() jetwayv1.AccessServiceServer { return b.access }
