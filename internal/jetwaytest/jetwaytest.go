// Package jetwaytest starts a whole bridge for tests: an embedded
// nats-server with JetStream in a temporary directory, the gRPC server and
// the REST gateway on loopback ports.
package jetwaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/server"
)

// Bridge is a running bridge under test.
type Bridge struct {
	Server   *server.Server
	Conn     *grpc.ClientConn
	Messages jetwayv1.MessageServiceClient
	Admin    jetwayv1.AdminServiceClient
	Access   jetwayv1.AccessServiceClient
	// DeadLetters is the DeadLetterService (issue 19).
	DeadLetters jetwayv1.DeadLetterServiceClient
	// BaseURL is the REST root, e.g. http://127.0.0.1:41234.
	BaseURL string
	// JS is a native nats.go JetStream client on the same server, for
	// checking what the bridge did.
	JS jetstream.JetStream
	// Stop shuts the bridge down gracefully and waits, leaving the test's
	// clients open (so a test can watch in-flight calls finish). Safe to
	// call more than once and concurrently; Cleanup calls it too.
	Stop func() error
}

// Option changes the configuration before start.
type Option func(*config.Config)

// WithDeadLetters turns the dead-letter advisory stream and worker on
// (the bridge's default; jetwaytest's is off).
func WithDeadLetters(c *config.Config) { c.DeadLetters.Enabled = true }

// Start runs a bridge for the duration of the test.
func Start(t testing.TB, opts ...Option) *Bridge {
	t.Helper()
	return start(t, true, nil, opts)
}

// StartWithLogger is Start with the bridge logging to log (Start logs
// warnings and errors to the test's log).
func StartWithLogger(t testing.TB, log *slog.Logger, opts ...Option) *Bridge {
	t.Helper()
	return start(t, true, log, opts)
}

// StartWithoutNATSClient is Start for tests whose NATS the test's own
// client cannot reach (for example with credentials only the bridge has):
// B.JS is nil.
func StartWithoutNATSClient(t testing.TB, opts ...Option) *Bridge {
	t.Helper()
	return start(t, false, nil, opts)
}

// StartWithoutNATSClientWithLogger is StartWithoutNATSClient with the
// bridge logging to log.
func StartWithoutNATSClientWithLogger(t testing.TB, log *slog.Logger, opts ...Option) *Bridge {
	t.Helper()
	return start(t, false, log, opts)
}

func start(t testing.TB, natsClient bool, log *slog.Logger, opts []Option) *Bridge {
	t.Helper()
	cfg, err := config.Parse([]string{
		"--data-dir", t.TempDir(),
		"--embedded-nats-listen", "127.0.0.1:-1",
		"--grpc-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0",
		"--shutdown-timeout", "5s",
		// Off unless a test turns it on (WithDeadLetters): the advisory
		// stream would be one more stream in every listing and count.
		"--dead-letters=false",
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, o := range opts {
		o(&cfg)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("server.Start: %v", err)
	}
	stop := func() error {
		cancel()
		done := make(chan error, 1)
		go func() { done <- srv.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("bridge did not stop within 30s")
		}
	}
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = stop()
		t.Fatalf("grpc.NewClient: %v", err)
	}
	var nc *nats.Conn
	var js jetstream.JetStream
	if natsClient {
		natsURL, creds := srv.NATSURL(), srv.NATSCredentials()
		if natsURL == "" {
			natsURL, creds = cfg.NATS.URLs, cfg.NATS.Credentials
		}
		copts, err := creds.Options()
		if err != nil {
			_ = stop()
			t.Fatalf("NATS credentials: %v", err)
		}
		if nc, err = nats.Connect(natsURL, copts...); err != nil {
			_ = stop()
			t.Fatalf("nats.Connect: %v", err)
		}
		if js, err = jetstream.New(nc); err != nil {
			t.Fatalf("jetstream.New: %v", err)
		}
	}
	b := &Bridge{
		Server:      srv,
		Conn:        conn,
		Messages:    jetwayv1.NewMessageServiceClient(conn),
		Admin:       jetwayv1.NewAdminServiceClient(conn),
		Access:      jetwayv1.NewAccessServiceClient(conn),
		DeadLetters: jetwayv1.NewDeadLetterServiceClient(conn),
		BaseURL:     "http://" + srv.HTTPAddr().String(),
		JS:          js,
	}
	b.Stop = stop
	t.Cleanup(func() {
		err := stop()
		_ = conn.Close()
		if nc != nil {
			nc.Close()
		}
		if err != nil {
			t.Errorf("bridge stopped with error: %v", err)
		}
	})
	return b
}

// Context returns a context bounded by d and cancelled at the end of the test.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Response is a REST response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic map (or fails the test).
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
	return m
}

// Do sends a REST request with a JSON body ("" for none; sent as
// application/json, as the gateway requires) and reads the whole response,
// within 10 seconds.
func (b *Bridge) Do(t testing.TB, method, path, body string, header ...string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, b.BaseURL+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return b.Send(t, req)
}

// Send sends a request as it is (headers, body and all) and reads the
// whole response, within 10 seconds.
func (b *Bridge) Send(t testing.TB, req *http.Request) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// NATSServer runs a nats-server configured by opts on a loopback port
// (opts.Port 0 picks -1, a free one) until the end of the test.
func NATSServer(t testing.TB, opts *natsserver.Options) *natsserver.Server {
	t.Helper()
	opts.Host, opts.NoSigs = "127.0.0.1", true
	if opts.Port == 0 {
		opts.Port = -1
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// Eventually calls f every 20 ms until it returns nil, and fails the test
// with what and f's last error once d has passed.
func Eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogBuffer is a log sink that goroutines write while a test reads it.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is what was written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StreamMessages is how many messages stream holds, read natively; an
// error fails the test.
func StreamMessages(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}
