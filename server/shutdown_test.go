package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

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

// shutdownTConsumer creates stream name (subjects name.>) and its durable
// pull consumer "C" on js. The ack wait is long: a message stuck unacked
// in the bridge would not come back within the test.
func shutdownTConsumer(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) jetstream.Consumer {
	t.Helper()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		t.Fatal(err)
	}
	c, err := js.CreateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// shutdownTAwaitWaiting returns once n pull requests wait on c: the
// Fetches are in their long poll, at JetStream.
func shutdownTAwaitWaiting(t *testing.T, ctx context.Context, c jetstream.Consumer, n int) {
	t.Helper()
	for {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatalf("waiting for %d pull requests: %v", n, err)
		}
		if info.NumWaiting >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d pull requests waiting, want %d", info.NumWaiting, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// shutdownTPost sends a REST POST with a JSON body; it is safe to call
// from any goroutine (no t.Fatal).
func shutdownTPost(ctx context.Context, url, body string) (jetwaytest.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return jetwaytest.Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return jetwaytest.Response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, err
}

// TestShutdownEndsFetchLongPolls holds a gRPC and a REST Fetch in their
// long poll (wait 25 s, nothing to fetch) and stops the bridge: both answer
// UNAVAILABLE (503 with the JSON error body) with their ErrorInfo at once,
// and the bridge stops long before its 20 s shutdown timeout.
func TestShutdownEndsFetchLongPolls(t *testing.T) {
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.ShutdownTimeout = 20 * time.Second })
	ctx := jetwaytest.Context(t, 30*time.Second)
	c := shutdownTConsumer(t, ctx, b.JS, "POLL")

	type answer struct {
		err  error
		rest jetwaytest.Response
		at   time.Time
	}
	grpcDone, restDone := make(chan answer, 1), make(chan answer, 1)
	go func() {
		_, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "POLL", Consumer: "C", Batch: 1, Wait: durationpb.New(25 * time.Second)})
		grpcDone <- answer{err: err, at: time.Now()}
	}()
	go func() {
		r, err := shutdownTPost(ctx, b.BaseURL+"/v1/streams/POLL/consumers/C:fetch", `{"batch":1,"wait":"25s"}`)
		restDone <- answer{err: err, rest: r, at: time.Now()}
	}()
	shutdownTAwaitWaiting(t, ctx, c, 2)

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop() }()
	for _, done := range []chan answer{grpcDone, restDone} {
		select {
		case a := <-done:
			if d := a.at.Sub(start); d > time.Second {
				t.Errorf("a long poll answered %v after the shutdown began", d)
			}
			if done == grpcDone {
				authTWantCode(t, "gRPC Fetch during shutdown", a.err, codes.Unavailable, "UNAVAILABLE")
				continue
			}
			if a.err != nil {
				t.Fatalf("REST Fetch during shutdown: %v", a.err)
			}
			authTWantREST(t, "REST Fetch during shutdown", a.rest, http.StatusServiceUnavailable, "UNAVAILABLE")
		case <-time.After(5 * time.Second):
			t.Fatal("a long poll got no answer 5s into the shutdown")
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stop took %v with long polls ended (shutdown timeout 20s)", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not stop within 10s (shutdown timeout 20s)")
	}
}

// TestShutdownLosesNoFetchedMessage stops the bridge while more Fetches
// wait than messages come, and publishes as the shutdown begins: each
// Fetch answers at once, with messages or UNAVAILABLE, and every message
// published is either in a Fetch's answer or back in the consumer for
// the next client, none held unacked until its ack wait (5 minutes). NATS
// is external, so that it can be read after the bridge has stopped.
func TestShutdownLosesNoFetchedMessage(t *testing.T) {
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	b := jetwaytest.Start(t, func(c *config.Config) {
		c.NATS.URLs = ns.ClientURL()
		c.Server.ShutdownTimeout = 20 * time.Second
	})
	ctx := jetwaytest.Context(t, 30*time.Second)
	c := shutdownTConsumer(t, ctx, b.JS, "KEEP")
	const fetchers, n = 8, 6

	type fetched struct {
		seqs []uint64
		err  error
	}
	results := make(chan fetched, fetchers)
	for range fetchers {
		go func() {
			resp, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "KEEP", Consumer: "C", Batch: 2, Wait: durationpb.New(25 * time.Second)})
			var seqs []uint64
			for _, m := range resp.GetMessages() {
				seqs = append(seqs, m.GetStreamSequence())
			}
			results <- fetched{seqs, err}
		}()
	}
	shutdownTAwaitWaiting(t, ctx, c, fetchers)

	// Half the messages are on their way to the Fetches as the shutdown
	// begins, half come during it.
	stopped := make(chan error, 1)
	for i := range n {
		if i == n/2 {
			go func() { stopped <- b.Stop() }()
		}
		if _, err := b.JS.Publish(ctx, fmt.Sprintf("KEEP.%d", i), []byte("x")); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	held := map[uint64]bool{} // in a Fetch's answer: the client holds them, unacked
	unavailable := 0
	for range fetchers {
		select {
		case r := <-results:
			if r.err != nil {
				authTWantCode(t, "Fetch during shutdown", r.err, codes.Unavailable, "UNAVAILABLE")
				unavailable++
			}
			for _, seq := range r.seqs {
				if held[seq] {
					t.Errorf("stream sequence %d fetched twice", seq)
				}
				held[seq] = true
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a Fetch got no answer 5s into the shutdown")
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not stop within 10s (shutdown timeout 20s)")
	}
	t.Logf("%d messages fetched, %d Fetches answered UNAVAILABLE", len(held), unavailable)

	// What the client does not hold must be available at once (the batch
	// is what is missing: Fetch returns as soon as it is there).
	back := 0
	for len(held)+back < n {
		batch, err := c.Fetch(n-len(held)-back, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if held[md.Sequence.Stream] {
				t.Errorf("stream sequence %d redelivered while the client holds it", md.Sequence.Stream)
			}
			got++
		}
		if got == 0 {
			break
		}
		back += got
	}
	if len(held)+back != n {
		t.Errorf("published %d = %d fetched + %d still in the consumer? %d stuck unacked until the ack wait", n, len(held), back, n-len(held)-back)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != len(held)+back {
		t.Errorf("ack pending %d, want %d (fetched by the client, then by the test)", info.NumAckPending, len(held)+back)
	}
}

// TestShutdownAnswersCallsThatOutlastIt holds a gRPC and a REST Publish
// waiting for an ack that never comes (a core NATS subscriber, not a
// stream, listens on their subject) and an idle PublishStream, and stops
// the bridge with a 2 s shutdown timeout: each gets UNAVAILABLE with its
// ErrorInfo before the timeout, not a connection closed under it.
func TestShutdownAnswersCallsThatOutlastIt(t *testing.T) {
	const timeout = 2 * time.Second
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.ShutdownTimeout = timeout })
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "LAST", Subjects: []string{"last.>"}}); err != nil {
		t.Fatal(err)
	}
	silent, err := b.JS.Conn().SubscribeSync("hang.*")
	if err != nil {
		t.Fatal(err)
	}
	stream, err := b.Messages.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{
		Subject: "last.x", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetAck() == nil {
		t.Fatalf("first ack: %v %v", resp, err)
	}

	type answer struct {
		err  error
		rest jetwaytest.Response
		at   time.Time
	}
	grpcDone, restDone, streamDone := make(chan answer, 1), make(chan answer, 1), make(chan answer, 1)
	go func() {
		_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "hang.grpc", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}})
		grpcDone <- answer{err: err, at: time.Now()}
	}()
	go func() {
		r, err := shutdownTPost(ctx, b.BaseURL+"/v1/subjects/hang.rest:publish", `{"text":"x"}`)
		restDone <- answer{err: err, rest: r, at: time.Now()}
	}()
	for range 2 { // both publishes wait for their ack
		if _, err := silent.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("publish not on its way: %v", err)
		}
	}
	go func() {
		_, err := stream.Recv()
		streamDone <- answer{err: err, at: time.Now()}
	}()

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop() }()
	for _, tt := range []struct {
		name string
		done chan answer
	}{{"gRPC Publish", grpcDone}, {"REST Publish", restDone}, {"PublishStream", streamDone}} {
		select {
		case a := <-tt.done:
			if d := a.at.Sub(start); d >= timeout {
				t.Errorf("%s answered %v into the shutdown, not before its %v timeout", tt.name, d, timeout)
			}
			if tt.done != restDone {
				authTWantCode(t, tt.name+" during shutdown", a.err, codes.Unavailable, "UNAVAILABLE")
				continue
			}
			if a.err != nil {
				t.Fatalf("%s during shutdown: %v", tt.name, a.err)
			}
			authTWantREST(t, tt.name+" during shutdown", a.rest, http.StatusServiceUnavailable, "UNAVAILABLE")
		case <-time.After(5 * time.Second):
			t.Fatalf("%s got no answer 5s into the shutdown", tt.name)
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not stop within 10s")
	}
}
