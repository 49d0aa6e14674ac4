package bridge_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestClosedStreamRedeliversInDeliveryOrder: the messages a Subscribe or
// Consume stream held unacked when it closed are NAKed so that the next
// client gets them in the order they were first delivered (stream order
// here), not reversed or shuffled.
func TestClosedStreamRedeliversInDeliveryOrder(t *testing.T) {
	t.Parallel()
	const n = 40
	for _, rpc := range []string{"Subscribe", "Consume"} {
		t.Run(rpc, func(t *testing.T) {
			t.Parallel()
			b, ctx := subStart(t)
			subStream(t, ctx, b.JS, "S", "s.>")
			subDurable(t, ctx, b.JS, "S", "d", time.Minute)
			subPublish(t, ctx, b.JS, "s.x", n)
			req := &jetwayv1.SubscribeRequest{Stream: "S", Consumer: "d", MaxInFlight: n}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var closeStream func()
			switch rpc {
			case "Subscribe":
				st, err := b.Messages.Subscribe(sctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Recv(); err != nil { // subscribed
					t.Fatal(err)
				}
				closeStream = cancel
			case "Consume":
				st, err := b.Messages.Consume(sctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: req}}); err != nil {
					t.Fatal(err)
				}
				closeStream = func() {
					// A half-close ends Consume; its status comes once the
					// handler has NAKed what it held.
					if err := st.CloseSend(); err != nil {
						t.Fatal(err)
					}
					for {
						if _, err := st.Recv(); err != nil {
							if !errors.Is(err, io.EOF) {
								t.Logf("Consume ended: %v", err)
							}
							return
						}
					}
				}
			}
			// Every message delivered to the bridge and none acked.
			waitConsumer(t, ctx, b.JS, "S", "d", func(ci *jetstream.ConsumerInfo) bool {
				return ci.Delivered.Consumer >= n && ci.NumAckPending == n
			})
			// JetStream's NAK advisories say when the bridge's NAKs have
			// all been taken: fetching before would race with them.
			naks, err := b.JS.Conn().SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.d")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = naks.Unsubscribe() }()
			if err := b.JS.Conn().Flush(); err != nil {
				t.Fatal(err)
			}
			closeStream()
			naked := 0
			for ; naked < n; naked++ {
				if _, err := naks.NextMsg(10 * time.Second); err != nil {
					// Under heavy load a message can reach the pull inbox
					// after the puller stopped: it comes back only after
					// its ack wait. The order of the others is checked.
					t.Logf("%d of %d NAK advisories: %v", naked, n, err)
					break
				}
			}
			if naked == 0 {
				t.Fatal("no NAK advisory: the bridge NAKed nothing")
			}
			var got []uint64
			deadline := time.Now().Add(20 * time.Second)
			for len(got) < naked && time.Now().Before(deadline) {
				resp, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "d", Batch: n, Wait: nil, NoWait: true})
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range resp.GetMessages() {
					got = append(got, m.GetStreamSequence())
				}
				if len(resp.GetMessages()) == 0 {
					time.Sleep(50 * time.Millisecond) // the NAKs are on their way
				}
			}
			if len(got) < naked {
				t.Fatalf("fetched %d of %d NAKed redeliveries: %v", len(got), naked, got)
			}
			// A message that reached the pull inbox after the puller
			// stopped (the last delivered: the highest sequences) is
			// NAKed on its own as it arrives, possibly before the others:
			// the order is checked without those.
			late := uint64(n - naked)
			inOrder := slices.DeleteFunc(slices.Clone(got), func(seq uint64) bool { return seq > uint64(n)-late })
			if !slices.IsSorted(inOrder) {
				t.Fatalf("redelivered in order %v (%d late), want ascending (delivery order)", got, late)
			}
		})
	}
}

// waitConsumer polls a consumer's info until ok, for at most 10 s.
func waitConsumer(t testing.TB, ctx context.Context, js jetstream.JetStream, stream, name string, ok func(*jetstream.ConsumerInfo) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := js.Consumer(ctx, stream, name)
		if err != nil {
			t.Fatal(err)
		}
		ci := c.CachedInfo()
		if ok(ci) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s/%s: delivered %d, ack pending %d after 10s", stream, name, ci.Delivered.Consumer, ci.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
