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
	"strconv"
	"strings"
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
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections;
	// 0 means 10 seconds.
	ReadyTimeout time.Duration
}

// ErrNoCredentials is a client port asked for without a user and password.
var ErrNoCredentials = errors.New("embedded: a NATS client port needs a user and password: it is never anonymous")

// Server is a running embedded nats-server.
type Server struct {
	ns             *server.Server
	user, password string
}

// Start starts the server and waits until it is ready.
func Start(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded: data dir is required")
	}
	opts := &server.Options{
		ServerName: "jetway-embedded",
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		NoSigs:     true,
		DontListen: cfg.Listen == "",
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
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: new server: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(newLogAdapter(cfg.Logger.With(slog.String("component", "nats-server"))), false, false, false)
	}
	ns.Start()
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded: server not ready after %s", timeout)
	}
	return &Server{ns: ns, user: cfg.User, password: cfg.Password}, nil
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

// ClientURL is the URL NATS clients connect to, when a port is open.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// logAdapter sends nats-server logs to slog. Clients reach some of these
// lines (a refused login names its user, whatever its size): each line is
// clipped, and warnings and errors are rate-limited like the bridge's own
// refusals, the next line passed counting those dropped.
type logAdapter struct {
	log     *slog.Logger
	limited *logsafe.Limiter
}

func newLogAdapter(log *slog.Logger) *logAdapter {
	return &logAdapter{log: log, limited: logsafe.NewLimiter(log, 10, 10)}
}

// maxServerLine bounds one nats-server line in the log.
const maxServerLine = 512

func (l *logAdapter) line(format string, v []any) string {
	return logsafe.Clip(fmt.Sprintf(format, v...), maxServerLine)
}

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Debug(l.line(format, v)) }
func (l *logAdapter) Warnf(format string, v ...any) {
	l.limited.Log(context.Background(), slog.LevelWarn, l.line(format, v))
}
func (l *logAdapter) Fatalf(format string, v ...any) { l.log.Error(l.line(format, v)) }
func (l *logAdapter) Errorf(format string, v ...any) {
	l.limited.Log(context.Background(), slog.LevelError, l.line(format, v))
}
func (l *logAdapter) Debugf(format string, v ...any) { l.log.Debug(l.line(format, v)) }
func (l *logAdapter) Tracef(format string, v ...any) { l.log.Debug(l.line(format, v)) }
