// Package embedded runs an in-process nats-server with JetStream, so that
// the bridge is a working system with no NATS installed.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config configures the embedded server.
type Config struct {
	// DataDir is where JetStream stores streams. Required.
	DataDir string
	// Listen is a host:port for NATS clients (port -1 picks a free one).
	// Empty opens no port: only the bridge, in-process, can connect.
	Listen string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections;
	// 0 means 10 seconds.
	ReadyTimeout time.Duration
}

// Server is a running embedded nats-server.
type Server struct {
	ns *server.Server
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
		ns.SetLoggerV2(&logAdapter{log: cfg.Logger.With(slog.String("component", "nats-server"))}, false, false, false)
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
	return &Server{ns: ns}, nil
}

// ConnectOption makes nats.Connect use the in-process connection.
func (s *Server) ConnectOption() nats.Option { return nats.InProcessServer(s.ns) }

// ClientURL is the URL NATS clients connect to, when a port is open.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// logAdapter sends nats-server logs to slog.
type logAdapter struct{ log *slog.Logger }

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
