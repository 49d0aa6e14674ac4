package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/bridge/acktoken"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Request headers of a delivery.
const (
	HeaderSubject    = "Jetway-Subject"
	HeaderStream     = "Jetway-Stream"
	HeaderSequence   = "Jetway-Sequence"
	HeaderAttempt    = "Jetway-Delivery-Attempt"
	HeaderMessageID  = "Jetway-Message-Id"
	HeaderAckToken   = "Jetway-Ack-Token"
	HeaderAckExpires = "Jetway-Ack-Deadline"
	HeaderSub        = "Jetway-Subscription"
)

// deliverer delivers one subscription on this replica: it pulls from the
// durable with nats.go's Messages iterator, holding a slot for each
// message before it asks for it, and POSTs each in its own goroutine.
type deliverer struct {
	s   *Service
	js  jetstream.JetStream
	rec record
	url *url.URL
	key []byte
	rev uint64

	sem chan struct{} // the subscription's slots (concurrency)
	own chan struct{} // the subscription's own slot, outside the replica's

	stats stats

	pullCtx    context.Context // ends when pulling stops
	stopPull   context.CancelFunc
	reqCtx     context.Context // ends when the requests in flight are given up
	cancelReqs context.CancelFunc
	requests   sync.WaitGroup
	done       chan struct{} // closed when run returns
	started    atomic.Bool
}

func newDeliverer(s *Service, js jetstream.JetStream, r record, u *url.URL, rev uint64) *deliverer {
	key, _ := secretKey(r.Secret) // checked by decodeRecord
	d := &deliverer{s: s, js: js, rec: r, url: u, key: key, rev: rev, sem: make(chan struct{}, r.Concurrency), own: make(chan struct{}, 1), done: make(chan struct{})}
	d.pullCtx, d.stopPull = context.WithCancel(context.Background())
	d.reqCtx, d.cancelReqs = context.WithCancel(context.Background())
	return d
}

// start begins pulling, unless the subscription is paused.
func (d *deliverer) start() {
	d.started.Store(true)
	if d.rec.Paused {
		close(d.done)
		return
	}
	if p := d.s.permit; p != nil {
		if err := p(d.pullCtx, d.rec.Identity, d.rec.Stream, d.rec.Consumer); err != nil {
			d.stats.failed(fmt.Sprintf("not delivered: the identity %q that made it may no longer consume it: %v", d.rec.Identity, err))
			d.s.log.Warn("push: a subscription's identity may no longer consume its consumer; not delivering", slog.String("subscription", d.rec.Name), slog.String("identity", d.rec.Identity), slog.Any("error", err))
			close(d.done)
			return
		}
	}
	go d.run()
}

// stop stops pulling (what nats.go holds ahead is NAKed) and waits for
// the requests in flight until ctx ends; then cancels them, which NAKs
// their messages, and waits for that.
func (d *deliverer) stop(ctx context.Context) {
	d.stopPull()
	if d.started.Load() {
		<-d.done
	}
	finished := make(chan struct{})
	go func() {
		d.requests.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
		d.cancelReqs()
		<-finished
	}
	d.cancelReqs()
}

// run pulls until stopped, starting again after a pause when the consumer
// cannot be reached.
func (d *deliverer) run() {
	defer close(d.done)
	for pause := time.Duration(0); ; {
		select {
		case <-d.pullCtx.Done():
			return
		case <-time.After(pause):
		}
		err := d.pull()
		if d.pullCtx.Err() != nil {
			return
		}
		if err != nil {
			d.stats.failed(err.Error())
			d.s.log.Warn("push: pulling; retrying", slog.String("subscription", d.rec.Name), slog.Any("error", err))
		}
		pause = min(max(2*pause, 500*time.Millisecond), 10*time.Second)
	}
}

// slot is what one request holds: a subscription slot, and either the
// subscription's own slot or one of the replica's.
type slot struct{ own bool }

// acquire takes a subscription slot, then the subscription's own slot or
// a replica slot, whichever is free first (its own when both are); it
// gives up when pulling stops.
func (d *deliverer) acquire() (slot, error) {
	select {
	case d.sem <- struct{}{}:
	case <-d.pullCtx.Done():
		return slot{}, d.pullCtx.Err()
	}
	select {
	case d.own <- struct{}{}:
		return slot{own: true}, nil
	default:
	}
	select {
	case d.own <- struct{}{}:
		return slot{own: true}, nil
	case d.s.replica <- struct{}{}:
		return slot{}, nil
	case <-d.pullCtx.Done():
		<-d.sem
		return slot{}, d.pullCtx.Err()
	}
}

func (d *deliverer) release(sl slot) {
	if sl.own {
		<-d.own
	} else {
		<-d.s.replica
	}
	<-d.sem
}

// pull consumes the durable until pulling stops or the iterator fails.
func (d *deliverer) pull() error {
	cctx, cancel := context.WithTimeout(d.pullCtx, 10*time.Second)
	cons, err := d.js.Consumer(cctx, d.rec.Stream, d.rec.Consumer)
	cancel()
	if err != nil {
		return bridge.JetStreamError(err, fmt.Sprintf("consumer %q on stream %q", d.rec.Consumer, d.rec.Stream))
	}
	cfg := cons.CachedInfo().Config
	it, err := cons.Messages(jetstream.PullMaxMessages(d.rec.Concurrency), jetstream.PullExpiry(30*time.Second), jetstream.PullHeartbeat(10*time.Second))
	if err != nil {
		return bridge.JetStreamError(err, fmt.Sprintf("consume %q on stream %q", d.rec.Consumer, d.rec.Stream))
	}
	d.stats.active.Store(true)
	defer d.stats.active.Store(false)
	defer d.drainIterator(it)
	for {
		asked := time.Now()
		sl, err := d.acquire()
		if err != nil {
			return nil
		}
		waited := time.Since(asked)
		msg, err := it.Next(jetstream.NextContext(d.pullCtx))
		if err != nil {
			d.release(sl)
			switch {
			case d.pullCtx.Err() != nil:
				return nil
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				d.stats.failed("no heartbeat from JetStream")
				continue
			}
			return bridge.JetStreamError(err, fmt.Sprintf("consume %q on stream %q", d.rec.Consumer, d.rec.Stream))
		}
		if waited > time.Second {
			// It may have waited in nats.go's buffer while every slot
			// was busy: its ack wait starts again.
			_ = msg.InProgress()
		}
		d.requests.Add(1)
		go func() {
			defer d.requests.Done()
			defer d.release(sl)
			d.s.obs.PushInFlight(1)
			defer d.s.obs.PushInFlight(-1)
			d.deliver(msg, cfg)
		}()
	}
}

// drainIterator stops the iterator and NAKs what nats.go already holds,
// so that another replica delivers it now rather than after its ack
// wait; at most 2 s.
func (d *deliverer) drainIterator(it jetstream.MessagesContext) {
	it.Drain()
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		m, err := it.Next(jetstream.NextMaxWait(time.Until(end)))
		if err != nil {
			break
		}
		_ = m.Nak()
	}
	it.Stop()
}

// ackWaitFor is the consumer's ack wait for the n-th delivery: its
// backoff entry when it has backoff, else its ack wait.
func ackWaitFor(cfg jetstream.ConsumerConfig, n uint64) time.Duration {
	if len(cfg.BackOff) > 0 {
		return cfg.BackOff[min(int(max(n, 1)-1), len(cfg.BackOff)-1)]
	}
	if cfg.AckWait <= 0 {
		return 30 * time.Second
	}
	return cfg.AckWait
}

// retryDelay is how long a failed delivery waits: the endpoint's
// Retry-After (capped at an hour), else the consumer's backoff for this
// attempt, else 1 s doubling per attempt up to 5 min.
func retryDelay(cfg jetstream.ConsumerConfig, attempt uint64, retryAfter string, now time.Time) time.Duration {
	if d, ok := parseRetryAfter(retryAfter, now); ok {
		return min(d, maxRetryAfter)
	}
	if len(cfg.BackOff) > 0 {
		return cfg.BackOff[min(int(max(attempt, 1)-1), len(cfg.BackOff)-1)]
	}
	shift := min(max(attempt, 1)-1, 20)
	return min(time.Second<<shift, maxExponential)
}

// parseRetryAfter reads a Retry-After value: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// deliver POSTs one message and settles it by the outcome.
func (d *deliverer) deliver(msg jetstream.Msg, cfg jetstream.ConsumerConfig) {
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to settle.
		d.stats.failed("a delivery without JetStream metadata")
		return
	}
	now := time.Now()
	wait := ackWaitFor(cfg, md.NumDelivered)
	deadline := now.Add(wait - min(wait/20, time.Second))
	tok, err := d.s.signer.Sign(acktoken.Claims{Reply: msg.Reply(), Identity: d.rec.Identity, Expires: deadline, AckWait: wait})
	if err != nil {
		d.stats.failed("sign ack token")
		_ = msg.Nak()
		return
	}
	body := msg.Data()
	h := msg.Headers()
	msgID := h.Get("Nats-Msg-Id")
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	id := md.Stream + ":" + seq
	ctx, cancel := context.WithTimeout(d.reqCtx, d.rec.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url.String(), bytes.NewReader(body))
	if err != nil {
		d.stats.failed("building the request")
		_ = msg.Nak()
		return
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	rh := req.Header
	forwardHeaders(rh, h)
	rh.Set("Content-Type", ct)
	rh.Set("User-Agent", "jetway-push/1")
	rh.Set(HeaderSub, d.rec.Name)
	rh.Set(HeaderSubject, msg.Subject())
	rh.Set(HeaderStream, md.Stream)
	rh.Set(HeaderSequence, seq)
	rh.Set(HeaderAttempt, strconv.FormatUint(md.NumDelivered, 10))
	if msgID != "" {
		rh.Set(HeaderMessageID, msgID)
	}
	rh.Set(HeaderAckToken, tok)
	rh.Set(HeaderAckExpires, deadline.UTC().Format(time.RFC3339Nano))
	ts := now.Unix()
	rh.Set("Webhook-Id", id)
	rh.Set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
	rh.Set("Webhook-Signature", sign(d.key, id, ts, body))
	if d.rec.ContentMode == modeCloudEvents {
		ceID := msgID
		if ceID == "" {
			ceID = id
		}
		rh.Set("Ce-Specversion", "1.0")
		rh.Set("Ce-Id", ceID)
		rh.Set("Ce-Source", "/jetway/streams/"+url.PathEscape(md.Stream))
		rh.Set("Ce-Type", "dev.jetway.message")
		rh.Set("Ce-Subject", msg.Subject())
		rh.Set("Ce-Time", md.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	sent := time.Now()
	resp, err := d.s.client.Do(req)
	if err != nil {
		d.requestFailed(msg, cfg, md.NumDelivered, err, time.Since(sent))
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxResponseBody)
	_ = resp.Body.Close()
	took := time.Since(sent)
	code := resp.StatusCode
	switch {
	case code == http.StatusAccepted:
		// The receiver acks (or NAKs) later with the ack token; the ack
		// wait governs a redelivery.
		d.stats.succeeded()
		d.observe(OutcomeDeferred, took)
	case code >= 200 && code < 300:
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := msg.DoubleAck(actx)
		acancel()
		if err != nil {
			// Delivered, not acked: JetStream delivers it again.
			d.stats.failed("ack after HTTP " + strconv.Itoa(code) + ": " + err.Error())
			d.observe(OutcomeError, took)
			return
		}
		d.stats.succeeded()
		d.observe(OutcomeAcked, took)
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		delay := retryDelay(cfg, md.NumDelivered, resp.Header.Get("Retry-After"), time.Now())
		d.stats.failed("HTTP " + strconv.Itoa(code))
		d.observe(d.nak(msg, delay), took)
	case code >= 400 && code < 500:
		reason := fmt.Sprintf("push %s: HTTP %d", d.rec.Name, code)
		d.stats.failed("HTTP " + strconv.Itoa(code) + ": terminated")
		tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := d.s.terminate(tctx, msg, reason)
		tcancel()
		if err != nil {
			d.s.log.Warn("push: terminate", slog.String("subscription", d.rec.Name), slog.Any("error", err))
			d.observe(OutcomeError, took)
			return
		}
		d.observe(OutcomeTerminated, took)
	default:
		// 3xx (redirects are not followed) and anything else: retried.
		d.stats.failed("HTTP " + strconv.Itoa(code) + " (redirects are not followed)")
		d.observe(d.nak(msg, retryDelay(cfg, md.NumDelivered, "", time.Now())), took)
	}
}

// observe counts one request of the subscription.
func (d *deliverer) observe(outcome string, took time.Duration) {
	d.s.obs.PushRequest(d.rec.Name, outcome, took)
}

// requestFailed settles a request that got no response: cancelled by a
// closing replica (NAKed at once, for another replica), timed out or
// refused (NAKed with the retry delay).
func (d *deliverer) requestFailed(msg jetstream.Msg, cfg jetstream.ConsumerConfig, attempt uint64, err error, took time.Duration) {
	// *url.Error repeats the URL, which may hold credentials.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case d.reqCtx.Err() != nil:
		d.stats.failed("cancelled: the replica is closing")
		d.observe(d.nak(msg, 0), took)
		return
	case errors.Is(err, context.DeadlineExceeded):
		d.stats.failed("timeout after " + d.rec.Timeout.String())
	case errors.Is(err, errForbiddenAddress):
		d.stats.failed(err.Error())
	default:
		d.stats.failed("connection: " + err.Error())
	}
	d.observe(d.nak(msg, retryDelay(cfg, attempt, "", time.Now())), took)
}

// nak NAKs msg, after delay when positive, and answers the outcome:
// OutcomeRetried, or OutcomeError when the NAK could not be sent.
func (d *deliverer) nak(msg jetstream.Msg, delay time.Duration) string {
	var err error
	if delay > 0 {
		err = msg.NakWithDelay(delay)
	} else {
		err = msg.Nak()
	}
	if err != nil {
		d.s.log.Debug("push: nak", slog.String("subscription", d.rec.Name), slog.Any("error", err))
		return OutcomeError
	}
	return OutcomeRetried
}

func (d *deliverer) state() *jetwayv1.PushSubscriptionState {
	st := d.stats.snapshot()
	st.InFlight = int64(len(d.sem))
	return st
}

// stats is a subscription's delivery state on this replica.
type stats struct {
	active    atomic.Bool
	delivered atomic.Int64
	failures  atomic.Int64

	mu          sync.Mutex
	lastSuccess time.Time
	lastError   string
	lastErrorAt time.Time
}

// carry keeps the counters of the deliverer a new one replaces.
func (s *stats) carry(prev *stats) {
	s.delivered.Store(prev.delivered.Load())
	s.failures.Store(prev.failures.Load())
	prev.mu.Lock()
	ls, le, lea := prev.lastSuccess, prev.lastError, prev.lastErrorAt
	prev.mu.Unlock()
	s.mu.Lock()
	s.lastSuccess, s.lastError, s.lastErrorAt = ls, le, lea
	s.mu.Unlock()
}

func (s *stats) succeeded() {
	s.delivered.Add(1)
	s.mu.Lock()
	s.lastSuccess = time.Now()
	s.mu.Unlock()
}

func (s *stats) failed(what string) {
	s.failures.Add(1)
	s.mu.Lock()
	s.lastError, s.lastErrorAt = what, time.Now()
	s.mu.Unlock()
}

func (s *stats) snapshot() *jetwayv1.PushSubscriptionState {
	out := &jetwayv1.PushSubscriptionState{Active: s.active.Load(), Delivered: s.delivered.Load(), Failed: s.failures.Load()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastSuccess.IsZero() {
		out.LastSuccess = timestamppb.New(s.lastSuccess)
	}
	if s.lastError != "" {
		out.LastError, out.LastErrorTime = s.lastError, timestamppb.New(s.lastErrorAt)
	}
	return out
}
