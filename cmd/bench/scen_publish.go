package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// unaryCallers is the concurrency of the unary scenarios (2 and 3).
const unaryCallers = 64

// restConns is the HTTP/1.1 keep-alive connection pool of scenario 3.
const restConns = 64

// withStream runs fn on a fresh stream for one side of one round and
// removes the stream afterwards.
func withStream(ctx context.Context, e *env, p params, scenario int, side string, fn func(stream, subject string) (measurement, error)) (measurement, error) {
	stream, subject := p.names(scenario, side)
	if err := e.createStream(ctx, stream, subject); err != nil {
		return nil, err
	}
	defer e.deleteStream(stream)
	return fn(stream, subject)
}

// checkStored notes when a stream holds another count than the publishes
// that were acknowledged.
func checkStored(ctx context.Context, e *env, p params, stream string, acked int64) {
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		p.notes.notef("%s: stream info: %v", stream, err)
		return
	}
	if n := s.CachedInfo().State.Msgs; n != uint64(acked) {
		p.notes.notef("%s stored %d messages, %d acknowledged", stream, n, acked)
	}
}

// publishStreamRound is scenario 1: pipelined publishing, 4096 in flight.
func publishStreamRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	sides := []sideRun{
		{"bridge", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 1, "bridge", func(stream, subject string) (measurement, error) {
				m, acked, err := bridgePublishStream(ctx, e, subject+".x", p, streamBatch)
				if err == nil {
					checkStored(ctx, e, p, stream, acked)
				}
				return m, err
			})
		}},
		{"native", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 1, "native", func(stream, subject string) (measurement, error) {
				m, acked, err := nativePublishAsync(ctx, e, subject+".x", p)
				if err == nil {
					checkStored(ctx, e, p, stream, acked)
				}
				return m, err
			})
		}},
	}
	if p.b.singles {
		sides = append(sides, sideRun{"single", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 1, "single", func(stream, subject string) (measurement, error) {
				m, acked, err := bridgePublishStream(ctx, e, subject+".x", p, 1)
				if err == nil {
					checkStored(ctx, e, p, stream, acked)
				}
				return m, err
			})
		}})
	}
	return alternate(ctx, e, p.round, sides...)
}

// bridgePublishStream sends on one PublishStream while keeping
// publishWindow requests unanswered, until maxOps or runTime.
func bridgePublishStream(ctx context.Context, e *env, subject string, p params, batch int) (measurement, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.runTime+drainGrace)
	defer cancel()
	st, err := e.msgs.PublishStream(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("open PublishStream: %w", err)
	}
	slots := make(chan struct{}, publishWindow)
	var acked, refused atomic.Int64
	var firstRefusal atomic.Value
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				recvErr <- err
				return
			}
			errs := []*jetwayv1.Error{resp.GetError()}
			if len(resp.GetResults()) > 0 {
				errs = errs[:0]
				for _, r := range resp.GetResults() {
					errs = append(errs, r.GetError())
				}
			}
			for _, e := range errs {
				if e != nil {
					refused.Add(1)
					firstRefusal.CompareAndSwap(nil, e.GetReason()+": "+e.GetMessage())
				} else {
					acked.Add(1)
				}
				<-slots
			}
		}
	}()
	// SendMsg marshals before it returns, so one request is reused.
	msg := &jetwayv1.PublishRequest{Subject: subject, Payload: &jetwayv1.PublishRequest_Data{Data: p.payload}}
	req := &jetwayv1.PublishStreamRequest{Publish: msg}
	if batch > 1 {
		req = &jetwayv1.PublishStreamRequest{}
		for range batch {
			req.Batch = append(req.Batch, msg)
		}
	}
	start := time.Now()
	w := startWindow(ctx)
	deadline := start.Add(p.b.runTime)
	var sendErr error
	for sent := 0; sent < p.b.maxOps && time.Now().Before(deadline); sent += max(batch, 1) {
		for range max(batch, 1) {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("PublishStream: window never freed: %w", ctx.Err())
			}
		}
		req.Id = uint64(sent)
		if sendErr = st.Send(req); sendErr != nil {
			break // the stream failed: Recv says why
		}
	}
	if err := st.CloseSend(); err != nil && sendErr == nil {
		sendErr = err
	}
	var err2 error
	select {
	case err2 = <-recvErr:
	case <-ctx.Done():
		err2 = ctx.Err()
	}
	m := w.throughput(acked.Load())
	if err := errors.Join(err2, ignoreEOF(sendErr)); err != nil {
		return nil, 0, fmt.Errorf("PublishStream: %w", err)
	}
	if n := refused.Load(); n > 0 {
		return nil, 0, fmt.Errorf("PublishStream: %d publishes refused, first: %v", n, firstRefusal.Load())
	}
	return m, acked.Load(), nil
}

// streamBatch is how many messages one PublishStream request of the
// bridge side carries in scenario 1 (the "1/request" side sends one).
const streamBatch = 64

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// nativePublishAsync publishes with nats.go's PublishAsync, publishWindow
// pending at most, until maxOps or runTime, then waits for every ack.
func nativePublishAsync(ctx context.Context, e *env, subject string, p params) (measurement, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.runTime+drainGrace)
	defer cancel()
	e.asyncErrs.Store(0)
	start := time.Now()
	w := startWindow(ctx)
	deadline := start.Add(p.b.runTime)
	var sent int64
	for sent < int64(p.b.maxOps) && time.Now().Before(deadline) {
		if _, err := e.jsAsync.PublishAsync(subject, p.payload); err != nil {
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue // the window stayed full for the stall wait: try again
			}
			return nil, 0, fmt.Errorf("PublishAsync: %w", err)
		}
		sent++
	}
	select {
	case <-e.jsAsync.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("PublishAsync: acks outstanding: %w", ctx.Err())
	}
	m := w.throughput(sent)
	if n := e.asyncErrs.Load(); n > 0 {
		return nil, 0, fmt.Errorf("PublishAsync: %d publishes failed", n)
	}
	return m, sent, nil
}

// unaryRound is scenario 2: 64 concurrent unary calls, against the bridge,
// native synchronous publishes and a bare gRPC echo.
func unaryRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	echo, err := startEcho(e)
	if err != nil {
		return nil, err
	}
	defer echo.stop()
	return alternate(ctx, e, p.round,
		sideRun{"bridge", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 2, "bridge", func(_, subject string) (measurement, error) {
				return bridgeUnary(ctx, e, subject+".x", p)
			})
		}},
		sideRun{"native", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 2, "native", func(_, subject string) (measurement, error) {
				return closedLoop(ctx, unaryCallers, p.b.maxOps, p.b.runTime, func(ctx context.Context) error {
					if _, err := e.js.Publish(ctx, subject+".x", p.payload); err != nil {
						return fmt.Errorf("js.Publish: %w", err)
					}
					return nil
				})
			})
		}},
		sideRun{"echo", func(ctx context.Context) (measurement, error) {
			req := &jetwayv1.PublishRequest{Subject: "echo.x", Payload: &jetwayv1.PublishRequest_Data{Data: p.payload}}
			return closedLoop(ctx, unaryCallers, p.b.maxOps, p.b.runTime, func(ctx context.Context) error {
				return echo.call(ctx, req)
			})
		}},
	)
}

// bridgeUnary is 64 callers of the bridge's unary Publish.
func bridgeUnary(ctx context.Context, e *env, subject string, p params) (measurement, error) {
	req := &jetwayv1.PublishRequest{Subject: subject, Payload: &jetwayv1.PublishRequest_Data{Data: p.payload}}
	return closedLoop(ctx, unaryCallers, p.b.maxOps, p.b.runTime, func(ctx context.Context) error {
		if _, err := e.msgs.Publish(ctx, req); err != nil {
			return fmt.Errorf("Publish: %w", err)
		}
		return nil
	})
}

// restRound is scenario 3: REST publish over 64 keep-alive HTTP/1.1
// connections against the bridge's unary gRPC Publish.
func restRound(ctx context.Context, e *env, p params) (map[string]measurement, error) {
	return alternate(ctx, e, p.round,
		sideRun{"bridge", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 3, "rest", func(_, subject string) (measurement, error) {
				return restPublish(ctx, e, subject+".x", p)
			})
		}},
		sideRun{"grpc", func(ctx context.Context) (measurement, error) {
			return withStream(ctx, e, p, 3, "grpc", func(_, subject string) (measurement, error) {
				return bridgeUnary(ctx, e, subject+".x", p)
			})
		}},
	)
}

// restPublish is 64 callers of POST /v1/subjects/{subject}:publish.
func restPublish(ctx context.Context, e *env, subject string, p params) (measurement, error) {
	body := []byte(`{"data":"` + base64.StdEncoding.EncodeToString(p.payload) + `"}`)
	target := e.baseURL + "/v1/subjects/" + url.PathEscape(subject) + ":publish"
	return closedLoop(ctx, unaryCallers, p.b.maxOps, p.b.runTime, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("REST publish: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		e.setAuthHeader(req.Header)
		resp, err := e.http.Do(req)
		if err != nil {
			return fmt.Errorf("REST publish: %w", err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("REST publish: read: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("REST publish: %s: %s", resp.Status, data)
		}
		return nil
	})
}
