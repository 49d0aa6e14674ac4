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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/tap"
	"google.golang.org/grpc/test/bufconn"

	"github.com/jetway-dev/jetway/audit"
	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bootstrap"
	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/bridge/acktoken"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/console"
	"github.com/jetway-dev/jetway/deadletter"
	"github.com/jetway-dev/jetway/embedded"
	"github.com/jetway-dev/jetway/gateway"
	"github.com/jetway-dev/jetway/internal/logsafe"
	"github.com/jetway-dev/jetway/kv"
	"github.com/jetway-dev/jetway/metrics"
	"github.com/jetway-dev/jetway/push"
	"github.com/jetway-dev/jetway/requestid"
	"github.com/jetway-dev/jetway/tracing"
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
	metricsAddr        net.Addr
	natsURL            string
	natsCreds          auth.NATSCredentials
	link               *natsLink
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

// MetricsAddr is the address of the metrics listener, nil when
// --metrics-listen is empty.
func (s *Server) MetricsAddr() net.Addr { return s.metricsAddr }

// NATSURL is the embedded server's client URL when it opened a port.
func (s *Server) NATSURL() string { return s.natsURL }

// NATSCredentials are the credentials NATSURL requires (the zero value
// when the embedded server opened no port).
func (s *Server) NATSCredentials() auth.NATSCredentials { return s.natsCreds }

// Reload makes a NATS connection attempt now, with the credential files
// read again: the way to apply rotated credentials at once (SIGHUP)
// rather than at the next attempt. Whatever the state of the connection
// (connected, retrying a refused credential, never connected yet, closed
// by nats.go), it reconnects or dials afresh; it returns at once, and
// the attempt's outcome is logged.
func (s *Server) Reload() { s.link.Reload() }

// Wait blocks until the server has stopped and returns why it stopped: nil
// after a graceful shutdown.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Start binds the listeners, starts (or connects to) NATS and serves in the
// background until ctx ends. An error means nothing was left running.
// pushTerminator is the Terminated-By of dead letters a push endpoint's
// refusal made.
const pushTerminator = "jetway-push"

func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	// Every line logged with a call's context names its request (and,
	// traced, its trace and span).
	log = slog.New(requestid.Handler(log.Handler()))
	aud, closeAudit, err := auditLog(cfg.Log, log)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, closeAudit)
	tr, err := tracing.Start(ctx, cfg.Tracing)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	stopTracing := func() {
		// What is buffered is sent, within a bound: a collector that is
		// away does not hold up the exit.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			log.Warn("tracing: spans not exported at shutdown", slog.Any("error", err))
		}
	}
	cleanup = append(cleanup, stopTracing)
	if tr.Enabled() {
		log.Info("tracing on: OTLP", slog.String("endpoint", config.RedactURLs(cfg.Tracing.Endpoint)), slog.String("protocol", cfg.Tracing.Protocol),
			slog.Float64("sample_ratio", cfg.Tracing.SampleRatio))
	}

	if p := cfg.Server.PprofListen; p != "" && !isLoopback(p) {
		return nil, fmt.Errorf("server: --pprof-listen %q is not a loopback address: profiling is unauthenticated and shows the command line, memory and goroutines; listen on 127.0.0.1 (or [::1]) and reach it through an SSH tunnel or kubectl port-forward", p)
	}
	urls := cfg.NATS.URLs
	s := &Server{done: make(chan struct{})}
	// What the configuration alone decides comes first: a bad one fails
	// before a port is bound or the store opened.
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
	if authCfg != nil {
		// Access tokens are verified with keys derived from the ack
		// keys: a replica that takes another's acks takes its tokens.
		if err := authCfg.EnableAccessTokens(keys); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	tlsCfg, err := serverTLS(cfg.Auth)
	if err != nil {
		return nil, err
	}
	// A bootstrap file that cannot be applied fails the start, naming
	// the entry and the field.
	var boot *bootstrap.File
	if cfg.Bootstrap.File != "" {
		if boot, err = bootstrap.Load(cfg.Bootstrap.File); err != nil {
			return nil, fmt.Errorf("server: --bootstrap: %w", err)
		}
	}
	if authCfg != nil && authCfg.Propagates() && urls == "" {
		return nil, errors.New("server: identities with NATS credentials need --nats-url: the embedded server has no accounts to isolate them")
	}

	// The ports come before the store: a bridge whose port is taken (a
	// second one started by accident) fails here, without opening it.
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

	var metricsLis net.Listener
	if cfg.Server.MetricsListen != "" {
		if metricsLis, err = net.Listen("tcp", cfg.Server.MetricsListen); err != nil {
			return nil, fmt.Errorf("server: metrics listen: %w", err)
		}
		cleanup = append(cleanup, func() { _ = metricsLis.Close() })
		s.metricsAddr = metricsLis.Addr()
	}

	var natsOpts []nats.Option
	closePool := func() {}
	var ns *embedded.Server
	if urls == "" {
		// The data dir is locked before anything is written there (the
		// generated password): another bridge serving from it is refused,
		// named, and its store left alone.
		lock, err := embedded.Lock(cfg.NATS.DataDir, map[string]string{"grpc": s.grpcAddr.String(), "http": s.httpAddr.String()})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		cleanup = append(cleanup, lock.Release)
		ecfg := embedded.Config{
			DataDir: cfg.NATS.DataDir, Listen: cfg.NATS.EmbeddedListen, Logger: log, Lock: lock,
			SyncInterval: cfg.NATS.EmbeddedSync.Interval, SyncAlways: cfg.NATS.EmbeddedSync.Always,
			MaxMemoryStore: int64(cfg.NATS.EmbeddedMaxMemoryStore), MaxFileStore: int64(cfg.NATS.EmbeddedMaxFileStore),
			Domain: cfg.NATS.EmbeddedJSDomain,
		}
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
		// What nats-server made of the settings, its defaults resolved.
		jsc := ns.JetStreamConfig()
		sync := "every " + jsc.SyncInterval.String()
		if jsc.SyncAlways {
			sync = "always (before each acknowledgement)"
		}
		log.Info("embedded NATS server started", slog.String("data_dir", cfg.NATS.DataDir), slog.String("client_url", s.natsURL),
			slog.String("fsync", sync), slog.Int64("max_memory_store", jsc.MaxMemory), slog.Int64("max_file_store", jsc.MaxStore),
			slog.String("js_domain", jsc.Domain))
	}

	link, err := connect(cfg, log, urls, natsOpts)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, link.close)
	s.link = link
	m := metrics.New(metrics.NATS{Connected: link.connected, RTT: link.rtt, JetStream: link.JetStream}, log)
	var conns bridge.ConnProvider = link
	authOpts := []bridge.Option{}
	if authCfg != nil {
		// Every refusal of an identity goes to the audit log.
		authOpts = append(authOpts, bridge.WithAuthorizer(aud.Authorizer(auth.Authorizer{})), bridge.WithAccessTokens(authCfg))
	}
	if authCfg != nil && authCfg.Propagates() {
		tlsOpts, err := cfg.NATS.Credentials.TLSOptions()
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		pool := auth.NewPool(link.JetStream, auth.PoolConfig{
			URLs:    urls,
			Options: append(tlsOpts, nats.MaxReconnects(-1), nats.CustomReconnectDelay(reconnectBackoff(cfg).delay)),
			JetStream: []jetstream.JetStreamOpt{
				jetstream.WithDefaultTimeout(cfg.NATS.RequestTimeout),
			},
			Domain: cfg.NATS.JSDomain,
			Logger: log,
		})
		cleanup = append(cleanup, pool.Close)
		closePool = pool.Close
		conns = pool
		log.Info("identity propagation on: identities with NATS credentials run on their own connections")
	}
	fleet := bridge.Fleet{Replica: cfg.Server.ReplicaName, Conn: link.conn, JSDomain: cfg.NATS.JSDomain}
	if urls == "" {
		fleet.JSDomain, fleet.InProcess = cfg.NATS.EmbeddedJSDomain, true
	}
	// Dead letters (issue 19): TERMs through the bridge copy first; the
	// worker (below) follows the advisories.
	var dlw *deadletter.Writer
	var worker *deadletter.Worker
	if cfg.DeadLetters.Enabled {
		if dlw, err = deadletter.NewWriter(deadletter.WriterOptions{AckKeys: keys, Logger: log, Observer: m}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		authOpts = append(authOpts, bridge.WithTerminator(dlw))
		if worker, err = deadletter.NewWorker(dlw, link.JetStream, deadletter.WorkerOptions{Replicas: cfg.DeadLetters.Replicas, Logger: log}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	b, err := bridge.New(conns, append(authOpts, bridge.WithLogger(log), bridge.WithFleet(fleet), bridge.WithMaxPayload(link.maxPayload), bridge.WithPublishWindow(cfg.Server.PublishWindow), bridge.WithAckSigner(signer), bridge.WithObserver(m), bridge.WithTracer(tr.Tracer()),
		bridge.WithCaps(bridge.Caps{
			MaxBatch: cfg.Consume.MaxFetchBatch, MaxBytes: cfg.Consume.MaxFetchBytes,
			MaxWait: cfg.Consume.MaxFetchWait, MaxAckBatch: cfg.Consume.MaxAckBatch,
			MaxInFlight: cfg.Consume.MaxInFlight, MaxBytesInFlight: cfg.Consume.MaxBytesInFlight,
		}))...)
	if err != nil {
		return nil, fmt.Errorf("server: bridge.New: %w", err)
	}
	kvOpts := []kv.Option{kv.WithLogger(log)}
	if authCfg != nil {
		kvOpts = append(kvOpts, kv.WithAuthorizer(aud.Authorizer(auth.Authorizer{})))
	}
	kvs, err := kv.New(conns, kvOpts...)
	if err != nil {
		return nil, fmt.Errorf("server: kv.New: %w", err)
	}
	dlOpts := deadletter.ServiceOptions{Logger: log, MaxBytes: cfg.Consume.MaxFetchBytes}
	if authCfg != nil {
		dlOpts.Authorizer = aud.Authorizer(auth.Authorizer{})
	}
	dls, err := deadletter.NewService(conns, dlOpts)
	if err != nil {
		return nil, fmt.Errorf("server: deadletter.NewService: %w", err)
	}

	// Push delivery runs on the bridge's own connection: the bucket of
	// subscriptions, the pulls and the acks are the bridge's, not a
	// caller's.
	pushOpts := push.Options{
		JetStream: link.JetStream, Signer: signer, Logger: log,
		AllowPrivateEndpoints: cfg.Push.AllowPrivateEndpoints, MaxInFlight: cfg.Push.MaxInFlight,
		Replicas: cfg.Push.Replicas, Observer: m,
		// Get and List show the fleet's delivery state, gathered as the
		// session views are; this replica answers for its own.
		Fleet: b,
	}
	if authCfg != nil {
		pushOpts.Authorizer = aud.Authorizer(auth.Authorizer{})
		// Deliveries run on the bridge's connection: each subscription's
		// identity must still be configured, and still consume.
		pushOpts.Permit = func(ctx context.Context, identity, stream, consumer string) error {
			id := authCfg.Identity(identity)
			if id == nil {
				return fmt.Errorf("%w: no identity %q in the auth configuration", auth.ErrForbidden, identity)
			}
			return auth.Authorizer{}.CanConsume(auth.NewContext(ctx, id), stream, consumer)
		}
	}
	if dlw != nil {
		// A delivery the endpoint refuses for good (a 4xx) goes to the
		// consumer's dead letters as a TERM through the bridge does:
		// copied first, then terminated with a signed reason.
		pushOpts.Terminate = func(ctx context.Context, msg jetstream.Msg, reason string) error {
			js, err := link.JetStream(ctx)
			if err != nil {
				return err
			}
			return dlw.Terminate(ctx, js, msg, reason, pushTerminator)
		}
	}
	pushes, err := push.New(pushOpts)
	if err != nil {
		return nil, fmt.Errorf("server: push.New: %w", err)
	}

	maxPayload := link.maxPayload()
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

	if n := cfg.Server.MaxConnections; n > 0 {
		// Past the cap, connections wait in the kernel's backlog until
		// one closes: what an unauthenticated client can hold is bounded
		// by the cap and the handshake and read timeouts.
		grpcLis, httpLis = limitListener(grpcLis, n), limitListener(httpLis, n)
	}

	edge := errorEdge{log: log}
	gate := natsGate{connected: link.connected}
	authn := auth.NewInterceptor(authCfg, log)
	authn.OnQuota(m.QuotaRefused)
	authn.AuditTo(aud.Slog(), audit.Message)
	// Ended (with errCutShort) just before the shutdown timeout passes:
	// the calls still running then answer UNAVAILABLE.
	calls, endCalls := context.WithCancelCause(context.Background())
	cleanup = append(cleanup, func() { endCalls(nil) })
	last := lastCall{ctx: calls}
	// One unary chain, for gRPC calls and for the gateway's in-process
	// REST calls alike.
	// The request id comes first, so that every line logged names it;
	// then the metrics interceptors, so that they see the status
	// errorEdge made of what the handler returned; the audit follows
	// authentication (it names the identity).
	unary := gateway.ChainUnary(requestid.UnaryServerInterceptor, m.UnaryServerInterceptor(), edge.unary, last.unary, authn.Unary, aud.UnaryServerInterceptor,
		clampDeadline(cfg.Server.MaxCallTimeout, cfg.NATS.RequestTimeout), gate.unary)
	grpcOpts := []grpc.ServerOption{}
	if tlsCfg != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(listenerCreds{credentials.NewTLS(tlsCfg)}))
	}
	if h := tr.ServerHandler(); h != nil {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(h))
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
		// Credentials are checked from the headers, before a request
		// message is read: an unauthenticated client cannot make the
		// bridge hold its (up to maxRecv) messages.
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			// The id is chosen here, so that a refusal's line names it.
			ctx, _ = requestid.Ensure(ctx)
			ctx, err := authn.Tap(ctx, info.FullMethodName)
			if err != nil {
				st, _ := bridge.Status(err)
				return nil, st.Err()
			}
			return ctx, nil
		}),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(requestid.StreamServerInterceptor, m.StreamServerInterceptor(), edge.stream, last.stream, authn.Stream, aud.StreamServerInterceptor, gate.stream),
	)...)
	b.Register(gs)
	kvs.Register(gs)
	dls.Register(gs)
	pushes.Register(gs)
	m.InitializeMetrics(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	// Ready: connected to NATS, and JetStream answered its account info
	// now or within metaGrace. In a cluster only the JetStream meta leader
	// answers account info: when its node is lost, every replica would
	// otherwise turn unready at once for the election (4 to 9 s), while
	// streams whose leaders survive go on taking publishes.
	var lastAnswer atomic.Int64 // unix nanoseconds of the last account info answered
	booted := newBootGate(boot == nil)
	ready := func(ctx context.Context) error {
		if err := link.status(); err != nil {
			return err
		}
		if err := booted.err(); err != nil {
			return err
		}
		js, err := link.JetStream(ctx)
		if err != nil {
			return err
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			if at := lastAnswer.Load(); at != 0 && time.Since(time.Unix(0, at)) < metaGrace {
				return nil
			}
			return fmt.Errorf("jetstream account info: %w", err)
		}
		lastAnswer.Store(time.Now().UnixNano())
		return nil
	}
	// The bridge and the health service follow the connection: streams
	// end when it is lost (so that clients go to a replica that reaches
	// NATS), health is NOT_SERVING until it is back.
	// Until the bootstrap (if any) is done, NOT_SERVING too.
	everUp, wasDown := false, false
	booted.onServing = func(serving bool) {
		st := healthpb.HealthCheckResponse_SERVING
		if !serving {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus("", st)
	}
	// Each connection the link makes answers the fleet's requests (the
	// session views, push's delivery state); a subscription lives as long
	// as its connection, reconnects included.
	var answering *nats.Conn
	link.watch(func(connected bool) {
		if nc := link.conn(); connected && nc != nil && nc != answering {
			if _, err := b.Answer(nc); err != nil {
				log.Error("not answering the fleet's session views", slog.Any("error", err))
			} else {
				answering = nc
			}
		}
		if connected && wasDown && everUp {
			m.Reconnected()
		}
		everUp, wasDown = everUp || connected, !connected
		if connected {
			b.ConnectionRestored()
		} else {
			b.ConnectionLost()
		}
		booted.connected(connected)
	})

	// The gateway calls unary RPCs in process through the same unary
	// interceptors, and reaches the gRPC server for streaming RPCs through
	// an in-memory listener: the same server, interceptors and limits, no
	// TCP port or TLS to configure.
	mem := bufconn.Listen(1 << 20)
	var gwConnOpts []grpc.DialOption
	if h := tr.ClientHandler(); h != nil {
		// A REST stream's span reaches the server in the metadata.
		gwConnOpts = append(gwConnOpts, grpc.WithStatsHandler(h))
	}
	conn, err := grpc.NewClient("passthrough:///jetway-in-memory", append(gwConnOpts,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return mem.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv), grpc.MaxCallSendMsgSize(maxRecv)),
		// A REST stream's window is the bridge's: what waits on this
		// connection for a slow HTTP client is at most a fixed 64 KiB a
		// stream (plus the server's 64 KiB write quota), not a window
		// grown by BDP estimation to megabytes (gateway.StreamBufferBound).
		// The connection's window is refilled as data arrives, not as it
		// is read: a stalled stream does not hold up the others.
		grpc.WithStaticStreamWindowSize(gateway.StreamWindow),
		grpc.WithStaticConnWindowSize(16<<20),
	)...)
	if err != nil {
		return nil, fmt.Errorf("server: gateway client: %w", err)
	}
	cleanup = append(cleanup, func() { _ = conn.Close() })
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	gwOpts := gateway.Options{
		MaxBodyBytes: maxBody, Ready: ready, Logger: log,
		AllowedOrigins: cfg.Browser.AllowedOrigins,
		// Without client authentication the bridge trusts loopback: only
		// loopback host names, or DNS rebinding lets any page in.
		LoopbackHostsOnly: authCfg == nil && isLoopback(cfg.Server.GRPCListen) && isLoopback(cfg.Server.HTTPListen),
		Direct:            &gateway.Direct{Messages: b.Messages(), Admin: b.Admin(), Access: b.Access(), Interceptor: unary},
		ReadBodyTimeout:   cfg.Server.HTTPReadBodyTimeout,
		// Refuses bad credentials before a body is read; the interceptor
		// still authenticates what passes.
		Authenticate: authn.Check,
		CORS: gateway.CORS{
			AllowedMethods: cfg.Browser.CORSAllowedMethods, AllowedHeaders: cfg.Browser.CORSAllowedHeaders,
			AllowCredentials: cfg.Browser.CORSAllowCredentials, MaxAge: cfg.Browser.CORSMaxAge,
		},
		// Tracing sees no access token: the gateway takes them out of
		// URLs first.
		Instrument: tr.HTTP,
		Console:    console.Handler(),
	}
	if authCfg == nil {
		// Without client authentication (loopback only) /metrics is on
		// the HTTP port too; with it, only on --metrics-listen.
		gwOpts.Metrics = m.Handler()
	}
	handler, err := gateway.New(serveCtx, conn, gwOpts)
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
		// A streaming response caps its socket's send buffer.
		ConnContext: gateway.ConnContext,
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
	if boot != nil {
		// Once NATS is first reached; retried while JetStream is
		// unavailable. A permanent failure (a conflict, a refused
		// configuration, permission denied) stops the bridge with the
		// error: the file, or JetStream, needs an operator.
		g.Go(func() error {
			select {
			case <-link.up:
			case <-gctx.Done():
				return nil
			}
			_, err := boot.EnsureRetrying(gctx, func(ctx context.Context) (bootstrap.JetStream, error) {
				js, err := link.JetStream(ctx)
				if err != nil {
					return nil, err
				}
				return js, nil
			}, bootstrap.Options{CallTimeout: cfg.NATS.RequestTimeout}, bootstrap.Retry{Max: cfg.NATS.ReconnectWait, Log: log})
			switch {
			case gctx.Err() != nil:
				return nil
			case err != nil:
				log.Error("bootstrap failed: stopping (fix the file or JetStream, then start again)", slog.String("file", cfg.Bootstrap.File), slog.Any("error", err))
				return fmt.Errorf("server: --bootstrap %s: %w", cfg.Bootstrap.File, err)
			}
			booted.done()
			return nil
		})
	}
	// The replica announces itself to the fleet (the session views wait
	// for the replicas known to be up) until it stops.
	g.Go(func() error {
		select {
		case <-link.up:
		case <-gctx.Done():
			return nil
		}
		b.Announce(gctx)
		return nil
	})
	if worker != nil {
		// Every replica follows the advisories through the one durable
		// consumer; the worker stops with the server.
		g.Go(func() error {
			select {
			case <-link.up:
			case <-gctx.Done():
				return nil
			}
			return worker.Run(gctx)
		})
	}
	if metricsLis != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(log)}
		g.Go(func() error {
			if err := metricsSrv.Serve(metricsLis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("server: metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			_ = metricsSrv.Close()
			return nil
		})
		log.Info("metrics on their own listener: /metrics", slog.String("metrics", s.metricsAddr.String()))
	}
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
		kvs.Drain()
		dls.Drain()
		// Push deliveries stop pulling and finish what is in flight
		// (NAKing what is left near the end), alongside the calls.
		pushDone := make(chan struct{})
		go func() {
			defer close(pushDone)
			pctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout-lastCallMargin(cfg.Server.ShutdownTimeout))
			defer cancel()
			pushes.Close(pctx)
		}()
		err := shutdown(cfg.Server.ShutdownTimeout, func() { endCalls(errCutShort) }, httpSrv, gs)
		<-pushDone
		return err
	})
	pushes.Start()
	cleanup = append(cleanup, func() { pushes.Close(context.Background()) })
	log.Info("serving", slog.String("grpc", s.grpcAddr.String()), slog.String("http", s.httpAddr.String()),
		slog.Int64("http_max_body", maxBody), slog.Int("grpc_max_message", maxRecv))
	go func() {
		defer close(s.done)
		s.err = g.Wait()
		endCalls(errCutShort)
		stopServe()
		_ = conn.Close()
		closePool()
		// No new connection from here on; the one there is drains.
		link.stop()
		if nc := link.conn(); nc != nil {
			drainNATS(nc, cfg.Server.ShutdownTimeout, log)
		}
		if ns != nil {
			ns.Shutdown()
		}
		stopTracing()
		closeAudit()
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

// connect starts the bridge's NATS link and waits at most
// --nats-connect-timeout for its first connection; after that the bridge
// serves as not ready while the link keeps trying. Credentials that
// cannot be used at all are an error here; files read again later that
// fail are logged as failed attempts.
func connect(cfg config.Config, log *slog.Logger, urls string, extra []nats.Option) (*natsLink, error) {
	options := func() ([]nats.Option, error) {
		creds, err := cfg.NATS.Credentials.Options()
		if err != nil {
			return nil, err
		}
		return append(append([]nats.Option{
			nats.Name("jetway-bridge"),
			nats.DrainTimeout(cfg.Server.ShutdownTimeout),
		}, creds...), extra...), nil
	}
	if _, err := options(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	where := redactedWhere
	if urls == "" {
		urls = nats.DefaultURL // unused: the in-process option takes over
		where = func(*nats.Conn) string { return "in-process" }
	}
	link := newNATSLink(urls, options, []jetstream.JetStreamOpt{jetstream.WithDefaultTimeout(cfg.NATS.RequestTimeout)},
		reconnectBackoff(cfg), where, log)
	link.domain = cfg.NATS.JSDomain // "" with the embedded server
	link.start()
	select {
	case <-link.up:
	case <-time.After(cfg.NATS.ConnectTimeout):
		attrs := []any{slog.String("urls", config.RedactURLs(urls))}
		if err := link.lastError(); err != nil {
			attrs = append(attrs, slog.Any("last_error", err))
		} else {
			attrs = append(attrs, slog.String("last_error", "none yet: the first attempt is under way"))
		}
		log.Error("NATS not connected yet; serving as not ready and retrying", attrs...)
	}
	return link, nil
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

// metaGrace is how long readiness outlasts JetStream's silence on account
// info while the NATS connection is up: longer than a meta leader
// election, shorter than a probe's failure threshold.
const metaGrace = 15 * time.Second

// auditLog is the audit log: on log (its records marked log=audit), or
// with --audit-log as JSON lines appended to a file of its own (created
// 0600: it names identities and what they did), closed by the returned
// function.
func auditLog(c config.Log, log *slog.Logger) (*audit.Logger, func(), error) {
	if c.AuditFile == "" {
		return audit.New(log), func() {}, nil
	}
	f, err := os.OpenFile(c.AuditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("server: --audit-log: %w", err)
	}
	var once sync.Once
	h := requestid.Handler(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log.Info("audit records to their own file", slog.String("audit_log", c.AuditFile))
	return audit.New(slog.New(h)), func() { once.Do(func() { _ = f.Close() }) }, nil
}

// bootGate is the bootstrap's part of readiness: not ready until it is
// done, and the gRPC health service SERVING only while connected and
// bootstrapped. Safe for concurrent use.
type bootGate struct {
	mu        sync.Mutex
	booted    bool
	up        bool
	onServing func(serving bool)
}

func newBootGate(done bool) *bootGate { return &bootGate{booted: done} }

func (g *bootGate) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.booted {
		return errors.New("bootstrap not done yet")
	}
	return nil
}

func (g *bootGate) connected(up bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.up = up
	g.onServing(g.up && g.booted)
}

func (g *bootGate) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.booted = true
	g.onServing(g.up && g.booted)
}
