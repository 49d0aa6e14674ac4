package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

const (
	// idleHeartbeat is the heartbeat the idle streams ask for: short
	// enough that every stream heartbeats within the CPU window.
	idleHeartbeat = 5 * time.Second
	// idleStreamsPerConn keeps each HTTP/2 connection under the bridge's
	// --max-concurrent-streams (1024).
	idleStreamsPerConn = 500
	// idleOpeners open the streams concurrently.
	idleOpeners = 32
	// idleSettle lets the bridge finish start-up work before sampling.
	idleSettle = time.Second
)

// idleRound is scenario 8: N idle Subscribe streams on one durable
// consumer, on a freshly started bridge: RSS growth per stream, CPU while
// idle, time to open them all.
func idleRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	n := p.b.idleStreams
	if err := e.restartBridge(ctx); err != nil {
		return nil, err
	}
	stream := fmt.Sprintf("BENCH8_R%d", p.round)
	if err := e.createStream(ctx, stream, "bench8r"+fmt.Sprint(p.round)); err != nil {
		return nil, err
	}
	defer e.deleteStream(stream)
	// Every stream keeps one pull request waiting on the consumer.
	if _, err := e.createConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "idle", AckPolicy: jetstream.AckExplicitPolicy, MaxWaiting: n + 64,
	}); err != nil {
		return nil, err
	}
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range (n + idleStreamsPerConn - 1) / idleStreamsPerConn {
		c, err := e.dialBridge()
		if err != nil {
			return nil, err
		}
		c.Connect()
		conns = append(conns, c)
	}
	pid := e.bridgeProc.pid()
	rss0, err := rssBytes(pid)
	if err != nil {
		return nil, err
	}

	streamsCtx, closeStreams := context.WithCancel(ctx)
	var heartbeats atomic.Int64
	var readers sync.WaitGroup
	// Deferred in reverse: close the streams, wait for the readers, then
	// give the bridge time to end its handlers before the stream is
	// deleted (or its log fills with "consumer deleted").
	defer func() { _ = sleep(ctx, idleSettle+time.Duration(n)*100*time.Microsecond) }()
	defer readers.Wait()
	defer closeStreams()

	openCtx, cancelOpen := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelOpen()
	next := atomic.Int64{}
	g, gctx := errgroup.WithContext(openCtx)
	t0 := time.Now()
	for range idleOpeners {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := gctx.Err(); err != nil {
					return err
				}
				client := jetwayv1.NewMessageServiceClient(conns[int(i)/idleStreamsPerConn])
				st, err := client.Subscribe(streamsCtx, &jetwayv1.SubscribeRequest{
					Stream: stream, Consumer: "idle", Heartbeat: durationpb.New(idleHeartbeat),
				})
				if err != nil {
					return fmt.Errorf("Subscribe %d: %w", i, err)
				}
				first, err := st.Recv()
				if err != nil {
					return fmt.Errorf("Subscribe %d: %w", i, err)
				}
				if first.GetSubscribed() == nil {
					return fmt.Errorf("Subscribe %d: first event %T, want subscribed", i, first.GetEvent())
				}
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						resp, err := st.Recv()
						if err != nil {
							return
						}
						if resp.GetHeartbeat() != nil {
							heartbeats.Add(1)
						}
					}
				}()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("open %d streams: %w", n, err)
	}
	openTime := time.Since(t0)

	if err := sleep(ctx, idleSettle); err != nil {
		return nil, err
	}
	rssOpen, err := rssBytes(pid)
	if err != nil {
		return nil, err
	}
	// Steady state (see idlePullCycle): the CPU window starts once every
	// stream has renewed its first pull request.
	if err := sleep(ctx, p.b.idleSteady); err != nil {
		return nil, err
	}
	cpu0, err := cpuTime(pid)
	hb0 := heartbeats.Load()
	if err != nil {
		return nil, err
	}
	w0 := time.Now()
	if err := sleep(ctx, p.b.idleWindow); err != nil {
		return nil, err
	}
	cpu1, err1 := cpuTime(pid)
	rss1, err2 := rssBytes(pid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	window := time.Since(w0)
	hb := heartbeats.Load() - hb0
	p.notes.notef("%d streams over %d connections, heartbeat %s; %d heartbeats in the %.1fs window (≈%d expected); bridge RSS %.1f MiB before, %.1f just opened, %.1f after %s idle",
		n, len(conns), idleHeartbeat, hb, window.Seconds(), int64(float64(n)*window.Seconds()/idleHeartbeat.Seconds()),
		float64(rss0)/(1<<20), float64(rssOpen)/(1<<20), float64(rss1)/(1<<20), (idleSettle + p.b.idleSteady + window).Round(time.Second))
	return map[string]measurement{"bridge": {
		"rss":      float64(rss1-rss0) / float64(n) / 1024,
		"rss.open": float64(rssOpen-rss0) / float64(n) / 1024,
		"cpu":      100 * (cpu1 - cpu0).Seconds() / window.Seconds(),
		"open":     openTime.Seconds(),
	}}, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
