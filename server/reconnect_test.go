package server_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// startRestartableNATS starts a JetStream nats-server on a free port and
// a store of its own, which startNATS(t, port, dir) starts again.
func startRestartableNATS(t *testing.T) (ns *natsserver.Server, port int, dir string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir = t.TempDir()
	return startNATS(t, port, dir), port, dir
}

func startNATS(t *testing.T, port int, dir string) *natsserver.Server {
	t.Helper()
	return jetwaytest.NATSServer(t, &natsserver.Options{Port: port, JetStream: true, StoreDir: dir})
}

// TestExternalNATSOutageAndRecovery runs the bridge against an external
// nats-server, stops that server and starts it again: the bridge reports
// not ready and answers UNAVAILABLE while NATS is away, then recovers by
// itself with the stream intact.
func TestExternalNATSOutageAndRecovery(t *testing.T) {
	ns, port, dir := startRestartableNATS(t)

	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.URLs = ns.ClientURL() })
	ctx := jetwaytest.Context(t, 60*time.Second)
	health := healthpb.NewHealthClient(b.Conn)
	if _, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}}}); err != nil {
		t.Fatal(err)
	}
	publish := &jetwayv1.PublishRequest{Subject: "out.a", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}
	if _, err := b.Messages.Publish(ctx, publish); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, "readyz 503", func() bool { return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusServiceUnavailable })
	waitFor(t, "health NOT_SERVING", func() bool {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if _, err := b.Messages.Publish(ctx, publish); status.Code(err) != codes.Unavailable {
		t.Errorf("publish while NATS is down: %v, want UNAVAILABLE", err)
	}
	if r := b.Do(t, http.MethodGet, "/v1/streams/OUT", ""); r.Status != http.StatusServiceUnavailable {
		t.Errorf("REST while NATS is down: %d, want 503", r.Status)
	}
	if r := b.Do(t, http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("healthz while NATS is down: %d, want 200 (the process is up)", r.Status)
	}

	startNATS(t, port, dir)
	waitFor(t, "readyz 200", func() bool { return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK })
	waitFor(t, "health SERVING", func() bool {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	resp, err := b.Messages.Publish(ctx, publish)
	if err != nil {
		t.Fatalf("publish after recovery: %v", err)
	}
	if resp.GetSequence() != 2 {
		t.Errorf("sequence %d after recovery, want 2 (the stream survived)", resp.GetSequence())
	}
}

// waitFor polls cond every 50ms for at most 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
