package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			return true
		}
	}
	return false
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNATSConnectionClosedIsReplaced closes the bridge's NATS connection
// from outside the link, as nats.go does when it gives up on one (an
// -ERR it has no retry for): the bridge does not serve on as a zombie
// with a dead connection but dials a new one, by itself after
// --nats-reconnect-wait, or at once on Reload (here the wait is a
// minute); then it is ready and publishes.
func TestNATSConnectionClosedIsReplaced(t *testing.T) {
	for _, reload := range []bool{false, true} {
		t.Run(map[bool]string{false: "by itself", true: "on reload"}[reload], func(t *testing.T) {
			ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true, StoreDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			ns.Start()
			t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
			if !ns.ReadyForConnections(10 * time.Second) {
				t.Fatal("nats-server not ready")
			}
			wait := "100ms"
			if reload {
				wait = "1m"
			}
			cfg, err := config.Parse([]string{"--nats-url", ns.ClientURL(), "--nats-reconnect-wait", wait,
				"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--shutdown-timeout", "5s"},
				func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncLog{}
			ctx, cancel := context.WithCancel(context.Background())
			s, err := Start(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cancel()
				if err := s.Wait(); err != nil {
					t.Errorf("stopped: %v", err)
				}
			})
			defer func() {
				if t.Failed() {
					t.Logf("bridge log:\n%s", logs.b.String())
				}
			}()
			ready := func() bool {
				r, err := http.Get("http://" + s.HTTPAddr().String() + "/readyz")
				if err != nil {
					return false
				}
				_ = r.Body.Close()
				return r.StatusCode == http.StatusOK
			}
			until(t, "ready", ready)

			old := s.link.conn()
			old.Close()
			until(t, "the close noticed", func() bool { return logs.has("NATS connection closed by the client library: connecting afresh") })
			if reload {
				s.Reload()
			}
			until(t, "ready on a new connection", func() bool { return s.link.conn() != old && ready() })

			conn, err := grpc.NewClient(s.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer rcancel()
			if _, err := jetwayv1.NewAdminServiceClient(conn).CreateStream(rctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "AFRESH", Subjects: []string{"afresh.>"}}}); err != nil {
				t.Fatalf("create stream on the new connection: %v", err)
			}
			if _, err := jetwayv1.NewMessageServiceClient(conn).Publish(rctx, &jetwayv1.PublishRequest{Subject: "afresh.a", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}); err != nil {
				t.Fatalf("publish on the new connection: %v", err)
			}
		})
	}
}
