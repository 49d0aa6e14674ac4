package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// pullExpires is how long one pull request of a Subscribe or Consume
	// waits on the consumer; an idle stream renews its request this often.
	pullExpires = 30 * time.Second
	// pullGrace is how long after its expiry a request whose end never
	// came (lost to a server restart) is given up.
	pullGrace = 5 * time.Second
	// maxPullRequests bounds the pull requests one stream has waiting on
	// its consumer (and so the status replies it may receive).
	maxPullRequests = 4
	// statusRoom is the inbox's room for status replies, beyond the
	// window's messages.
	statusRoom = 4 * maxPullRequests
	// pullRetry spaces pulls after JetStream answered "no responders".
	pullRetry = time.Second
	// smallBatch is the most a stream asks for before its first message:
	// until then its inbox channel has room for smallBatch messages, not
	// the whole window (2.2 KiB at the default window of 256, most of an
	// idle stream's heap). The first request that brings a message, once
	// JetStream is done with it, moves the stream to a channel with room
	// for the window.
	smallBatch = 16
)

// puller keeps one Subscribe or Consume stream's window filled from its
// consumer. It speaks JetStream's pull protocol itself: every request asks
// for no more than the window has free (messages and bytes), and the inbox
// channel has room for the whole window plus the requests' status replies
// (until its first message, a stream asks for smallBatch messages only, and
// its channel is that small). So nats.go never finds the channel full (no
// "slow consumer" drops), a
// client that stops reading stops the pulling, and the stream needs no
// goroutine beyond its handler, which selects on ch, calls tick when due
// (the handler waits for that and for its heartbeats on the grid clock)
// and calls fill, received and status.
//
// Each request has its own reply subject and subscription (all feeding
// ch), so every message and status reply is counted against exactly the
// request it answers: JetStream serves a client's waiting requests in turn,
// not one after the other, so no other attribution is exact, and an
// inexact one lets the window overflow.
type puller struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	ch      chan *nats.Msg // replaced once, by grow; read it from p, not a copy
	stream  string
	name    string
	subject string // <API prefix>CONSUMER.MSG.NEXT.<stream>.<consumer>
	inbox   string // request n replies on inbox + n
	dropped int    // messages nats.go dropped (closed subscriptions)

	window, windowBytes int           // the stream's window
	reqMsgs, reqBytes   int           // the consumer's limits on one request (0: none)
	expires             time.Duration // of each request, at most
	grid                *gridClock    // requests end on its steps (nil: not aligned)

	// small: the channel has room for smallBatch messages only, and at
	// most one request is out (see smallBatch). active: a message came.
	small, active bool

	reqs   []pullReq            // open requests, oldest first
	spare  []*nats.Subscription // of requests JetStream is done with
	nextID uint64
	// seen counts what the handler took from ch (messages and status
	// replies): a request past its deadline is given up only once
	// everything that was in ch at that deadline has been seen, so that
	// messages waiting unread for a slow client are never forgotten (see
	// tick). expiring counts the requests so marked.
	seen     uint64
	expiring int
	// emptyAt is a time at which ch was found empty: whatever the handler
	// takes from it since arrived later.
	emptyAt   time.Time
	needBytes int       // after "Message Size Exceeds MaxBytes": ask for more than this
	retryAt   time.Time // after "no responders": no pull before
	due       time.Time // when tick is wanted next; zero: not at all
	body      []byte
	// prio is the priority group the stream pulls for, with the pin id
	// its messages brought (pinned client policy); prioJSON is its part
	// of every request's body.
	prio     pullPriority
	prioJSON []byte
}

type pullReq struct {
	sub         *nats.Subscription // of its reply subject
	msgs, bytes int                // still to come
	sent        time.Time
	deadline    time.Time
	// until: past its deadline, it is given up once seen reaches this
	// (0: not past its deadline).
	until uint64
	// done: its last message came with bytes to spare; JetStream follows
	// it with a status (409 Batch Completed), after which the
	// subscription can serve again.
	done bool
	// ended: its end status came before msgs messages it counted, which
	// are still on their way (see endReq).
	ended bool
}

// startPuller subscribes the stream's inbox and sends its first request.
// Its requests end on steps of grid (see expiry); nil leaves them
// unaligned.
func startPuller(sub *subscription, grid *gridClock) (*puller, error) {
	nc := sub.js.Conn()
	stream, name := sub.info.GetStream(), sub.info.GetConsumer()
	small := sub.window > smallBatch
	room := sub.window + statusRoom
	if small {
		// One request out, and its status replies (one that ends it, a
		// Batch Completed, a leader change).
		room = smallBatch + 4
	}
	p := &puller{
		js: sub.js, nc: nc, stream: stream, name: name, small: small,
		ch:      make(chan *nats.Msg, room),
		subject: apiPrefix(sub.js) + "CONSUMER.MSG.NEXT." + stream + "." + name,
		inbox:   nc.NewInbox() + ".",
		window:  sub.window, windowBytes: sub.windowBytes,
		reqMsgs: sub.meta.maxRequestBatch, reqBytes: sub.meta.maxRequestBytes,
		expires: pullExpires, grid: grid,
		prio: sub.prio, prioJSON: sub.prio.fields(),
	}
	if e := sub.meta.maxRequestExpires; e > 0 && e < p.expires {
		p.expires = e
	}
	if err := p.fill(0, 0, time.Now()); err != nil {
		p.stop(false)
		return nil, err
	}
	return p, nil
}

func (p *puller) what() string {
	return fmt.Sprintf("consume from consumer %q on stream %q", p.name, p.stream)
}

// open is how many requests may still bring messages.
func (p *puller) open() int {
	n := 0
	for _, r := range p.reqs {
		if !r.done {
			n++
		}
	}
	return n
}

// pending is what the open requests may still bring.
func (p *puller) pending() (msgs, bytes int) {
	for _, r := range p.reqs {
		msgs += r.msgs
		bytes += r.bytes
	}
	return msgs, bytes
}

// fill sends a pull request when a quarter of the window's messages is
// free (at most 64, at least one), asking for the free bytes. held is
// what the stream holds outside the inbox (Consume's delivered and unacked
// messages). Pulling in parts keeps a request waiting while the client
// works through the previous one, with few requests per message; a small
// window refills slot by slot, so that a worker acking one task gets the
// next at once.
func (p *puller) fill(heldMsgs, heldBytes int, now time.Time) error {
	if len(p.ch) == 0 {
		p.emptyAt = now // now was read before this look
	}
	if p.expiring > 0 {
		p.reap()
	}
	if p.small {
		switch {
		case p.active && len(p.reqs) == 0 && len(p.ch) == 0:
			p.grow()
		case p.active:
			// Wait for JetStream to be done with the first request (its
			// Batch Completed status follows its last message), then grow.
			return nil
		case p.open() > 0:
			return nil // one request at a time while small
		}
	}
	if p.open() >= maxPullRequests || now.Before(p.retryAt) {
		return nil
	}
	pm, pb := p.pending()
	msgs, bytes := p.window-heldMsgs-pm, p.windowBytes-heldBytes-pb
	// Only the message count has a threshold: an open request holds its
	// whole byte budget until it ends, so a byte threshold would keep one
	// request open at a time. A request that asks for fewer bytes than the
	// next message is refused (Message Size Exceeds MaxBytes), and the
	// next asks for more than that.
	if msgs < max(1, min(p.window/4, 64)) || bytes <= p.needBytes {
		return nil
	}
	if p.reqMsgs > 0 {
		msgs = min(msgs, p.reqMsgs)
	}
	if p.small {
		msgs = min(msgs, smallBatch)
	}
	if p.reqBytes > 0 {
		bytes = min(bytes, p.reqBytes)
	}
	var sub *nats.Subscription
	if n := len(p.spare); n > 0 {
		sub, p.spare = p.spare[n-1], p.spare[:n-1]
	} else {
		var err error
		if sub, err = p.nc.ChanSubscribe(p.inbox+strconv.FormatUint(p.nextID, 10), p.ch); err != nil {
			return translate(err, "subscribe to the pull inbox")
		}
		p.nextID++
	}
	reply := sub.Subject
	p.body = append(p.body[:0], `{"batch":`...)
	p.body = strconv.AppendInt(p.body, int64(msgs), 10)
	p.body = append(p.body, `,"max_bytes":`...)
	p.body = strconv.AppendInt(p.body, int64(bytes), 10)
	expires := p.expiry(now)
	p.body = append(p.body, `,"expires":`...)
	p.body = strconv.AppendInt(p.body, int64(expires), 10)
	p.body = append(p.body, p.prioJSON...)
	p.body = append(p.body, '}')
	if err := p.nc.PublishRequest(p.subject, reply, p.body); err != nil {
		p.spare = append(p.spare, sub)
		return translate(err, p.what())
	}
	p.reqs = append(p.reqs, pullReq{sub: sub, msgs: msgs, bytes: bytes, sent: now, deadline: now.Add(expires + pullGrace)})
	if len(p.reqs) == 1 {
		p.arm(now)
	}
	return nil
}

// expiry is how long a request sent at now waits: p.expires, shortened
// (by less than a grid step) to end on a step of the grid clock. An idle
// stream renews its request every time one expires, and 10,000 idle
// streams renewed theirs at 333 different instants a second: a read of
// JetStream's timeout status and a write of the new request, each a
// system call of its own, about a fifth of the idle bridge's CPU. On the
// grid, the requests of the streams opened within a step expire together:
// nats-server sends their statuses in one go, and the renewals share
// nats.go's reads and flushes.
func (p *puller) expiry(now time.Time) time.Duration {
	if p.grid == nil {
		return p.expires
	}
	if d := p.grid.floor(now.Add(p.expires)).Sub(now); d > p.expires/2 {
		return d
	}
	return p.expires // a limit too short to shorten (the consumer's max_expires)
}

// grow gives a stream that has had a message a channel with room for its
// whole window. Only with no request out and the old channel empty: the
// spare subscriptions deliver to the old channel, so they go.
func (p *puller) grow() {
	for _, sub := range p.spare {
		p.unsubscribe(sub)
	}
	p.spare = p.spare[:0]
	p.ch = make(chan *nats.Msg, p.window+statusRoom)
	p.small = false
}

// arm sets due for the next thing to check: the oldest request's
// deadline, or the end of a retry pause.
func (p *puller) arm(now time.Time) {
	var at time.Time
	for _, r := range p.reqs {
		if r.until == 0 {
			at = r.deadline // the oldest not yet past it
			break
		}
	}
	if p.retryAt.After(now) && (at.IsZero() || p.retryAt.Before(at)) {
		at = p.retryAt
	}
	p.due = at
}

// tick handles the due time, when now has reached it: requests past their
// deadline are given up (their end was lost, or the Batch Completed status
// of a done one never came) once the handler has taken everything that is
// in ch now. Their messages may be there, unread: a slow client reads
// them long after JetStream sent them, and a request given up before its
// messages are counted would have its window pulled a second time, more
// than ch has room for (nats.go drops what does not fit, and JetStream
// redelivers it only after the ack wait).
func (p *puller) tick(now time.Time) {
	if p.due.IsZero() || now.Before(p.due) {
		return
	}
	mark := p.seen + uint64(len(p.ch)) + 1 // +1: 0 means unmarked
	for i := range p.reqs {
		if r := &p.reqs[i]; r.until == 0 && !r.deadline.After(now) {
			r.until = mark
			p.expiring++
		}
	}
	p.reap()
	p.arm(now)
}

// reap gives up the requests past their deadline whose messages, if they
// came, have all been taken from ch.
func (p *puller) reap() {
	for i := 0; i < len(p.reqs); {
		if r := p.reqs[i]; r.until != 0 && p.seen+1 >= r.until {
			p.drop(i, i+1, false)
			continue
		}
		i++
	}
}

// drop closes the requests from..to-1 (what already arrived stays in ch).
// With reuse, JetStream is known to be done with them (their last message
// or their status reply came), so their subscriptions serve the next
// requests: an idle stream renews its request without a new subscription
// every time. Otherwise (given up, or dropped by a leader change) a late
// message could still come, and they go.
func (p *puller) drop(from, to int, reuse bool) {
	for _, r := range p.reqs[from:to] {
		if r.until != 0 {
			p.expiring--
		}
		if reuse && len(p.spare) < maxPullRequests {
			p.spare = append(p.spare, r.sub)
			continue
		}
		p.unsubscribe(r.sub)
	}
	p.reqs = append(p.reqs[:from], p.reqs[to:]...)
}

// unsubscribe ends a request subscription, counting what nats.go dropped
// on it (its count covers every request it served).
func (p *puller) unsubscribe(sub *nats.Subscription) {
	if n, err := sub.Dropped(); err == nil {
		p.dropped += n
	}
	_ = sub.Unsubscribe()
}

// trimDone bounds the requests waiting only for their Batch Completed
// status (a server that does not send it would otherwise leave one per
// request until its deadline): past maxPullRequests the oldest go,
// without reuse.
func (p *puller) trimDone() {
	n := len(p.reqs) - p.open()
	for i := 0; n > maxPullRequests && i < len(p.reqs); {
		if p.reqs[i].done {
			p.drop(i, i+1, false)
			n--
			continue
		}
		i++
	}
}

// find returns the index of the open request sub belongs to, or -1.
func (p *puller) find(sub *nats.Subscription) int {
	for i := range p.reqs {
		if p.reqs[i].sub == sub {
			return i
		}
	}
	return -1
}

// owedMessages is how many of the want messages a request's end status
// says were sent (its batch less Nats-Pending-Messages), 0 when it does
// not say.
func owedMessages(h nats.Header, want int) int {
	left, err := strconv.Atoi(h.Get("Nats-Pending-Messages"))
	if err != nil || left < 0 || left >= want {
		return 0
	}
	return want - left
}

// isStatus tells a status reply (no reply subject, no data, a Status
// header) from a message. Publish refuses a Status header, so no stored
// message looks like one.
func isStatus(m *nats.Msg) bool {
	return m.Reply == "" && len(m.Data) == 0 && m.Header.Get("Status") != ""
}

// received counts a delivered message, just taken from ch, against its
// request. It returns the earliest time the message can have reached the
// bridge (zero: unknown): JetStream's ack wait for it runs from then.
func (p *puller) received(m *nats.Msg) (since time.Time) {
	p.seen++
	p.needBytes, p.active = 0, true
	if pin := pinOf(m.Header); pin != "" && pin != p.prio.ID && p.prio.Group != "" {
		// Pinned: the next requests carry the pin id (the ones out
		// without it wait until they expire, served to no one).
		p.prio.ID = pin
		p.prioJSON = p.prio.fields()
	}
	i := p.find(m.Sub)
	if i < 0 {
		return time.Time{} // a request already given up
	}
	r := &p.reqs[i]
	since = r.sent
	if p.emptyAt.After(since) {
		since = p.emptyAt
	}
	r.msgs--
	r.bytes -= m.Size()
	switch {
	case r.ended:
		if r.msgs <= 0 {
			p.drop(i, i+1, true) // the last of those its end counted
		}
	case r.bytes <= 0:
		// JetStream ends a request when its bytes run out (it counts a
		// message's size as nats.go does), without a status.
		p.drop(i, i+1, true)
	case r.msgs <= 0:
		// Its batch is complete; the status that says so follows.
		r.msgs, r.bytes, r.done = 0, 0, true
		p.trimDone()
	}
	return since
}

// status handles a request's status reply; it returns an error when the
// stream cannot go on.
func (p *puller) status(ctx context.Context, m *nats.Msg, now time.Time) error {
	p.seen++
	code, desc := m.Header.Get("Status"), m.Header.Get("Description")
	if code == "100" {
		return nil // an idle heartbeat (not asked for)
	}
	i := p.find(m.Sub)
	closeReq := func() {
		if i >= 0 {
			p.drop(i, i+1, true)
		}
	}
	// endReq ends the request after the messages its end status counted.
	// A clustered consumer that replicates its deliveries (nats-server
	// 2.12+) can send a request's end (408, 409 Batch Completed) before
	// the deliveries it counts: its Nats-Pending-Messages says how many
	// of the batch were not sent, so the rest are on their way, and the
	// subscription must stay to take them.
	endReq := func() {
		if i < 0 {
			return
		}
		r := &p.reqs[i]
		if owed := owedMessages(m.Header, r.msgs); owed > 0 && !r.done {
			r.msgs, r.ended = owed, true
			// What the server did not spend of the request's bytes will
			// not come either.
			if left, err := strconv.Atoi(m.Header.Get("Nats-Pending-Bytes")); err == nil && left > 0 && left < r.bytes {
				r.bytes -= left
			}
			return
		}
		closeReq()
	}
	switch code {
	case "409":
		switch {
		case desc == "Consumer Deleted":
			return fmt.Errorf("%w: %s: consumer deleted", ErrConsumerNotFound, p.what())
		case desc == "Consumer is push based":
			return fmt.Errorf("%w: %s: a push consumer cannot be consumed from", ErrNotAllowed, p.what())
		case strings.Contains(desc, "Leadership Change"):
			p.drop(0, len(p.reqs), false) // every waiting request was dropped
		case desc == "Message Size Exceeds MaxBytes":
			closeReq()
			left, _ := strconv.Atoi(m.Header.Get("Nats-Pending-Bytes"))
			most := p.windowBytes
			if p.reqBytes > 0 {
				most = min(most, p.reqBytes)
			}
			if left >= most {
				return fmt.Errorf("%w: %s: the next message is larger than max_bytes_in_flight (%d bytes)", ErrLimitExceeded, p.what(), most)
			}
			p.needBytes = left
		case desc == "Exceeded MaxWaiting":
			closeReq()
			if p.open() == 0 {
				return fmt.Errorf("%w: %s: too many pull requests waiting on the consumer (its max_waiting)", ErrLimitExceeded, p.what())
			}
			// Go on with the requests it has; ask again later, not at once.
			p.retryAt = now.Add(pullRetry)
			p.arm(now)
		case strings.HasPrefix(desc, "Exceeded MaxRequest"):
			// The consumer's request limits changed under the stream.
			return fmt.Errorf("%w: %s: the consumer's limit: %s; resubscribe", ErrLimitExceeded, p.what(), desc)
		default:
			endReq() // batch completed and the like
		}
	case "503":
		// No responders: the consumer is gone, or JetStream is between
		// leaders. Ask which; pause before pulling again.
		closeReq()
		if err := p.check(ctx); err != nil {
			return err
		}
		p.retryAt = now.Add(pullRetry)
		p.arm(now)
	case "404", "408":
		endReq() // the request expired (or found nothing)
	case "423":
		// The pin id is not the current one (the client passed back a
		// stale one, or the pin was taken away or timed out): as nats.go
		// does, drop it and ask to be pinned again with the next request.
		closeReq()
		if p.prio.ID != "" {
			p.prio.ID = ""
			p.prioJSON = p.prio.fields()
		}
	default:
		// 400 (a priority group missing or wrong) and any other
		// refusal: the stream cannot go on, and must not sit silent.
		return refusedPull(code, desc, p.what())
	}
	return nil
}

// check asks JetStream whether the consumer still exists. A stream with
// no request waiting (its window full) hears nothing when the consumer is
// deleted, so the handler checks on every idle heartbeat then.
func (p *puller) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := p.js.Consumer(cctx, p.stream, p.name); errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: %s: consumer deleted", ErrConsumerNotFound, p.what())
	}
	return nil
}

// idle is called on an idle heartbeat: with no request waiting, it checks
// that the consumer still exists.
func (p *puller) idle(ctx context.Context) error {
	if p.open() > 0 {
		return nil
	}
	return p.check(ctx)
}

// stop ends the pulling. The open requests' subscriptions are drained,
// not just unsubscribed: messages JetStream sent before it saw the
// interest go still arrive, and with nak they are NAKed (so that other
// clients get them at once rather than after the ack wait). It returns how
// many were NAKed.
func (p *puller) stop(nak bool) int {
	p.halt()
	return p.dropBuffered(nak)
}

// halt ends the pulling: no request stays open, so nothing more is
// delivered to this puller (what is on its way still lands in p.ch). It
// reports whether a request was open.
func (p *puller) halt() bool {
	pulled := len(p.reqs) > 0
	p.due = time.Time{}
	connected := p.nc.IsConnected()
	for _, r := range p.reqs {
		if n, err := r.sub.Dropped(); err == nil {
			p.dropped += n
		}
		if !connected || r.sub.Drain() != nil {
			_ = r.sub.Unsubscribe()
		}
	}
	for _, sub := range p.spare {
		p.unsubscribe(sub)
	}
	p.spare = nil
	if connected && len(p.reqs) > 0 {
		_ = p.nc.FlushTimeout(time.Second)
	}
	p.reqs = p.reqs[:0]
	p.expiring = 0
	return pulled
}

// dropBuffered empties what arrived and was not handed over, NAKing it with nak,
// in arrival order, and returns how many were NAKed.
func (p *puller) dropBuffered(nak bool) int {
	n := 0
	for {
		select {
		case m := <-p.ch:
			if nak && !isStatus(m) && m.Reply != "" && p.nc.Publish(m.Reply, nakBody) == nil {
				n++
			}
		default:
			if n > 0 && p.nc.IsConnected() {
				_ = p.nc.FlushTimeout(time.Second)
			}
			return n
		}
	}
}

var nakBody = []byte("-NAK")
