package bridge_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestPublishStreamBatches: batches and single publishes interleave on one
// stream; each batch gets one response with one result per message, in
// order, per-message errors naming the message's index; the stream stores
// exactly the acked messages in order. A batch with publish set too, or
// with more than 1000 messages, is refused as a whole.
func TestPublishStreamBatches(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "PSB", Subjects: []string{"psb.>"}})

	type item struct {
		req    *jetwayv1.PublishRequest
		code   codes.Code
		reason string
		field  string // in the error message
	}
	var reqs []*jetwayv1.PublishStreamRequest
	var want [][]item // per request
	k := 0
	for r := 0; r < 60; r++ {
		size := 1 + (r*37)%120 // 1 to 120 messages
		if r%5 == 4 {
			size = 0 // a single publish
		}
		var items []item
		for i := range max(size, 1) {
			k++
			it := item{req: &jetwayv1.PublishRequest{Subject: "psb." + strconv.Itoa(k%7), Payload: &jetwayv1.PublishRequest_Text{Text: "m" + strconv.Itoa(k)}}}
			switch {
			case k%53 == 7:
				it.req.Subject = "psb..bad"
				it.code, it.reason = codes.InvalidArgument, "INVALID_SUBJECT"
				it.field = "batch[" + strconv.Itoa(i) + "].subject"
				if size == 0 {
					it.field = "publish.subject"
				}
			case k%89 == 11:
				it.req.Subject = "nostream.x"
				it.code, it.reason = codes.NotFound, "NO_STREAM_FOR_SUBJECT"
			}
			items = append(items, it)
		}
		req := &jetwayv1.PublishStreamRequest{Id: uint64(100 + r)}
		if size == 0 {
			req.Publish = items[0].req
		} else {
			for _, it := range items {
				req.Batch = append(req.Batch, it.req)
			}
		}
		reqs = append(reqs, req)
		want = append(want, items)
	}
	// Refused as a whole.
	both := &jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{Subject: "psb.x"}, Batch: []*jetwayv1.PublishRequest{{Subject: "psb.x"}}}
	tooMany := &jetwayv1.PublishStreamRequest{Id: 2}
	for range 1001 {
		tooMany.Batch = append(tooMany.Batch, &jetwayv1.PublishRequest{Subject: "psb.x"})
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := b.Messages.PublishStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, r := range append(reqs, both, tooMany) {
			if err := stream.Send(r); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()

	var stored []string
	var lastSeq uint64
	for r, req := range reqs {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", r, err)
		}
		if resp.GetId() != req.GetId() {
			t.Fatalf("response %d has id %d, want %d", r, resp.GetId(), req.GetId())
		}
		type outcome struct {
			ack *jetwayv1.PublishResponse
			err *jetwayv1.Error
		}
		var got []outcome
		if len(req.GetBatch()) == 0 {
			if len(resp.GetResults()) != 0 {
				t.Fatalf("single publish %d answered with results %v", r, resp.GetResults())
			}
			got = []outcome{{resp.GetAck(), resp.GetError()}}
		} else {
			if resp.GetResult() != nil || len(resp.GetResults()) != len(req.GetBatch()) {
				t.Fatalf("batch %d of %d: response %v, want %d results and no single result", r, len(req.GetBatch()), resp, len(req.GetBatch()))
			}
			for _, res := range resp.GetResults() {
				got = append(got, outcome{res.GetAck(), res.GetError()})
			}
		}
		for i, it := range want[r] {
			o := got[i]
			if it.code == codes.OK {
				if o.ack == nil || o.ack.GetSequence() <= lastSeq || o.ack.GetStream() != "PSB" {
					t.Fatalf("request %d message %d: %v %v, want an ack after sequence %d", r, i, o.ack, o.err, lastSeq)
				}
				lastSeq = o.ack.GetSequence()
				stored = append(stored, it.req.GetText())
				continue
			}
			if o.err == nil || codes.Code(o.err.GetCode()) != it.code || o.err.GetReason() != it.reason || !strings.Contains(o.err.GetMessage(), it.field) {
				t.Errorf("request %d message %d: %v %v, want %v %s naming %q", r, i, o.ack, o.err, it.code, it.reason, it.field)
			}
		}
	}
	for _, c := range []struct {
		id    uint64
		field string
	}{{1, "not both"}, {2, "at most 1000"}} {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.GetError(); resp.GetId() != c.id || e.GetReason() != "INVALID_ARGUMENT" || !strings.Contains(e.GetMessage(), c.field) || len(resp.GetResults()) != 0 {
			t.Errorf("request %d: %v, want INVALID_ARGUMENT (%s)", c.id, resp, c.field)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last response: %v, want EOF", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}

	// Exactly the acked messages, in order.
	if n := pubMsgCount(ctx, t, b, "PSB"); n != uint64(len(stored)) {
		t.Fatalf("stream holds %d, acked %d", n, len(stored))
	}
	s, err := b.JS.Stream(ctx, "PSB")
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range stored {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("get %d: %v", i+1, err)
		}
		if string(m.Data) != text {
			t.Fatalf("message %d is %q, want %q", i+1, m.Data, text)
		}
	}
}

// TestPublishStreamBatchLargerThanWindow: a batch of more messages than
// the stream's publish window goes through (the window throttles it
// inside the bridge rather than deadlocking it), in order.
func TestPublishStreamBatchLargerThanWindow(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.PublishWindow = 8 })
	ctx := jetwaytest.Context(t, 30*time.Second)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "PSW", Subjects: []string{"psw.>"}})
	stream, err := b.Messages.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &jetwayv1.PublishStreamRequest{Id: 7}
	for i := range 500 {
		req.Batch = append(req.Batch, &jetwayv1.PublishRequest{Subject: "psw.x", Payload: &jetwayv1.PublishRequest_Text{Text: strconv.Itoa(i)}})
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetId() != 7 || len(resp.GetResults()) != 500 {
		t.Fatalf("response id %d with %d results, want 7 with 500", resp.GetId(), len(resp.GetResults()))
	}
	for i, r := range resp.GetResults() {
		if r.GetAck().GetSequence() != uint64(i+1) {
			t.Fatalf("result %d: %v, want sequence %d", i, r, i+1)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the batch: %v, want EOF", err)
	}
}
