package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// consumeWindow is the in-flight window of the consume scenarios on both
// sides: the bridge's max_in_flight, nats.go's PullMaxMessages.
const consumeWindow = 1024

// eventBatch is the max_batch of the bridge side of scenarios 4 and 5: up
// to this many messages per gRPC event (and, in 4, acks per request). The
// "1/event" side runs without it.
const eventBatch = 256

// ackBatch is how many tokens one Ack call carries (scenario 5), and
// ackWorkers how many Ack calls a client keeps going at once.
const (
	ackBatch   = 100
	ackWorkers = 4
)

// filledStream returns a stream holding consumeN messages of the payload
// size, queuing them on first use (not timed). The consume runs read it
// through a fresh durable consumer each, so the stream is filled once per
// payload size instead of once per run.
func (e *env) filledStream(ctx context.Context, p params) (filledStream, error) {
	if f, ok := e.filled[p.size]; ok {
		return f, nil
	}
	name := "BENCHFILL_" + sizeLabel(p.size)
	subject := strings.ToLower(name)
	if err := e.createStream(ctx, name, subject); err != nil {
		return filledStream{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.b.fillTime+drainGrace)
	defer cancel()
	e.asyncErrs.Store(0)
	deadline := time.Now().Add(p.b.fillTime)
	for sent := 0; sent < p.b.consumeN && time.Now().Before(deadline); {
		if _, err := e.jsAsync.PublishAsync(subject+".x", p.payload); err != nil {
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue
			}
			e.deleteStream(name)
			return filledStream{}, fmt.Errorf("fill %s: %w", name, err)
		}
		sent++
	}
	select {
	case <-e.jsAsync.PublishAsyncComplete():
	case <-ctx.Done():
		e.deleteStream(name)
		return filledStream{}, fmt.Errorf("fill %s: acks outstanding: %w", name, ctx.Err())
	}
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		e.deleteStream(name)
		return filledStream{}, fmt.Errorf("fill %s: %w", name, err)
	}
	f := filledStream{name: name, count: int(s.CachedInfo().State.Msgs)}
	if f.count == 0 {
		e.deleteStream(name)
		return filledStream{}, fmt.Errorf("fill %s: nothing stored", name)
	}
	if f.count < p.b.consumeN {
		p.notes.notef("only %d of %d messages queued within %s", f.count, p.b.consumeN, p.b.fillTime)
	}
	e.filled[p.size] = f
	return f, nil
}

// checkAckGap notes when the consumer's ack floor lags far behind what the
// client received and acked, in order, from a fresh consumer: some
// delivery below the client's count never reached the client (it waits out
// the ack wait and comes back as a redelivery).
func (e *env) checkAckGap(p params, stream, consumer string, acked int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, stream, consumer)
	if err != nil {
		return
	}
	ci := c.CachedInfo()
	if floor := int(ci.AckFloor.Consumer); floor+2*consumeWindow < acked {
		p.notes.notef("round %d: the client acked %d deliveries but the server's ack floor is %d (%d delivered, %d ack pending): delivery %d never reached the client",
			p.round+1, acked, floor, ci.Delivered.Consumer, ci.NumAckPending, floor+1)
	}
}

// removeFilled deletes the prefilled streams.
func (e *env) removeFilled() {
	for _, f := range e.filled {
		e.deleteStream(f.name)
	}
}

// withConsumer runs fn with a fresh durable consumer (explicit acks, room
// for every in-flight ack) on the prefilled stream, deleting it after.
func withConsumer(ctx context.Context, e *env, p params, scenario int, side string, fn func(f filledStream, consumer string, cons jetstream.Consumer) (measurement, error)) (measurement, error) {
	f, err := e.filledStream(ctx, p)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("s%d_r%d_%s", scenario, p.round, side)
	cons, err := e.createConsumer(ctx, f.name, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 20_000, AckWait: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	defer e.deleteConsumer(f.name, name)
	return fn(f, name, cons)
}

// consumeRound is scenario 4: the bridge's Consume with inline acks
// against nats.go's Consume with explicit acks.
func consumeRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	return consumeSides(ctx, e, p, 4, bridgeConsume)
}

// consumeSides runs one round of a consume scenario: the bridge client
// (with eventBatch, and without batching when the budget has singles)
// against native Consume, each on a fresh durable consumer.
func consumeSides(ctx context.Context, e *env, p params, scenario int,
	bridge func(ctx context.Context, e *env, p params, f filledStream, consumer string, batch int) (measurement, error),
) (map[string]measurement, error) {
	bridgeSide := func(name string, batch int) sideRun {
		return sideRun{name, func(ctx context.Context) (measurement, error) {
			return withConsumer(ctx, e, p, scenario, name, func(f filledStream, consumer string, _ jetstream.Consumer) (measurement, error) {
				return bridge(ctx, e, p, f, consumer, batch)
			})
		}}
	}
	sides := []sideRun{
		bridgeSide("bridge", eventBatch),
		{"native", func(ctx context.Context) (measurement, error) {
			return withConsumer(ctx, e, p, scenario, "native", func(f filledStream, _ string, cons jetstream.Consumer) (measurement, error) {
				return nativeConsume(ctx, p, f, cons)
			})
		}},
	}
	if p.b.singles {
		sides = append(sides, bridgeSide("single", 0))
	}
	return alternate(ctx, e, p.round, sides...)
}

// bridgeConsume reads min(consumeN, queued) messages from a Consume
// stream, acking each on the same stream as it arrives, within
// consumeTime. With batch, messages come up to batch per event and the
// acks of one event go back in one request.
func bridgeConsume(ctx context.Context, e *env, p params, f filledStream, consumer string, batch int) (measurement, error) {
	n := min(p.b.consumeN, f.count)
	ctx, cancel := context.WithTimeout(ctx, p.b.consumeTime+drainGrace)
	defer cancel()
	st, err := e.msgs.Consume(ctx)
	if err != nil {
		return nil, fmt.Errorf("open Consume: %w", err)
	}
	start := &jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: &jetwayv1.SubscribeRequest{
		Stream: f.name, Consumer: consumer, MaxInFlight: consumeWindow, MaxBatch: int32(batch),
	}}}
	if err := st.Send(start); err != nil {
		return nil, fmt.Errorf("Consume start: %w", err)
	}
	first, err := st.Recv()
	if err != nil {
		return nil, fmt.Errorf("Consume: %w", err)
	}
	if first.GetSubscribed() == nil {
		return nil, fmt.Errorf("Consume: first event %T, want subscribed", first.GetEvent())
	}
	// The time bound cancels a Recv that waits past it.
	t0 := time.Now()
	w := startWindow(ctx)
	stop := time.AfterFunc(p.b.consumeTime, cancel)
	defer stop.Stop()
	op := &jetwayv1.AckOperation{}
	ack := &jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Ack{Ack: op}}
	var opBuf, ops []*jetwayv1.AckOperation
	acks := &jetwayv1.ConsumeRequest_Acks{Acks: &jetwayv1.AckBatch{}}
	batchAck := &jetwayv1.ConsumeRequest{Request: acks}
	got := 0
	var ackErrs int
recv:
	for got < n {
		resp, err := st.Recv()
		if err != nil {
			if time.Since(t0) >= p.b.consumeTime {
				break recv // time bound
			}
			return nil, fmt.Errorf("Consume after %d messages: %w", got, err)
		}
		switch ev := resp.GetEvent().(type) {
		case *jetwayv1.ConsumeResponse_Message:
			op.Token = ev.Message.GetAckToken()
			if err := st.Send(ack); err != nil {
				if time.Since(t0) >= p.b.consumeTime {
					break recv
				}
				return nil, fmt.Errorf("Consume ack: %w", err)
			}
			got++
		case *jetwayv1.ConsumeResponse_Batch:
			msgs := ev.Batch.GetMessages()
			ops = ops[:0]
			for i, m := range msgs {
				if i == len(opBuf) {
					opBuf = append(opBuf, &jetwayv1.AckOperation{})
				}
				opBuf[i].Token = m.GetAckToken()
				ops = append(ops, opBuf[i])
			}
			acks.Acks.Operations = ops
			if err := st.Send(batchAck); err != nil {
				if time.Since(t0) >= p.b.consumeTime {
					break recv
				}
				return nil, fmt.Errorf("Consume acks: %w", err)
			}
			got += len(msgs)
		case *jetwayv1.ConsumeResponse_AckResult:
			ackErrs++
		}
	}
	m := w.throughput(int64(got))
	stop.Stop()
	if got == n {
		// Half-close: the bridge ends the stream once it has read the acks.
		_ = st.CloseSend()
		for range n + 16 {
			if _, err := st.Recv(); err != nil {
				break
			}
		}
	} else {
		p.notes.timeBound("bridge", got, n)
	}
	e.checkAckGap(p, f.name, consumer, got)
	if ackErrs > 0 {
		return nil, fmt.Errorf("Consume: %d acks failed", ackErrs)
	}
	return m, nil
}

// nativeConsume is nats.go's Consume with an explicit Ack per message.
func nativeConsume(ctx context.Context, p params, f filledStream, cons jetstream.Consumer) (measurement, error) {
	n := int64(min(p.b.consumeN, f.count))
	var got atomic.Int64
	done := make(chan struct{})
	var ackErrs atomic.Int64
	w := startWindow(ctx)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := m.Ack(); err != nil {
			ackErrs.Add(1)
		}
		if got.Add(1) == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(consumeWindow))
	if err != nil {
		return nil, fmt.Errorf("Consume: %w", err)
	}
	timer := time.NewTimer(p.b.consumeTime)
	defer timer.Stop()
	var cerr error
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
		cerr = ctx.Err()
	}
	consumed := min(got.Load(), n)
	m := w.throughput(consumed)
	cc.Stop()
	select {
	case <-cc.Closed():
	case <-time.After(drainGrace):
		cerr = errors.Join(cerr, errors.New("Consume did not stop"))
	}
	if cerr != nil {
		return nil, cerr
	}
	if consumed < n {
		p.notes.timeBound("native", int(consumed), int(n))
	}
	if k := ackErrs.Load(); k > 0 {
		return nil, fmt.Errorf("native: %d acks failed", k)
	}
	return m, nil
}

// subscribeAckRound is scenario 5: the bridge's Subscribe with acks sent
// through the Ack RPC, 100 tokens per call, against native Consume.
func subscribeAckRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	return consumeSides(ctx, e, p, 5, bridgeSubscribeAck)
}

// bridgeSubscribeAck reads a Subscribe stream (up to batch messages per
// event with batch) and hands the tokens, 100 at a time, to ackWorkers
// goroutines calling Ack. The rate counts messages whose ack the bridge
// confirmed.
func bridgeSubscribeAck(ctx context.Context, e *env, p params, f filledStream, consumer string, batch int) (measurement, error) {
	n := min(p.b.consumeN, f.count)
	ctx, cancel := context.WithTimeout(ctx, p.b.consumeTime+drainGrace)
	defer cancel()
	subCtx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	st, err := e.msgs.Subscribe(subCtx, &jetwayv1.SubscribeRequest{Stream: f.name, Consumer: consumer, MaxInFlight: consumeWindow, MaxBatch: int32(batch)})
	if err != nil {
		return nil, fmt.Errorf("Subscribe: %w", err)
	}
	first, err := st.Recv()
	if err != nil {
		return nil, fmt.Errorf("Subscribe: %w", err)
	}
	if first.GetSubscribed() == nil {
		return nil, fmt.Errorf("Subscribe: first event %T, want subscribed", first.GetEvent())
	}
	t0 := time.Now()
	w := startWindow(ctx)
	stop := time.AfterFunc(p.b.consumeTime, cancelSub)
	defer stop.Stop()

	batches := make(chan []*jetwayv1.AckOperation, 2*ackWorkers)
	var acked atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range ackWorkers {
		g.Go(func() error {
			for ops := range batches {
				resp, err := e.msgs.Ack(gctx, &jetwayv1.AckRequest{Operations: ops})
				if err != nil {
					return fmt.Errorf("Ack: %w", err)
				}
				for _, r := range resp.GetResults() {
					if r.GetError() != nil {
						return fmt.Errorf("Ack: %s: %s", r.GetError().GetReason(), r.GetError().GetMessage())
					}
				}
				acked.Add(int64(len(ops)))
			}
			return nil
		})
	}
	got := 0
	pending := make([]*jetwayv1.AckOperation, 0, ackBatch)
	var recvErr error
	for got < n {
		resp, err := st.Recv()
		if err != nil {
			if time.Since(t0) < p.b.consumeTime {
				recvErr = fmt.Errorf("Subscribe after %d messages: %w", got, err)
			}
			break
		}
		msgs := resp.GetBatch().GetMessages()
		if m := resp.GetMessage(); m != nil {
			msgs = []*jetwayv1.Message{m}
		}
		for _, m := range msgs {
			got++
			pending = append(pending, &jetwayv1.AckOperation{Token: m.GetAckToken()})
			if len(pending) == ackBatch || got == n {
				select {
				case batches <- pending:
				case <-gctx.Done():
				}
				pending = make([]*jetwayv1.AckOperation, 0, ackBatch)
			}
		}
	}
	if len(pending) > 0 && recvErr == nil {
		select {
		case batches <- pending:
		case <-gctx.Done():
		}
	}
	close(batches)
	werr := g.Wait()
	m := w.throughput(acked.Load())
	cancelSub()
	if err := errors.Join(recvErr, werr); err != nil {
		return nil, err
	}
	if got < n {
		p.notes.timeBound("bridge", got, n)
	}
	e.checkAckGap(p, f.name, consumer, int(acked.Load()))
	return m, nil
}
