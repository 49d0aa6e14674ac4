package faults

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// streamPublisher publishes unique ids over PublishStream with at most
// window requests awaiting their response. Every response must come in
// request order (a violation otherwise) and within callDeadline + lateGrace
// of its request (the bridge bounds each publish by its NATS request
// timeout, 5 s). A message answered UNAVAILABLE or a timeout, or still
// waiting when the stream breaks, is sent again with the same id on the
// next stream.
type streamPublisher struct {
	msgs     jetwayv1.MessageServiceClient
	chk      *Checker
	subject  string
	window   int
	logf     func(string, ...any)
	mu       sync.Mutex
	retry    []string
	disorder []string
	opens    int
	holdOff  time.Time // no send before this: the bridge answered UNAVAILABLE
}

type outstanding struct {
	reqID uint64
	id    string
	sent  time.Time
}

func (p *streamPublisher) run(ctx context.Context, prefix string) {
	next := 0
	newID := func() string {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.retry) > 0 {
			id := p.retry[0]
			p.retry = p.retry[1:]
			return id
		}
		next++
		return fmt.Sprintf("%s-%d", prefix, next-1)
	}
	for ctx.Err() == nil {
		p.mu.Lock()
		p.opens++
		p.mu.Unlock()
		if err := p.once(ctx, newID); err != nil && ctx.Err() == nil {
			pause(ctx, 50*time.Millisecond)
		}
	}
}

// once runs one PublishStream until it breaks, ctx is done, or a response
// is late.
func (p *streamPublisher) once(ctx context.Context, newID func() string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := p.msgs.PublishStream(sctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var queue []outstanding // in request order
	// handedOver: requeue gave what was outstanding to the next stream;
	// a response that still comes on this one is not a disorder.
	handedOver := false
	slots := make(chan struct{}, p.window)
	recvDone := make(chan error, 1)
	// requeue hands what is still outstanding to the next stream.
	requeue := func(code string) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range queue {
			p.chk.Unknown(o.id, code)
			p.chk.Call("PublishStream "+o.id, time.Since(o.sent), callDeadline, lateGrace)
			p.mu.Lock()
			p.retry = append(p.retry, o.id)
			p.mu.Unlock()
		}
		queue, handedOver = nil, true
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			mu.Lock()
			if handedOver {
				mu.Unlock()
				recvDone <- errors.New("stream handed over")
				return
			}
			if len(queue) == 0 || queue[0].reqID != resp.GetId() {
				p.mu.Lock()
				p.disorder = append(p.disorder, fmt.Sprintf("response id %d, oldest outstanding %v", resp.GetId(), queue[:min(1, len(queue))]))
				p.mu.Unlock()
				mu.Unlock()
				recvDone <- fmt.Errorf("response out of order")
				return
			}
			o := queue[0]
			queue = queue[1:]
			mu.Unlock()
			<-slots
			p.chk.Call("PublishStream "+o.id, time.Since(o.sent), callDeadline, lateGrace)
			if ack := resp.GetAck(); ack != nil {
				p.chk.Acked(o.id, ack.GetSequence())
				continue
			}
			e := resp.GetError()
			code := codeName(codes.Code(e.GetCode())) + "/" + e.GetReason()
			switch codes.Code(e.GetCode()) {
			case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
				p.chk.Unknown(o.id, code)
				p.mu.Lock()
				p.holdOff = time.Now().Add(50 * time.Millisecond)
				p.mu.Unlock()
			case codes.NotFound:
				if !p.chk.Failed(o.id, code) {
					continue
				}
			default:
				p.chk.Failed(o.id, code)
				continue
			}
			p.mu.Lock()
			p.retry = append(p.retry, o.id)
			p.mu.Unlock()
		}
	}()
	// Watchdog: a response later than callDeadline + lateGrace is a
	// violation (counted as the message's call); the stream is given up.
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			mu.Lock()
			late := len(queue) > 0 && time.Since(queue[0].sent) > callDeadline+lateGrace+500*time.Millisecond
			mu.Unlock()
			if late {
				p.logf("PublishStream: a response is late (> %s): stream given up", callDeadline+lateGrace)
				cancel()
				return
			}
		}
	}()
	var reqID uint64
	for {
		select {
		case slots <- struct{}{}:
		case err := <-recvDone:
			requeue("STREAM_BROKEN")
			return err
		case <-sctx.Done():
			requeue("STREAM_CANCELED")
			return sctx.Err()
		}
		p.mu.Lock()
		wait := time.Until(p.holdOff)
		p.mu.Unlock()
		if wait > 0 {
			pause(sctx, wait)
		}
		id := newID()
		reqID++
		mu.Lock()
		queue = append(queue, outstanding{reqID: reqID, id: id, sent: time.Now()})
		mu.Unlock()
		p.chk.Attempt(id)
		if err := st.Send(&jetwayv1.PublishStreamRequest{Id: reqID, Publish: &jetwayv1.PublishRequest{
			Subject: p.subject, Payload: &jetwayv1.PublishRequest_Data{Data: []byte(id)}, MsgId: id,
		}}); err != nil {
			cancel()
			<-recvDone
			requeue("STREAM_BROKEN")
			return err
		}
	}
}

// TestPublishStreamNATSKill: PublishStream (window 128) while nats-server
// is SIGKILLed and restarted on its store every ~2 s: nothing acked lost,
// responses in request order and each within 6 s of its request.
func TestPublishStreamNATSKill(t *testing.T) {
	d := duration(t, 7*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(t, d))
	createStream(t, b, "S7", 1, "s7.>")

	chk := NewChecker()
	p := &streamPublisher{msgs: b.msgs, chk: chk, subject: "s7.x", window: 128, logf: t.Logf}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s7") }()

	for i, end := 0, time.Now().Add(d); i < 3 || time.Now().Before(end); i++ {
		pause(ctx, 2*time.Second)
		healed := chk.FaultStart("SIGKILL nats-server")
		ns.Kill()
		pause(ctx, 200*time.Millisecond)
		ns.restart(t)
		healed()
	}
	stored := stopAndRead(t, chk, stop, done, ns.url, "S7")
	finish(t, chk, "publishstream-nats-kill", stored, CheckOptions{MsgIDs: true})
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("publish streams opened %d, retries pending at the end %d", p.opens, len(p.retry))
	if len(p.disorder) > 0 {
		t.Errorf("PublishStream answered out of request order %d times: %s", len(p.disorder), examples(p.disorder))
	}
}
