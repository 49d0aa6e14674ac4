package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
	"github.com/jetway-dev/jetway/server"
)

// TestGracefulShutdownFinishesInFlightStreams starts a shutdown while a
// PublishStream is still sending and checks that the stream gets every ack
// and ends OK, and that the bridge then stops cleanly.
func TestGracefulShutdownFinishesInFlightStreams(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 20*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SHUT", Subjects: []string{"shut.>"}}); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Messages.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	// The first message makes sure the RPC is established before shutdown.
	send := func(i int) {
		t.Helper()
		req := &jetwayv1.PublishStreamRequest{Id: uint64(i), Publish: &jetwayv1.PublishRequest{
			Subject: "shut.x", Payload: &jetwayv1.PublishRequest_Text{Text: fmt.Sprint(i)}}}
		if err := stream.Send(req); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	send(0)
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first ack: %v", err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop() }()

	for i := 1; i < n; i++ {
		send(i)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("ack %d during shutdown: %v", i, err)
		}
		if resp.GetId() != uint64(i) || resp.GetAck() == nil {
			t.Fatalf("response %d = %v", i, resp)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end = %v, want OK (io.EOF)", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not stop")
	}
}

// TestShutdownTimeoutEndsStuckStreams checks the bound: a stream whose
// client never finishes is ended once the shutdown timeout passes.
func TestShutdownTimeoutEndsStuckStreams(t *testing.T) {
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.ShutdownTimeout = 500 * time.Millisecond })
	ctx := jetwaytest.Context(t, 20*time.Second)
	stream, err := b.Messages.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An invalid publish still gets a response: proof the RPC is live.
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v with a 500ms shutdown timeout", d)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("stuck stream still open after shutdown")
	}
}

// TestNoGoroutineLeak starts a whole bridge, serves a gRPC and a REST call,
// stops it and checks that every goroutine it started is gone.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg, err := config.Parse([]string{"--data-dir", t.TempDir(), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jetwayv1.NewAdminServiceClient(conn).GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Get("http://" + srv.HTTPAddr().String() + "/v1/account")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	client.CloseIdleConnections()

	cancel()
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after stop:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
