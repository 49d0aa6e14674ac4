package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	var b strings.Builder // DeadlineExceeded → DEADLINE_EXCEEDED
	for i, r := range st.Code().String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	c := strings.ToUpper(b.String())
	if reason == "" {
		return c
	}
	return c + "/" + reason
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
			DuplicateWindow: durationpb.New(10 * time.Minute),
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
	sent    atomic.Int64
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
			// NOT_FOUND while a fault is on (an R3 leader election, a
			// known issue) is counted and retried; anything else, or
			// outside a fault, is final.
			during := p.chk.Failed(id, code)
			retry = during && status.Code(err) == codes.NotFound
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
				p.sent.Add(1)
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
