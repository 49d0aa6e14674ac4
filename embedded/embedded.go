// Package embedded runs an in-process nats-server with JetStream, so that
// the bridge is a working system with no NATS installed.
//
// With no client port the server is reached only in process, by the
// bridge. A client port is never anonymous: it needs a user and password,
// which every connection, the bridge's in-process one included, presents
// (ConnectOptions). LoadOrGeneratePassword keeps a generated password in
// a file only its owner may read.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/jetway-dev/jetway/internal/logsafe"
)

// Config configures the embedded server.
type Config struct {
	// DataDir is where JetStream stores streams. Required.
	DataDir string
	// Listen is a host:port for NATS clients (port -1 picks a free one).
	// Empty opens no port: only the bridge, in-process, can connect.
	Listen string
	// User and Password are what every client must present when set, the
	// in-process connection included: no connection is anonymous then.
	// Required with Listen. The server keeps only a bcrypt hash of the
	// password, which therefore cannot itself be a bcrypt hash.
	User, Password string
	// SyncInterval is how often the JetStream store is fsynced; 0 is
	// nats-server's default (2 minutes). SyncAlways fsyncs before each
	// message is acknowledged instead, and excludes SyncInterval.
	SyncInterval time.Duration
	SyncAlways   bool
	// MaxMemoryStore and MaxFileStore cap the JetStream memory and file
	// stores, in bytes; 0 is nats-server's default (derived from the
	// memory and the free disk space).
	MaxMemoryStore, MaxFileStore int64
	// Domain is the server's JetStream domain ("" none).
	Domain string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections;
	// 0 means 10 seconds. A start-up error nats-server reports (a store
	// it cannot use, a port it cannot bind) ends the wait at once.
	ReadyTimeout time.Duration
	// Lock is DataDir's lock, taken with Lock by a caller that has to
	// hold the directory before Start (to write into it first); nil makes
	// Start take it. Start owns it either way: Shutdown releases it, and
	// so does a failed Start.
	Lock *DirLock
}

// ErrNoCredentials is a client port asked for without a user and password.
var ErrNoCredentials = errors.New("embedded: a NATS client port needs a user and password: it is never anonymous")

// Server is a running embedded nats-server.
type Server struct {
	ns             *server.Server
	lock           *DirLock
	user, password string
}

// Start locks the data dir (see Lock), starts the server and waits until
// it is ready. A data dir another server holds is a *LockedError
// (ErrDataDirLocked), refused before anything is read from the store; one
// that cannot be used fails at once with the cause. An error means
// nothing was left running and the lock was released.
func Start(cfg Config) (_ *Server, err error) {
	if cfg.Lock != nil {
		defer func() {
			if err != nil {
				cfg.Lock.Release()
			}
		}()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("embedded: data dir is required")
	}
	switch {
	case cfg.SyncAlways && cfg.SyncInterval != 0:
		return nil, errors.New("embedded: sync always and a sync interval exclude each other")
	case cfg.SyncInterval < 0, cfg.MaxMemoryStore < 0, cfg.MaxFileStore < 0:
		return nil, errors.New("embedded: the sync interval and the store limits must not be negative")
	}
	opts := &server.Options{
		ServerName: "jetway-embedded",
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		NoSigs:     true,
		DontListen: cfg.Listen == "",
		// 0 leaves each to nats-server's default.
		SyncInterval:       cfg.SyncInterval,
		SyncAlways:         cfg.SyncAlways,
		JetStreamMaxMemory: cfg.MaxMemoryStore,
		JetStreamMaxStore:  cfg.MaxFileStore,
		JetStreamDomain:    cfg.Domain,
	}
	if cfg.Listen != "" && (cfg.User == "" || cfg.Password == "") {
		return nil, ErrNoCredentials
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("embedded: user and password go together")
	}
	if cfg.User != "" {
		if strings.HasPrefix(cfg.Password, "$2") {
			return nil, errors.New("embedded: the password looks like a bcrypt hash: give the password itself, which the bridge connects with")
		}
		// A bcrypt hash, so that nats-server holds no plaintext (and does
		// not warn about it); the minimum cost, since every connection
		// pays it and a generated password is 256 random bits.
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.Password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("embedded: password: %w", err)
		}
		// Authorization is required of every connection: no user
		// without credentials (NoAuthUser stays empty).
		opts.Users = []*server.User{{Username: cfg.User, Password: string(hash)}}
		opts.NoAuthUser = ""
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded: listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
	}
	lock := cfg.Lock
	if lock == nil {
		if lock, err = Lock(cfg.DataDir, nil); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				lock.Release()
			}
		}()
	} else if filepath.Clean(lock.Dir()) != filepath.Clean(cfg.DataDir) {
		return nil, fmt.Errorf("embedded: the lock given is on %s, not the data dir %s", lock.Dir(), cfg.DataDir)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: new server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	logs := newLogAdapter(log.With(slog.String("component", "nats-server")))
	ns.SetLoggerV2(logs, false, false, false)
	ns.Start()
	if err := waitReady(ns, logs, cfg.ReadyTimeout); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	if cfg.Listen != "" {
		if err := lock.setListen("nats", ns.ClientURL()); err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, err
		}
	}
	return &Server{ns: ns, lock: lock, user: cfg.User, password: cfg.Password}, nil
}

// waitReady waits until ns accepts connections with JetStream on, or
// reports a fatal error (which nats-server, given a logger, logs and
// carries on from), for at most timeout (0 is 10 s).
func waitReady(ns *server.Server, logs *logAdapter, timeout time.Duration) error {
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		// Start enables JetStream before it returns, so a store it
		// cannot use is known here already; a port it cannot bind comes
		// from the accept loop soon after.
		if msg := logs.fatal(); msg != "" {
			return fmt.Errorf("embedded: nats-server: %s", msg)
		}
		if ns.ReadyForConnections(25 * time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded: server not ready after %s", timeout)
		}
	}
	if msg := logs.fatal(); msg != "" {
		return fmt.Errorf("embedded: nats-server: %s", msg)
	}
	if !ns.JetStreamEnabled() {
		return errors.New("embedded: nats-server started without JetStream")
	}
	return nil
}

// ConnectOptions make nats.Connect use the in-process connection, with
// the server's credentials when it has some.
func (s *Server) ConnectOptions() []nats.Option {
	opts := []nats.Option{nats.InProcessServer(s.ns)}
	if s.user != "" {
		opts = append(opts, nats.UserInfo(s.user, s.password))
	}
	return opts
}

// JetStreamConfig is the JetStream configuration in effect: the fsync
// policy, the store limits (nats-server's defaults resolved) and the
// domain.
func (s *Server) JetStreamConfig() server.JetStreamConfig {
	if c := s.ns.JetStreamConfig(); c != nil {
		return *c
	}
	return server.JetStreamConfig{}
}

// ClientURL is the URL NATS clients connect to, when a port is open.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server, waits until it has stopped and then
// releases the data dir. Safe to call more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.lock.Release()
}

// logAdapter sends nats-server logs to slog, and keeps the first fatal
// error for Start. Clients reach some of these lines (a refused login
// names its user, whatever its size): each line is clipped, and warnings
// and errors are rate-limited like the bridge's own refusals, the next
// line passed counting those dropped.
type logAdapter struct {
	log     *slog.Logger
	limited *logsafe.Limiter

	mu       sync.Mutex
	firstErr string
}

func newLogAdapter(log *slog.Logger) *logAdapter {
	return &logAdapter{log: log, limited: logsafe.NewLimiter(log, 10, 10)}
}

// maxServerLine bounds one nats-server line in the log.
const maxServerLine = 512

func (l *logAdapter) line(format string, v []any) string {
	return logsafe.Clip(fmt.Sprintf(format, v...), maxServerLine)
}

// fatal is the first fatal error logged, "" when none.
func (l *logAdapter) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}

func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := l.line(format, v)
	l.mu.Lock()
	if l.firstErr == "" {
		l.firstErr = msg
	}
	l.mu.Unlock()
	l.log.Error(msg)
}

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Debug(l.line(format, v)) }
func (l *logAdapter) Warnf(format string, v ...any) {
	l.limited.Log(context.Background(), slog.LevelWarn, l.line(format, v))
}
func (l *logAdapter) Errorf(format string, v ...any) {
	l.limited.Log(context.Background(), slog.LevelError, l.line(format, v))
}
func (l *logAdapter) Debugf(format string, v ...any) { l.log.Debug(l.line(format, v)) }
func (l *logAdapter) Tracef(format string, v ...any) { l.log.Debug(l.line(format, v)) }
