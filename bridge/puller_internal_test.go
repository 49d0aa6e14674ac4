package bridge

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestPullerAccountingStaysWithinWindow drives a puller directly against
// a real JetStream and checks its central invariant: the server never owes
// it more messages than the window allows, so its inbox can never
// overflow. Messages grow a little, one after the other, so that most
// requests end early on their byte budget (409 Message Size Exceeds
// MaxBytes) while others are open, and JetStream serves a client's open
// requests in turn: the puller must count every message and every early
// end against the request it belongs to. After each burst the reader
// stops taking messages and waits until the server has sent all it owes:
// then nothing may have been dropped (the inbox has room for the window
// and the status replies, no more).
func TestPullerAccountingStaysWithinWindow(t *testing.T) {
	t.Parallel()
	nc, js, ctx := pullerJS(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACC", Subjects: []string{"acc.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	const n = 6000
	for i := range n {
		if _, err := js.PublishAsync("acc.x", make([]byte, 16+i/20)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	cons, err := js.CreateConsumer(ctx, "ACC", jetstream.ConsumerConfig{Durable: "a", AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	const window = 256
	sub := &subscription{
		js: js, meta: metaOf(cons.CachedInfo().Config), window: window, windowBytes: 1 << 20,
		info: &jetwayv1.Subscribed{Stream: "ACC", Consumer: "a"},
	}
	p, err := startPuller(sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(false)

	got := 0
	for got < n {
		// A burst: take what comes, pulling as the window frees.
		for taken := 0; taken < 700 && got < n; {
			m, ok := pullNext(ctx, t, p)
			if !ok {
				t.Fatalf("after %d of %d messages nothing more came for 5s (dropped: %d): the accounting lost track of what the server owes", got, n, p.dropped+openDropped(p))
			}
			if m != nil {
				got++
				taken++
			}
		}
		// Stop reading until the server has sent everything it owes the
		// open requests (a ping-pong after their last delivery): the inbox
		// now holds all of it.
		deadline := time.Now().Add(5 * time.Second)
		for {
			before := len(p.ch)
			if err := nc.FlushTimeout(time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // deliveries are asynchronous on the server
			if len(p.ch) == before || len(p.ch) == cap(p.ch) || time.Now().After(deadline) {
				break
			}
		}
		if d := p.dropped + openDropped(p); d > 0 {
			t.Fatalf("after %d messages taken: nats.go dropped %d messages (inbox full)", got, d)
		}
	}
	if p.dropped > 0 {
		t.Fatalf("nats.go dropped %d messages", p.dropped)
	}
}

// testNATS starts a nats-server on loopback for the test (with JetStream
// if js) and connects to it.
func testNATS(t *testing.T, js bool) *nats.Conn {
	t.Helper()
	opts := &natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	if js {
		opts.JetStream, opts.StoreDir = true, t.TempDir()
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// pullerJS starts a nats-server with JetStream for a puller test and
// connects to it.
func pullerJS(t *testing.T) (*nats.Conn, jetstream.JetStream, context.Context) {
	t.Helper()
	nc := testNATS(t, true)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return nc, js, ctx
}

// TestPullerStartsSmall: a stream's inbox has room for smallBatch messages
// until its first message, and asks for no more; then, once JetStream is
// done with that request, it moves to a channel with room for the window
// and pulls the window. Every message arrives once, in order, and none is
// dropped on the way.
func TestPullerStartsSmall(t *testing.T) {
	t.Parallel()
	_, js, ctx := pullerJS(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SM", Subjects: []string{"sm.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "SM", jetstream.ConsumerConfig{Durable: "s", AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	const window = 256
	p, err := startPuller(&subscription{
		js: js, meta: metaOf(cons.CachedInfo().Config), window: window, windowBytes: 1 << 20,
		info: &jetwayv1.Subscribed{Stream: "SM", Consumer: "s"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(false)
	if cap(p.ch) != smallBatch+4 || len(p.reqs) != 1 || p.reqs[0].msgs != smallBatch {
		t.Fatalf("idle puller: channel room %d, requests %+v; want room %d and one request for %d", cap(p.ch), p.reqs, smallBatch+4, smallBatch)
	}
	// Idle: filling again asks for nothing more.
	if err := p.fill(0, 0, time.Now()); err != nil || len(p.reqs) != 1 {
		t.Fatalf("idle fill: %v, %d requests", err, len(p.reqs))
	}

	const n = 1000
	for i := range n {
		if _, err := js.PublishAsync("sm.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	got := 0
	for got < n {
		m, ok := pullNext(ctx, t, p)
		if !ok {
			t.Fatalf("after %d of %d messages nothing more came for 5s", got, n)
		}
		if m != nil {
			if string(m.Data) != strconv.Itoa(got) {
				t.Fatalf("message %d is %q", got, m.Data)
			}
			got++
		}
		if got > smallBatch && p.small {
			t.Fatalf("after %d messages the puller is still small (requests %+v)", got, p.reqs)
		}
	}
	if cap(p.ch) != window+statusRoom {
		t.Errorf("busy puller: channel room %d, want %d", cap(p.ch), window+statusRoom)
	}
	if d := p.dropped + openDropped(p); d > 0 {
		t.Errorf("nats.go dropped %d messages", d)
	}
}

// pullNext does what a stream's loop does with the next thing its inbox
// brings: a status reply is handled, a message counted; then it pulls as
// the window allows. It returns the message (nil for a status reply), and
// false when nothing came for 5 s.
func pullNext(ctx context.Context, t *testing.T, p *puller) (*nats.Msg, bool) {
	t.Helper()
	var m *nats.Msg
	select {
	case m = <-p.ch:
	case <-time.After(5 * time.Second):
		return nil, false
	}
	if isStatus(m) {
		if err := p.status(ctx, m, time.Now()); err != nil {
			t.Fatal(err)
		}
		m = nil
	} else {
		p.received(m)
	}
	if err := p.fill(0, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	return m, true
}

// openDropped is what nats.go dropped on the subscriptions the puller
// still holds (open requests and spares).
func openDropped(p *puller) int {
	subs := slices.Clone(p.spare)
	for _, r := range p.reqs {
		subs = append(subs, r.sub)
	}
	n := 0
	for _, sub := range subs {
		if d, err := sub.Dropped(); err == nil {
			n += d
		}
	}
	return n
}

// TestDeliverRestartsAckWaitOfWaitedMessages: a message handed to the
// client at once keeps the ack wait JetStream started, but one that waited
// in the inbox for longer than its token's margin (a slow client) gets an
// in-progress ack as it is handed over, so that JetStream's ack wait
// restarts with the token's deadline and the token never outlives it.
func TestDeliverRestartsAckWaitOfWaitedMessages(t *testing.T) {
	t.Parallel()
	nc, js, ctx := pullerJS(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WT", Subjects: []string{"wt.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "WT", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	acks, err := nc.SubscribeSync("$JS.ACK.WT.>")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := js.Publish(ctx, "wt.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	sub := &subscription{
		js: js, meta: metaOf(cons.CachedInfo().Config), window: 4, windowBytes: 1 << 20,
		info: &jetwayv1.Subscribed{Stream: "WT", Consumer: "w"},
	}
	s := benchService(t)
	start := time.Now()
	p, err := startPuller(sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(false)
	take := func() *nats.Msg {
		t.Helper()
		for {
			select {
			case m := <-p.ch:
				if !isStatus(m) {
					since := p.received(m)
					if _, _, err := s.deliver(sub, m, since, time.Now()); err != nil {
						t.Fatal(err)
					}
					return m
				}
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	first := take()
	if waited := time.Since(start); waited > 400*time.Millisecond {
		t.Skipf("the first message took %v to come: too slow a machine to tell a prompt hand-over", waited)
	}
	if m, err := acks.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("a message handed over at once got %q on %s", m.Data, m.Subject)
	}
	// The second has been in the inbox since it came; let it age past
	// the margin (10s/20 = 0.5s).
	time.Sleep(700 * time.Millisecond)
	second := take()
	m, err := acks.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatalf("a message that waited in the inbox got no in-progress ack: %v", err)
	}
	if m.Subject != second.Reply || string(m.Data) != "+WPI" {
		t.Fatalf("got %q on %s, want +WPI on %s (first: %s)", m.Data, m.Subject, second.Reply, first.Reply)
	}
}
