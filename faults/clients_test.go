package faults

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

const (
	// callDeadline bounds every RPC of the scenarios.
	callDeadline = 5 * time.Second
	// lateGrace: an RPC returning later than its deadline + lateGrace is
	// a violation.
	lateGrace = time.Second
	// retryBudget bounds how long one message is retried.
	retryBudget = 20 * time.Second
)

// codeOf is an RPC error's code and ErrorInfo reason, e.g.
// "UNAVAILABLE/UNAVAILABLE".
func codeOf(err error) string {
	st := status.Convert(err)
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	c := codeName(st.Code())
	if reason == "" {
		return c
	}
	return c + "/" + reason
}

// codeName is a gRPC code as in google.rpc.Code: DEADLINE_EXCEEDED.
func codeName(code codes.Code) string {
	var b strings.Builder
	for i, r := range code.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// transient: the publish may or may not be stored; retry with the same id.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	case codes.Aborted: // DUPLICATE_IN_PROGRESS: another attempt of it is being stored
		return strings.HasSuffix(codeOf(err), "DUPLICATE_IN_PROGRESS")
	}
	return false
}

// createStream creates a file stream through the bridge's AdminService,
// retrying UNAVAILABLE (a cluster still electing its meta leader).
func createStream(t testing.TB, b *bridgeProc, name string, replicas int32, subjects ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
		_, err := b.admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
			Name: name, Subjects: subjects, Storage: jetwayv1.StorageType_STORAGE_TYPE_FILE, Replicas: replicas,
			DuplicateWindow: durationpb.New(10 * time.Minute), AllowDirect: true,
		}})
		cancel()
		if err == nil {
			return
		}
		if !transient(err) || time.Now().After(deadline) {
			t.Fatalf("create stream %s: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// publisher publishes unique ids through the bridge's unary Publish, each
// with its id as body and msg id, retrying transient errors with the same
// id, and records everything in the checker.
type publisher struct {
	msgs    jetwayv1.MessageServiceClient
	chk     *Checker
	subject string
}

// publish sends id until it is acked, refused, or retryBudget passes.
func (p *publisher) publish(ctx context.Context, id string) {
	giveUp := time.Now().Add(retryBudget)
	pause := 20 * time.Millisecond
	for {
		p.chk.Attempt(id)
		cctx, cancel := context.WithTimeout(context.Background(), callDeadline)
		start := time.Now()
		resp, err := p.msgs.Publish(cctx, &jetwayv1.PublishRequest{
			Subject: p.subject, Payload: &jetwayv1.PublishRequest_Data{Data: []byte(id)}, MsgId: id,
		})
		took := time.Since(start)
		cancel()
		p.chk.Call("Publish "+id, took, callDeadline, lateGrace)
		if err == nil {
			p.chk.Acked(id, resp.GetSequence())
			return
		}
		code := codeOf(err)
		retry := transient(err)
		if retry {
			p.chk.Unknown(id, code)
		} else {
			// A permanent error is final, as for any client (and one
			// during a fault fails the scenario).
			p.chk.Failed(id, code)
		}
		if !retry || time.Now().After(giveUp) || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// run publishes from workers goroutines until ctx is done; ids are
// prefix-<worker>-<n>. It returns once every worker has finished its last
// message.
func (p *publisher) run(ctx context.Context, prefix string, workers int, gap time.Duration) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				p.publish(ctx, fmt.Sprintf("%s-%d-%d", prefix, w, n))
				if gap > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(gap):
					}
				}
			}
		})
	}
	wg.Wait()
}

// finish reads the stream back natively, checks it, logs the figures (and
// the FAULTS: line) and fails the test on a violation.
func finish(t *testing.T, chk *Checker, scenario string, stored []StoredMsg, opts CheckOptions) Report {
	t.Helper()
	r := chk.Check(scenario, stored, opts)
	t.Log(r.Summary())
	t.Log(r.Line())
	fmt.Println(r.Line())
	for _, v := range r.Violations {
		t.Errorf("%s: %s", scenario, v)
	}
	return r
}

// nativePublisher publishes unique ids natively (nats.go) with msg ids, one
// every gap, until ctx is done, recording them in the checker; it feeds a
// consumer scenario that faults the bridge, not the publishing path.
func nativePublisher(ctx context.Context, js jetstream.JetStream, chk *Checker, subject, prefix string, gap time.Duration) {
	for n := 0; ctx.Err() == nil; n++ {
		id := fmt.Sprintf("%s-%d", prefix, n)
		for ctx.Err() == nil {
			chk.Attempt(id)
			cctx, cancel := context.WithTimeout(context.Background(), callDeadline)
			ack, err := js.Publish(cctx, subject, []byte(id), jetstream.WithMsgID(id))
			cancel()
			if err == nil {
				chk.StoredNatively(id, ack.Sequence)
				break
			}
			chk.Unknown(id, "native: "+err.Error())
			pause(ctx, 50*time.Millisecond)
		}
		pause(ctx, gap)
	}
}

// consumer reads a durable consumer through the bridge's Subscribe and acks
// every message with the Ack RPC (sync), reopening the stream whenever it
// breaks; it records deliveries and acks in the checker.
type consumer struct {
	msgs     jetwayv1.MessageServiceClient
	chk      *Checker
	stream   string
	name     string
	opens    atomic.Int64
	ackFails atomic.Int64  // acks given up (the message is redelivered)
	ackRetry atomic.Int64  // ack attempts retried after a transient error
	work     time.Duration // processing time of a message before its ack
	errMu    sync.Mutex
	ackErrs  map[string]int // acks given up, by reason
	logf     func(string, ...any)
}

type delivery struct{ id, token string }

// run consumes until ctx is done, with ackers goroutines acking.
func (c *consumer) run(ctx context.Context, ackers int) {
	acks := make(chan delivery, 4096)
	var wg sync.WaitGroup
	for range ackers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-acks:
					pause(ctx, c.work)
					c.ack(ctx, d)
				}
			}
		})
	}
	last, repeats := "", 0
	for ctx.Err() == nil {
		err := c.subscribeOnce(ctx, acks)
		if ctx.Err() == nil {
			// One line per kind of ending, not one per retry.
			if msg := fmt.Sprint(err); msg != last {
				if repeats > 0 {
					c.logf("(the previous ending %d more times)", repeats)
				}
				c.logf("subscribe stream ended: %s", msg)
				last, repeats = msg, 0
			} else {
				repeats++
			}
			pause(ctx, 50*time.Millisecond)
		}
	}
	wg.Wait()
}

// idleLimit: a Subscribe stream with no event (heartbeats every second)
// for this long is given up and reopened.
const idleLimit = 5 * time.Second

func (c *consumer) subscribeOnce(ctx context.Context, acks chan<- delivery) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.opens.Add(1)
	st, err := c.msgs.Subscribe(sctx, &jetwayv1.SubscribeRequest{
		Stream: c.stream, Consumer: c.name, MaxInFlight: 256, Heartbeat: durationpb.New(time.Second),
	})
	if err != nil {
		return err
	}
	events := make(chan struct{}, 1)
	go func() { // watchdog: bounded wait on a silent stream
		t := time.NewTimer(idleLimit)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-events:
				t.Reset(idleLimit)
			case <-t.C:
				c.logf("subscribe stream silent for %s: reopened", idleLimit)
				cancel()
				return
			}
		}
	}()
	for {
		ev, err := st.Recv()
		if err != nil {
			return err
		}
		select {
		case events <- struct{}{}:
		default:
		}
		var ms []*jetwayv1.Message
		if m := ev.GetMessage(); m != nil {
			ms = append(ms, m)
		}
		ms = append(ms, ev.GetBatch().GetMessages()...)
		for _, m := range ms {
			id := string(m.GetData())
			c.chk.Delivered(id)
			select {
			case acks <- delivery{id: id, token: m.GetAckToken()}:
			case <-sctx.Done():
				return sctx.Err()
			}
		}
	}
}

// ack acks one delivery, retrying transient errors (the same token: a
// restarted bridge shares the ack keys) until the token's message would be
// redelivered anyway.
func (c *consumer) ack(ctx context.Context, d delivery) {
	giveUp := time.Now().Add(10 * time.Second)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, callDeadline)
		start := time.Now()
		resp, err := c.msgs.Ack(cctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{
			Token: d.token, Kind: jetwayv1.AckKind_ACK_KIND_ACK,
		}}})
		took := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.chk.Call("Ack "+d.id, took, callDeadline, lateGrace)
		if err == nil {
			if res := resp.GetResults(); len(res) == 1 && res[0].GetError() == nil {
				c.chk.AckedBack(d.id)
				return
			} else if len(res) == 1 {
				// ACK_TOKEN_EXPIRED and the like: JetStream redelivers it.
				c.gaveUp(d.id, res[0].GetError().GetReason(), res[0].GetError().GetMessage())
				return
			}
			c.gaveUp(d.id, "RESULTS", fmt.Sprintf("%d results for one operation", len(resp.GetResults())))
			return
		}
		if !transient(err) || time.Now().After(giveUp) {
			c.gaveUp(d.id, codeOf(err), err.Error())
			return
		}
		c.ackRetry.Add(1)
		pause(ctx, 50*time.Millisecond)
	}
}

// gaveUp counts an ack given up; the first few of each reason are logged.
func (c *consumer) gaveUp(id, reason, msg string) {
	c.ackFails.Add(1)
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.ackErrs == nil {
		c.ackErrs = map[string]int{}
	}
	c.ackErrs[reason]++
	if c.ackErrs[reason] <= 2 {
		c.logf("ack %s given up: %s: %s", id, reason, msg)
	}
}

// ackErrors is the count of acks given up by reason.
func (c *consumer) ackErrors() map[string]int {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return maps.Clone(c.ackErrs)
}
