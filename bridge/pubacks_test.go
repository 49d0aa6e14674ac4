package bridge_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// pubOne sends one PublishStream request on a fresh stream and returns its
// response.
func pubOne(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, req *jetwayv1.PublishStreamRequest) *jetwayv1.PublishStreamResponse {
	t.Helper()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := b.Messages.PublishStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return resp
}

// TestPublishStreamAcksAcrossStreams: one batch spread over three streams
// is answered in request order, each message with its own stream's ack
// (JetStream may ack different streams out of order), and the sequences
// of each stream count up from 1.
func TestPublishStreamAcksAcrossStreams(t *testing.T) {
	b, ctx := pubStart(t)
	names := []string{"PXA", "PXB", "PXC"}
	for _, n := range names {
		pubStream(ctx, t, b, jetstream.StreamConfig{Name: n, Subjects: []string{"px" + n + ".>"}})
	}
	req := &jetwayv1.PublishStreamRequest{Id: 9}
	for i := range 900 {
		n := names[(i*7+i/5)%3] // not round robin: runs of one stream and switches
		req.Batch = append(req.Batch, &jetwayv1.PublishRequest{Subject: "px" + n + ".m", Payload: &jetwayv1.PublishRequest_Text{Text: strconv.Itoa(i)}})
	}
	resp := pubOne(ctx, t, b, req)
	if resp.GetId() != 9 || len(resp.GetResults()) != len(req.GetBatch()) {
		t.Fatalf("response %d with %d results, want id 9 with %d", resp.GetId(), len(resp.GetResults()), len(req.GetBatch()))
	}
	next := map[string]uint64{}
	for i, r := range resp.GetResults() {
		ack := r.GetAck()
		want := req.GetBatch()[i].GetSubject()[2:5]
		if ack == nil || ack.GetStream() != want {
			t.Fatalf("result %d = %v, want an ack from %s", i, r, want)
		}
		next[want]++
		if ack.GetSequence() != next[want] {
			t.Fatalf("result %d: %s sequence %d, want %d", i, want, ack.GetSequence(), next[want])
		}
	}
	for _, n := range names {
		if got := pubMsgCount(ctx, t, b, n); got != next[n] {
			t.Errorf("%s holds %d messages, acked %d", n, got, next[n])
		}
	}
}

// TestPublishStreamRetriesNoResponders: a publish that finds no stream is
// tried again, as nats.go does (a clustered stream has no responder while
// it elects a leader): a stream that appears within the retries stores
// it.
func TestPublishStreamRetriesNoResponders(t *testing.T) {
	b, ctx := pubStart(t)
	created := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "LATE", Subjects: []string{"late.>"}, Storage: jetstream.MemoryStorage})
		created <- err
	}()
	start := time.Now()
	resp := pubOne(ctx, t, b, &jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{Subject: "late.x", Payload: &jetwayv1.PublishRequest_Text{Text: "hi"}}})
	if err := <-created; err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if ack := resp.GetAck(); ack.GetStream() != "LATE" || ack.GetSequence() != 1 {
		t.Fatalf("response %v, want the ack of LATE 1", resp)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("acked after %s: before the first retry was due", d)
	}
}

// TestPublishStreamAckTimeout: a subject that something other than a
// stream listens on never acks; with a 300 ms NATS request timeout the
// publish fails with UNAVAILABLE (JetStream did not answer: retry) within
// a second, and the stream goes on.
func TestPublishStreamAckTimeout(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.RequestTimeout = 300 * time.Millisecond })
	ctx := jetwaytest.Context(t, 30*time.Second)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "LOUD", Subjects: []string{"loud.>"}})
	creds, err := b.Server.NATSCredentials().Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.Server.NATSURL(), creds...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe("silent.>", func(*nats.Msg) {}) // listens, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	resp := pubOne(ctx, t, b, &jetwayv1.PublishStreamRequest{Id: 1, Batch: []*jetwayv1.PublishRequest{
		{Subject: "silent.x", Payload: &jetwayv1.PublishRequest_Text{Text: "lost"}},
		{Subject: "loud.x", Payload: &jetwayv1.PublishRequest_Text{Text: "kept"}},
	}})
	d := time.Since(start)
	res := resp.GetResults()
	if len(res) != 2 || res[0].GetError().GetReason() != "UNAVAILABLE" || res[1].GetAck().GetStream() != "LOUD" {
		t.Fatalf("results %v, want UNAVAILABLE (JetStream did not answer: retry) then an ack from LOUD", res)
	}
	if d < 300*time.Millisecond || d > time.Second {
		t.Errorf("answered after %s, want the 300 ms timeout", d)
	}
}

// TestPublishStreamNoStreamRetriesTogether: the "no responders" retries of
// a batch's publishes run side by side, as nats.go's did: eight publishes
// to a subject no stream listens on are all refused after about two retry
// pauses (0.5 s), not one message's retries after another's.
func TestPublishStreamNoStreamRetriesTogether(t *testing.T) {
	b, ctx := pubStart(t)
	req := &jetwayv1.PublishStreamRequest{Id: 1}
	for i := range 8 {
		req.Batch = append(req.Batch, &jetwayv1.PublishRequest{Subject: "nostream.x", Payload: &jetwayv1.PublishRequest_Text{Text: strconv.Itoa(i)}})
	}
	start := time.Now()
	resp := pubOne(ctx, t, b, req)
	d := time.Since(start)
	if len(resp.GetResults()) != 8 {
		t.Fatalf("response %v, want 8 results", resp)
	}
	for i, r := range resp.GetResults() {
		if r.GetError().GetReason() != "NO_STREAM_FOR_SUBJECT" {
			t.Fatalf("result %d = %v, want NO_STREAM_FOR_SUBJECT", i, r)
		}
	}
	if d < 400*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("refused after %s, want about two retry pauses (0.5 s)", d)
	}
}
