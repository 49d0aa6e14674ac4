package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestCallsInFlightWhenNATSDiesFailAtOnce publishes, with no deadline,
// to a subject a plain NATS subscriber takes and never answers, so that
// each publish is in flight at the bridge, then stops nats-server. No
// answer can come any more: the unary publish (gRPC and REST) and the
// PublishStream publish fail within a second with UNAVAILABLE and a
// retry hint, not at the one-minute call clamp. When nats-server is back
// on the same port the bridge is ready again within a second (nats.go's
// flat pause alone is 2 s).
func TestCallsInFlightWhenNATSDiesFailAtOnce(t *testing.T) {
	ns, port, dir := startRestartableNATS(t)
	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.URLs = ns.ClientURL() })
	ctx := jetwaytest.Context(t, 60*time.Second)

	holder, err := nats.Connect(ns.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	var held atomic.Int32
	if _, err := holder.Subscribe("hold.>", func(*nats.Msg) { held.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := holder.Flush(); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		what       string
		code       codes.Code
		retryAfter string
		err        error
		at         time.Time
	}
	done := make(chan outcome, 3)
	noDeadline := context.WithoutCancel(ctx) // as curl and most REST callers
	go func() {
		_, err := b.Messages.Publish(noDeadline, &jetwayv1.PublishRequest{Subject: "hold.unary", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}})
		done <- outcome{what: "gRPC Publish", code: status.Code(err), retryAfter: retryDelay(err), err: err, at: time.Now()}
	}()
	go func() {
		req, _ := http.NewRequestWithContext(noDeadline, http.MethodPost, b.BaseURL+"/v1/subjects/hold.rest:publish", strings.NewReader(`{"text":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		o := outcome{what: "REST publish", err: err, at: time.Now()}
		if err == nil {
			_ = resp.Body.Close()
			o.code = codes.Code(resp.StatusCode) // an HTTP status here
			o.retryAfter = resp.Header.Get("Retry-After")
		}
		done <- o
	}()
	go func() {
		o := outcome{what: "PublishStream"}
		defer func() { o.at = time.Now(); done <- o }()
		ps, err := b.Messages.PublishStream(noDeadline)
		if err != nil {
			o.err = err
			return
		}
		if err := ps.Send(&jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{Subject: "hold.stream", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}}); err != nil {
			o.err = err
			return
		}
		resp, err := ps.Recv()
		if err != nil {
			o.err = err
			return
		}
		o.code = codes.Code(resp.GetError().GetCode())
		_ = ps.CloseSend()
	}()
	waitFor(t, "the three publishes held by the subscriber", func() bool { return held.Load() == 3 })

	ns.Shutdown()
	ns.WaitForShutdown()
	down := time.Now()
	for range 3 {
		select {
		case o := <-done:
			took := o.at.Sub(down)
			t.Logf("%s: answered %s after nats-server stopped: code %v, retry %q, %v", o.what, took.Round(time.Millisecond), o.code, o.retryAfter, o.err)
			switch o.what {
			case "REST publish":
				if o.err != nil || int(o.code) != http.StatusServiceUnavailable || o.retryAfter == "" {
					t.Errorf("REST publish in flight: status %d Retry-After %q (%v), want 503 with Retry-After", o.code, o.retryAfter, o.err)
				}
			case "gRPC Publish":
				if o.code != codes.Unavailable || o.retryAfter == "" {
					t.Errorf("gRPC Publish in flight: %v (retry %q), want UNAVAILABLE with RetryInfo", o.err, o.retryAfter)
				}
			default:
				if o.err != nil || o.code != codes.Unavailable {
					t.Errorf("PublishStream publish in flight: code %v (%v), want an in-band UNAVAILABLE", o.code, o.err)
				}
			}
			if took > 2*time.Second {
				t.Errorf("%s answered %s after the connection dropped, want at once", o.what, took)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a publish in flight still waits 10 s after nats-server stopped")
		}
	}

	restarted := startNATS(t, port, dir)
	back := time.Now()
	waitFor(t, "readyz 200", func() bool { return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK })
	if took := time.Since(back); took > time.Second {
		t.Errorf("ready again %s after nats-server was back, want within a second", took)
	} else {
		t.Logf("ready again %s after nats-server was back", took.Round(time.Millisecond))
	}
	_ = restarted
}

// retryDelay is the RetryInfo delay of a gRPC error, "" without one.
func retryDelay(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration().String()
		}
	}
	return ""
}

// TestLeaderlessStreamAnswersUnavailable: on an R3 cluster that has lost
// two of its three nodes, the stream and its consumer have no leader and
// JetStream answers nobody, as during an election. The bridge, connected
// to the node that is left, answers a publish, a fetch and a sync ack
// with UNAVAILABLE (retry), never NOT_FOUND, which a client takes as
// final and drops its message on. A subject no stream captures is still
// NOT_FOUND while the cluster is whole.
func TestLeaderlessStreamAnswersUnavailable(t *testing.T) {
	nodes := startCluster(t, 3)
	b := jetwaytest.Start(t, func(c *config.Config) {
		c.NATS.URLs = nodes[0].ClientURL()
		c.NATS.RequestTimeout = 2 * time.Second
	})
	ctx := jetwaytest.Context(t, 90*time.Second)

	create := &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "NL", Subjects: []string{"nl.>"}, Replicas: 3}}
	jetwaytest.Eventually(t, 30*time.Second, "create the R3 stream", func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.Admin.CreateStream(actx, create)
		return err
	})
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "NL", Config: &jetwayv1.ConsumerConfig{Name: "C", Replicas: 3, AckWait: durationpb.New(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	publish := func(ctx context.Context, subject string) error {
		_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: subject, Payload: &jetwayv1.PublishRequest_Text{Text: "x"}, MsgId: subject + time.Now().String()})
		return err
	}
	for range 2 {
		if err := publish(ctx, "nl.x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := publish(ctx, "nowhere.x"); status.Code(err) != codes.NotFound || reasonOf(err) != "NO_STREAM_FOR_SUBJECT" {
		t.Fatalf("publish where no stream listens: %v, want NOT_FOUND NO_STREAM_FOR_SUBJECT", err)
	}
	// A new R3 consumer may answer empty until its replicas are current.
	var token string
	jetwaytest.Eventually(t, 20*time.Second, "fetch before the loss", func() error {
		fetched, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "NL", Consumer: "C", Batch: 1, Wait: durationpb.New(time.Second)})
		if err != nil {
			return err
		}
		if len(fetched.GetMessages()) != 1 {
			ci, cerr := b.Admin.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "NL", Name: "C"})
			return fmt.Errorf("%d messages; consumer %v %v", len(fetched.GetMessages()), ci.GetConsumer(), cerr)
		}
		token = fetched.GetMessages()[0].GetAckToken()
		return nil
	})

	// The stream's and the consumer's leaders must be on the nodes that
	// go: the node left then has neither.
	nc, err := nats.Connect(nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leadersOff(ctx, t, js, nodes[0].Name(), nodes[1].Name(), "NL", "C")
	for _, ns := range nodes[1:] {
		ns.Shutdown()
	}
	for _, ns := range nodes[1:] {
		ns.WaitForShutdown()
	}

	check := func(what string, err error, reason string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s without a leader: OK, want UNAVAILABLE", what)
			return
		}
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("%s without a leader: %v, want UNAVAILABLE", what, err)
		}
		if reason != "UNAVAILABLE" {
			t.Errorf("%s without a leader: reason %q, want UNAVAILABLE", what, reason)
		}
	}
	for range 2 {
		// The client's deadline is longer than the NATS request timeout
		// (2 s): the bridge answers by that.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err := publish(cctx, "nl.x")
		cancel()
		check("publish", err, reasonOf(err))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("publish without a leader took %s, want the 2 s NATS request timeout at most", took)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = b.Messages.Fetch(cctx, &jetwayv1.FetchRequest{Stream: "NL", Consumer: "C", Batch: 1, NoWait: true})
	cancel()
	check("fetch", err, reasonOf(err))

	cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	acked, err := b.Messages.Ack(cctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: token}}})
	cancel()
	if err != nil {
		t.Fatalf("sync ack call: %v", err)
	}
	res := acked.GetResults()[0]
	if res.GetError() == nil || codes.Code(res.GetError().GetCode()) != codes.Unavailable {
		t.Errorf("sync ack without a leader: %v, want an UNAVAILABLE result (the consumer exists)", res)
	}
}

// reasonOf is the ErrorInfo reason of a gRPC error.
func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// leadersOff steps the stream's and its consumer's leaders down until
// neither is on the server named off.
func leadersOff(ctx context.Context, t *testing.T, js jetstream.JetStream, off, to, stream, consumer string) {
	t.Helper()
	nc := js.Conn()
	// The step-down names the node to lead (nats-server 2.11+): a plain
	// one elects at random, and on a loaded machine elections kept landing
	// on off again until the 30 s ran out. No step-down while a group is
	// electing (no leader): that only restarts its election.
	prefer := []byte(`{"placement":{"preferred":"` + to + `"}}`)
	jetwaytest.Eventually(t, 30*time.Second, "stream and consumer leaders off "+off, func() error {
		si, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		switch l := si.CachedInfo().Cluster.Leader; l {
		case "":
			return errors.New("stream electing")
		case off:
			_, _ = nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, prefer)
			return fmt.Errorf("stream leader %q", l)
		}
		ci, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			return err
		}
		switch l := ci.CachedInfo().Cluster.Leader; l {
		case "":
			return errors.New("consumer electing")
		case off:
			_, _ = nc.RequestWithContext(ctx, "$JS.API.CONSUMER.LEADER.STEPDOWN."+stream+"."+consumer, prefer)
			return fmt.Errorf("consumer leader %q", l)
		}
		return nil
	})
}

// TestConsumerLeaderOnAnotherNode fetches and subscribes through a bridge
// connected to a node that leads neither the R3 stream nor its consumer.
// Such a consumer replicates each delivery before sending it, and sends
// a request's end (409 Batch Completed, 408) ahead of the deliveries it
// counts: a pull that stopped at the end lost those to a dead inbox until
// the ack wait. Every message comes once, at once, on Fetch (with its
// default max_bytes) and on Subscribe.
func TestConsumerLeaderOnAnotherNode(t *testing.T) {
	nodes := startCluster(t, 3)
	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.URLs = nodes[0].ClientURL() })
	ctx := jetwaytest.Context(t, 90*time.Second)
	jetwaytest.Eventually(t, 30*time.Second, "create the R3 stream", func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.Admin.CreateStream(actx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "FAR", Subjects: []string{"far.>"}, Replicas: 3}})
		return err
	})
	for _, name := range []string{"F", "S"} {
		if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "FAR", Config: &jetwayv1.ConsumerConfig{Name: name, Replicas: 3, AckWait: durationpb.New(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 40
	for i := range n {
		if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "far.x", Payload: &jetwayv1.PublishRequest_Text{Text: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leadersOff(ctx, t, js, nodes[0].Name(), nodes[1].Name(), "FAR", "F")
	leadersOff(ctx, t, js, nodes[0].Name(), nodes[1].Name(), "FAR", "S")

	start := time.Now()
	got := map[uint64]bool{}
	for len(got) < n && time.Since(start) < 20*time.Second {
		resp, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "FAR", Consumer: "F", Batch: 7, Wait: durationpb.New(time.Second)})
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for _, m := range resp.GetMessages() {
			if got[m.GetStreamSequence()] || m.GetNumDelivered() != 1 {
				t.Errorf("fetch: message %d again (delivered %d times)", m.GetStreamSequence(), m.GetNumDelivered())
			}
			got[m.GetStreamSequence()] = true
		}
	}
	if len(got) != n {
		t.Errorf("fetch: %d of %d messages in %s", len(got), n, time.Since(start))
	} else {
		t.Logf("fetch: %d messages in %s", n, time.Since(start).Round(time.Millisecond))
	}

	start = time.Now()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sub, err := b.Messages.Subscribe(sctx, &jetwayv1.SubscribeRequest{Stream: "FAR", Consumer: "S", MaxInFlight: 5})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for len(seen) < n {
		resp, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscribe: %d of %d messages, then %v", len(seen), n, err)
		}
		m := resp.GetMessage()
		if m == nil {
			continue
		}
		if seen[m.GetStreamSequence()] || m.GetNumDelivered() != 1 {
			t.Errorf("subscribe: message %d again (delivered %d times)", m.GetStreamSequence(), m.GetNumDelivered())
		}
		seen[m.GetStreamSequence()] = true
		if _, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Operations: []*jetwayv1.AckOperation{{Token: m.GetAckToken()}}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("subscribe: %d messages in %s", n, time.Since(start).Round(time.Millisecond))
}

// TestNoStreamAnswerForAUserThatMayNotAsk: when the bridge's NATS user
// may not ask JetStream which stream captures a subject, a publish where
// no stream listens is NOT_FOUND (as before the bridge asked), at once:
// the refusal of the question ends it, not the probe's timeout.
func TestNoStreamAnswerForAUserThatMayNotAsk(t *testing.T) {
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*natsserver.User{{
		Username: "bridge", Password: "s3cret",
		Permissions: &natsserver.Permissions{Publish: &natsserver.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.NAMES"}}},
	}}})
	b := jetwaytest.StartWithoutNATSClient(t, func(c *config.Config) {
		c.NATS.URLs = ns.ClientURL()
		c.NATS.Credentials.User, c.NATS.Credentials.Password = "bridge", "s3cret"
	})
	ctx := jetwaytest.Context(t, 30*time.Second)
	start := time.Now()
	_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "nowhere.x", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}})
	took := time.Since(start)
	if status.Code(err) != codes.NotFound || reasonOf(err) != "NO_STREAM_FOR_SUBJECT" {
		t.Errorf("publish where no stream listens: %v, want NOT_FOUND NO_STREAM_FOR_SUBJECT", err)
	}
	// nats.go's own retries of a publish nobody answers take about 0.5 s.
	if took > 900*time.Millisecond {
		t.Errorf("answered in %s, want the refusal to end the question at once (the probe's timeout is 1 s)", took)
	}
}
