package bridge_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestSubscribeBatches: with max_batch, messages come as batch events of
// at most max_batch, in order, each message with its own ack token; and
// messages queued before the stream opened arrive faster than one event
// each, so batches form.
func TestSubscribeBatches(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "BAT", "bat.>")
	subPublishAsync(t, ctx, b.JS, "bat.x", 500, 250)

	ch, info, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "BAT", MaxBatch: 50, MaxInFlight: 200})
	defer cancel()
	if info.GetMaxInFlight() != 200 {
		t.Errorf("subscribed %v", info)
	}
	next := uint64(1)
	biggest := 0
	var tokens []string
	for next <= 500 {
		ev := subNext(t, ch, 10*time.Second, "batch event")
		if ev.GetHeartbeat() != nil {
			continue
		}
		msgs := ev.GetBatch().GetMessages()
		if len(msgs) == 0 || len(msgs) > 50 {
			t.Fatalf("event %T with %d messages, want a batch of 1 to 50", ev.GetEvent(), len(msgs))
		}
		biggest = max(biggest, len(msgs))
		for _, m := range msgs {
			if m.GetStreamSequence() != next || m.GetAckToken() == "" {
				t.Fatalf("message seq %d token %q, want seq %d with a token", m.GetStreamSequence(), m.GetAckToken(), next)
			}
			tokens = append(tokens, m.GetAckToken())
			next++
		}
	}
	if biggest < 2 {
		t.Errorf("500 queued messages came one per batch: batches never formed")
	}
	t.Logf("largest batch: %d messages", biggest)
	for i := 0; i < len(tokens); i += 100 {
		subAck(t, ctx, b, tokens[i:min(i+100, len(tokens))]...)
	}

	for _, n := range []int32{-1, 1001} {
		st, err := b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "BAT", MaxBatch: n})
		if err == nil {
			_, err = st.Recv()
		}
		if code, reason := subReason(err); code != codes.InvalidArgument || reason != "INVALID_ARGUMENT" {
			t.Errorf("max_batch %d: %v, want INVALID_ARGUMENT", n, err)
		}
	}
}

// TestConsumeBatches: Consume with max_batch delivers batches within the
// exact window, and takes acks in batches.
func TestConsumeBatches(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "CBAT", "cbat.>")
	subDurable(t, ctx, b.JS, "CBAT", "w", 60*time.Second)
	subPublishAsync(t, ctx, b.JS, "cbat.x", 300, 150)

	c, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "CBAT", Consumer: "w", MaxInFlight: 40, MaxBatch: 16})
	seen := map[uint64]bool{}
	held := 0
	for len(seen) < 300 {
		ev := subConsumeEvent(t, c, 10*time.Second, "consume batch")
		msgs := ev.GetBatch().GetMessages()
		if len(msgs) == 0 || len(msgs) > 16 {
			t.Fatalf("event %v, want a batch of 1 to 16", ev)
		}
		held += len(msgs)
		if held > 40 {
			t.Fatalf("%d messages delivered and unacked, window 40", held)
		}
		ops := make([]*jetwayv1.AckOperation, len(msgs))
		for i, m := range msgs {
			if seen[m.GetStreamSequence()] || m.GetNumDelivered() != 1 {
				t.Fatalf("seq %d again (delivered %d)", m.GetStreamSequence(), m.GetNumDelivered())
			}
			seen[m.GetStreamSequence()] = true
			ops[i] = &jetwayv1.AckOperation{Token: m.GetAckToken()}
		}
		if err := c.st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Acks{Acks: &jetwayv1.AckBatch{Operations: ops}}}); err != nil {
			t.Fatal(err)
		}
		held -= len(ops)
	}
	// An ack batch with a bad token: one ack_result for it, the good ones
	// pass silently.
	if err := c.st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Acks{Acks: &jetwayv1.AckBatch{Operations: []*jetwayv1.AckOperation{{Token: "forged"}}}}}); err != nil {
		t.Fatal(err)
	}
	if r := subConsumeEvent(t, c, 5*time.Second, "ack result").GetAckResult(); r.GetToken() != "forged" || r.GetError().GetReason() != "ACK_TOKEN_INVALID" {
		t.Errorf("ack result %v, want ACK_TOKEN_INVALID for the forged token", r)
	}
	// An empty ack batch ends the stream with INVALID_ARGUMENT.
	if err := c.st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Acks{Acks: &jetwayv1.AckBatch{}}}); err != nil {
		t.Fatal(err)
	}
	if err := subEnd(t, c.ch, 5*time.Second, "after an empty ack batch"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty ack batch: %v, want INVALID_ARGUMENT", err)
	}
	// Everything was acked: nothing is pending on the consumer.
	cons, err := b.JS.Consumer(ctx, "CBAT", "w")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.AckFloor.Stream == 300 && ci.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack floor %d, ack pending %d; want 300 and 0", ci.AckFloor.Stream, ci.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscribeRESTSSEBatches: over SSE a batch is one "batch" event whose
// id is its last message's sequence, so Last-Event-ID resumes after the
// whole batch.
func TestSubscribeRESTSSEBatches(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "SSEB", "sseb.>")
	subPublish(t, ctx, b.JS, "sseb.x", 30)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, lines := subHTTP(t, sctx, b, "/v1/streams/SSEB:subscribe?max_batch=10", "Accept", "text/event-stream")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ev := subSSE(t, lines, 5*time.Second, "first event"); ev.event != "subscribed" {
		t.Fatalf("first event %+v", ev)
	}
	for next := uint64(1); next <= 30; {
		ev := subSSEMsg(t, lines, 5*time.Second, "batch event")
		var r jetwayv1.SubscribeResponse
		if err := protojson.Unmarshal([]byte(ev.data), &r); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		msgs := r.GetBatch().GetMessages()
		if ev.event != "batch" || len(msgs) == 0 || len(msgs) > 10 {
			t.Fatalf("event %+v, want a batch of 1 to 10", ev)
		}
		for _, m := range msgs {
			if m.GetStreamSequence() != next {
				t.Fatalf("seq %d, want %d", m.GetStreamSequence(), next)
			}
			next++
		}
		if ev.id != strconv.FormatUint(next-1, 10) {
			t.Errorf("batch ending at %d has id %q", next-1, ev.id)
		}
	}
}
