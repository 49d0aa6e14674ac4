package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/refusal"
)

// ErrPoolFull is a call whose identity needs a NATS connection of its own
// when the pool is at its bound and none is idle.
var ErrPoolFull = fmt.Errorf("%w: too many identity connections to NATS", ErrQuota)

// PoolConfig configures identity propagation.
type PoolConfig struct {
	// URLs are the NATS servers.
	URLs string
	// Options are the connection options every pooled connection shares
	// (TLS, timeouts, in-process server...), before the identity's own
	// credentials.
	Options []nats.Option
	// JetStream are the options of each connection's JetStream context.
	JetStream []jetstream.JetStreamOpt
	// Domain is the JetStream domain of the servers ("" none): API
	// requests go to $JS.<domain>.API.
	Domain string
	// Max bounds the pooled connections (default 64).
	Max int
	// Idle closes a connection unused for this long (default 5m).
	Idle time.Duration
	// Logger receives connection events.
	Logger *slog.Logger
}

// Pool runs each identity that names NATS credentials of its own on a
// NATS connection with those credentials, so that nats-server's own
// permissions and account isolation apply to what it does (and two
// tenants may use the same subject names in different accounts). Other
// identities use the shared connection. Connections are made on first
// use, shared by the identity's calls, closed after Idle without use and
// bounded in number. Pool implements the bridge's connection provider.
type Pool struct {
	cfg    PoolConfig
	shared func(context.Context) (jetstream.JetStream, error)

	mu    sync.Mutex
	conns map[string]*pooled

	stop chan struct{}
	done chan struct{}
}

type pooled struct {
	js       jetstream.JetStream
	refs     int
	lastUsed time.Time
}

// NewPool returns a pool whose identities without NATS credentials of
// their own use shared (the bridge's connection, asked at each call, as
// it may change), and starts its janitor; Close stops it and closes every
// pooled connection.
func NewPool(shared func(context.Context) (jetstream.JetStream, error), cfg PoolConfig) *Pool {
	if cfg.Max <= 0 {
		cfg.Max = 64
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{cfg: cfg, shared: shared, conns: map[string]*pooled{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.janitor()
	return p
}

// JetStream returns the connection for a unary call.
func (p *Pool) JetStream(ctx context.Context) (jetstream.JetStream, error) {
	js, release, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// A unary call is far shorter than Idle: it marks the connection used
	// and need not hold it.
	release()
	return js, nil
}

// Acquire returns the connection for a stream, held until release.
func (p *Pool) Acquire(ctx context.Context) (jetstream.JetStream, func(), error) {
	id := FromContext(ctx)
	if id == nil || id.nats == nil {
		js, err := p.shared(ctx)
		return js, func() {}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[id.Name]
	if c == nil {
		if len(p.conns) >= p.cfg.Max && !p.evictLocked() {
			return nil, nil, ErrPoolFull
		}
		js, err := p.dial(id)
		if err != nil {
			return nil, nil, err
		}
		c = &pooled{js: js}
		p.conns[id.Name] = c
	}
	c.refs++
	c.lastUsed = time.Now()
	var once sync.Once
	return c.js, func() {
		once.Do(func() {
			p.mu.Lock()
			c.refs--
			c.lastUsed = time.Now()
			p.mu.Unlock()
		})
	}, nil
}

// dial connects with the identity's credentials; a refused credential is
// an error for this call, never a fallback to the shared connection.
func (p *Pool) dial(id *Identity) (jetstream.JetStream, error) {
	creds, err := id.nats.Options()
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", id.Name, err)
	}
	log := p.cfg.Logger.With(slog.String("identity", id.Name))
	opts := append(append([]nats.Option{
		nats.Name("jetway-bridge:" + id.Name),
		// nats-server's own refusals (permission violations) arrive here;
		// a refused publish ends the call waiting on it.
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
			refusal.Record(nc, err)
			log.Warn("NATS refused an operation of the identity", slog.Any("error", err))
		}),
		// What was in flight when the connection dropped has no answer
		// coming: those calls fail now, not at their deadline.
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) { refusal.Lost(nc, err) }),
	}, p.cfg.Options...), creds...)
	nc, err := nats.Connect(p.cfg.URLs, opts...)
	if err != nil {
		p.cfg.Logger.Error("NATS connection for identity failed", slog.String("identity", id.Name), slog.Any("error", err))
		if errors.Is(err, nats.ErrAuthorization) {
			return nil, fmt.Errorf("%w: the NATS credentials of %s were refused", ErrForbidden, id.Name)
		}
		return nil, fmt.Errorf("%w: cannot connect to NATS as %s", ErrNATSUnavailable, id.Name)
	}
	js, err := NewJetStream(nc, p.cfg.Domain, p.cfg.JetStream...)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("identity %s: jetstream: %w", id.Name, err)
	}
	p.cfg.Logger.Info("NATS connection for identity", slog.String("identity", id.Name))
	return js, nil
}

// ErrNATSUnavailable is an identity's NATS connection that cannot be made.
var ErrNATSUnavailable = errors.New("NATS unavailable")

// evictLocked closes the least recently used idle connection.
func (p *Pool) evictLocked() bool {
	var oldest string
	for name, c := range p.conns {
		if c.refs == 0 && (oldest == "" || c.lastUsed.Before(p.conns[oldest].lastUsed)) {
			oldest = name
		}
	}
	if oldest == "" {
		return false
	}
	p.closeLocked(oldest)
	return true
}

func (p *Pool) closeLocked(name string) {
	if c := p.conns[name]; c != nil {
		_ = c.js.Conn().Drain()
		delete(p.conns, name)
	}
}

func (p *Pool) janitor() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.Idle / 2)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			for name, c := range p.conns {
				if c.refs == 0 && now.Sub(c.lastUsed) >= p.cfg.Idle {
					p.closeLocked(name)
				}
			}
			p.mu.Unlock()
		}
	}
}

// Len is the number of pooled connections.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the janitor and closes every pooled connection.
func (p *Pool) Close() {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, c := range p.conns {
		c.js.Conn().Close()
		delete(p.conns, name)
	}
}

// NewJetStream is jetstream.New, or jetstream.NewWithDomain for a
// domain other than "".
func NewJetStream(nc *nats.Conn, domain string, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	if domain != "" {
		return jetstream.NewWithDomain(nc, domain, opts...)
	}
	return jetstream.New(nc, opts...)
}
