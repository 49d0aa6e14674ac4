package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// slowReader is a Subscribe or Consume stream read at the test's pace.
type slowReader interface {
	next() (*jetwayv1.Message, error) // the next message, skipping other events
}

type subscribeReader struct {
	st jetwayv1.MessageService_SubscribeClient
}

func (r subscribeReader) next() (*jetwayv1.Message, error) {
	for {
		ev, err := r.st.Recv()
		if err != nil {
			return nil, err
		}
		if m := ev.GetMessage(); m != nil {
			return m, nil
		}
	}
}

type consumeReader struct {
	st jetwayv1.MessageService_ConsumeClient
}

// next acks the message it returns on the stream, so that the window
// moves (Consume hands over only while fewer than max_in_flight are held).
func (r consumeReader) next() (*jetwayv1.Message, error) {
	for {
		ev, err := r.st.Recv()
		if err != nil {
			return nil, err
		}
		if m := ev.GetMessage(); m != nil {
			op := &jetwayv1.AckOperation{Token: m.GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_ACK}
			if err := r.st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Ack{Ack: op}}); err != nil {
				return nil, err
			}
			return m, nil
		}
		if res := ev.GetAckResult(); res != nil && res.GetError() != nil {
			return nil, fmt.Errorf("ack refused: %v", res.GetError())
		}
	}
}

// TestSlowReaderNeverStalls reads a stream slowly for longer than the
// bridge's pull requests live, then at full speed. A slow reader must slow
// its stream and nothing else: every message arrives once, in order, at
// once when the reader speeds up (not after the ack wait), the bridge's
// pull inbox drops nothing, and each message comes with its full ack wait
// ahead of it, however long it waited in the bridge.
//
// The consumer's max_expires (1s) makes the bridge's pull requests expire
// after 1s, so that the reader is slow compared with them within a few
// seconds; 4 KiB messages fill gRPC's flow-control windows after a few
// dozen, so the bridge's own window stays unread.
func TestSlowReaderNeverStalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T, ctx context.Context, b *jetwaytest.Bridge, req *jetwayv1.SubscribeRequest) slowReader
	}{
		{"subscribe", func(t *testing.T, ctx context.Context, b *jetwaytest.Bridge, req *jetwayv1.SubscribeRequest) slowReader {
			st, err := b.Messages.Subscribe(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if ev, err := st.Recv(); err != nil || ev.GetSubscribed() == nil {
				t.Fatalf("first event %v, %v", ev, err)
			}
			return subscribeReader{st}
		}},
		{"consume", func(t *testing.T, ctx context.Context, b *jetwaytest.Bridge, req *jetwayv1.SubscribeRequest) slowReader {
			st, err := b.Messages.Consume(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: req}}); err != nil {
				t.Fatal(err)
			}
			if ev, err := st.Recv(); err != nil || ev.GetSubscribed() == nil {
				t.Fatalf("first event %v, %v", ev, err)
			}
			return consumeReader{st}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs jetwaytest.LogBuffer
			b := jetwaytest.StartWithLogger(t, slog.New(slog.NewTextHandler(&logs, nil)))
			ctx := jetwaytest.Context(t, 90*time.Second)
			subStream(t, ctx, b.JS, "SLOWR", "slowr.>")
			const n = 240
			payload := bytes.Repeat([]byte("x"), 4<<10)
			for i := 0; i < n; i++ {
				if _, err := b.JS.Publish(ctx, "slowr.x", payload); err != nil {
					t.Fatal(err)
				}
			}
			const ackWait = 2 * time.Minute
			if _, err := b.JS.CreateConsumer(ctx, "SLOWR", jetstream.ConsumerConfig{
				Durable: "slow", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
				MaxRequestExpires: time.Second,
			}); err != nil {
				t.Fatal(err)
			}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			r := tc.open(t, sctx, b, &jetwayv1.SubscribeRequest{Stream: "SLOWR", Consumer: "slow", MaxInFlight: 64})

			check := func(m *jetwayv1.Message, want uint64, read time.Time) {
				t.Helper()
				if m.GetStreamSequence() != want || m.GetNumDelivered() != 1 {
					t.Fatalf("message %d: stream sequence %d, delivery %d: want sequence %d, first delivery", want, m.GetStreamSequence(), m.GetNumDelivered(), want)
				}
				// The token's deadline runs from the hand-over to gRPC,
				// not from when the message reached the bridge: what is
				// spent is the time in gRPC's flow-control windows (about
				// 32 messages here, 16s at this pace).
				if left := m.GetAckDeadline().AsTime().Sub(read); left < ackWait-30*time.Second {
					t.Fatalf("message %d came with %v of its %v ack wait left", want, left.Round(time.Millisecond), ackWait)
				}
			}
			// Slow: 2 messages a second for 12s, far longer than a pull
			// request lives (1s, given up 5s later when its end is lost).
			var seq uint64
			slowUntil := time.Now().Add(12 * time.Second)
			for time.Now().Before(slowUntil) {
				m, err := r.next()
				if err != nil {
					t.Fatal(err)
				}
				seq++
				check(m, seq, time.Now())
				time.Sleep(500 * time.Millisecond)
			}
			// Fast: the rest within 15s (about 0.1s of work).
			fast := time.Now()
			for seq < n {
				done := make(chan struct{})
				var m *jetwayv1.Message
				var err error
				go func() { defer close(done); m, err = r.next() }()
				select {
				case <-done:
				case <-time.After(15*time.Second - time.Since(fast)):
					t.Fatalf("after the slow phase, %d of %d messages came in %v and then none: the stream stalled (logs: %s)",
						seq, n, time.Since(fast).Round(time.Millisecond), dropLog(logs.String()))
				}
				if err != nil {
					t.Fatal(err)
				}
				seq++
				check(m, seq, time.Now())
			}
			t.Logf("%s: %d messages read slowly for 12s, then the rest in %v", tc.name, n, time.Since(fast).Round(time.Millisecond))
			// nats.go reports a full inbox channel to the connection's error
			// handler (logged) as it drops.
			if s := dropLog(logs.String()); s != "" {
				t.Errorf("the bridge dropped messages of a slow reader: %s", s)
			}
		})
	}
}

// dropLog returns the log lines about dropped messages.
func dropLog(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "dropped") || strings.Contains(l, "slow consumer") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
