package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// Tests of the puller: the pull requests Subscribe and Consume send for
// their window, and how they handle JetStream's answers to them. (The
// release of a closed stream's window, pulled and never handed over, is
// TestSubscribeCloseReleasesPrefetched's.)

// ---------------------------------------------------------------------------
// Helpers (prefixed pull).

// pullRequest is one pull request seen on a consumer's MSG.NEXT subject.
type pullRequest struct {
	at       time.Time
	raw      string
	Batch    int           `json:"batch"`
	MaxBytes int           `json:"max_bytes"`
	Expires  time.Duration `json:"expires"`
}

// pullRequests records the pull requests any client sends to a consumer,
// seen through a plain NATS subscription on its MSG.NEXT subject (JetStream
// takes them from the same subject, so the watcher changes nothing).
type pullRequests struct {
	mu   sync.Mutex
	reqs []pullRequest
}

func pullWatch(t testing.TB, nc *nats.Conn, stream, consumer string) *pullRequests {
	t.Helper()
	w := &pullRequests{}
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+stream+"."+consumer, func(m *nats.Msg) {
		r := pullRequest{at: time.Now(), raw: string(m.Data)}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			r.Batch = -1 // not a JSON request: reported by the callers' checks
		}
		w.mu.Lock()
		w.reqs = append(w.reqs, r)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("watch pull requests: %v", err)
	}
	// The watcher must be in place before the bridge sends anything.
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatalf("pending limits: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// since returns the requests seen at or after from.
func (w *pullRequests) since(from time.Time) []pullRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []pullRequest
	for _, r := range w.reqs {
		if !r.at.Before(from) {
			out = append(out, r)
		}
	}
	return out
}

// pullWaiting polls the consumer until n pull requests wait on it.
func pullWaiting(t testing.TB, ctx context.Context, js jetstream.JetStream, stream, consumer string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Fatalf("consumer %s: %v", consumer, err)
		}
		got := c.CachedInfo().NumWaiting
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s has %d pull requests waiting after %v, want %d", consumer, got, d, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pullEnd waits at most d for the stream to end and returns its error,
// failing on any message before the end (heartbeats are skipped).
func pullEnd[T interface{ GetMessage() *jetwayv1.Message }](t testing.TB, ch <-chan subItem[T], d time.Duration, what string) error {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case it, ok := <-ch:
			if !ok {
				t.Fatalf("%s: stream reader gone without an error", what)
			}
			if it.err != nil {
				return it.err
			}
			if m := it.v.GetMessage(); m != nil {
				t.Fatalf("%s: unexpected message seq %d (%d bytes) before the end", what, m.GetStreamSequence(), len(m.GetData()))
			}
		case <-timer.C:
			t.Fatalf("%s: stream did not end within %v", what, d)
		}
	}
}

// pullWantErr checks a stream's end against a code and reason (and, when
// inMessage is set, text its message must contain).
func pullWantErr(t testing.TB, what string, err error, code codes.Code, reason, inMessage string) {
	t.Helper()
	gotCode, gotReason := subReason(err)
	if gotCode != code || gotReason != reason {
		t.Errorf("%s: ended with %v (reason %q), want %v %s", what, err, gotReason, code, reason)
	}
	if msg := status.Convert(err).Message(); inMessage != "" && !strings.Contains(msg, inMessage) {
		t.Errorf("%s: message %q does not mention %q", what, msg, inMessage)
	}
}

// pullConsumer creates a consumer natively with explicit acks.
func pullConsumer(t testing.TB, ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) {
	t.Helper()
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	if _, err := js.CreateConsumer(ctx, stream, cfg); err != nil {
		t.Fatalf("create consumer %s: %v", cfg.Durable, err)
	}
}

// pullAckDrained polls the consumer until nothing is ack pending, and
// checks nothing was redelivered.
func pullAckDrained(t testing.TB, ctx context.Context, js jetstream.JetStream, stream, consumer string, delivered uint64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Fatalf("consumer %s: %v", consumer, err)
		}
		ci := c.CachedInfo()
		if ci.NumAckPending == 0 {
			if ci.NumRedelivered != 0 || ci.Delivered.Stream != delivered || ci.AckFloor.Stream != delivered {
				t.Errorf("consumer %s: redelivered %d, delivered up to %d, ack floor %d; want 0, %d, %d",
					consumer, ci.NumRedelivered, ci.Delivered.Stream, ci.AckFloor.Stream, delivered, delivered)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("consumer %s: %d acks pending %v after the last message was acked", consumer, ci.NumAckPending, d)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Load.

// TestConsumeNoDropsUnderLoad streams 5,000 queued messages through a small
// window (max_in_flight 32) on a consumer with a 60s ack wait: every one
// must arrive, once, within 25s. A message lost on the way (a "slow
// consumer" drop of the bridge's pull inbox) would come again only after
// the ack wait, so it fails the test.
func TestConsumeNoDropsUnderLoad(t *testing.T) {
	t.Parallel()
	b, _ := subStart(t)
	const n = 5000
	// Far below the 60s ack wait: a dropped message cannot come back in
	// time, however loaded the machine.
	const within = 25 * time.Second

	// check records one delivery.
	check := func(t *testing.T, seen map[uint64]bool, m *jetwayv1.Message) {
		t.Helper()
		s := m.GetStreamSequence()
		if seen[s] {
			t.Errorf("seq %d delivered twice (num_delivered %d)", s, m.GetNumDelivered())
		}
		if m.GetNumDelivered() != 1 {
			t.Errorf("seq %d num_delivered %d, want 1 (ack wait 60s, every message acked)", s, m.GetNumDelivered())
		}
		seen[s] = true
	}
	report := func(t *testing.T, seen map[uint64]bool, start time.Time) {
		t.Helper()
		if missing := subMissing(seen, n); len(missing) > 0 {
			t.Fatalf("%d of %d messages did not arrive within %v (ack wait 60s): e.g. %v; dropped on the way to the client?",
				len(missing), n, within, missing[:min(10, len(missing))])
		}
		t.Logf("%d messages in %v", n, time.Since(start).Round(time.Millisecond))
	}

	t.Run("consume", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 2*time.Minute)
		subStream(t, ctx, b.JS, "LOADC", "loadc.>")
		subDurable(t, ctx, b.JS, "LOADC", "c", time.Minute)
		subPublishAsync(t, ctx, b.JS, "loadc.x", n, 500)

		start := time.Now()
		c, info := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "LOADC", Consumer: "c", MaxInFlight: 32})
		if info.GetMaxInFlight() != 32 {
			t.Fatalf("subscribed %v, want max_in_flight 32", info)
		}
		seen := map[uint64]bool{}
		timer := time.NewTimer(within)
		defer timer.Stop()
	read:
		for len(seen) < n {
			select {
			case it, ok := <-c.ch:
				if !ok || it.err != nil {
					t.Fatalf("consume ended after %d messages: %v", len(seen), it.err)
				}
				switch ev := it.v; {
				case ev.GetMessage() != nil:
					check(t, seen, ev.GetMessage())
					subConsumeAck(t, c, &jetwayv1.AckOperation{Token: ev.GetMessage().GetAckToken()})
				case ev.GetAckResult() != nil:
					t.Errorf("ack result %v", ev.GetAckResult())
				case ev.GetHeartbeat() != nil:
				default:
					t.Fatalf("unexpected event %v", ev)
				}
			case <-timer.C:
				break read
			}
		}
		report(t, seen, start)
		pullAckDrained(t, ctx, b.JS, "LOADC", "c", n, 5*time.Second)
	})

	t.Run("subscribe", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 2*time.Minute)
		subStream(t, ctx, b.JS, "LOADS", "loads.>")
		subDurable(t, ctx, b.JS, "LOADS", "s", time.Minute)
		subPublishAsync(t, ctx, b.JS, "loads.x", n, 500)

		ack := func(tokens []string) {
			t.Helper()
			ops := make([]*jetwayv1.AckOperation, len(tokens))
			for i, tok := range tokens {
				ops[i] = &jetwayv1.AckOperation{Token: tok}
			}
			resp, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Operations: ops})
			if err != nil {
				t.Fatalf("ack: %v", err)
			}
			for i, r := range resp.GetResults() {
				if r.GetError() != nil {
					t.Errorf("ack result %d: %v", i, r.GetError())
				}
			}
		}
		start := time.Now()
		ch, info, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "LOADS", Consumer: "s", MaxInFlight: 32})
		defer cancel()
		if info.GetMaxInFlight() != 32 {
			t.Fatalf("subscribed %v, want max_in_flight 32", info)
		}
		seen := map[uint64]bool{}
		var tokens []string
		timer := time.NewTimer(within)
		defer timer.Stop()
	read:
		for len(seen) < n {
			select {
			case it, ok := <-ch:
				if !ok || it.err != nil {
					t.Fatalf("subscribe ended after %d messages: %v", len(seen), it.err)
				}
				m := it.v.GetMessage()
				if m == nil {
					continue
				}
				check(t, seen, m)
				if tokens = append(tokens, m.GetAckToken()); len(tokens) == 100 {
					ack(tokens)
					tokens = tokens[:0]
				}
			case <-timer.C:
				break read
			}
		}
		if len(tokens) > 0 {
			ack(tokens)
		}
		report(t, seen, start)
		pullAckDrained(t, ctx, b.JS, "LOADS", "s", n, 5*time.Second)
	})
}

// ---------------------------------------------------------------------------
// The consumer's limits on pull requests.

// TestSubscribeConsumerRequestLimits subscribes to a consumer that accepts
// pull requests of at most 3 messages waiting at most 2s: the bridge must
// size its requests to that (rather than fail, or stall), and renew them
// as they expire on an idle stream.
func TestSubscribeConsumerRequestLimits(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "RL", "rl.>")
	pullConsumer(t, ctx, b.JS, "RL", jetstream.ConsumerConfig{
		Durable: "rl", AckWait: 30 * time.Second, MaxRequestBatch: 3, MaxRequestExpires: 2 * time.Second,
	})
	w := pullWatch(t, b.JS.Conn(), "RL", "rl")
	subPublish(t, ctx, b.JS, "rl.x", 20)

	opened := time.Now()
	ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "RL", Consumer: "rl", MaxInFlight: 50})
	defer cancel()
	for want := uint64(1); want <= 20; want++ {
		m := subMsg(t, ch, 5*time.Second, fmt.Sprintf("message %d of 20 (consumer max_batch 3)", want))
		if m.GetStreamSequence() != want || m.GetNumDelivered() != 1 {
			t.Fatalf("seq %d (num_delivered %d), want %d (1)", m.GetStreamSequence(), m.GetNumDelivered(), want)
		}
	}

	// Idle for longer than the requests' 2s: they expire and must be
	// renewed; the stream must neither end nor deliver anything.
	idle := time.Now()
	subNoMsg(t, ch, 5*time.Second, "idle stream (requests expiring every 2s)")
	renewed := len(w.since(idle))
	subPublish(t, ctx, b.JS, "rl.y", 5)
	for want := uint64(21); want <= 25; want++ {
		m := subMsg(t, ch, 5*time.Second, fmt.Sprintf("message %d after the idle period", want))
		if m.GetStreamSequence() != want {
			t.Fatalf("seq %d, want %d", m.GetStreamSequence(), want)
		}
	}

	reqs := w.since(opened)
	t.Logf("%d pull requests in all, %d sent during the 5s idle period", len(reqs), renewed)
	if renewed == 0 {
		t.Errorf("no pull request sent during 5s of idleness, with the consumer's max_expires 2s")
	}
	for _, r := range reqs {
		if r.Batch < 1 || r.Batch > 3 || r.Expires <= 0 || r.Expires > 2*time.Second {
			t.Errorf("pull request %s: outside the consumer's limits (max_batch 3, max_expires 2s)", r.raw)
		}
	}
}

// ---------------------------------------------------------------------------
// max_bytes_in_flight.

// TestSubscribeMessageLargerThanByteWindow: a message that cannot fit in
// the stream's byte window ends the stream with RESOURCE_EXHAUSTED at once
// (rather than stall it); messages that fit one at a time all arrive.
func TestSubscribeMessageLargerThanByteWindow(t *testing.T) {
	t.Parallel()
	b, _ := subStart(t)

	t.Run("subscribe too large", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "BIGS", "bigs.>")
		if _, err := b.JS.Publish(ctx, "bigs.x", make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		ch, info, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "BIGS", MaxBytesInFlight: 1024})
		defer cancel()
		if info.GetMaxBytesInFlight() != 1024 {
			t.Errorf("subscribed %v, want max_bytes_in_flight 1024", info)
		}
		start := time.Now()
		err := pullEnd(t, ch, 10*time.Second, "subscribe with a 4096-byte message, max_bytes_in_flight 1024")
		pullWantErr(t, "subscribe", err, codes.ResourceExhausted, "LIMIT_EXCEEDED", "max_bytes_in_flight")
		t.Logf("ended %v after subscribing: %v", time.Since(start).Round(time.Millisecond), err)
	})

	t.Run("consume too large", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "BIGC", "bigc.>")
		subDurable(t, ctx, b.JS, "BIGC", "c", 30*time.Second)
		if _, err := b.JS.Publish(ctx, "bigc.x", make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		c, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "BIGC", Consumer: "c", MaxBytesInFlight: 1024})
		err := pullEnd(t, c.ch, 10*time.Second, "consume with a 4096-byte message, max_bytes_in_flight 1024")
		pullWantErr(t, "consume", err, codes.ResourceExhausted, "LIMIT_EXCEEDED", "max_bytes_in_flight")
	})

	// 600 bytes of payload: one message fits in 1024 bytes, two do not.
	t.Run("subscribe fits alone", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "MIDS", "mids.>")
		for i := 0; i < 10; i++ {
			if _, err := b.JS.Publish(ctx, "mids.x", make([]byte, 600)); err != nil {
				t.Fatal(err)
			}
		}
		ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "MIDS", MaxBytesInFlight: 1024})
		defer cancel()
		deadline := time.Now().Add(10 * time.Second)
		for want := uint64(1); want <= 10; want++ {
			m := subMsg(t, ch, time.Until(deadline), fmt.Sprintf("600-byte message %d of 10, max_bytes_in_flight 1024", want))
			if m.GetStreamSequence() != want || len(m.GetData()) != 600 {
				t.Fatalf("seq %d with %d bytes, want seq %d with 600", m.GetStreamSequence(), len(m.GetData()), want)
			}
		}
	})

	t.Run("consume fits alone", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "MIDC", "midc.>")
		subDurable(t, ctx, b.JS, "MIDC", "c", 30*time.Second)
		for i := 0; i < 10; i++ {
			if _, err := b.JS.Publish(ctx, "midc.x", make([]byte, 600)); err != nil {
				t.Fatal(err)
			}
		}
		c, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "MIDC", Consumer: "c", MaxBytesInFlight: 1024})
		for want := uint64(1); want <= 10; want++ {
			m := subConsumeMsgs(t, c, 1, fmt.Sprintf("600-byte message %d of 10, max_bytes_in_flight 1024", want))[0]
			if m.GetStreamSequence() != want || len(m.GetData()) != 600 {
				t.Fatalf("seq %d with %d bytes, want seq %d with 600", m.GetStreamSequence(), len(m.GetData()), want)
			}
			if want == 1 {
				// The window holds one: the next comes only after the ack.
				subConsumeQuiet(t, c, 300*time.Millisecond, "a second 600-byte message while one is unacked (max_bytes_in_flight 1024)")
			}
			subConsumeAck(t, c, &jetwayv1.AckOperation{Token: m.GetAckToken()})
		}
	})
}

// ---------------------------------------------------------------------------
// max_waiting.

// TestSubscribeMaxWaitingExceeded: on a consumer taking one waiting pull
// request, a second Subscribe ends with RESOURCE_EXHAUSTED while the first
// keeps working.
func TestSubscribeMaxWaitingExceeded(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "MW", "mw.>")
	pullConsumer(t, ctx, b.JS, "MW", jetstream.ConsumerConfig{Durable: "w", AckWait: 30 * time.Second, MaxWaiting: 1})

	first, _, cancel1 := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "MW", Consumer: "w"})
	defer cancel1()
	pullWaiting(t, ctx, b.JS, "MW", "w", 1, 5*time.Second)

	second, _, cancel2 := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "MW", Consumer: "w"})
	defer cancel2()
	err := pullEnd(t, second, 10*time.Second, "second Subscribe on a consumer with max_waiting 1")
	pullWantErr(t, "second Subscribe", err, codes.ResourceExhausted, "LIMIT_EXCEEDED", "")

	subPublish(t, ctx, b.JS, "mw.x", 1)
	if m := subMsg(t, first, 5*time.Second, "first Subscribe after the second was refused"); m.GetStreamSequence() != 1 {
		t.Errorf("first got seq %d, want 1", m.GetStreamSequence())
	}
}

// TestSubscribeMaxWaitingExceededNoRequestStorm: a Subscribe with
// max_in_flight 4 and max_bytes_in_flight 1024 on a consumer taking one
// waiting pull request receives a 300-byte message; its open request has
// room for 3 more, so it wants to pull one more (a quarter of its window,
// messages and bytes, is free), and JetStream refuses that request
// (Exceeded MaxWaiting). The stream goes on with the request it has, but
// must not retry the refused pull at once, over and over.
func TestSubscribeMaxWaitingExceededNoRequestStorm(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "MWS", "mws.>")
	pullConsumer(t, ctx, b.JS, "MWS", jetstream.ConsumerConfig{Durable: "w", AckWait: 30 * time.Second, MaxWaiting: 1})
	w := pullWatch(t, b.JS.Conn(), "MWS", "w")

	ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "MWS", Consumer: "w", MaxInFlight: 4, MaxBytesInFlight: 1024})
	defer cancel()
	pullWaiting(t, ctx, b.JS, "MWS", "w", 1, 5*time.Second)
	publish := func() {
		t.Helper()
		if _, err := b.JS.Publish(ctx, "mws.x", make([]byte, 300)); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	subMsg(t, ch, 5*time.Second, "first message")

	from := time.Now()
	subNoMsg(t, ch, 2*time.Second, "idle after one message")
	reqs := w.since(from)
	// Nothing expires within these 2s (requests wait 30s): a handful of
	// retries at most, not one per round trip.
	if len(reqs) > 10 {
		t.Errorf("%d pull requests in 2s of idleness (e.g. %s): the refused pull is retried in a loop", len(reqs), reqs[0].raw)
	} else {
		t.Logf("%d pull requests in 2s of idleness", len(reqs))
	}
	publish()
	if m := subMsg(t, ch, 5*time.Second, "second message"); m.GetStreamSequence() != 2 {
		t.Errorf("second message seq %d, want 2", m.GetStreamSequence())
	}
}

// ---------------------------------------------------------------------------
// Consumer deleted.

// TestSubscribeConsumerDeletedMidStream deletes the consumer under open
// streams: each ends with NOT_FOUND, whether a pull request of the stream
// was waiting on the consumer or its window was full.
func TestSubscribeConsumerDeletedMidStream(t *testing.T) {
	t.Parallel()
	b, _ := subStart(t)
	const within = 10 * time.Second

	del := func(t *testing.T, ctx context.Context, stream, consumer string) time.Time {
		t.Helper()
		if err := b.JS.DeleteConsumer(ctx, stream, consumer); err != nil {
			t.Fatalf("delete consumer: %v", err)
		}
		return time.Now()
	}

	t.Run("subscribe", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "CDS", "cds.>")
		subDurable(t, ctx, b.JS, "CDS", "d", 30*time.Second)
		subPublish(t, ctx, b.JS, "cds.x", 1)
		ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "CDS", Consumer: "d"})
		defer cancel()
		subMsg(t, ch, 5*time.Second, "message before the delete")
		pullWaiting(t, ctx, b.JS, "CDS", "d", 1, 5*time.Second)
		deleted := del(t, ctx, "CDS", "d")
		err := pullEnd(t, ch, within, "subscribe after its consumer was deleted")
		pullWantErr(t, "subscribe", err, codes.NotFound, "CONSUMER_NOT_FOUND", "")
		t.Logf("ended %v after the delete: %v", time.Since(deleted).Round(time.Millisecond), err)
	})

	t.Run("consume waiting", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "CDW", "cdw.>")
		subDurable(t, ctx, b.JS, "CDW", "d", 30*time.Second)
		c, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "CDW", Consumer: "d", MaxInFlight: 2})
		pullWaiting(t, ctx, b.JS, "CDW", "d", 1, 5*time.Second)
		deleted := del(t, ctx, "CDW", "d")
		err := pullEnd(t, c.ch, within, "consume (request waiting) after its consumer was deleted")
		pullWantErr(t, "consume", err, codes.NotFound, "CONSUMER_NOT_FOUND", "")
		t.Logf("ended %v after the delete: %v", time.Since(deleted).Round(time.Millisecond), err)
	})

	t.Run("consume window full", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "CDF", "cdf.>")
		subDurable(t, ctx, b.JS, "CDF", "d", 30*time.Second)
		subPublish(t, ctx, b.JS, "cdf.x", 5)
		// With no pull request open, the stream learns of the deletion on
		// its next idle heartbeat.
		c, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "CDF", Consumer: "d", MaxInFlight: 2, Heartbeat: durationpb.New(time.Second)})
		subConsumeMsgs(t, c, 2, "window of 2")
		subConsumeQuiet(t, c, 300*time.Millisecond, "a third message while 2 are unacked")
		deleted := del(t, ctx, "CDF", "d")
		err := pullEnd(t, c.ch, within, "consume (window full, nothing acked) after its consumer was deleted")
		pullWantErr(t, "consume", err, codes.NotFound, "CONSUMER_NOT_FOUND", "")
		t.Logf("ended %v after the delete: %v", time.Since(deleted).Round(time.Millisecond), err)
	})
}

// TestSubscribeNoDropsGrowingMessages: end to end, with batches and acks
// through Ack, messages that grow a little one after the other, so that
// most pull requests end early on their byte budget while others are
// open: every message arrives once, long before the 60s ack wait would
// bring back one lost on the way. (TestPullerAccountingStaysWithinWindow
// checks the per-request accounting this depends on directly.)
func TestSubscribeNoDropsGrowingMessages(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	const n = 30000
	subStream(t, ctx, b.JS, "GROW", "grow.>")
	subDurable(t, ctx, b.JS, "GROW", "g", time.Minute)
	for done := 0; done < n; {
		for i := done; i < done+500; i++ {
			if _, err := b.JS.PublishAsync("grow.x", make([]byte, 16+i/100)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-b.JS.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		done += 500
	}

	start := time.Now()
	ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "GROW", Consumer: "g", MaxInFlight: 1024, MaxBatch: 256})
	defer cancel()
	seen := map[uint64]bool{}
	var tokens []string
	deadline := time.Now().Add(25 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		select {
		case it := <-ch:
			if it.err != nil {
				t.Fatalf("after %d messages: %v", len(seen), it.err)
			}
			for _, m := range it.v.GetBatch().GetMessages() {
				if seen[m.GetStreamSequence()] || m.GetNumDelivered() != 1 {
					t.Errorf("seq %d again (num_delivered %d)", m.GetStreamSequence(), m.GetNumDelivered())
				}
				seen[m.GetStreamSequence()] = true
				if tokens = append(tokens, m.GetAckToken()); len(tokens) == 100 {
					subAck(t, ctx, b, tokens...)
					tokens = tokens[:0]
				}
			}
		case <-time.After(time.Until(deadline)):
		}
	}
	if missing := subMissing(seen, n); len(missing) > 0 {
		t.Fatalf("%d of %d messages did not arrive within 25s (ack wait 60s): e.g. %v: dropped by an overflowing inbox?", len(missing), n, missing[:min(10, len(missing))])
	}
	t.Logf("%d messages in %v", n, time.Since(start).Round(time.Millisecond))
}
