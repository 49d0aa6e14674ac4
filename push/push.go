// Package push implements the jetway.v1 PushService and push delivery:
// the bridge pulls from a durable pull consumer and POSTs each message to
// an HTTP(S) endpoint (issue 19).
//
// Subscriptions live in the JetStream key-value bucket JETWAY_PUSH. Every
// replica watches it and runs a deliverer for each subscription that is
// not paused; the replicas share the work through the durable consumer,
// so there is no leader and no delivery beyond JetStream's at-least-once.
// A replica that dies mid-delivery leaves its messages unacked: JetStream
// redelivers them after their ack wait (a replica that closes NAKs them,
// so they go out again at once).
//
// Bounds: each subscription has at most its concurrency in flight on a
// replica, and all of them together at most Options.MaxInFlight plus one
// each (every subscription keeps one request of its own, so none waits on
// another's slow endpoint); nats.go buffers at most concurrency messages
// ahead. Responses are read up to 64 KiB and dropped. A message's
// headers go along as Jetway-Header-<Name>, at most 64 values and 16 KiB,
// invalid ones skipped (forwardHeaders). Observer counts the requests
// (package metrics implements it).
//
// Each replica keeps its own delivery state of a subscription; Get and
// List show the fleet's (Options.Fleet): the serving replica asks the
// others on _JETWAY.v1.push.state, through the bridge's fleet gathering,
// and sums their states with its own (fleet.go).
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/bridge/acktoken"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Limits and defaults of a subscription and a replica.
const (
	DefaultConcurrency = 8
	MaxConcurrency     = 256
	DefaultTimeout     = 10 * time.Second
	MaxTimeout         = 60 * time.Second
	DefaultMaxInFlight = 256
	// maxRetryAfter caps a Retry-After the endpoint asks for.
	maxRetryAfter = time.Hour
	// maxExponential caps the exponential retry delay of a consumer
	// without backoff.
	maxExponential = 5 * time.Minute
	// maxResponseBody is the most of a response body that is read.
	maxResponseBody = 64 << 10
)

// ErrInvalidOption is returned by New for an option with a bad value.
var ErrInvalidOption = errors.New("push: invalid option")

// Outcomes of a request, as Observer.PushRequest counts them.
const (
	// OutcomeAcked: a 2xx other than 202, and the ack JetStream confirmed.
	OutcomeAcked = "acked"
	// OutcomeDeferred: 202, left to the receiver to settle.
	OutcomeDeferred = "deferred"
	// OutcomeRetried: 429, 408, 5xx, 1xx, 3xx, a timeout, a connection
	// error or a refused address, or cancelled by a closing replica:
	// NAKed (with the retry delay, or at once when closing).
	OutcomeRetried = "retried"
	// OutcomeTerminated: any other 4xx, TERMed (dead-lettered first when
	// the consumer has a dead-letter subject).
	OutcomeTerminated = "terminated"
	// OutcomeError: the ack, NAK or TERM that settles the request failed
	// (JetStream delivers the message again after its ack wait).
	OutcomeError = "error"
)

// Observer counts push requests (package metrics implements it). Its
// methods are called concurrently, from every deliverer.
type Observer interface {
	// PushRequest counts one request of subscription, settled with
	// outcome (one of the Outcome constants) after took (the request
	// sent until its response headers and body were read, or it
	// failed).
	PushRequest(subscription, outcome string, took time.Duration)
	// PushInFlight moves the count of this replica's deliveries in
	// progress (request and settling) by delta.
	PushInFlight(delta int)
}

type noObserver struct{}

func (noObserver) PushRequest(string, string, time.Duration) {}
func (noObserver) PushInFlight(int)                          {}

// Options configures New.
type Options struct {
	// JetStream returns the bridge's own JetStream connection (the one
	// deliveries, the bucket and acks use). Required.
	JetStream func(ctx context.Context) (jetstream.JetStream, error)
	// Signer signs the ack token each request carries. Required.
	Signer *acktoken.Signer
	// Authorizer answers the RPCs' permission questions; nil allows all
	// (no client authentication).
	Authorizer bridge.Authorizer
	// Logger; nil discards.
	Logger *slog.Logger
	// AllowPrivateEndpoints lets endpoints reach loopback, private,
	// link-local, multicast and unspecified addresses.
	AllowPrivateEndpoints bool
	// MaxInFlight caps the requests in flight on this replica over every
	// subscription (each keeps one more of its own); 0 is
	// DefaultMaxInFlight.
	MaxInFlight int
	// Terminate ends a message that must not be redelivered (a 4xx other
	// than 408 and 429) with a reason; nil is msg.TermWithReason. The
	// dead-letter package gives one that copies the message first.
	Terminate func(ctx context.Context, msg jetstream.Msg, reason string) error
	// Permit, when set (client authentication on), is asked before a
	// replica starts delivering a subscription: may the identity that
	// made it (its stored name, "" when made without authentication)
	// still consume its stream's consumer? Refused, the subscription
	// delivers nothing on this replica, and says why in its state. A
	// revoked identity's subscriptions so stop at the next start.
	Permit func(ctx context.Context, identity, stream, consumer string) error
	// Observer counts requests; nil counts nothing.
	Observer Observer
	// Fleet, when set, makes Get and List show the fleet's state of a
	// subscription (the sum, and each replica's) and this replica answer
	// the others' requests for its own (*bridge.Bridge is one). Without
	// it they show this replica's own state, partial.
	Fleet Fleet
	// Replicas of the bucket's stream KV_JETWAY_PUSH when a replica
	// creates it (1 to 5; 0 is 1). An existing bucket keeps its own.
	Replicas int
}

// Service is the PushService and the deliverers of this replica.
type Service struct {
	jetwayv1.UnimplementedPushServiceServer

	js        func(ctx context.Context) (jetstream.JetStream, error)
	signer    *acktoken.Signer
	authz     bridge.Authorizer
	log       *slog.Logger
	allowPriv bool
	terminate func(ctx context.Context, msg jetstream.Msg, reason string) error
	permit    func(ctx context.Context, identity, stream, consumer string) error
	obs       Observer
	replicas  int
	fleet     Fleet
	client    *http.Client
	replica   chan struct{} // the replica's shared in-flight slots

	mu         sync.Mutex
	deliverers map[string]*deliverer
	started    bool

	ctx    context.Context // ends at Close: the watch and the pulls stop
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch loop has returned
	close  sync.Once
	poked  chan struct{} // the bucket was just made here: watch it now
}

var _ jetwayv1.PushServiceServer = (*Service)(nil)

// New returns the service; Start begins delivering.
func New(o Options) (*Service, error) {
	if o.JetStream == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	if o.Signer == nil {
		return nil, fmt.Errorf("%w: nil ack signer", ErrInvalidOption)
	}
	if o.MaxInFlight < 0 {
		return nil, fmt.Errorf("%w: MaxInFlight %d", ErrInvalidOption, o.MaxInFlight)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return nil, fmt.Errorf("%w: Replicas %d (1 to 5)", ErrInvalidOption, o.Replicas)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	if o.Authorizer == nil {
		o.Authorizer = bridge.AllowAll
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Terminate == nil {
		o.Terminate = func(_ context.Context, msg jetstream.Msg, reason string) error { return msg.TermWithReason(reason) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		js: o.JetStream, signer: o.Signer, authz: o.Authorizer, log: o.Logger, allowPriv: o.AllowPrivateEndpoints,
		terminate: o.Terminate, permit: o.Permit, obs: o.Observer, replicas: o.Replicas, fleet: o.Fleet, replica: make(chan struct{}, o.MaxInFlight), deliverers: map[string]*deliverer{},
		ctx: ctx, cancel: cancel, done: make(chan struct{}), poked: make(chan struct{}, 1),
	}
	if s.fleet != nil {
		if err := s.fleet.HandleFleet(stateRequest, s.answerState); err != nil {
			cancel()
			return nil, fmt.Errorf("push: answer the fleet's state requests: %w", err)
		}
	}
	s.client = newClient(o.AllowPrivateEndpoints, o.MaxInFlight)
	return s, nil
}

// newClient is the HTTP client of deliveries: no redirects, no proxy from
// the environment (its address would not be the endpoint's), every
// connection's address checked unless private ones are allowed.
func newClient(allowPrivate bool, maxInFlight int) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = dialControl
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           maxInFlight,
		MaxIdleConnsPerHost:    min(maxInFlight, MaxConcurrency),
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { jetwayv1.RegisterPushServiceServer(r, s) }

// Start begins watching the bucket and delivering; it returns at once.
// Close stops it. Calling Start twice is a no-op.
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	go s.watch()
}

// Close stops pulling on every subscription and waits for the requests
// in flight to finish, until ctx ends; those still running then are
// cancelled and their messages NAKed, so another replica delivers them
// at once. Safe to call more than once.
func (s *Service) Close(ctx context.Context) {
	s.close.Do(func() {
		s.cancel()
		s.mu.Lock()
		started := s.started
		s.started = true // no Start after Close
		s.mu.Unlock()
		if started {
			<-s.done
		}
		s.mu.Lock()
		ds := make([]*deliverer, 0, len(s.deliverers))
		for name, d := range s.deliverers {
			ds = append(ds, d)
			delete(s.deliverers, name)
		}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.stop(ctx)
			}()
		}
		wg.Wait()
		s.client.CloseIdleConnections()
	})
}

// bucketPoll is how often a replica looks for the bucket while there is
// none (a replica that makes it starts at once; the others within this).
const bucketPoll = 2 * time.Second

// poke tells the watch loop that the bucket was just made.
func (s *Service) poke() {
	select {
	case s.poked <- struct{}{}:
	default:
	}
}

// watch follows the bucket until Close: each subscription's deliverer
// started, restarted when its record changes, stopped when it is deleted
// (or the bucket is). A lost watch (a new NATS connection, the bucket
// deleted) starts again after a pause.
func (s *Service) watch() {
	defer close(s.done)
	for pause := time.Duration(0); ; {
		select {
		case <-s.ctx.Done():
			return
		case <-s.poked:
		case <-time.After(pause):
		}
		err := s.watchOnce()
		switch {
		case s.ctx.Err() != nil:
			return
		case errors.Is(err, errNoBucket):
			s.reconcile(nil) // deleted: nothing to deliver
			pause = bucketPoll
		case err != nil:
			s.log.Warn("push: watching the subscriptions bucket; retrying", slog.Any("error", err))
			pause = min(max(2*pause, 250*time.Millisecond), 5*time.Second)
		default:
			pause = 250 * time.Millisecond
		}
	}
}

// watchOnce watches the bucket until the watch ends.
func (s *Service) watchOnce() error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	js, err := s.js(ctx)
	if err != nil {
		return err
	}
	if ok, err := bucketExists(ctx, js); err != nil {
		return err
	} else if !ok {
		return errNoBucket
	}
	kv, err := s.bucket(ctx, false)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return bridge.JetStreamError(err, "watch "+Bucket)
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	initial := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			// The link dials a new connection when nats.go closes one:
			// start over on it.
			if js.Conn().IsClosed() {
				return errors.New("push: NATS connection closed")
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("push: the watch ended")
			}
			if e == nil {
				// The initial values are in: what this replica still
				// delivers and the bucket no longer holds stops.
				s.reconcile(initial)
				initial = nil
				continue
			}
			if initial != nil && e.Operation() == jetstream.KeyValuePut {
				initial[e.Key()] = true
			}
			s.apply(js, e)
		}
	}
}

// reconcile stops the deliverers whose subscription is not in keep.
func (s *Service) reconcile(keep map[string]bool) {
	s.mu.Lock()
	var gone []*deliverer
	for name, d := range s.deliverers {
		if !keep[name] {
			gone = append(gone, d)
			delete(s.deliverers, name)
		}
	}
	s.mu.Unlock()
	for _, d := range gone {
		ctx, cancel := context.WithTimeout(s.ctx, d.rec.Timeout)
		d.stop(ctx)
		cancel()
	}
}

// apply starts, restarts or stops the deliverer of one bucket entry.
func (s *Service) apply(js jetstream.JetStream, e jetstream.KeyValueEntry) {
	name := e.Key()
	var next *deliverer
	if e.Operation() == jetstream.KeyValuePut {
		r, u, err := decodeRecord(e.Value())
		if err != nil {
			s.log.Error("push: a stored subscription cannot be delivered", slog.String("subscription", name), slog.Any("error", err))
		} else {
			next = newDeliverer(s, js, r, u, e.Revision())
		}
	}
	s.mu.Lock()
	prev := s.deliverers[name]
	if prev != nil && next != nil && prev.rev == next.rev && prev.js == js {
		s.mu.Unlock()
		return // a watch started again: nothing changed
	}
	if next != nil {
		if prev != nil {
			next.stats.carry(&prev.stats)
		}
		s.deliverers[name] = next
	} else {
		delete(s.deliverers, name)
	}
	s.mu.Unlock()
	if prev != nil {
		// Stopped before the next one starts, within its request timeout:
		// a changed endpoint gets no request of the old settings after.
		// A Close meanwhile cuts the wait short (the requests are NAKed).
		ctx, cancel := context.WithTimeout(s.ctx, prev.rec.Timeout)
		prev.stop(ctx)
		cancel()
	}
	if next != nil && s.ctx.Err() == nil {
		next.start()
	}
}
