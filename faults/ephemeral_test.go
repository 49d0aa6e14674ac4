package faults

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestEphemeralConsumerAfterBridgeKill measures how long an ephemeral
// consumer of a Subscribe outlives a bridge SIGKILLed while it held
// unacked messages. JetStream drops the dead bridge's pull requests (their
// inbox has no interest any more), then waits for the ack wait of the last
// message delivered, then the consumer's inactive threshold (10 s, the
// bridge's default for ephemerals), checked on JetStream's own timer:
// with a 5 s ack wait, 15–25 s (seen: 20.4 s). Before, with a 30 s
// threshold and the default 30 s ack wait, 66–91 s were seen.
func TestEphemeralConsumerAfterBridgeKill(t *testing.T) {
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	createStream(t, b, "EPH", 1, "eph.>")
	_, js := nativeJS(t, ns.url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for range 10 {
		if _, err := js.Publish(ctx, "eph.x", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sub, err := b.msgs.Subscribe(sctx, &jetwayv1.SubscribeRequest{Stream: "EPH", Config: &jetwayv1.ConsumerConfig{AckWait: durationpb.New(5 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 3; {
		resp, err := sub.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetMessage() != nil {
			got++
		}
	}
	consumers := func() int {
		st, err := js.Stream(ctx, "EPH")
		if err != nil {
			return -1 // not known now: poll again
		}
		return st.CachedInfo().State.Consumers
	}
	if n := consumers(); n != 1 {
		t.Fatalf("%d consumers while subscribed, want the one ephemeral", n)
	}
	b.Kill()
	killed := time.Now()
	for consumers() != 0 {
		if time.Since(killed) > 60*time.Second {
			t.Fatal("the ephemeral consumer still exists 60 s after its bridge was killed")
		}
		time.Sleep(250 * time.Millisecond)
	}
	linger := time.Since(killed)
	t.Logf("FAULTS: {\"scenario\":\"ephemeral-linger-bridge-kill\",\"ack_wait_ms\":5000,\"inactive_threshold_ms\":10000,\"linger_ms\":%d}", linger.Milliseconds())
	if linger > 25*time.Second {
		t.Errorf("the ephemeral consumer lingered %s, want about its ack wait (5 s) + its inactive threshold (10 s)", linger)
	}
}
