package faults

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// samplePeriod spreads about 20 resource samples over a scenario.
func samplePeriod(d time.Duration) time.Duration { return max(time.Second, d/20) }

// pause waits d or until ctx is done: the pacing of fault injection, never
// a wait for a condition.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// stopAndRead waits until the clients recovered from the last fault, stops
// them (stop, then done closes), and reads stream back natively.
func stopAndRead(t *testing.T, chk *Checker, stop context.CancelFunc, done <-chan struct{}, urls, stream string) []StoredMsg {
	t.Helper()
	if err := waitFor(context.Background(), 30*time.Second, nil, "clients recovered after the last fault", chk.Recovered); err != nil {
		t.Error(err)
	}
	stop()
	select {
	case <-done:
	case <-time.After(retryBudget + callDeadline):
		t.Fatal("clients did not stop")
	}
	_, js := nativeJS(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stored, err := ReadStream(ctx, js, stream)
	if err != nil {
		t.Fatalf("read %s back: %v", stream, err)
	}
	return stored
}

// TestPublishNATSKill: unary Publish from 4 clients while nats-server is
// SIGKILLed and restarted on the same store and port every ~2 s.
func TestPublishNATSKill(t *testing.T) {
	d := duration(t, 9*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(d))
	createStream(t, b, "S1", 1, "s1.>")

	chk := NewChecker()
	p := &publisher{msgs: b.msgs, chk: chk, subject: "s1.x"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s1", 4, 0) }()

	for end := time.Now().Add(d); time.Now().Before(end); {
		pause(ctx, 2*time.Second)
		healed := chk.FaultStart("SIGKILL nats-server")
		ns.Kill()
		pause(ctx, 200*time.Millisecond)
		ns.restart(t)
		healed()
	}
	stored := stopAndRead(t, chk, stop, done, ns.url, "S1")
	finish(t, chk, "publish-nats-kill", stored, CheckOptions{MsgIDs: true})
}

// TestSubscribeAckBridgeKill: a durable consumer read through the bridge's
// Subscribe and acked message by message with the Ack RPC while the bridge
// is SIGKILLed and restarted twice; messages are published natively
// meanwhile. Every message must be delivered and acked back; duplicate
// deliveries are counted.
func TestSubscribeAckBridgeKill(t *testing.T) {
	d := duration(t, 8*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(d))
	createStream(t, b, "S2", 1, "s2.>")
	cctx, ccancel := context.WithTimeout(context.Background(), callDeadline)
	_, err := b.admin.CreateConsumer(cctx, &jetwayv1.CreateConsumerRequest{Stream: "S2", Config: &jetwayv1.ConsumerConfig{
		Name: "c2", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT, AckWait: durationpb.New(2 * time.Second),
	}})
	ccancel()
	if err != nil {
		t.Fatal(err)
	}
	_, js := nativeJS(t, ns.url)

	chk := NewChecker()
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); nativePublisher(pubCtx, t, js, chk, "s2.x", "s2", 2*time.Millisecond) }()
	conCtx, stopCon := context.WithCancel(context.Background())
	defer stopCon()
	c := &consumer{msgs: b.msgs, chk: chk, stream: "S2", name: "c2", logf: t.Logf}
	conDone := make(chan struct{})
	go func() { defer close(conDone); c.run(conCtx, 4) }()

	kills := max(2, int(d/(4*time.Second)))
	for i := range kills {
		pause(pubCtx, d/time.Duration(kills+1))
		healed := chk.FaultStart("SIGKILL bridge")
		b.Kill()
		pause(pubCtx, 300*time.Millisecond)
		b.restart(t)
		healed()
		_ = i
	}
	pause(pubCtx, d/time.Duration(kills+1))
	stopPub()
	<-pubDone

	_, cons := nativeConsumer(t, js, "S2", "c2")
	if err := waitFor(context.Background(), 60*time.Second, b.proc, "every message acked back", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && chk.Recovered()
	}); err != nil {
		info, _ := cons.Info(context.Background())
		if info != nil {
			t.Logf("consumer: pending %d, ack pending %d, redelivered %d, delivered %+v, ack floor %+v",
				info.NumPending, info.NumAckPending, info.NumRedelivered, info.Delivered, info.AckFloor)
		}
		t.Error(err)
	}
	stopCon()
	select {
	case <-conDone:
	case <-time.After(2 * callDeadline):
		t.Fatal("consumer did not stop")
	}
	stored := stopAndRead(t, chk, func() {}, closed(), ns.url, "S2")
	r := finish(t, chk, "subscribe-ack-bridge-kill", stored, CheckOptions{MsgIDs: true, Consumer: true})
	t.Logf("subscribe streams opened %d, acks given up %d, duplicate deliveries %d", c.opens.Load(), c.ackFails.Load(), r.DuplicateDeliveries)
}

func closed() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func nativeConsumer(t testing.TB, js jetstream.JetStream, stream, name string) (jetstream.Stream, jetstream.Consumer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Consumer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// TestPublishNATSStop: unary Publish from 4 clients while nats-server is
// SIGSTOPped for 3 s, then SIGCONTed, twice: no call may return later than
// its deadline + 1 s, nothing acked may be lost.
func TestPublishNATSStop(t *testing.T) {
	d := duration(t, 8*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(d))
	createStream(t, b, "S3", 1, "s3.>")

	chk := NewChecker()
	p := &publisher{msgs: b.msgs, chk: chk, subject: "s3.x"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s3", 4, 0) }()

	for end := time.Now().Add(d); time.Now().Before(end); {
		pause(ctx, 2*time.Second)
		healed := chk.FaultStart("SIGSTOP nats-server 3s")
		if err := ns.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		pause(ctx, 3*time.Second)
		if err := ns.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		healed()
	}
	stored := stopAndRead(t, chk, stop, done, ns.url, "S3")
	finish(t, chk, "publish-nats-stop", stored, CheckOptions{MsgIDs: true})
}
