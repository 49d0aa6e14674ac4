package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
	"github.com/jetway-dev/jetway/server"
)

const bootFile = `
streams:
  - {name: ORDERS, subjects: ["orders.>"], max_age: 3600s}
consumers:
  - {stream: ORDERS, config: {name: billing, ack_wait: 10s}}
`

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBootstrapBeforeReady: a bridge started before its NATS is up is
// not ready (/readyz 503, gRPC health NOT_SERVING); once NATS is there
// it bootstraps, and by the time it is ready the stream and consumer
// exist as the file says.
func TestBootstrapBeforeReady(t *testing.T) {
	port := freePort(t)
	file := writeFile(t, bootFile)
	logs := &jetwaytest.LogBuffer{}
	b := jetwaytest.StartWithoutNATSClientWithLogger(t, slog.New(slog.NewTextHandler(logs, nil)), func(c *config.Config) {
		c.NATS.URLs = fmt.Sprintf("nats://127.0.0.1:%d", port)
		c.NATS.ConnectTimeout, c.NATS.ReconnectWait = 100*time.Millisecond, 200*time.Millisecond
		c.Bootstrap.File = file
	})
	if r := b.Do(t, http.MethodGet, "/readyz", ""); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("readyz before NATS = %d, want 503", r.Status)
	}
	ns := startNATS(t, port, t.TempDir())
	waitFor(t, "readyz 200", func() bool { return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK })
	ctx := jetwaytest.Context(t, 30*time.Second)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "ORDERS")
	if err != nil || st.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("ready, and the stream: %v", err)
	}
	if c, err := js.Consumer(ctx, "ORDERS", "billing"); err != nil || c.CachedInfo().Config.AckWait != 10*time.Second {
		t.Fatalf("ready, and the consumer: %v", err)
	}
	h, err := healthpb.NewHealthClient(b.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health %v, %v", h, err)
	}
	for _, want := range []string{"bootstrap: stream created", "bootstrap: consumer created", "bootstrap: done"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in the log:\n%s", want, logs.String())
		}
	}
}

func parseConfig(t *testing.T, args ...string) config.Config {
	t.Helper()
	cfg, err := config.Parse(append([]string{"--data-dir", t.TempDir(), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--shutdown-timeout", "2s"}, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBootstrapInvalidFileRefusesStart: a file the Admin API would
// refuse fails the start, naming the entry and the field.
func TestBootstrapInvalidFileRefusesStart(t *testing.T) {
	cfg := parseConfig(t, "--bootstrap", writeFile(t, "streams: [{name: A}, {name: B, max_msgs: -5}]"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		cancel()
		_ = srv.Wait()
		t.Fatal("started with an invalid bootstrap file")
	}
	for _, want := range []string{"--bootstrap", `stream "B"`, "streams[1].max_msgs", "must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestBootstrapPermanentFailureStops: an entry that cannot be applied
// (a consumer of a stream nobody declared) stops the bridge with the
// error, rather than leaving it unready without saying so.
func TestBootstrapPermanentFailureStops(t *testing.T) {
	cfg := parseConfig(t, "--bootstrap", writeFile(t, "consumers: [{stream: NOPE, config: {name: x}}]"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stream not found") || !strings.Contains(err.Error(), `consumer "x" on stream "NOPE"`) {
			t.Errorf("Wait = %v, want the bootstrap's failure", err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatal("the bridge did not stop within 20s of a permanent bootstrap failure")
	}
}
