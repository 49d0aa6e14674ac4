package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/refusal"
)

// natsLink is the bridge's own NATS connection, kept whatever NATS does
// to it. While it has one, nats.go reconnects it by itself, and keeps
// trying when NATS refuses the credential (nats.go's default is to close
// the connection for good at the second refusal by the same server).
// The link dials a new connection, with every credential file read
// again, when it has none: at start until the first attempt succeeds,
// after nats.go closed the one it had for a reason of its own, when the
// nkey seed file holds another key (which only a new connection can
// present), and on Reload while not connected. Every failed attempt is
// logged with its cause.
//
// Its methods are safe for concurrent use. run is its one goroutine,
// started by start and ended and joined by stop.
type natsLink struct {
	urls  string
	where func(*nats.Conn) string // the server connected to, for logs
	// options are the options of a new connection, credentials read now.
	options func() ([]nats.Option, error)
	jsOpts  []jetstream.JetStreamOpt
	// domain is the servers' JetStream domain ("" none).
	domain string
	wait   backoff
	log    *slog.Logger

	cur     atomic.Pointer[linkConn]
	lastErr atomic.Pointer[error]

	// mu orders connection events and the changes of cur, so that
	// onChange sees them in order.
	mu       sync.Mutex
	onChange func(connected bool)

	reload   atomic.Bool
	stopping atomic.Bool
	wake     chan struct{} // buffered: a request for run
	up       chan struct{} // closed at the first connection
	upOnce   sync.Once
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// linkConn is one connection of the link.
type linkConn struct {
	nc *nats.Conn
	js jetstream.JetStream
	// renew asks run to replace the connection.
	renew atomic.Bool
	// retired is a connection the link closed or is replacing: its
	// events are no longer the bridge's.
	retired atomic.Bool
}

var _ bridge.ConnProvider = (*natsLink)(nil)

func newNATSLink(urls string, options func() ([]nats.Option, error), jsOpts []jetstream.JetStreamOpt, wait backoff, where func(*nats.Conn) string, log *slog.Logger) *natsLink {
	return &natsLink{
		urls: urls, options: options, jsOpts: jsOpts, wait: wait, where: where, log: log,
		wake: make(chan struct{}, 1), up: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{}),
	}
}

func (l *natsLink) start() { go l.run() }

// stop ends run and waits for it; the connection stays as it is (see
// close).
func (l *natsLink) stop() {
	l.stopping.Store(true)
	l.stopOnce.Do(func() { close(l.quit) })
	<-l.done
}

// close stops the link and closes its connection at once.
func (l *natsLink) close() {
	l.stop()
	if lc := l.cur.Load(); lc != nil {
		lc.nc.Close()
	}
}

// conn is the current connection, nil when there is none.
func (l *natsLink) conn() *nats.Conn {
	if lc := l.cur.Load(); lc != nil {
		return lc.nc
	}
	return nil
}

func (l *natsLink) connected() bool {
	nc := l.conn()
	return nc != nil && nc.IsConnected()
}

// rtt is the current connection's round trip to its server.
func (l *natsLink) rtt() (time.Duration, error) {
	nc := l.conn()
	if nc == nil {
		return 0, errors.New("no NATS connection")
	}
	return nc.RTT()
}

// maxPayload is the current connection's, 0 when none is known.
func (l *natsLink) maxPayload() int64 {
	if nc := l.conn(); nc != nil {
		return nc.MaxPayload()
	}
	return 0
}

// lastError is the cause of the last failed attempt (nil before one).
func (l *natsLink) lastError() error {
	if p := l.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// status describes the connection for readiness.
func (l *natsLink) status() error {
	nc := l.conn()
	if nc == nil {
		if err := l.lastError(); err != nil {
			return fmt.Errorf("no NATS connection: %w", err)
		}
		return errors.New("no NATS connection yet")
	}
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats connection is %s", st)
	}
	return nil
}

// JetStream is the current connection's JetStream context.
func (l *natsLink) JetStream(context.Context) (jetstream.JetStream, error) {
	if lc := l.cur.Load(); lc != nil {
		return lc.js, nil
	}
	return nil, fmt.Errorf("%w: the bridge is not connected to NATS", bridge.ErrUnavailable)
}

// Acquire is JetStream for a stream: the connection is the bridge's, not
// held for it.
func (l *natsLink) Acquire(ctx context.Context) (jetstream.JetStream, func(), error) {
	js, err := l.JetStream(ctx)
	return js, func() {}, err
}

// watch makes f hear of every connection and loss of the connection,
// beginning with the state now.
func (l *natsLink) watch(f func(connected bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onChange = f
	f(l.connected())
}

// event passes a connection event of lc on to the watcher, unless lc is
// no longer the link's connection.
func (l *natsLink) event(lc *linkConn, connected bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur.Load() == lc && l.onChange != nil {
		l.onChange(connected)
	}
}

// Reload makes an attempt now with the credential files read again: a
// forced reconnect of a connection that is connected, a new connection
// otherwise (none yet, closed, reconnecting). It returns at once.
func (l *natsLink) Reload() {
	l.log.Info("reloading NATS credentials: a connection attempt now")
	l.reload.Store(true)
	l.poke()
}

func (l *natsLink) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *natsLink) failed(err error) {
	l.lastErr.Store(&err)
	l.log.Error("NATS connection attempt failed", slog.Any("error", err))
}

func (l *natsLink) run() {
	defer close(l.done)
	now := true // the first attempt is made at once, and a reload's
	for {
		if l.cur.Load() == nil {
			// Without a connection (at start, or after nats.go closed
			// one) the pause is the longest, so that a connection
			// closed at every start is not redialed in a loop; the
			// backoff from 50 ms is for a connection that was lost.
			if !now && !l.pause(l.wait.max+l.wait.jitterNow()) {
				return
			}
			now = false
			if err := l.dial(); err != nil {
				l.failed(err)
			}
			continue
		}
		select {
		case <-l.quit:
			return
		case <-l.wake:
		}
		now = l.serve()
	}
}

// firstReconnectWait is the first pause after a loss: a nats-server
// restarted on its host is back in well under 100 ms, and a cluster's
// other servers are tried before any pause.
const firstReconnectWait = 50 * time.Millisecond

// backoff is the pause between rounds of connection attempts: first, then
// doubling up to max, each plus up to jitter at random.
type backoff struct {
	first, max, jitter time.Duration
}

func reconnectBackoff(cfg config.Config) backoff {
	return backoff{first: firstReconnectWait, max: cfg.NATS.ReconnectWait, jitter: cfg.NATS.ReconnectJitter}
}

// delay is the pause before round n (1 for the first after a loss); its
// signature is nats.CustomReconnectDelay's.
func (b backoff) delay(n int) time.Duration {
	d := b.max
	if n >= 1 && n < 32 {
		if f := b.first << (n - 1); f > 0 && f < d {
			d = f
		}
	}
	return d + b.jitterNow()
}

func (b backoff) jitterNow() time.Duration {
	if b.jitter <= 0 {
		return 0
	}
	return rand.N(b.jitter)
}

// pause waits d between two attempts; false when the link stops.
func (l *natsLink) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.quit:
		return false
	case <-l.wake:
		l.reload.Store(false)
	case <-t.C:
	}
	return true
}

// serve answers a request about the current connection. It reports
// whether it dropped the connection for a reload, when the new one is
// dialed at once; a connection nats.go gave up on is replaced after a
// pause, so that one closed at every start is not redialed in a loop.
func (l *natsLink) serve() (now bool) {
	reload := l.reload.Swap(false)
	lc := l.cur.Load()
	switch {
	case lc.renew.Load() || lc.nc.IsClosed():
		l.retire(lc)
		return reload
	case !reload:
		return false
	case lc.nc.IsConnected():
		// A forced reconnect keeps subscriptions and reads the files
		// again; a seed file with another key comes back as
		// ErrNKeyChanged, and renews.
		if err := lc.nc.ForceReconnect(); err == nil {
			return false
		}
	}
	// Reconnecting, or closed in between: a new connection, now.
	l.retire(lc)
	return true
}

// retire drops lc, which the watcher hears as a loss, and closes it.
func (l *natsLink) retire(lc *linkConn) {
	lc.retired.Store(true)
	l.mu.Lock()
	l.cur.Store(nil)
	if l.onChange != nil {
		l.onChange(false)
	}
	l.mu.Unlock()
	lc.nc.Close()
}

// dial makes one connection attempt (each server once) and, when it
// succeeds, installs the connection.
func (l *natsLink) dial() error {
	creds, err := l.options()
	if err != nil {
		return err
	}
	lc := &linkConn{}
	opts := append([]nats.Option{
		nats.MaxReconnects(-1),
		// After a loss: 50 ms, then doubling up to --nats-reconnect-wait
		// (nats.go's own is a flat 2 s, even for a server back at once).
		nats.CustomReconnectDelay(l.wait.delay),
		// A refused credential is retried like any failure: the file may
		// be fixed, the server's configuration too.
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			// What was in flight on the connection has no answer
			// coming: those calls fail now, not at their deadline.
			refusal.Lost(nc, err)
			l.event(lc, false)
			switch {
			case l.stopping.Load() || lc.retired.Load() || nc.IsClosed():
			case err == nil: // a forced reconnect (Reload)
				l.log.Info("NATS disconnected to reconnect")
			default:
				l.log.Warn("NATS disconnected", slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			l.event(lc, true)
			l.log.Info("NATS reconnected", slog.String("url", l.where(nc)))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if !lc.retired.Load() {
				l.failed(err)
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if l.stopping.Load() {
				l.log.Info("NATS connection closed")
				return
			}
			if lc.retired.Load() {
				l.log.Debug("NATS connection closed: replaced")
				return
			}
			// Not the link's doing: nats.go gave up on it.
			l.log.Error("NATS connection closed by the client library: connecting afresh", slog.Any("last_error", nc.LastError()))
			l.event(lc, false)
			lc.renew.Store(true)
			l.poke()
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			// A refused publish ends the call waiting on it.
			refusal.Record(nc, err)
			switch {
			case lc.retired.Load() && (isAuthError(err) || errors.Is(err, auth.ErrNKeyChanged)):
				// A late word of a connection being replaced.
			case errors.Is(err, auth.ErrNKeyChanged):
				l.failed(err)
				l.log.Info("the nkey seed file holds another key: replacing the NATS connection")
				lc.renew.Store(true)
				l.poke()
			case isAuthError(err):
				l.failed(err)
			default:
				attrs := []any{slog.Any("error", err)}
				if sub != nil {
					attrs = append(attrs, slog.String("subject", sub.Subject))
				}
				l.log.Error("NATS asynchronous error", attrs...)
			}
		}),
	}, creds...)
	nc, err := nats.Connect(l.urls, opts...)
	if err != nil {
		return err
	}
	js, err := auth.NewJetStream(nc, l.domain, l.jsOpts...)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream.New: %w", err)
	}
	lc.nc, lc.js = nc, js
	l.mu.Lock()
	l.cur.Store(lc)
	if l.onChange != nil {
		l.onChange(nc.IsConnected())
	}
	l.mu.Unlock()
	l.log.Info("NATS connected", slog.String("url", l.where(nc)), slog.Int64("max_payload", nc.MaxPayload()))
	l.upOnce.Do(func() { close(l.up) })
	return nil
}

// isAuthError is NATS refusing the connection's credential.
func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// redactedWhere names the server nc is connected to for logs.
func redactedWhere(nc *nats.Conn) string { return config.RedactURLs(nc.ConnectedUrl()) }
