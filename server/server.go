// Package server runs the bridge: it starts or reaches NATS, serves gRPC
// and HTTP, and owns graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/bridge/acktoken"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/embedded"
	"github.com/jetway-dev/jetway/gateway"
	"github.com/jetway-dev/jetway/internal/logsafe"
	"github.com/jetway-dev/jetway/refusal"
)

// defaultMaxPayload is NATS's default maximum payload, used to size limits
// while the maximum of the real server is not known yet.
const defaultMaxPayload = 1 << 20

// protoOverhead is room for the fields around a payload in one request.
const protoOverhead = 64 << 10

// Server is a running bridge. It stops when the context given to Start
// ends; Wait returns once everything has stopped.
type Server struct {
	grpcAddr, httpAddr net.Addr
	pprofAddr          net.Addr
	natsURL            string
	natsCreds          auth.NATSCredentials
	nc                 *nats.Conn
	log                *slog.Logger
	done               chan struct{}
	err                error
}

// GRPCAddr is the address the gRPC server listens on.
func (s *Server) GRPCAddr() net.Addr { return s.grpcAddr }

// HTTPAddr is the address the HTTP server listens on.
func (s *Server) HTTPAddr() net.Addr { return s.httpAddr }

// PprofAddr is the address of the profiling listener, nil when
// --pprof-listen is empty.
func (s *Server) PprofAddr() net.Addr { return s.pprofAddr }

// NATSURL is the embedded server's client URL when it opened a port.
func (s *Server) NATSURL() string { return s.natsURL }

// NATSCredentials are the credentials NATSURL requires (the zero value
// when the embedded server opened no port).
func (s *Server) NATSCredentials() auth.NATSCredentials { return s.natsCreds }

// Reload reconnects to NATS, reading credential files again: the way to
// apply rotated credentials at once (SIGHUP) rather than at the next
// reconnect.
func (s *Server) Reload() {
	s.log.Info("reloading NATS credentials: reconnecting")
	if err := s.nc.ForceReconnect(); err != nil {
		s.log.Error("reload", slog.Any("error", err))
	}
}

// Wait blocks until the server has stopped and returns why it stopped: nil
// after a graceful shutdown.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Start binds the listeners, starts (or connects to) NATS and serves in the
// background until ctx ends. An error means nothing was left running.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	if p := cfg.Server.PprofListen; p != "" && !isLoopback(p) {
		return nil, fmt.Errorf("server: --pprof-listen %q is not a loopback address: profiling is unauthenticated and shows the command line, memory and goroutines; listen on 127.0.0.1 (or [::1]) and reach it through an SSH tunnel or kubectl port-forward", p)
	}
	var natsOpts []nats.Option
	closePool := func() {}
	urls := cfg.NATS.URLs
	s := &Server{done: make(chan struct{})}
	var ns *embedded.Server
	if urls == "" {
		ecfg := embedded.Config{DataDir: cfg.NATS.DataDir, Listen: cfg.NATS.EmbeddedListen, Logger: log}
		if cfg.NATS.EmbeddedListen != "" {
			if ecfg.Password, err = embeddedPassword(cfg.NATS, log); err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			ecfg.User = cfg.NATS.EmbeddedUser
		}
		ns, err = embedded.Start(ecfg)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		cleanup = append(cleanup, ns.Shutdown)
		natsOpts = append(natsOpts, ns.ConnectOptions()...)
		if cfg.NATS.EmbeddedListen != "" {
			s.natsURL = ns.ClientURL()
			s.natsCreds = auth.NATSCredentials{User: ecfg.User, Password: ecfg.Password}
		}
		log.Info("embedded NATS server started", slog.String("data_dir", cfg.NATS.DataDir), slog.String("client_url", s.natsURL))
	}

	nc, err := connect(cfg, log, urls, natsOpts)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, nc.Close)
	s.nc, s.log = nc, log
	js, err := jetstream.New(nc,
		jetstream.WithDefaultTimeout(cfg.NATS.RequestTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("server: jetstream.New: %w", err)
	}
	keys, err := cfg.Consume.AckKeyBytes()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if len(keys) == 0 {
		log.Warn("no --ack-keys-file or JETWAY_ACK_KEYS configured: ack tokens use a random key of this process, so other replicas cannot verify them and they die with it")
		k, err := acktoken.RandomKey()
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		keys = [][]byte{k}
	}
	signer, err := acktoken.New(keys...)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	authCfg, err := loadAuth(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	tlsCfg, err := serverTLS(cfg.Auth)
	if err != nil {
		return nil, err
	}
	authOpts := []bridge.Option{}
	if authCfg != nil {
		authOpts = append(authOpts, bridge.WithAuthorizer(auth.Authorizer{}))
	}
	if authCfg != nil && authCfg.Propagates() {
		if urls == "" {
			return nil, errors.New("server: identities with NATS credentials need --nats-url: the embedded server has no accounts to isolate them")
		}
		tlsOpts, err := cfg.NATS.Credentials.TLSOptions()
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		pool := auth.NewPool(js, auth.PoolConfig{
			URLs:    urls,
			Options: append(tlsOpts, nats.MaxReconnects(-1)),
			JetStream: []jetstream.JetStreamOpt{
				jetstream.WithDefaultTimeout(cfg.NATS.RequestTimeout),
			},
			Logger: log,
		})
		cleanup = append(cleanup, pool.Close)
		closePool = pool.Close
		authOpts = append(authOpts, bridge.WithConnections(pool))
		log.Info("identity propagation on: identities with NATS credentials run on their own connections")
	}
	b, err := bridge.New(js, append(authOpts, bridge.WithLogger(log), bridge.WithPublishWindow(cfg.Server.PublishWindow), bridge.WithAckSigner(signer),
		bridge.WithCaps(bridge.Caps{
			MaxBatch: cfg.Consume.MaxFetchBatch, MaxBytes: cfg.Consume.MaxFetchBytes,
			MaxWait: cfg.Consume.MaxFetchWait, MaxAckBatch: cfg.Consume.MaxAckBatch,
			MaxInFlight: cfg.Consume.MaxInFlight, MaxBytesInFlight: cfg.Consume.MaxBytesInFlight,
		}))...)
	if err != nil {
		return nil, fmt.Errorf("server: bridge.New: %w", err)
	}

	maxPayload := nc.MaxPayload()
	if maxPayload <= 0 {
		maxPayload = defaultMaxPayload
	}
	// A REST body holds a payload as base64 (4/3) or escaped JSON text, so
	// twice the max payload admits every payload NATS can carry. A JSON
	// payload travels in gRPC as a google.protobuf.Value, which is up to
	// ~5.5 times its compact JSON (a 0 in a list: 2 bytes of JSON, 11 of
	// proto), so gRPC admits 12 times the max payload; the exact limit,
	// the max payload after encoding, is checked by the bridge (one
	// message's worth of memory per in-flight call).
	maxRecv := int(12*maxPayload + protoOverhead)
	maxBody := cfg.Server.MaxBodyBytes
	if maxBody == 0 {
		maxBody = 2*maxPayload + protoOverhead
	}

	grpcLis, err := net.Listen("tcp", cfg.Server.GRPCListen)
	if err != nil {
		return nil, fmt.Errorf("server: gRPC listen: %w", err)
	}
	cleanup = append(cleanup, func() { _ = grpcLis.Close() })
	httpLis, err := net.Listen("tcp", cfg.Server.HTTPListen)
	if err != nil {
		return nil, fmt.Errorf("server: HTTP listen: %w", err)
	}
	cleanup = append(cleanup, func() { _ = httpLis.Close() })
	s.grpcAddr, s.httpAddr = grpcLis.Addr(), httpLis.Addr()
	var pprofSrv *http.Server
	var pprofLis net.Listener
	if cfg.Server.PprofListen != "" {
		if pprofLis, err = net.Listen("tcp", cfg.Server.PprofListen); err != nil {
			return nil, fmt.Errorf("server: pprof listen: %w", err)
		}
		cleanup = append(cleanup, func() { _ = pprofLis.Close() })
		s.pprofAddr = pprofLis.Addr()
		pprofSrv = &http.Server{
			Handler:           gateway.Profiling(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	if n := cfg.Server.MaxConnections; n > 0 {
		// Past the cap, connections wait in the kernel's backlog until
		// one closes: what an unauthenticated client can hold is bounded
		// by the cap and the handshake and read timeouts.
		grpcLis, httpLis = netutil.LimitListener(grpcLis, n), netutil.LimitListener(httpLis, n)
	}

	edge := errorEdge{log: log}
	gate := natsGate{connected: nc.IsConnected}
	authn := auth.NewInterceptor(authCfg, log)
	// Ended (with errCutShort) just before the shutdown timeout passes:
	// the calls still running then answer UNAVAILABLE.
	calls, endCalls := context.WithCancelCause(context.Background())
	cleanup = append(cleanup, func() { endCalls(nil) })
	last := lastCall{ctx: calls}
	// One unary chain, for gRPC calls and for the gateway's in-process
	// REST calls alike.
	unary := gateway.ChainUnary(edge.unary, last.unary, authn.Unary, clampDeadline(cfg.Server.MaxCallTimeout), gate.unary)
	grpcOpts := []grpc.ServerOption{}
	if tlsCfg != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(listenerCreds{credentials.NewTLS(tlsCfg)}))
	}
	gs := grpc.NewServer(append(grpcOpts,
		grpc.MaxRecvMsgSize(maxRecv),
		// A connection that has not finished TLS and the HTTP/2 preface
		// in this time is closed (grpc-go's default is 120 s).
		grpc.ConnectionTimeout(cfg.Server.GRPCConnectionTimeout),
		grpc.MaxConcurrentStreams(uint32(min(cfg.Server.MaxConcurrentStreams, 1<<31))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		experimental.BufferPool(bufferPool),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(edge.stream, last.stream, authn.Stream, gate.stream),
	)...)
	b.Register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	ready := func(ctx context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("nats connection is %s", st)
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("jetstream account info: %w", err)
		}
		return nil
	}
	setHealth := func() {
		st := healthpb.HealthCheckResponse_SERVING
		if nc.Status() != nats.CONNECTED {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus("", st)
	}
	nc.SetDisconnectErrHandler(func(c *nats.Conn, err error) {
		b.ConnectionLost()
		if c.IsDraining() || c.IsClosed() {
			return // our own shutdown
		}
		log.Warn("NATS disconnected", slog.Any("error", err))
		setHealth()
	})
	nc.SetReconnectHandler(func(c *nats.Conn) {
		b.ConnectionRestored()
		log.Info("NATS reconnected", slog.String("url", config.RedactURLs(c.ConnectedUrl())))
		setHealth()
	})
	setHealth()

	// The gateway calls unary RPCs in process through the same unary
	// interceptors, and reaches the gRPC server for streaming RPCs through
	// an in-memory listener: the same server, interceptors and limits, no
	// TCP port or TLS to configure.
	mem := bufconn.Listen(1 << 20)
	conn, err := grpc.NewClient("passthrough:///jetway-in-memory",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return mem.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv), grpc.MaxCallSendMsgSize(maxRecv)),
	)
	if err != nil {
		return nil, fmt.Errorf("server: gateway client: %w", err)
	}
	cleanup = append(cleanup, func() { _ = conn.Close() })
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	handler, err := gateway.New(serveCtx, conn, gateway.Options{
		MaxBodyBytes: maxBody, Ready: ready, Logger: log,
		AllowedOrigins:  cfg.Browser.AllowedOrigins,
		Direct:          &gateway.Direct{Messages: b.Messages(), Admin: b.Admin(), Interceptor: unary},
		ReadBodyTimeout: cfg.Server.HTTPReadBodyTimeout,
		// Refuses bad credentials before a body is read; the interceptor
		// still authenticates what passes.
		Authenticate: authn.Check,
	})
	if err != nil {
		stopServe()
		return nil, fmt.Errorf("server: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.Server.HTTPReadHeaderTimeout,
		// No ReadTimeout: the gateway bounds each body from the end of
		// its headers instead (ReadBodyTimeout), on HTTP/1 and HTTP/2
		// alike, and never a response.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    httpErrorLog(log),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveGRPC(gs, grpcLis) })
	g.Go(func() error { return serveGRPC(gs, mem) })
	g.Go(func() error {
		serve := func() error { return httpSrv.Serve(httpLis) }
		if tlsCfg != nil {
			httpSrv.TLSConfig = tlsCfg
			serve = func() error { return httpSrv.ServeTLS(httpLis, "", "") }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("server: HTTP: %w", err)
		}
		return nil
	})
	if pprofSrv != nil {
		g.Go(func() error {
			if err := pprofSrv.Serve(pprofLis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("server: pprof: %w", err)
			}
			return nil
		})
		log.Warn("profiling on: /debug/pprof/ unauthenticated on its own loopback listener", slog.String("pprof", s.pprofAddr.String()))
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", slog.Duration("timeout", cfg.Server.ShutdownTimeout))
		if pprofSrv != nil {
			// A profile in progress is cut short: it serves no client.
			_ = pprofSrv.Close()
		}
		hs.Shutdown()
		// Subscribe and Consume streams and Fetch long polls end (NAKing
		// what they hold) so that their clients reconnect to another
		// replica at once.
		b.Drain()
		return shutdown(cfg.Server.ShutdownTimeout, func() { endCalls(errCutShort) }, httpSrv, gs)
	})
	log.Info("serving", slog.String("grpc", s.grpcAddr.String()), slog.String("http", s.httpAddr.String()))
	go func() {
		defer close(s.done)
		s.err = g.Wait()
		endCalls(errCutShort)
		stopServe()
		_ = conn.Close()
		closePool()
		drainNATS(nc, cfg.Server.ShutdownTimeout, log)
		if ns != nil {
			ns.Shutdown()
		}
		log.Info("stopped")
	}()
	return s, nil
}

// embeddedPassword is the password of the embedded server's port: read
// from --embedded-nats-password-file, or generated once and kept in the
// data directory. The log names the file, never the password.
func embeddedPassword(c config.NATS, log *slog.Logger) (string, error) {
	if c.EmbeddedPasswordFile != "" {
		pw, err := auth.ReadSecretFile(c.EmbeddedPasswordFile)
		if err != nil {
			return "", fmt.Errorf("--embedded-nats-password-file: %w", err)
		}
		log.Info("embedded NATS port requires a password", slog.String("user", c.EmbeddedUser), slog.String("password_file", c.EmbeddedPasswordFile))
		return pw, nil
	}
	path := filepath.Join(c.DataDir, embedded.PasswordFileName)
	pw, created, err := embedded.LoadOrGeneratePassword(path)
	if err != nil {
		return "", err
	}
	msg := "embedded NATS port requires a password, kept in its file"
	if created {
		msg = "embedded NATS port requires a password: generated, written to its file (mode 0600)"
	}
	log.Info(msg, slog.String("user", c.EmbeddedUser), slog.String("password_file", path))
	return pw, nil
}

// httpErrorLog is the HTTP server's log of what it refuses on its own
// (failed TLS handshakes, malformed requests): clients can cause as many
// of these lines as they like and put their bytes in them, so each line
// is clipped and the lines are rate-limited like refused credentials.
func httpErrorLog(log *slog.Logger) *stdlog.Logger {
	lim := logsafe.NewLimiter(log, auth.RefusalLinesPerSecond, auth.RefusalLineBurst)
	return stdlog.New(logWriter(func(p []byte) {
		lim.Log(context.Background(), slog.LevelWarn, "http server", slog.String("error", logsafe.Clip(strings.TrimSpace(string(p)), 256)))
	}), "", 0)
}

type logWriter func(p []byte)

func (w logWriter) Write(p []byte) (int, error) {
	w(p)
	return len(p), nil
}

func serveGRPC(gs *grpc.Server, lis net.Listener) error {
	if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("server: gRPC: %w", err)
	}
	return nil
}

// shutdown stops accepting and lets in-flight calls finish within
// timeout. Those still running lastCallMargin before it passes are ended
// by endCalls (they answer UNAVAILABLE); the connections left at the
// timeout are closed.
func shutdown(timeout time.Duration, endCalls func(), httpSrv *http.Server, gs *grpc.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := time.AfterFunc(timeout-lastCallMargin(timeout), endCalls)
	defer last.Stop()
	// REST calls go through the gRPC server, so HTTP stops first.
	httpErr := httpSrv.Shutdown(ctx)
	if httpErr != nil {
		_ = httpSrv.Close()
	}
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		gs.Stop()
		<-stopped
	}
	if httpErr != nil && !errors.Is(httpErr, context.DeadlineExceeded) {
		return fmt.Errorf("server: HTTP shutdown: %w", httpErr)
	}
	return nil
}

// lastCallMargin is how long before the shutdown timeout the calls still
// running are ended: time for their answers to be written before the
// connections close.
func lastCallMargin(timeout time.Duration) time.Duration {
	return min(timeout/4, time.Second)
}

// connect dials NATS. With RetryOnFailedConnect the bridge starts even when
// NATS is not reachable yet, and reports not ready until it is.
func connect(cfg config.Config, log *slog.Logger, urls string, extra []nats.Option) (*nats.Conn, error) {
	creds, err := cfg.NATS.Credentials.Options()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	connected := make(chan struct{}, 1)
	opts := append([]nats.Option{
		nats.Name("jetway-bridge"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.DrainTimeout(cfg.Server.ShutdownTimeout),
		nats.ConnectHandler(func(*nats.Conn) { connected <- struct{}{} }),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			// A refused publish ends the call waiting on it.
			refusal.Record(nc, err)
			attrs := []any{slog.Any("error", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			log.Error("NATS asynchronous error", attrs...)
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("NATS connection closed") }),
		// A failed (re)connect names its cause: a wrong or expired
		// credential keeps the bridge not ready, and never falls back to
		// an anonymous connection. Credential files are read again at each
		// attempt, so fixing the file (or SIGHUP) recovers without restart.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Error("NATS connection attempt failed", slog.Any("error", err))
		}),
	}, creds...)
	opts = append(opts, extra...)
	if urls == "" {
		urls = nats.DefaultURL // unused: the in-process option takes over
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("server: connect to NATS: %w", err)
	}
	where := "in-process"
	if cfg.NATS.URLs != "" {
		where = config.RedactURLs(nc.ConnectedUrl())
	}
	if nc.IsConnected() {
		log.Info("NATS connected", slog.String("url", where), slog.Int64("max_payload", nc.MaxPayload()))
		return nc, nil
	}
	select {
	case <-connected:
		log.Info("NATS connected", slog.String("url", config.RedactURLs(nc.ConnectedUrl())), slog.Int64("max_payload", nc.MaxPayload()))
	case <-time.After(cfg.NATS.ConnectTimeout):
		log.Error("NATS not connected yet; serving as not ready and retrying", slog.String("urls", config.RedactURLs(urls)), slog.Any("last_error", nc.LastError()))
	}
	return nc, nil
}

func drainNATS(nc *nats.Conn, timeout time.Duration, log *slog.Logger) {
	if nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout + time.Second):
		log.Warn("NATS drain timed out")
		nc.Close()
	}
}
