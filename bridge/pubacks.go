package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/refusal"
)

// pubAcks publishes the messages of one PublishStream, each with a reply
// subject of its own under an inbox of the stream's, and hands their
// JetStream acks to the stream's writer in publish order.
//
// It replaces nats.go's PublishMsgAsync on this path, which allocates a
// future, two channels and a timer per message and decodes every ack with
// encoding/json under its publisher lock: together about a quarter of the
// bridge's CPU in a busy PublishStream. Here an answer is filed under its
// publish's number by the subscription's callback, the writer waits for
// the one at the head of the line with one timer per stream, and acks are
// read by a parser for the form nats-server writes (encoding/json for
// anything else, errors included). Semantics follow PublishMsgAsync:
//   - a "no responders" answer is retried twice, 250 ms apart, each publish
//     on its own (a clustered stream has no responder while it elects a
//     leader);
//   - an ack that does not come within the timeout fails with
//     jetstream.ErrAsyncPublishTimeout, and its publish is forgotten, so a
//     late ack is dropped on arrival;
//   - a publish made before the bridge lost its NATS connection fails with
//     nats.ErrDisconnected (UNAVAILABLE) rather than waiting out the
//     timeout;
//   - a publish nats-server refused (the connection's NATS user may not
//     publish to its subject) fails with the refusal (PERMISSION_DENIED)
//     when it arrives, rather than waiting out the timeout.
//
// publish belongs to the stream's reader goroutine, wait and close to its
// writer (the handler); deliver runs on the subscription's goroutine
// (nats.go's, one per stream, ended by close). close may run while the
// reader is still in publish (the handler does not wait for a reader
// blocked in Recv once its context has ended): that publish gets no answer.
type pubAcks struct {
	nc      *nats.Conn
	prefix  string // the inbox and a dot; a reply is prefix + the publish's number
	sub     *nats.Subscription
	refused *refusal.Watch
	timeout time.Duration
	ready   chan struct{} // an answer was filed (capacity 1)

	next uint64 // the reader's: number of the next publish

	mu     sync.Mutex
	ring   []pubEntry // publishes not yet taken by the writer, at number mod len
	closed bool

	// The writer's.
	timer  *time.Timer
	stream string // the last stream name acked, reused rather than allocated again
}

// pubEntry is one publish awaiting its answer, in its slot of the ring.
type pubEntry struct {
	n       uint64
	live    bool
	retries int
	msg     *nats.Msg
	sent    time.Time       // the last (re)send; the timeout runs from here
	lost    <-chan struct{} // closed if the connection is lost after the send
	retry   *time.Timer     // a resend after "no responders", pending
	answer  *nats.Msg
	err     error
}

// pubRingStart is the ring's first size; it doubles when a publish finds
// its slot taken, so it follows the publishes in flight (at most the
// stream's window and two) without a map entry or an allocation each.
const pubRingStart = 64

const (
	// pubRetries and pubRetryWait are nats.go's defaults for a publish
	// answered by "no responders".
	pubRetries   = jetstream.DefaultPubRetryAttempts
	pubRetryWait = jetstream.DefaultPubRetryWait
	// defaultPubAckTimeout applies when the JetStream context has none.
	defaultPubAckTimeout = 5 * time.Second
)

// newPubAcks subscribes to a fresh inbox on nc.
func newPubAcks(nc *nats.Conn, timeout time.Duration) (*pubAcks, error) {
	if timeout <= 0 {
		timeout = defaultPubAckTimeout
	}
	inbox := nc.NewInbox()
	a := &pubAcks{nc: nc, prefix: inbox + ".", timeout: timeout, ready: make(chan struct{}, 1), ring: make([]pubEntry, pubRingStart)}
	sub, err := nc.Subscribe(inbox+".*", a.deliver)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the publish ack inbox: %w", err)
	}
	a.sub = sub
	a.refused = refusal.All(nc, a.refuse)
	return a, nil
}

// close unsubscribes and cancels pending resends; answers still to come
// are dropped.
func (a *pubAcks) close() {
	a.refused.Stop()
	_ = a.sub.Unsubscribe()
	a.mu.Lock()
	a.closed = true
	for i := range a.ring {
		if e := &a.ring[i]; e.live && e.retry != nil {
			e.retry.Stop()
		}
	}
	a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
	}
}

// publish sends msg with its own reply subject and returns its number,
// which wait takes. lost is the connection watch's channel at the time of
// the send.
func (a *pubAcks) publish(msg *nats.Msg, lost <-chan struct{}) (uint64, error) {
	n := a.next
	a.next++
	msg.Reply = a.prefix + strconv.FormatUint(n, 10)
	a.mu.Lock()
	for a.ring[n%uint64(len(a.ring))].live {
		a.grow()
	}
	a.ring[n%uint64(len(a.ring))] = pubEntry{n: n, live: true, msg: msg, sent: time.Now(), lost: lost}
	a.mu.Unlock()
	if err := a.nc.PublishMsg(msg); err != nil {
		a.mu.Lock()
		if e := a.entry(n); e != nil {
			a.forget(e)
		}
		a.mu.Unlock()
		return n, err
	}
	return n, nil
}

// entry is publish k's slot, nil when k is not awaiting an answer. a.mu
// is held, and the pointer is good only while it is.
func (a *pubAcks) entry(k uint64) *pubEntry {
	e := &a.ring[k%uint64(len(a.ring))]
	if !e.live || e.n != k {
		return nil
	}
	return e
}

// grow doubles the ring, each live entry moving to its slot in the new
// one. a.mu is held.
func (a *pubAcks) grow() {
	ring := make([]pubEntry, 2*len(a.ring))
	for _, e := range a.ring {
		if e.live {
			ring[e.n%uint64(len(ring))] = e
		}
	}
	a.ring = ring
}

// deliver files an answer under its publish, or drops it when the writer
// has given up on that publish. A "no responders" answer schedules a
// resend instead, while retries are left.
func (a *pubAcks) deliver(m *nats.Msg) {
	k, err := strconv.ParseUint(m.Subject[min(len(a.prefix), len(m.Subject)):], 10, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	e := a.entry(k)
	if e == nil || e.answer != nil || e.err != nil || a.closed {
		a.mu.Unlock()
		return
	}
	if noResponders(m) && e.retries < pubRetries {
		e.retries++
		e.sent = time.Now().Add(pubRetryWait)
		e.retry = time.AfterFunc(pubRetryWait, func() { a.resend(k) })
		a.mu.Unlock()
		return
	}
	e.answer = m
	a.mu.Unlock()
	a.wake()
}

// refuse fails the publishes to subject still awaiting an answer: nats-server
// refused one, and refuses them all (the same user, the same subject).
func (a *pubAcks) refuse(subject string, err error) {
	a.mu.Lock()
	failed := false
	for i := range a.ring {
		if e := &a.ring[i]; e.live && e.answer == nil && e.err == nil && e.msg.Subject == subject {
			if e.retry != nil {
				e.retry.Stop()
				e.retry = nil
			}
			e.err, failed = err, true
		}
	}
	a.mu.Unlock()
	if failed {
		a.wake()
	}
}

// resend publishes k again after "no responders".
func (a *pubAcks) resend(k uint64) {
	a.mu.Lock()
	e := a.entry(k)
	if e == nil || a.closed || e.answer != nil || e.err != nil {
		a.mu.Unlock()
		return
	}
	e.retry, e.sent = nil, time.Now()
	msg := e.msg
	a.mu.Unlock()
	if err := a.nc.PublishMsg(msg); err != nil {
		a.mu.Lock()
		if e := a.entry(k); e != nil && e.answer == nil {
			e.err = err
		}
		a.mu.Unlock()
		a.wake()
	}
}

func (a *pubAcks) wake() {
	select {
	case a.ready <- struct{}{}:
	default:
	}
}

// wait returns the ack of publish n. Publishes must be waited for in the
// order they were made; a publish whose send failed is not waited for.
func (a *pubAcks) wait(ctx context.Context, n uint64) (*jetwayv1.PublishResponse, error) {
	for {
		a.mu.Lock()
		e := a.entry(n)
		if e == nil {
			a.mu.Unlock()
			return nil, fmt.Errorf("publish %d: no such publish", n)
		}
		m, err, deadline, lost := e.answer, e.err, e.sent.Add(a.timeout), e.lost
		done := m != nil || err != nil
		if !done && !a.arm(time.Until(deadline)) {
			err, done = jetstream.ErrAsyncPublishTimeout, true
		}
		if done {
			a.forget(e)
		}
		a.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case m != nil && noResponders(m):
			// No responders, retries spent: no stream listens on the subject.
			return nil, jetstream.ErrNoStreamResponse
		case m != nil:
			return a.parse(m.Data)
		}
		select {
		case <-a.ready:
		case <-a.timer.C:
		case <-lost:
			a.mu.Lock()
			if e := a.entry(n); e != nil && e.answer == nil && e.err == nil {
				a.forget(e)
				a.mu.Unlock()
				return nil, nats.ErrDisconnected
			}
			a.mu.Unlock()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// forget frees the slot of a publish the writer is done with: a late
// answer is dropped, a pending resend cancelled. a.mu is held.
func (a *pubAcks) forget(e *pubEntry) {
	if e.retry != nil {
		e.retry.Stop()
	}
	*e = pubEntry{}
}

// noResponders tells JetStream's "no responders" answer (status 503, no
// data) from an ack.
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

// arm sets the timer to fire after d; false if d has already passed.
func (a *pubAcks) arm(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	if a.timer == nil {
		a.timer = time.NewTimer(d)
	} else {
		a.timer.Reset(d)
	}
	return true
}

// parse reads JetStream's answer to a publish: an ack or an API error.
func (a *pubAcks) parse(data []byte) (*jetwayv1.PublishResponse, error) {
	if stream, seq, dup, ok := quickPubAck(data); ok {
		if string(stream) != a.stream { // no allocation for the comparison
			a.stream = string(stream)
		}
		return &jetwayv1.PublishResponse{Stream: a.stream, Sequence: seq, Duplicate: dup}, nil
	}
	var r struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Seq       uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
		Value     string              `json:"val"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if r.Error != nil {
		return nil, r.Error
	}
	if r.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return &jetwayv1.PublishResponse{Stream: r.Stream, Sequence: r.Seq, Duplicate: r.Duplicate, Value: r.Value}, nil
}

// quickPubAck reads the acks nats-server writes from its template
// (server/stream.go): {"stream":"S","seq":N} with an optional
// ,"domain":"D" before seq and ,"duplicate": true after it. Anything else,
// escapes included, is left to encoding/json.
func quickPubAck(b []byte) (stream []byte, seq uint64, dup, ok bool) {
	const head = `{"stream":"`
	if !bytes.HasPrefix(b, []byte(head)) || bytes.IndexByte(b, '\\') >= 0 {
		return nil, 0, false, false
	}
	b = b[len(head):]
	i := bytes.IndexByte(b, '"')
	if i <= 0 {
		return nil, 0, false, false
	}
	stream, b = b[:i], b[i+1:]
	if rest, found := bytes.CutPrefix(b, []byte(`,"domain":"`)); found {
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return nil, 0, false, false
		}
		b = rest[j+1:]
	}
	b, found := bytes.CutPrefix(b, []byte(`,"seq":`))
	if !found {
		return nil, 0, false, false
	}
	d := 0
	for ; d < len(b) && b[d] >= '0' && b[d] <= '9'; d++ {
		if seq > (math.MaxUint64-9)/10 {
			return nil, 0, false, false // near overflow: encoding/json decides
		}
		seq = seq*10 + uint64(b[d]-'0')
	}
	if d == 0 {
		return nil, 0, false, false
	}
	switch string(b[d:]) {
	case "}":
		return stream, seq, false, true
	case `,"duplicate": true}`, `,"duplicate":true}`:
		return stream, seq, true, true
	}
	return nil, 0, false, false
}
