package server_test

// Watches open while the bridge drains end with UNAVAILABLE (gRPC), a
// jetway-error event (SSE) or a last error line (NDJSON), and every
// goroutine the bridge started for them stops.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/server"
)

func TestKVWatchEndsOnShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg, err := config.Parse([]string{"--data-dir", t.TempDir(), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--embedded-nats-listen", "127.0.0.1:-1", "--shutdown-timeout", "5s"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	srv, err := server.Start(srvCtx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := jetwayv1.NewKVServiceClient(conn)
	if _, err := c.CreateBucket(ctx, &jetwayv1.CreateBucketRequest{Config: &jetwayv1.BucketConfig{Bucket: "SHUT"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutEntry(ctx, &jetwayv1.PutEntryRequest{Bucket: "SHUT", Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}

	// Three watches: gRPC, SSE, NDJSON, each past its initialized event.
	w, err := c.WatchBucket(ctx, &jetwayv1.WatchBucketRequest{Bucket: "SHUT"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetInitialized() != nil {
			break
		}
	}
	client := &http.Client{Transport: &http.Transport{}}
	open := func(accept string) *bufio.Scanner {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.HTTPAddr().String()+"/v1/kv/SHUT/watch", nil)
		req.Header.Set("Accept", accept)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s watch: HTTP %d", accept, resp.StatusCode)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "initialized") {
				return sc
			}
		}
		t.Fatalf("%s watch ended before initialized: %v", accept, sc.Err())
		return nil
	}
	sse := open("text/event-stream")
	ndjson := open("application/json")

	stopped := make(chan error, 1)
	stopping := time.Now()
	go func() { stop(); stopped <- srv.Wait() }()

	_, err = w.Recv()
	if st := authTWantCode(t, "gRPC watch at shutdown", err, codes.Unavailable, "UNAVAILABLE"); st != nil && !strings.Contains(st.Message(), "shutting down") {
		t.Errorf("gRPC watch at shutdown: %q", st.Message())
	}
	// SSE: a jetway-error event whose data is the status.
	var event string
	for sse.Scan() {
		l := sse.Text()
		if strings.HasPrefix(l, "event: ") {
			event = strings.TrimPrefix(l, "event: ")
		}
		if strings.HasPrefix(l, "data: ") && event == "jetway-error" {
			var s struct {
				Code    int
				Message string
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &s); err != nil || s.Code != int(codes.Unavailable) {
				t.Errorf("SSE jetway-error %q: %v", l, err)
			}
			event = "seen"
			break
		}
	}
	if event != "seen" {
		t.Errorf("SSE watch ended without a jetway-error event (%v)", sse.Err())
	}
	// NDJSON: a last {"error":{…}} line.
	var last string
	for ndjson.Scan() {
		last = ndjson.Text()
	}
	var line struct {
		Error *struct{ Code int } `json:"error"`
	}
	if err := json.Unmarshal([]byte(last), &line); err != nil || line.Error == nil || line.Error.Code != int(codes.Unavailable) {
		t.Errorf("NDJSON watch's last line %q (%v), want an UNAVAILABLE error", last, err)
	}

	// Drained at once, not cut when the shutdown timeout (5s) ran out.
	if d := time.Since(stopping); d > 2*time.Second {
		t.Errorf("the watches ended %v after the shutdown began: not drained", d.Round(time.Millisecond))
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("bridge did not stop")
	}
	_ = conn.Close()
	client.CloseIdleConnections()
	// Every goroutine the bridge started (watchers, nats.go's delivery
	// of the watches' ordered consumers, the streams' senders) is gone.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after stop:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
