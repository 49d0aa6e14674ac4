package bridge

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestQuickPubAck: the forms nats-server writes are read without
// encoding/json; anything else (escapes, errors, batches, counters,
// numbers near overflow, damage) is left to it.
func TestQuickPubAck(t *testing.T) {
	for _, c := range []struct {
		in     string
		ok     bool
		stream string
		seq    uint64
		dup    bool
	}{
		{in: `{"stream":"ORDERS","seq":1}`, ok: true, stream: "ORDERS", seq: 1},
		{in: `{"stream":"O","seq":18446744073709551}`, ok: true, stream: "O", seq: 18446744073709551},
		{in: `{"stream":"ORDERS","domain":"hub","seq":42}`, ok: true, stream: "ORDERS", seq: 42},
		{in: `{"stream":"ORDERS","seq":7,"duplicate": true}`, ok: true, stream: "ORDERS", seq: 7, dup: true},
		{in: `{"stream":"ORDERS","seq":7,"duplicate":true}`, ok: true, stream: "ORDERS", seq: 7, dup: true},
		{in: `{"stream":"Ünïcode","seq":3}`, ok: true, stream: "Ünïcode", seq: 3},
		{in: `{"stream":"A\"B","seq":1}`},
		{in: `{"stream":"A\u0042","seq":1}`},
		{in: `{"error":{"code":503,"err_code":10077,"description":"x"}}`},
		{in: `{"stream":"ORDERS","seq":5,"batch":"b1","count":2}`},
		{in: `{"stream":"ORDERS","seq":5,"val":"1"}`},
		{in: `{"stream":"ORDERS","seq":18446744073709551615}`},
		{in: `{"stream":"ORDERS","seq":}`},
		{in: `{"stream":"ORDERS","seq":12`},
		{in: `{"stream":"","seq":1}`},
		{in: `{"stream":"ORDERS"}`},
		{in: `{"stream":"ORDERS","domain":"hub`},
		{in: ``},
	} {
		stream, seq, dup, ok := quickPubAck([]byte(c.in))
		if ok != c.ok || string(stream) != c.stream || seq != c.seq || dup != c.dup {
			t.Errorf("quickPubAck(%s) = %q, %d, %v, %v; want %q, %d, %v, %v", c.in, stream, seq, dup, ok, c.stream, c.seq, c.dup, c.ok)
		}
	}
}

// TestPubAcksParse: what the fast path leaves to encoding/json still
// reads right, errors included.
func TestPubAcksParse(t *testing.T) {
	var a pubAcks
	r, err := a.parse([]byte(`{"stream":"A\"B","seq":9,"duplicate":true}`))
	if err != nil || r.GetStream() != `A"B` || r.GetSequence() != 9 || !r.GetDuplicate() {
		t.Errorf("escaped stream: %v, %v", r, err)
	}
	r, err = a.parse([]byte(`{"stream":"ORDERS","seq":18446744073709551615}`))
	if err != nil || r.GetSequence() != 18446744073709551615 {
		t.Errorf("max sequence: %v, %v", r, err)
	}
	if _, err := a.parse([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"}}`)); err == nil || translate(err, "x") == nil {
		t.Errorf("API error: %v", err)
	}
	if _, err := a.parse([]byte(`not json`)); err == nil {
		t.Error("garbage: no error")
	}
	if _, err := a.parse([]byte(`{"seq":1}`)); err == nil {
		t.Error("no stream: no error")
	}
}

// pubAcksAnswered is a pubAcks on a connection of its own to a nats-server
// where a plain subscriber plays JetStream on subject, answering with
// answer; the context bounds the test.
func pubAcksAnswered(t *testing.T, subject string, timeout time.Duration, answer func(rc *nats.Conn, m *nats.Msg)) (*pubAcks, context.Context) {
	t.Helper()
	rc := testNATS(t, false)
	if _, err := rc.Subscribe(subject, func(m *nats.Msg) { answer(rc, m) }); err != nil {
		t.Fatal(err)
	}
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(rc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a, err := newPubAcks(nc, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return a, ctx
}

// TestPubAcksLateAcksDropped: after a stall longer than the ack timeout,
// the acks of publishes given up on arrive late, in a burst, while the
// writer is busy elsewhere. They are dropped on arrival, and no ack of a
// live publish is lost with them (a lost one would report TIMEOUT for a
// stored message). JetStream is played by a plain subscriber that answers
// after a delay, then at once.
func TestPubAcksLateAcksDropped(t *testing.T) {
	t.Parallel()
	var delay atomic.Int64
	delay.Store(int64(400 * time.Millisecond))
	var seq atomic.Uint64
	a, ctx := pubAcksAnswered(t, "late.>", 100*time.Millisecond, func(rc *nats.Conn, m *nats.Msg) {
		body := []byte(`{"stream":"S","seq":` + strconv.FormatUint(seq.Add(1), 10) + `}`)
		if d := time.Duration(delay.Load()); d > 0 {
			time.AfterFunc(d, func() { _ = rc.Publish(m.Reply, body) })
			return
		}
		_ = rc.Publish(m.Reply, body)
	})

	const window = 6
	var q []uint64
	pub := func() {
		n, err := a.publish(&nats.Msg{Subject: "late.x", Data: []byte("x")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		q = append(q, n)
	}
	// A second of answers slower than the timeout: every publish times out.
	timeouts := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		for len(q) < window {
			pub()
		}
		if _, err := a.wait(ctx, q[0]); errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			timeouts++
		}
		q = q[1:]
	}
	// Answers at once again; the writer is busy for 500 ms, while the late
	// answers of the timed-out publishes arrive.
	delay.Store(0)
	for len(q) < window {
		pub()
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range q {
		if _, err := a.wait(ctx, n); err != nil {
			t.Errorf("publish %d, answered at once: %v", n, err)
		}
	}
	if timeouts == 0 {
		t.Error("no publish timed out during the stall")
	}
	if d, _ := a.sub.Dropped(); d > 0 {
		t.Errorf("nats.go dropped %d answers", d)
	}
	if left := a.live(); left != 0 {
		t.Errorf("%d publishes still pending after all were waited for", left)
	}
}

// live counts the publishes awaiting their answers.
func (a *pubAcks) live() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.ring {
		if e.live {
			n++
		}
	}
	return n
}

// TestPubAcksRingGrows: with more publishes in flight than the ring's
// first size, answered out of order, the ring grows and every answer is
// filed under its own publish (the responder echoes the publish's number
// as the sequence).
func TestPubAcksRingGrows(t *testing.T) {
	t.Parallel()
	a, ctx := pubAcksAnswered(t, "ring.>", 5*time.Second, func(rc *nats.Conn, m *nats.Msg) {
		n := m.Reply[strings.LastIndexByte(m.Reply, '.')+1:]
		body := []byte(`{"stream":"S","seq":` + n + `}`)
		// Later publishes answer first, some with no delay at all.
		k, _ := strconv.Atoi(n)
		time.AfterFunc(time.Duration(1000-k)*20*time.Microsecond, func() { _ = rc.Publish(m.Reply, body) })
	})
	const total = 1000
	for i := range total {
		n, err := a.publish(&nats.Msg{Subject: "ring.x", Data: []byte("x")}, nil)
		if err != nil || n != uint64(i) {
			t.Fatalf("publish %d: number %d, %v", i, n, err)
		}
	}
	if got := a.live(); got != total {
		t.Fatalf("%d publishes in flight, want %d", got, total)
	}
	for n := range uint64(total) {
		ack, err := a.wait(ctx, n)
		if err != nil || ack.GetSequence() != n {
			t.Fatalf("publish %d: ack %v, %v", n, ack, err)
		}
	}
	if a.live() != 0 || len(a.ring) < total {
		t.Errorf("after all acks: %d live in a ring of %d", a.live(), len(a.ring))
	}
}
