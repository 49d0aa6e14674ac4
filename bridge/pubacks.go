package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// pubAcks publishes the messages of one PublishStream, each with a reply
// subject of its own under an inbox of the stream's, and hands their
// JetStream acks to the stream's writer in publish order.
//
// It replaces nats.go's PublishMsgAsync on this path, which allocates a
// future, two channels and a timer per message and decodes every ack with
// encoding/json under its publisher lock: together about a quarter of the
// bridge's CPU in a busy PublishStream. Here the writer waits for the ack
// at the head of the line with one timer per stream, and acks are read by
// a parser for the form nats-server writes (encoding/json for anything
// else, errors included). Semantics follow PublishMsgAsync: a "no
// responders" answer is retried twice, 250 ms apart (a clustered stream
// has no responder while it elects a leader), and an ack that does not
// come within the timeout fails with jetstream.ErrAsyncPublishTimeout.
//
// publish belongs to the stream's reader goroutine, wait to its writer.
type pubAcks struct {
	nc      *nats.Conn
	prefix  string // the inbox and a dot; a reply is prefix + the publish's number
	sub     *nats.Subscription
	ch      chan *nats.Msg
	timeout time.Duration

	next uint64 // the reader's: number of the next publish

	// The writer's.
	early  map[uint64]earlyAck // acks that came before their turn
	timer  *time.Timer
	stream string // the last stream name acked, reused rather than allocated again
}

// earlyAck is an ack that arrived before the writer asked for it.
type earlyAck struct {
	m  *nats.Msg
	at time.Time
}

const (
	// pubAckRoom is room in the ack channel beyond the window: answers to
	// retried publishes and late acks of publishes given up on.
	pubAckRoom = 16
	// pubRetries and pubRetryWait are nats.go's defaults for a publish
	// answered by "no responders".
	pubRetries   = jetstream.DefaultPubRetryAttempts
	pubRetryWait = jetstream.DefaultPubRetryWait
	// defaultPubAckTimeout applies when the JetStream context has none.
	defaultPubAckTimeout = 5 * time.Second
)

// newPubAcks subscribes to a fresh inbox on nc. window bounds the
// publishes that await their ack at once, so that the channel never
// overflows (nats.go would drop an ack, not block).
func newPubAcks(nc *nats.Conn, window int, timeout time.Duration) (*pubAcks, error) {
	if timeout <= 0 {
		timeout = defaultPubAckTimeout
	}
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, window+pubAckRoom)
	sub, err := nc.ChanSubscribe(inbox+".*", ch)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the publish ack inbox: %w", err)
	}
	return &pubAcks{nc: nc, prefix: inbox + ".", sub: sub, ch: ch, timeout: timeout}, nil
}

// close unsubscribes; acks still to come are dropped.
func (a *pubAcks) close() {
	_ = a.sub.Unsubscribe()
	if a.timer != nil {
		a.timer.Stop()
	}
}

// publish sends msg with its own reply subject and returns its number,
// which wait takes.
func (a *pubAcks) publish(msg *nats.Msg) (uint64, error) {
	n := a.next
	a.next++
	msg.Reply = a.prefix + strconv.FormatUint(n, 10)
	return n, a.nc.PublishMsg(msg)
}

// wait returns the ack of publish n (msg, sent at sent). Publishes must be
// waited for in the order they were made; a publish whose send failed is
// not waited for.
func (a *pubAcks) wait(ctx context.Context, n uint64, msg *nats.Msg, sent time.Time) (*jetwayv1.PublishResponse, error) {
	deadline := sent.Add(a.timeout)
	for retries := 0; ; retries++ {
		m, at, err := a.take(ctx, n, deadline)
		if err != nil {
			return nil, err
		}
		if len(m.Data) > 0 || m.Header.Get("Status") != "503" {
			return a.parse(m.Data)
		}
		// No responders: no stream listens on the subject, or its
		// leader is being elected.
		if retries == pubRetries {
			return nil, jetstream.ErrNoStreamResponse
		}
		if err := a.sleepUntil(ctx, at.Add(pubRetryWait)); err != nil {
			return nil, err
		}
		if err := a.nc.PublishMsg(msg); err != nil {
			return nil, err
		}
		deadline = time.Now().Add(a.timeout)
	}
}

// take returns the answer to publish n and when it arrived, keeping the
// answers to later publishes that come first.
func (a *pubAcks) take(ctx context.Context, n uint64, deadline time.Time) (*nats.Msg, time.Time, error) {
	if e, ok := a.early[n]; ok {
		delete(a.early, n)
		return e.m, e.at, nil
	}
	for {
		var m *nats.Msg
		select {
		case m = <-a.ch:
		default:
			// Nothing there yet: wait, up to the deadline. (The timer is
			// armed only here, not for every message.)
			if !a.arm(time.Until(deadline)) {
				return nil, time.Time{}, jetstream.ErrAsyncPublishTimeout
			}
			select {
			case m = <-a.ch:
			case <-a.timer.C:
				return nil, time.Time{}, jetstream.ErrAsyncPublishTimeout
			case <-ctx.Done():
				return nil, time.Time{}, ctx.Err()
			}
		}
		k, err := strconv.ParseUint(m.Subject[min(len(a.prefix), len(m.Subject)):], 10, 64)
		switch {
		case err != nil || k < n:
			continue // an answer to a publish given up on, or a second one to a retried publish
		case k > n:
			if a.early == nil {
				a.early = make(map[uint64]earlyAck)
			}
			a.early[k] = earlyAck{m: m, at: time.Now()}
			continue
		}
		return m, time.Now(), nil
	}
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

// sleepUntil waits until t or the end of ctx.
func (a *pubAcks) sleepUntil(ctx context.Context, t time.Time) error {
	if !a.arm(time.Until(t)) {
		return nil
	}
	select {
	case <-a.timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
	return &jetwayv1.PublishResponse{Stream: r.Stream, Sequence: r.Seq, Duplicate: r.Duplicate}, nil
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
