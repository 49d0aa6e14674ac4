package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// pushConcurrency is the concurrency of scenario 9's subscriptions.
const pushConcurrency = 64

// pushRound is scenario 9: push delivery to an HTTP receiver in this
// process, on loopback, answering 200 at once. Latency: publish (native,
// paced at 1000 msg/s, the send time in the payload) to the receiver
// reading the request. Throughput: a backlog delivered and acked through
// a subscription created on it, until the receiver has seen it all.
func pushRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	return alternate(ctx, e, p.round, sideRun{"bridge", func(ctx context.Context) (measurement, error) {
		return withStream(ctx, e, p, 9, "bridge", func(stream, subject string) (measurement, error) {
			return pushRun(ctx, e, p, stream, subject)
		})
	}})
}

func pushRun(ctx context.Context, e *env, p params, stream, subject string) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.e2eTime+p.b.fillTime+p.b.consumeTime*10+3*drainGrace)
	defer cancel()
	rec := newRecorder()
	var latencyPhase atomic.Bool
	var got atomic.Int64
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if latencyPhase.Load() {
			rec.record(body, time.Now())
		} else {
			got.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(lis) }()
	defer func() { _ = srv.Close() }()
	endpoint := "http://" + lis.Addr().String() + "/"
	ps := jetwayv1.NewPushServiceClient(e.conn)
	subscribe := func(name, filter string) error {
		if _, err := e.createConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, FilterSubject: filter,
			MaxAckPending: 4 * pushConcurrency,
		}); err != nil {
			return err
		}
		_, err := ps.CreatePushSubscription(ctx, &jetwayv1.CreatePushSubscriptionRequest{Subscription: &jetwayv1.PushSubscription{
			Name: stream + "_" + name, Stream: stream, Consumer: name, Endpoint: endpoint, Concurrency: pushConcurrency,
		}})
		if err != nil {
			return fmt.Errorf("CreatePushSubscription: %w", err)
		}
		return nil
	}
	unsubscribe := func(name string) {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_, _ = ps.DeletePushSubscription(dctx, &jetwayv1.DeletePushSubscriptionRequest{Name: stream + "_" + name})
	}

	// Latency.
	latencyPhase.Store(true)
	if err := subscribe("push_lat", subject+".l"); err != nil {
		return nil, err
	}
	defer unsubscribe("push_lat")
	if err := waitPushActive(ctx, ps, stream+"_push_lat"); err != nil {
		return nil, err
	}
	sent, err := pace(ctx, p, func(ctx context.Context, data []byte) error {
		if _, err := e.js.Publish(ctx, subject+".l", data); err != nil {
			return fmt.Errorf("js.Publish: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m, n := rec.finish(ctx, sent)
	if n < sent {
		p.notes.notef("push: %d of %d delivered within the latency run", n, sent)
	}
	unsubscribe("push_lat")
	latencyPhase.Store(false)

	// Throughput: a backlog, then the subscription.
	backlog := min(p.b.consumeN/3, 50_000)
	if err := publishBatch(ctx, e, subject+".t", p.payload, backlog); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := subscribe("push_tput", subject+".t"); err != nil {
		return nil, err
	}
	defer unsubscribe("push_tput")
	for got.Load() < int64(backlog) {
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return nil, fmt.Errorf("push throughput: %d of %d delivered: %w", got.Load(), backlog, err)
		}
	}
	m[mRate] = float64(backlog) / time.Since(t0).Seconds()
	return m, nil
}

// waitPushActive waits until the bridge delivers subscription name.
func waitPushActive(ctx context.Context, ps jetwayv1.PushServiceClient, name string) error {
	for {
		g, err := ps.GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: name})
		if err == nil && g.GetSubscription().GetState().GetActive() {
			return nil
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return errors.Join(fmt.Errorf("push subscription %s not active", name), err)
		}
	}
}
