package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// fetchBatch is the batch of scenario 6; fetchWait the long-poll bound
// (never reached: the messages are ready).
const (
	fetchBatch = 100
	fetchWait  = 2 * time.Second
)

// fetchRound is scenario 6: one Fetch of 100 ready messages from an idle
// durable consumer, timed; the re-publish and the acks between fetches are
// not. The echo side times the gRPC half alone: a bare gRPC service in
// a process of its own answers each call with a 100-message answer the
// bridge gave.
func fetchRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	echo, err := startEcho(e)
	if err != nil {
		return nil, err
	}
	defer echo.stop()
	return alternate(ctx, e, p.round,
		sideRun{"bridge", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 6, "bridge", func(stream, subject string) (measurement, error) {
				return fetchLoop(ctx, e, p, stream, subject, "bridge", bridgeFetch(e, stream))
			})
		}},
		sideRun{"native", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 6, "native", func(stream, subject string) (measurement, error) {
				return fetchLoop(ctx, e, p, stream, subject, "native", nativeFetch(e))
			})
		}},
		sideRun{"echo", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 6, "echo", func(stream, subject string) (measurement, error) {
				if err := loadEcho(ctx, e, echo, stream, subject, p.payload); err != nil {
					return nil, err
				}
				return fetchLoop(ctx, e, p, stream, subject, "echo", echoFetch(echo, stream))
			})
		}},
	)
}

// loadEcho gives the echo a 100-message answer from the bridge's Fetch.
func loadEcho(ctx context.Context, e *env, echo *echoClient, stream, subject string, payload []byte) error {
	if err := publishBatch(ctx, e, subject+".x", payload, fetchBatch); err != nil {
		return err
	}
	const name = "fetch_echo_load"
	if _, err := e.createConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute}); err != nil {
		return err
	}
	resp, err := e.msgs.Fetch(ctx, &jetwayv1.FetchRequest{Stream: stream, Consumer: name, Batch: fetchBatch, Wait: durationpb.New(fetchWait)})
	if err != nil {
		return fmt.Errorf("Fetch for the echo: %w", err)
	}
	if len(resp.GetMessages()) != fetchBatch {
		return fmt.Errorf("Fetch for the echo: %d messages, want %d", len(resp.GetMessages()), fetchBatch)
	}
	return echo.load(ctx, resp)
}

// echoFetch calls the echo's Fetch; the messages published before each
// call stay in the stream, deleted with it.
func echoFetch(echo *echoClient, stream string) fetcher {
	return func(ctx context.Context, _ jetstream.Consumer, name string) (int, func(context.Context) error, error) {
		n, err := echo.callFetch(ctx, &jetwayv1.FetchRequest{
			Stream: stream, Consumer: name, Batch: fetchBatch, Wait: durationpb.New(fetchWait),
		})
		return n, func(context.Context) error { return nil }, err
	}
}

// fetcher fetches one batch (timed) and returns an untimed function that
// acks it, and how many messages came.
type fetcher func(ctx context.Context, consumer jetstream.Consumer, name string) (n int, ack func(context.Context) error, err error)

// fetchLoop makes up to fetchIters timed fetches within fetchTime, queuing
// a fresh batch of 100 before each.
func fetchLoop(ctx context.Context, e *env, p params, stream, subject, side string, fetch fetcher) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.fetchTime+drainGrace)
	defer cancel()
	name := "fetch_" + side
	cons, err := e.createConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		return nil, err
	}
	var lat latencies
	short := 0
	deadline := time.Now().Add(p.b.fetchTime)
	for i := 0; i < p.b.fetchIters && time.Now().Before(deadline); i++ {
		if err := publishBatch(ctx, e, subject+".x", p.payload, fetchBatch); err != nil {
			return nil, err
		}
		t0 := time.Now()
		n, ack, err := fetch(ctx, cons, name)
		dt := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("fetch %d: %w", i+1, err)
		}
		lat = append(lat, dt)
		if n < fetchBatch {
			short++
		}
		if err := ack(ctx); err != nil {
			return nil, fmt.Errorf("ack fetch %d: %w", i+1, err)
		}
	}
	if short > 0 {
		p.notes.notef("%s: %d of %d fetches returned fewer than %d", side, short, len(lat), fetchBatch)
	}
	if len(lat) == 0 {
		return nil, errors.New("no fetch completed")
	}
	return measurement{mP50: lat.percentileMS(50), mP99: lat.percentileMS(99)}, nil
}

// publishBatch stores n messages and waits for their acks.
func publishBatch(ctx context.Context, e *env, subject string, payload []byte, n int) error {
	e.asyncErrs.Store(0)
	for range n {
		if _, err := e.jsAsync.PublishAsync(subject, payload); err != nil {
			return fmt.Errorf("publish batch: %w", err)
		}
	}
	select {
	case <-e.jsAsync.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("publish batch: %w", ctx.Err())
	}
	if k := e.asyncErrs.Load(); k > 0 {
		return fmt.Errorf("publish batch: %d failed", k)
	}
	return nil
}

func bridgeFetch(e *env, stream string) fetcher {
	return func(ctx context.Context, _ jetstream.Consumer, name string) (int, func(context.Context) error, error) {
		resp, err := e.msgs.Fetch(ctx, &jetwayv1.FetchRequest{
			Stream: stream, Consumer: name, Batch: fetchBatch, Wait: durationpb.New(fetchWait),
		})
		if err != nil {
			return 0, nil, fmt.Errorf("Fetch: %w", err)
		}
		msgs := resp.GetMessages()
		ack := func(ctx context.Context) error {
			if len(msgs) == 0 {
				return nil
			}
			ops := make([]*jetwayv1.AckOperation, len(msgs))
			for i, m := range msgs {
				ops[i] = &jetwayv1.AckOperation{Token: m.GetAckToken()}
			}
			r, err := e.msgs.Ack(ctx, &jetwayv1.AckRequest{Operations: ops})
			if err != nil {
				return fmt.Errorf("Ack: %w", err)
			}
			for _, res := range r.GetResults() {
				if res.GetError() != nil {
					return fmt.Errorf("Ack: %s", res.GetError().GetMessage())
				}
			}
			return nil
		}
		return len(msgs), ack, nil
	}
}

func nativeFetch(e *env) fetcher {
	return func(_ context.Context, cons jetstream.Consumer, _ string) (int, func(context.Context) error, error) {
		batch, err := cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return 0, nil, fmt.Errorf("Fetch: %w", err)
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() { // closed at the batch's end or after fetchWait
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil {
			return 0, nil, fmt.Errorf("Fetch: %w", err)
		}
		ack := func(ctx context.Context) error {
			for _, m := range msgs {
				if err := m.Ack(); err != nil {
					return fmt.Errorf("Ack: %w", err)
				}
			}
			if err := e.nc.FlushWithContext(ctx); err != nil {
				return fmt.Errorf("flush acks: %w", err)
			}
			return nil
		}
		return len(msgs), ack, nil
	}
}

// e2eRate is the publish rate of scenario 7.
const e2eRate = 1000

// e2eWarmup samples are dropped at the start of each run.
const e2eWarmup = 20

// e2eRound is scenario 7: latency from publish to delivery at 1000 msg/s.
//
// The echo side is the two gRPC hops the bridge adds, alone: unary calls
// to the echo process at the same rate, timed from call to answer. A
// message through the bridge crosses from client to bridge (its unary
// Publish) and from bridge to client (its Subscribe) on top of the trip
// native takes through nats-server: the same two hops.
func e2eRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	echo, err := startEcho(e)
	if err != nil {
		return nil, err
	}
	defer echo.stop()
	return alternate(ctx, e, p.round,
		sideRun{"echo", func(ctx context.Context) (measurement, error) {
			return echoE2E(ctx, p, echo)
		}},
		sideRun{"bridge", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 7, "bridge", func(stream, subject string) (measurement, error) {
				return bridgeE2E(ctx, e, p, stream, subject+".x")
			})
		}},
		sideRun{"native", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 7, "native", func(stream, subject string) (measurement, error) {
				return nativeE2E(ctx, e, p, stream, subject+".x")
			})
		}},
	)
}

// recorder collects one-way latencies from send timestamps carried in the
// first 8 bytes of the payload (sender and receiver share the clock).
type recorder struct {
	mu   sync.Mutex
	lat  latencies
	got  atomic.Int64
	want atomic.Int64 // -1 until the publisher is done
	done chan struct{}
	once sync.Once
}

func newRecorder() *recorder {
	r := &recorder{done: make(chan struct{})}
	r.want.Store(-1)
	return r
}

func (r *recorder) record(data []byte, now time.Time) {
	if len(data) < 8 {
		return
	}
	sent := int64(binary.LittleEndian.Uint64(data))
	r.mu.Lock()
	r.lat = append(r.lat, now.Sub(time.Unix(0, sent)))
	r.mu.Unlock()
	r.check(r.got.Add(1))
}

func (r *recorder) check(got int64) {
	if w := r.want.Load(); w >= 0 && got >= w {
		r.once.Do(func() { close(r.done) })
	}
}

// finish says how many were sent and waits (bounded) for them all.
func (r *recorder) finish(ctx context.Context, sent int64) (measurement, int64) {
	r.want.Store(sent)
	r.check(r.got.Load())
	select {
	case <-r.done:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return e2eMeasurement(r.lat), int64(len(r.lat))
}

// e2eMeasurement is the p50 and p99 of one scenario 7 run, its first
// e2eWarmup samples dropped.
func e2eMeasurement(lat latencies) measurement {
	if len(lat) > 2*e2eWarmup {
		lat = lat[e2eWarmup:]
	}
	return measurement{mP50: lat.percentileMS(50), mP99: lat.percentileMS(99)}
}

// pace publishes at e2eRate for e2eTime, stamping each payload with its
// send time. It returns how many were published.
func pace(ctx context.Context, p params, publish func(ctx context.Context, data []byte) error) (int64, error) {
	buf := append([]byte(nil), p.payload...)
	if len(buf) < 8 {
		buf = append(buf, make([]byte, 8-len(buf))...)
	}
	total := int(p.b.e2eTime.Seconds() * e2eRate)
	interval := time.Second / e2eRate
	start := time.Now()
	var sent int64
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return sent, ctx.Err()
			}
		}
		binary.LittleEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
		if err := publish(ctx, buf); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}

// bridgeE2E publishes with unary Publish and receives on an ephemeral
// Subscribe (deliver new, no acks).
func bridgeE2E(ctx context.Context, e *env, p params, stream, subject string) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.e2eTime+drainGrace)
	defer cancel()
	subCtx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	st, err := e.msgs.Subscribe(subCtx, &jetwayv1.SubscribeRequest{Stream: stream, Config: &jetwayv1.ConsumerConfig{
		DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_NEW, AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_NONE,
	}})
	if err != nil {
		return nil, fmt.Errorf("Subscribe: %w", err)
	}
	if first, err := st.Recv(); err != nil || first.GetSubscribed() == nil {
		return nil, fmt.Errorf("Subscribe: no subscribed event: %w", err)
	}
	rec := newRecorder()
	recvDone := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if m := resp.GetMessage(); m != nil {
				rec.record(m.GetData(), time.Now())
			}
		}
	}()
	req := &jetwayv1.PublishRequest{Subject: subject}
	sent, perr := pace(ctx, p, func(ctx context.Context, data []byte) error {
		req.Payload = &jetwayv1.PublishRequest_Data{Data: data}
		if _, err := e.msgs.Publish(ctx, req); err != nil {
			return fmt.Errorf("Publish: %w", err)
		}
		return nil
	})
	m, got := rec.finish(ctx, sent)
	cancelSub()
	<-recvDone
	// The bridge removes its ephemeral consumer when the stream ends; wait
	// for that before the stream goes, so its log shows no failure.
	waitNoConsumers(ctx, e, stream)
	if perr != nil {
		return nil, perr
	}
	if got < sent {
		p.notes.notef("bridge: %d of %d delivered", got, sent)
	}
	return m, nil
}

// echoE2E times unary echo calls of the payload, paced as the other sides
// publish.
func echoE2E(ctx context.Context, p params, echo *echoClient) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.e2eTime+drainGrace)
	defer cancel()
	req := &jetwayv1.PublishRequest{Subject: "echo.x"}
	var lat latencies
	if _, err := pace(ctx, p, func(ctx context.Context, data []byte) error {
		req.Payload = &jetwayv1.PublishRequest_Data{Data: data}
		t0 := time.Now()
		if err := echo.call(ctx, req); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
		return nil
	}); err != nil {
		return nil, err
	}
	return e2eMeasurement(lat), nil
}

// nativeE2E publishes with js.Publish and receives through an ordered
// consumer (deliver new).
func nativeE2E(ctx context.Context, e *env, p params, stream, subject string) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.e2eTime+drainGrace)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	rec := newRecorder()
	cc, err := cons.Consume(func(m jetstream.Msg) { rec.record(m.Data(), time.Now()) })
	if err != nil {
		return nil, fmt.Errorf("Consume: %w", err)
	}
	defer cc.Stop()
	sent, perr := pace(ctx, p, func(ctx context.Context, data []byte) error {
		if _, err := e.js.Publish(ctx, subject, data); err != nil {
			return fmt.Errorf("js.Publish: %w", err)
		}
		return nil
	})
	m, got := rec.finish(ctx, sent)
	if perr != nil {
		return nil, perr
	}
	if got < sent {
		p.notes.notef("native: %d of %d delivered", got, sent)
	}
	return m, nil
}

// waitNoConsumers waits, at most 3 s, until stream has no consumers.
func waitNoConsumers(ctx context.Context, e *env, stream string) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		s, err := e.js.Stream(ctx, stream)
		if err != nil || s.CachedInfo().State.Consumers == 0 {
			return
		}
		_ = sleep(ctx, 20*time.Millisecond)
	}
}
