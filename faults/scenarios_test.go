package faults

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

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
	b.sample(t, samplePeriod(t, d))
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
	consumeScenario(t, "subscribe-ack-bridge-kill", func(_ *natsNode, b *bridgeProc) {
		b.Kill()
		pause(context.Background(), 300*time.Millisecond)
		b.restart(t)
	})
}

// TestSubscribeAckNATSKill: the same consumer while nats-server is
// SIGKILLed and restarted on its store twice: the bridge's pulls and acks
// go through its reconnect.
func TestSubscribeAckNATSKill(t *testing.T) {
	consumeScenario(t, "subscribe-ack-nats-kill", func(ns *natsNode, _ *bridgeProc) {
		ns.Kill()
		pause(context.Background(), 300*time.Millisecond)
		ns.restart(t)
	})
}

// consumeScenario runs a consumer scenario: a native publisher feeds a
// stream, a durable consumer reads it through Subscribe and acks each
// message with the Ack RPC, and fault (a kill and restart) is injected at
// least twice.
func consumeScenario(t *testing.T, scenario string, fault func(*natsNode, *bridgeProc)) {
	d := duration(t, 8*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(t, d))
	createStream(t, b, "S", 1, "s.>")
	cctx, ccancel := context.WithTimeout(context.Background(), callDeadline)
	_, err := b.admin.CreateConsumer(cctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{
		Name: "c", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT, AckWait: durationpb.New(2 * time.Second),
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
	go func() { defer close(pubDone); nativePublisher(pubCtx, js, chk, "s.x", "m", 2*time.Millisecond) }()
	conCtx, stopCon := context.WithCancel(context.Background())
	defer stopCon()
	// 10 ms of work per message on 8 ackers: messages are delivered and
	// not yet acked when the fault hits; their acks are retried (a
	// restarted bridge has the same ack keys) or, past the ack wait,
	// given up and the message redelivered.
	c := &consumer{msgs: b.msgs, chk: chk, stream: "S", name: "c", logf: t.Logf, work: 10 * time.Millisecond}
	conDone := make(chan struct{})
	go func() { defer close(conDone); c.run(conCtx, 8) }()

	// At least two faults, then more while d lasts, one every gap.
	gap := min(d/3, 4*time.Second)
	for i, end := 0, time.Now().Add(d); i < 2 || time.Now().Add(gap).Before(end); i++ {
		pause(pubCtx, gap)
		healed := chk.FaultStart(scenario)
		fault(ns, b)
		healed()
	}
	pause(pubCtx, gap)
	stopPub()
	<-pubDone

	_, cons := nativeConsumer(t, js, "S", "c")
	if err := waitFor(context.Background(), 60*time.Second, b.proc, "every message acked back", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && chk.UnackedDeliveries() == 0 && chk.Recovered()
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
	stored := stopAndRead(t, chk, func() {}, closed(), ns.url, "S")
	r := finish(t, chk, scenario, stored, CheckOptions{MsgIDs: true, Consumer: true})
	t.Logf("subscribe streams opened %d, ack attempts retried %d, acks given up %d %v, duplicate deliveries %d",
		c.opens.Load(), c.ackRetry.Load(), c.ackFails.Load(), c.ackErrors(), r.DuplicateDeliveries)
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
// SIGSTOPped for 3 s, then SIGCONTed, then for 7 s (longer than the
// calls' 5 s deadline): no call may return later than its deadline + 1 s,
// nothing acked may be lost.
func TestPublishNATSStop(t *testing.T) {
	d := duration(t, 8*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(t, d))
	createStream(t, b, "S3", 1, "s3.>")

	chk := NewChecker()
	p := &publisher{msgs: b.msgs, chk: chk, subject: "s3.x"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s3", 4, 0) }()

	// Stops of 3 s (under the calls' deadline) and 7 s (past it: the
	// calls must end at their deadline, not when the server comes back)
	// alternate.
	for i, end := 0, time.Now().Add(d); i < 2 || time.Now().Before(end); i++ {
		stopFor := 3 * time.Second
		if i%2 == 1 {
			stopFor = 7 * time.Second
		}
		pause(ctx, 2*time.Second)
		healed := chk.FaultStart("SIGSTOP nats-server " + stopFor.String())
		if err := ns.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		pause(ctx, stopFor)
		if err := ns.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		healed()
	}
	stored := stopAndRead(t, chk, stop, done, ns.url, "S3")
	finish(t, chk, "publish-nats-stop", stored, CheckOptions{MsgIDs: true})
}

// streamLeader is the stream's leader and whether every replica is
// current, from the stream info (natively).
func streamLeader(js jetstream.JetStream, stream string) (leader string, allCurrent bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", false
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return "", false
	}
	allCurrent = info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2
	for _, r := range info.Cluster.Replicas {
		allCurrent = allCurrent && r.Current && !r.Offline
	}
	return info.Cluster.Leader, allCurrent
}

// readNode reads stream seq 1..last with direct gets over a connection to
// node alone: the node's own replica answers them (a direct get goes to a
// replica on the server the client is connected to when there is one).
func readNode(t *testing.T, node *natsNode, stream string, last uint64) ([]StoredMsg, error) {
	nc, err := nats.Connect(node.url, nats.NoReconnect(), nats.Timeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	out := make([]StoredMsg, last)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	seqs := make(chan uint64)
	for range 8 {
		wg.Go(func() {
			for seq := range seqs {
				m, err := s.GetMsg(ctx, seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					continue
				}
				if err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, fmt.Errorf("%s seq %d: %w", node.name, seq, err))
					mu.Unlock()
					continue
				}
				out[seq-1] = StoredMsg{Seq: seq, ID: string(m.Data)}
			}
		})
	}
	for seq := uint64(1); seq <= last; seq++ {
		seqs <- seq
	}
	close(seqs)
	wg.Wait()
	var stored []StoredMsg
	for _, m := range out {
		if m.Seq != 0 {
			stored = append(stored, m)
		}
	}
	return stored, firstErr
}

// TestPublishR3LeaderKill: unary Publish from 4 clients to an R3 stream on
// a 3-node cluster while the stream leader is SIGKILLed (and restarted on
// its store) twice. Afterwards every node's replica must hold every acked
// message, and the nodes must agree.
func TestPublishR3LeaderKill(t *testing.T) {
	d := duration(t, 5*time.Second)
	nodes := startCluster(t)
	var urls []string
	byName := map[string]*natsNode{}
	for _, n := range nodes {
		urls = append(urls, n.url)
		byName[n.name] = n
	}
	all := strings.Join(urls, ",")
	b := startBridge(t, all)
	b.sample(t, samplePeriod(t, d))
	createStream(t, b, "S4", 3, "s4.>")
	_, js := nativeJS(t, all)
	if err := waitFor(context.Background(), 30*time.Second, nil, "S4 leader and current replicas", func() bool {
		_, ok := streamLeader(js, "S4")
		return ok
	}); err != nil {
		t.Fatal(err)
	}

	chk := NewChecker()
	p := &publisher{msgs: b.msgs, chk: chk, subject: "s4.x"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s4", 4, 2*time.Millisecond) }()

	// At least two leader kills, then more while d lasts, the next one a
	// gap after every replica is current again.
	gap := min(d/3, 3*time.Second)
	for i, end := 0, time.Now().Add(d); i < 2 || time.Now().Add(gap).Before(end); i++ {
		pause(ctx, gap)
		var leader string
		if err := waitFor(context.Background(), 30*time.Second, nil, "S4 leader", func() bool {
			var ok bool
			leader, ok = streamLeader(js, "S4")
			return ok
		}); err != nil {
			t.Fatal(err)
		}
		node := byName[leader]
		if node == nil {
			t.Fatalf("leader %q is none of the nodes", leader)
		}
		healed := chk.FaultStart("SIGKILL stream leader " + leader)
		killed := time.Now()
		node.Kill()
		pause(ctx, 300*time.Millisecond)
		node.restart(t)
		restarted := time.Now()
		var newLeader string
		if err := waitFor(context.Background(), 30*time.Second, node.proc, "S4 replicas current again", func() bool {
			var ok bool
			newLeader, ok = streamLeader(js, "S4")
			return ok
		}); err != nil {
			t.Fatal(err)
		}
		healed()
		t.Logf("killed stream leader %s; restarted and healthy after %s, every replica current %s later; leader now %s",
			leader, restarted.Sub(killed).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond), newLeader)
	}
	pause(ctx, gap)
	stored := stopAndRead(t, chk, stop, done, all, "S4")
	r := finish(t, chk, "publish-r3-leader-kill", stored, CheckOptions{MsgIDs: true})

	// Every node's replica, once all agree.
	var last uint64
	for _, m := range stored {
		last = max(last, m.Seq)
	}
	var states []string
	if err := waitFor(context.Background(), 30*time.Second, nil, "every node's replica at the stream's last sequence", func() bool {
		states = states[:0]
		ok := true
		for _, n := range nodes {
			st, err := n.streamState("S4")
			states = append(states, fmt.Sprintf("%s: %+v %v", n.name, st, err))
			ok = ok && err == nil && st.Found && st.LastSeq == last && st.Msgs == uint64(len(stored))
		}
		return ok
	}); err != nil {
		t.Errorf("%v: %s (stream: %d messages, last seq %d)", err, strings.Join(states, "; "), len(stored), last)
	}
	for _, n := range nodes {
		ns, err := readNode(t, n, "S4", last)
		if err != nil {
			t.Errorf("read %s's replica: %v", n.name, err)
			continue
		}
		nr := chk.Check("publish-r3-leader-kill/"+n.name, ns, CheckOptions{MsgIDs: true})
		t.Logf("%s's replica: %d messages, lost %d, unexpected %d, duplicates %d", n.name, nr.Stored, nr.Lost, nr.Unexpected, nr.Duplicates)
		if nr.Lost+nr.Unexpected+nr.Duplicates > 0 || nr.Stored != r.Stored {
			t.Errorf("%s's replica differs from the stream: %d messages (stream %d): %v", n.name, nr.Stored, r.Stored, nr.Violations)
		}
	}
}
