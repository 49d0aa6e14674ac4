package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/gateway"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// ---------------------------------------------------------------------------
// Helpers (prefixed sub).

// subItem is one value read from a stream, or the error that ended it.
type subItem[T any] struct {
	v   T
	err error
}

// subPump reads recv into an unbuffered channel until recv fails (the error
// is the last item) or ctx ends. It never reads ahead of the test by more
// than one event.
func subPump[T any](ctx context.Context, recv func() (T, error)) <-chan subItem[T] {
	ch := make(chan subItem[T])
	go func() {
		defer close(ch)
		for {
			v, err := recv()
			select {
			case ch <- subItem[T]{v, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// subNext returns the next event, failing the test on an error or when
// nothing comes within d.
func subNext[T any](t testing.TB, ch <-chan subItem[T], d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case it, ok := <-ch:
		if !ok {
			t.Fatalf("%s: stream reader gone", what)
		}
		if it.err != nil {
			t.Fatalf("%s: stream ended: %v", what, it.err)
		}
		return it.v
	case <-timer.C:
		t.Fatalf("%s: nothing within %v", what, d)
	}
	panic("unreachable")
}

// subEnd waits at most d for the stream to end and returns its error.
func subEnd[T any](t testing.TB, ch <-chan subItem[T], d time.Duration, what string) error {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case it, ok := <-ch:
			if !ok {
				t.Fatalf("%s: stream reader gone without an error", what)
			}
			if it.err != nil {
				return it.err
			}
		case <-timer.C:
			t.Fatalf("%s: stream did not end within %v", what, d)
		}
	}
}

func subStart(t *testing.T, opts ...jetwaytest.Option) (*jetwaytest.Bridge, context.Context) {
	t.Helper()
	b := jetwaytest.Start(t, opts...)
	return b, jetwaytest.Context(t, 45*time.Second)
}

// subStream creates a memory stream capturing subjects.
func subStream(t testing.TB, ctx context.Context, js jetstream.JetStream, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	return s
}

// subPublish publishes n messages "<prefix>-<i>" (i from 1) to subject and
// returns their stream sequences.
func subPublish(t testing.TB, ctx context.Context, js jetstream.JetStream, subject string, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for i := 1; i <= n; i++ {
		ack, err := js.Publish(ctx, subject, []byte(fmt.Sprintf("m-%d", i)))
		if err != nil {
			t.Fatalf("publish %s #%d: %v", subject, i, err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// subPublishAsync publishes n small messages in bounded batches. A batch
// must stay well under nats.go's 4000 outstanding async publishes: past it
// PublishAsync waits only 200ms for acks before failing with "stalled with
// too many outstanding async published messages", which a loaded machine
// does not always make.
func subPublishAsync(t testing.TB, ctx context.Context, js jetstream.JetStream, subject string, n, batch int) {
	t.Helper()
	payload := []byte("0123456789abcdef")
	for done := 0; done < n; {
		k := min(batch, n-done)
		for i := 0; i < k; i++ {
			if _, err := js.PublishAsync(subject, payload); err != nil {
				t.Fatalf("publish async: %v", err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatalf("async publishes not acknowledged: %v", ctx.Err())
		}
		done += k
	}
}

// subDurable creates a durable consumer natively.
func subDurable(t testing.TB, ctx context.Context, js jetstream.JetStream, stream, name string, ackWait time.Duration) {
	t.Helper()
	if _, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait}); err != nil {
		t.Fatalf("create consumer %s: %v", name, err)
	}
}

// subOpen opens a Subscribe stream under its own cancellable context and
// returns its events (the Subscribed event already read and checked to be
// first), the Subscribed event and the cancel.
func subOpen(t testing.TB, parent context.Context, b *jetwaytest.Bridge, req *jetwayv1.SubscribeRequest) (<-chan subItem[*jetwayv1.SubscribeResponse], *jetwayv1.Subscribed, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(parent)
	st, err := b.Messages.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	ch := subPump(ctx, st.Recv)
	first := subNext(t, ch, 10*time.Second, "first event")
	if first.GetSubscribed() == nil {
		cancel()
		t.Fatalf("first event = %v, want subscribed", first)
	}
	return ch, first.GetSubscribed(), cancel
}

// subMsg returns the next message of a Subscribe stream, skipping heartbeats.
func subMsg(t testing.TB, ch <-chan subItem[*jetwayv1.SubscribeResponse], d time.Duration, what string) *jetwayv1.Message {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev := subNext(t, ch, time.Until(deadline), what)
		switch {
		case ev.GetMessage() != nil:
			return ev.GetMessage()
		case ev.GetHeartbeat() != nil:
			continue
		default:
			t.Fatalf("%s: unexpected event %v", what, ev)
		}
	}
}

// subNoMsg asserts that no message arrives within d (heartbeats allowed).
func subNoMsg(t testing.TB, ch <-chan subItem[*jetwayv1.SubscribeResponse], d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case it, ok := <-ch:
			if !ok {
				t.Fatalf("%s: stream reader gone", what)
			}
			if it.err != nil {
				t.Fatalf("%s: stream ended: %v", what, it.err)
			}
			if m := it.v.GetMessage(); m != nil {
				t.Fatalf("%s: unexpected message seq %d (%q)", what, m.GetStreamSequence(), m.GetData())
			}
		case <-timer.C:
			return
		}
	}
}

// subAck acks tokens through the Ack RPC (sync) and checks every result.
func subAck(t testing.TB, ctx context.Context, b *jetwaytest.Bridge, tokens ...string) {
	t.Helper()
	ops := make([]*jetwayv1.AckOperation, len(tokens))
	for i, tok := range tokens {
		ops[i] = &jetwayv1.AckOperation{Token: tok}
	}
	resp, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Operations: ops, Sync: true})
	if err != nil {
		t.Errorf("ack: %v", err)
		return
	}
	for i, r := range resp.GetResults() {
		if r.GetError() != nil {
			t.Errorf("ack result %d: %v", i, r.GetError())
		}
	}
}

// subReason returns the gRPC code and ErrorInfo reason of err.
func subReason(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

// subSorted returns the keys of a set in order.
func subSorted(set map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// subMissing lists the sequences 1..n not in set.
func subMissing(set map[uint64]bool, n uint64) []uint64 {
	var out []uint64
	for s := uint64(1); s <= n; s++ {
		if !set[s] {
			out = append(out, s)
		}
	}
	return out
}

// subWaitConsumerGone polls the stream's consumer names until name is gone.
func subWaitConsumerGone(t testing.TB, ctx context.Context, js jetstream.JetStream, stream, name string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		names := s.ConsumerNames(ctx)
		found := false
		for n := range names.Name() {
			if n == name {
				found = true
			}
		}
		if err := names.Err(); err != nil {
			t.Fatalf("consumer names: %v", err)
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ephemeral consumer %q still on stream %s %v after its client left", name, stream, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// subExternalNATS runs a standalone nats-server with JetStream and a bridge
// connected to it.
func subExternalNATS(t *testing.T) (*natsserver.Server, *jetwaytest.Bridge) {
	t.Helper()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.URLs = ns.ClientURL() })
	return ns, b
}

// subHTTP opens a streaming REST GET and returns the response and its lines
// (the last item carries the read error, io.EOF at a clean end).
func subHTTP(t testing.TB, ctx context.Context, b *jetwaytest.Bridge, path string, header ...string) (*http.Response, <-chan subItem[string]) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.BaseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	ch := make(chan subItem[string])
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			select {
			case ch <- subItem[string]{v: sc.Text()}:
			case <-ctx.Done():
				return
			}
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		select {
		case ch <- subItem[string]{err: err}:
		case <-ctx.Done():
		}
	}()
	return resp, ch
}

// subChunk is one NDJSON line of a REST stream.
type subChunk struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// subLine reads the next NDJSON line as a SubscribeResponse (or returns the
// raw in-band error).
func subLine(t testing.TB, lines <-chan subItem[string], d time.Duration, what string) (*jetwayv1.SubscribeResponse, json.RawMessage) {
	t.Helper()
	line := subNext(t, lines, d, what)
	var c subChunk
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		t.Fatalf("%s: line %q is not JSON: %v", what, line, err)
	}
	if c.Error != nil {
		return nil, c.Error
	}
	if c.Result == nil {
		t.Fatalf("%s: line %q has neither result nor error", what, line)
	}
	var r jetwayv1.SubscribeResponse
	if err := protojson.Unmarshal(c.Result, &r); err != nil {
		t.Fatalf("%s: result %s: %v", what, c.Result, err)
	}
	return &r, nil
}

// subLineMsg is subLine skipping heartbeat lines.
func subLineMsg(t testing.TB, lines <-chan subItem[string], d time.Duration, what string) (*jetwayv1.SubscribeResponse, json.RawMessage) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, e := subLine(t, lines, time.Until(deadline), what)
		if r.GetHeartbeat() == nil {
			return r, e
		}
	}
}

// subEvent is one Server-Sent Event.
type subEvent struct {
	id, event, data string
	retry           string
}

// subSSE reads the next SSE event (lines up to a blank line).
func subSSE(t testing.TB, lines <-chan subItem[string], d time.Duration, what string) subEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	var ev subEvent
	var data []string
	for {
		line := subNext(t, lines, time.Until(deadline), what)
		switch {
		case line == "":
			if ev.event == "" && len(data) == 0 {
				continue
			}
			ev.data = strings.Join(data, "\n")
			return ev
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "retry: "):
			ev.retry = strings.TrimPrefix(line, "retry: ")
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		default:
			t.Fatalf("%s: unexpected SSE line %q", what, line)
		}
	}
}

// subSSEMsg is subSSE skipping heartbeat events.
func subSSEMsg(t testing.TB, lines <-chan subItem[string], d time.Duration, what string) subEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ev := subSSE(t, lines, time.Until(deadline), what); ev.event != "heartbeat" {
			return ev
		}
	}
}

// subGoroutineDump returns the stacks of every goroutine.
func subGoroutineDump() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// ---------------------------------------------------------------------------
// 1. Durable resume.

// TestSubscribeDurableResume reads 40 of 100 messages from a durable
// consumer the Subscribe creates, leaves, and subscribes again: every
// remaining message arrives at once (not after the 30s ack wait), with no
// sequence skipped.
func TestSubscribeDurableResume(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "RES", "res.>")
	subPublish(t, ctx, b.JS, "res.x", 100)

	req := &jetwayv1.SubscribeRequest{Stream: "RES", Consumer: "d", Config: &jetwayv1.ConsumerConfig{AckWait: durationpb.New(30 * time.Second)}}
	ch, info, cancel := subOpen(t, ctx, b, req)
	if !info.GetCreated() || info.GetConfigIgnored() || info.GetEphemeral() || info.GetConsumer() != "d" || info.GetStream() != "RES" {
		t.Errorf("first Subscribed = %v, want created, not config_ignored, consumer d", info)
	}
	acked := map[uint64]bool{}
	for i := 1; i <= 40; i++ {
		m := subMsg(t, ch, 5*time.Second, fmt.Sprintf("message %d", i))
		if m.GetStreamSequence() != uint64(i) || m.GetNumDelivered() != 1 || m.GetConsumer() != "d" {
			t.Fatalf("message %d: seq %d delivered %d consumer %q", i, m.GetStreamSequence(), m.GetNumDelivered(), m.GetConsumer())
		}
		subAck(t, ctx, b, m.GetAckToken())
		acked[m.GetStreamSequence()] = true
	}
	cancel()
	left := time.Now()

	ch, info, cancel = subOpen(t, ctx, b, req)
	defer cancel()
	if info.GetCreated() || !info.GetConfigIgnored() || info.GetConsumer() != "d" {
		t.Errorf("second Subscribed = %v, want created=false config_ignored=true", info)
	}
	// The consumer's ack wait is 30s: anything that comes only after its
	// ack wait was stranded by the first stream.
	deadline := time.Now().Add(5 * time.Second)
	var firstSeen, redelivered []uint64
	for len(acked) < 100 && time.Now().Before(deadline) {
		select {
		case it := <-ch:
			if it.err != nil {
				t.Fatalf("second stream ended: %v", it.err)
			}
			m := it.v.GetMessage()
			if m == nil {
				continue
			}
			if acked[m.GetStreamSequence()] && m.GetNumDelivered() > 1 {
				t.Errorf("seq %d redelivered (%d) after it was acked", m.GetStreamSequence(), m.GetNumDelivered())
			}
			if m.GetNumDelivered() == 1 {
				firstSeen = append(firstSeen, m.GetStreamSequence())
			} else {
				redelivered = append(redelivered, m.GetStreamSequence())
			}
			acked[m.GetStreamSequence()] = true
			subAck(t, ctx, b, m.GetAckToken())
		case <-time.After(time.Until(deadline)):
		}
	}
	if missing := subMissing(acked, 100); len(missing) > 0 {
		t.Fatalf("after resuming, %d of the remaining 60 sequences did not arrive within 5s of leaving (%v ago; consumer ack_wait 30s): missing %v",
			len(missing), time.Since(left).Round(time.Millisecond), missing)
	}
	t.Logf("resumed %v after leaving: %d first deliveries, %d redeliveries %v", time.Since(left).Round(time.Millisecond), len(firstSeen), len(redelivered), redelivered)
	if !slices.IsSorted(firstSeen) {
		t.Errorf("first deliveries out of order: %v", firstSeen)
	}
	// Everything is acked: nothing more comes.
	subNoMsg(t, ch, 300*time.Millisecond, "after all acked")
	ci, err := b.JS.Consumer(ctx, "RES", "d")
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.CachedInfo(); got.AckFloor.Stream != 100 || got.NumPending != 0 {
		t.Errorf("consumer ack floor %d pending %d, want 100 and 0", got.AckFloor.Stream, got.NumPending)
	}
}

// ---------------------------------------------------------------------------
// 2. Queue semantics.

// TestSubscribeQueueSemantics runs three Subscribe streams on one durable
// consumer: together they get every message, each message exactly one of
// them.
func TestSubscribeQueueSemantics(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "Q", "q.>")
	subDurable(t, ctx, b.JS, "Q", "q", 30*time.Second)
	const n, subs = 300, 3

	type got struct {
		sub int
		m   *jetwayv1.Message
	}
	results := make(chan got)
	var wg sync.WaitGroup
	defer wg.Wait() // after stop: no goroutine outlives the test
	sctx, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	for i := 0; i < subs; i++ {
		ch, _, cancel := subOpen(t, sctx, b, &jetwayv1.SubscribeRequest{Stream: "Q", Consumer: "q", MaxInFlight: 20})
		defer cancel()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if it.err != nil {
					if sctx.Err() == nil {
						t.Errorf("subscriber %d: %v", i, it.err)
					}
					return
				}
				m := it.v.GetMessage()
				if m == nil {
					continue
				}
				resp, err := b.Messages.Ack(sctx, &jetwayv1.AckRequest{Operations: []*jetwayv1.AckOperation{{Token: m.GetAckToken()}}, Sync: true})
				if err == nil && resp.GetResults()[0].GetError() != nil {
					err = fmt.Errorf("%v", resp.GetResults()[0].GetError())
				}
				if err != nil {
					if sctx.Err() == nil {
						t.Errorf("subscriber %d: ack seq %d: %v", i, m.GetStreamSequence(), err)
					}
					return
				}
				select {
				case results <- got{i, m}:
				case <-sctx.Done():
					return
				}
			}
		}()
	}
	// On an early exit, sctx ends before each stream's own context (defers
	// run last first), so the subscribers take the end for what it is
	// rather than report "context canceled".
	defer stop()
	subPublishAsync(t, ctx, b.JS, "q.x", n, 100)

	per := make([]map[uint64]bool, subs)
	for i := range per {
		per[i] = map[uint64]bool{}
	}
	union := map[uint64]int{}
	for len(union) < n {
		select {
		case g := <-results:
			if g.m.GetNumDelivered() != 1 {
				t.Errorf("seq %d delivered %d times (ack_wait 30s, all acked)", g.m.GetStreamSequence(), g.m.GetNumDelivered())
			}
			per[g.sub][g.m.GetStreamSequence()] = true
			union[g.m.GetStreamSequence()]++
		case <-sctx.Done():
			t.Fatalf("only %d of %d messages arrived across the subscribers", len(union), n)
		}
	}
	// Nothing more is delivered: no duplicates to anyone.
	extra := time.After(300 * time.Millisecond)
wait:
	for {
		select {
		case g := <-results:
			t.Errorf("extra delivery of seq %d (#%d) to subscriber %d", g.m.GetStreamSequence(), g.m.GetNumDelivered(), g.sub)
			union[g.m.GetStreamSequence()]++
		case <-extra:
			break wait
		}
	}
	stop()
	wg.Wait()
	for s, c := range union {
		if c != 1 {
			t.Errorf("seq %d delivered %d times", s, c)
		}
	}
	for i := 0; i < subs; i++ {
		for j := i + 1; j < subs; j++ {
			for s := range per[i] {
				if per[j][s] {
					t.Errorf("seq %d went to subscribers %d and %d", s, i, j)
				}
			}
		}
	}
	t.Logf("distribution: %d / %d / %d", len(per[0]), len(per[1]), len(per[2]))
}

// ---------------------------------------------------------------------------
// 3. Start positions of ephemeral subscriptions.

// TestSubscribeEphemeralStartPositions opens an ephemeral Subscribe for each
// deliver policy and filter, checks exactly the expected sequences arrive,
// and that the ephemeral consumer is gone once the client leaves.
func TestSubscribeEphemeralStartPositions(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	stream := subStream(t, ctx, b.JS, "POS", "pos.>")
	// seq: 1 a, 2 b, 3 a, 4 c, 5 b, 6 a
	for i, subj := range []string{"pos.a", "pos.b", "pos.a", "pos.c", "pos.b", "pos.a"} {
		if _, err := b.JS.Publish(ctx, subj, []byte(strconv.Itoa(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	m4, err := stream.GetMsg(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  *jetwayv1.ConsumerConfig
		want []uint64
	}{
		{"nil config", nil, []uint64{1, 2, 3, 4, 5, 6}},
		{"all", &jetwayv1.ConsumerConfig{DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_ALL}, []uint64{1, 2, 3, 4, 5, 6}},
		{"last", &jetwayv1.ConsumerConfig{DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST}, []uint64{6}},
		// JetStream wants a filter with last-per-subject.
		{"last per subject", &jetwayv1.ConsumerConfig{FilterSubjects: []string{"pos.>"}, DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT}, []uint64{4, 5, 6}},
		{"by start sequence", &jetwayv1.ConsumerConfig{DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_SEQUENCE, OptStartSequence: 3}, []uint64{3, 4, 5, 6}},
		{"by start time", &jetwayv1.ConsumerConfig{DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_TIME, OptStartTime: timestamppb.New(m4.Time)}, []uint64{4, 5, 6}},
		{"two filters", &jetwayv1.ConsumerConfig{FilterSubjects: []string{"pos.a", "pos.c"}}, []uint64{1, 3, 4, 6}},
		{"filter and last per subject", &jetwayv1.ConsumerConfig{FilterSubjects: []string{"pos.a", "pos.b"}, DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT}, []uint64{5, 6}},
	}
	// Each parallel case bounds itself: it may wait for a free slot (-parallel)
	// long after this function returned, past a deadline taken now.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := jetwaytest.Context(t, 45*time.Second)
			ch, info, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "POS", Config: tc.cfg, Format: jetwayv1.PayloadFormat_PAYLOAD_FORMAT_TEXT})
			defer cancel()
			if !info.GetEphemeral() || !info.GetCreated() || info.GetConsumer() == "" || info.GetConfigIgnored() {
				t.Errorf("subscribed = %v, want ephemeral, created, a consumer name", info)
			}
			var got []uint64
			for range tc.want {
				m := subMsg(t, ch, 5*time.Second, "message")
				got = append(got, m.GetStreamSequence())
				if m.GetText() != strconv.FormatUint(m.GetStreamSequence(), 10) {
					t.Errorf("seq %d text %q", m.GetStreamSequence(), m.GetText())
				}
				if m.GetConsumer() != info.GetConsumer() {
					t.Errorf("message consumer %q, subscribed said %q", m.GetConsumer(), info.GetConsumer())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("sequences %v, want %v", got, tc.want)
			}
			subNoMsg(t, ch, 300*time.Millisecond, "after the expected messages")
			cancel()
			subWaitConsumerGone(t, ctx, b.JS, "POS", info.GetConsumer(), 3*time.Second)
		})
	}

	// DELIVER_POLICY_NEW: only what is published after subscribing (a
	// separate stream, so that the parallel cases above see a fixed one).
	t.Run("new", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 45*time.Second)
		subStream(t, ctx, b.JS, "POSNEW", "posnew.>")
		subPublish(t, ctx, b.JS, "posnew.x", 3)
		ch, info, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "POSNEW", Config: &jetwayv1.ConsumerConfig{DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_NEW}})
		defer cancel()
		subNoMsg(t, ch, 200*time.Millisecond, "before publishing")
		subPublish(t, ctx, b.JS, "posnew.x", 2)
		for _, want := range []uint64{4, 5} {
			if m := subMsg(t, ch, 5*time.Second, "new message"); m.GetStreamSequence() != want {
				t.Errorf("seq %d, want %d", m.GetStreamSequence(), want)
			}
		}
		cancel()
		subWaitConsumerGone(t, ctx, b.JS, "POSNEW", info.GetConsumer(), 3*time.Second)
	})
}

// ---------------------------------------------------------------------------
// 4. Redelivery after a disconnect.

// TestSubscribeRedeliveryAfterDisconnect: a subscriber that leaves holding
// unacked messages hands them to another subscriber at once, not after the
// consumer's 30s ack wait.
func TestSubscribeRedeliveryAfterDisconnect(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "RD", "rd.>")
	subDurable(t, ctx, b.JS, "RD", "r", 30*time.Second)
	const n = 20

	chA, _, cancelA := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "RD", Consumer: "r"})
	defer cancelA()
	subPublish(t, ctx, b.JS, "rd.x", n)
	held := map[uint64]bool{}
	for i := 0; i < n; i++ {
		m := subMsg(t, chA, 5*time.Second, "A's message")
		if m.GetNumDelivered() != 1 {
			t.Fatalf("A: seq %d delivered %d", m.GetStreamSequence(), m.GetNumDelivered())
		}
		held[m.GetStreamSequence()] = true
	}
	chB, _, cancelB := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "RD", Consumer: "r"})
	defer cancelB()
	subNoMsg(t, chB, 200*time.Millisecond, "B while A holds everything")

	cancelA()
	left := time.Now()
	got := map[uint64]bool{}
	for len(got) < n {
		m := subMsg(t, chB, 5*time.Second, fmt.Sprintf("B's redelivery %d (after A left)", len(got)+1))
		if !held[m.GetStreamSequence()] || m.GetNumDelivered() != 2 {
			t.Errorf("B: seq %d delivered %d, want one of A's with num_delivered 2", m.GetStreamSequence(), m.GetNumDelivered())
		}
		got[m.GetStreamSequence()] = true
	}
	latency := time.Since(left)
	t.Logf("redelivery latency after disconnect: %d ms for %d messages (ack_wait 30s)", latency.Milliseconds(), n)
	// Well under the 30s ack wait, with room for a loaded machine.
	if latency > 5*time.Second {
		t.Errorf("redelivery took %v, want well under the 30s ack wait (< 5s)", latency)
	}
}

// TestSubscribeCloseReleasesPrefetched: a client that reads slowly and
// leaves must not strand the messages the bridge pulled ahead for it (its
// window): every message of the consumer is available to the next client
// at once, not after the consumer's 30s ack wait.
func TestSubscribeCloseReleasesPrefetched(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "PF", "pf.>")
	subDurable(t, ctx, b.JS, "PF", "p", 30*time.Second)
	const n = 1000
	payload := make([]byte, 1024)
	for i := 0; i < n; i++ {
		if _, err := b.JS.PublishAsync("pf.x", payload); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-b.JS.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publish not acknowledged")
	}
	cons, err := b.JS.Consumer(ctx, "PF", "p")
	if err != nil {
		t.Fatal(err)
	}

	ch, info, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "PF", Consumer: "p"})
	defer cancel()
	subMsg(t, ch, 5*time.Second, "first message")
	// Wait until the bridge stops pulling (ack pending stable).
	var pending int
	for deadline := time.Now().Add(5 * time.Second); ; {
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumAckPending == pending && pending > 0 {
			break
		}
		pending = ci.NumAckPending
		if time.Now().After(deadline) {
			t.Fatalf("ack pending still moving (%d) after 5s", pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	left := time.Now()
	t.Logf("client read 1 of %d, the bridge had %d delivered (window %d); client left", n, pending, info.GetMaxInFlight())

	// The next client (native) must get every message but the one read
	// (unacked too: it is NAKed) at once: well before the 30s ack wait,
	// with room for a loaded machine (the loop ends as soon as all came).
	seen := map[uint64]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(min(time.Until(deadline), 500*time.Millisecond)))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			seen[md.Sequence.Stream] = true
			_ = m.Ack()
		}
	}
	t.Logf("the next client had %d of %d messages %v after the slow client left", len(seen), n, time.Since(left).Round(time.Millisecond))
	if missing := subMissing(seen, n); len(missing) > 0 {
		t.Errorf("%d messages unavailable %v after the slow client left (ack_wait 30s): seqs %d..%d (e.g. %v): pulled ahead by the bridge for the closed stream and neither handed over nor NAKed",
			len(missing), time.Since(left).Round(time.Millisecond), missing[0], missing[len(missing)-1], missing[:min(5, len(missing))])
	}
}

// ---------------------------------------------------------------------------
// 5. Heartbeats.

// TestSubscribeHeartbeat: an idle stream with heartbeat 1s gets one within
// 1.5s; intervals outside 1s..5m are refused.
func TestSubscribeHeartbeat(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "HB", "hb.>")

	// The bridge starts the heartbeat timer after it sent Subscribed, so
	// after this instant; measuring from when Subscribed reached the test
	// instead would count its delivery delay against the interval.
	opened := time.Now()
	ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "HB", Heartbeat: durationpb.New(time.Second)})
	defer cancel()
	start := time.Now()
	// Upper bounds: well before the 15s default interval, with room for a
	// loaded machine.
	ev := subNext(t, ch, 3*time.Second, "heartbeat")
	if ev.GetHeartbeat() == nil {
		t.Fatalf("event %v, want a heartbeat", ev)
	}
	el := time.Since(opened)
	if el < 900*time.Millisecond {
		t.Errorf("heartbeat %v after subscribing, want about 1s", el)
	}
	if ht := ev.GetHeartbeat().GetTime().AsTime(); ht.Before(start.Add(-time.Second)) || ht.After(time.Now().Add(time.Second)) {
		t.Errorf("heartbeat time %v not around now", ht)
	}
	ev = subNext(t, ch, 3*time.Second, "second heartbeat")
	if ev.GetHeartbeat() == nil {
		t.Fatalf("event %v, want a heartbeat", ev)
	}
	t.Logf("first heartbeat %v after subscribing", el.Round(time.Millisecond))

	// Idle again after a message: the next heartbeat comes one interval
	// after the message, not up to two. The message goes out 300ms after
	// a heartbeat, i.e. between two ticks of a free-running 1s ticker.
	time.Sleep(300 * time.Millisecond)
	subPublish(t, ctx, b.JS, "hb.x", 1)
	if m := subMsg(t, ch, 5*time.Second, "message"); m.GetStreamSequence() != 1 {
		t.Fatalf("message seq %d", m.GetStreamSequence())
	}
	sent := time.Now() // after the bridge sent the message
	ev = subNext(t, ch, 3*time.Second, "heartbeat after a message")
	if ev.GetHeartbeat() == nil {
		t.Fatalf("event %v, want a heartbeat", ev)
	}
	// The silence ends when the bridge sent the heartbeat (its time, same
	// clock): how late the heartbeat reached the test on a loaded machine
	// is not the bridge's silence. Since sent is after the bridge sent the
	// message, this never overstates the silence.
	silence := ev.GetHeartbeat().GetTime().AsTime().Sub(sent)
	t.Logf("heartbeat after a message: %v of silence (interval 1s), received %v after the message", silence.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	if silence > 1500*time.Millisecond {
		t.Errorf("after a message, the idle stream (heartbeat 1s) stayed silent %v before %v; want a heartbeat within ~1s of idleness", silence.Round(time.Millisecond), ev)
	}

	for _, hb := range []time.Duration{500 * time.Millisecond, 10 * time.Minute, 0, -time.Second} {
		st, err := b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "HB", Heartbeat: durationpb.New(hb)})
		if err == nil {
			_, err = st.Recv()
		}
		if code, reason := subReason(err); code != codes.InvalidArgument {
			t.Errorf("heartbeat %v: %v (%s), want INVALID_ARGUMENT", hb, err, reason)
		} else if !strings.Contains(status.Convert(err).Message(), "heartbeat") {
			t.Errorf("heartbeat %v: message %q does not name the field", hb, status.Convert(err).Message())
		}
	}
	if r := b.Do(t, http.MethodGet, "/v1/streams/HB:subscribe?heartbeat=0.5s", ""); r.Status != http.StatusBadRequest {
		t.Errorf("REST heartbeat=0.5s: %d %s, want 400", r.Status, r.Body)
	}
}

// ---------------------------------------------------------------------------
// 6. Consume.

type subConsume struct {
	st jetwayv1.MessageService_ConsumeClient
	ch <-chan subItem[*jetwayv1.ConsumeResponse]
}

func subConsumeOpen(t testing.TB, ctx context.Context, b *jetwaytest.Bridge, start *jetwayv1.SubscribeRequest) (*subConsume, *jetwayv1.Subscribed) {
	t.Helper()
	st, err := b.Messages.Consume(ctx)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	if err := st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: start}}); err != nil {
		t.Fatalf("send start: %v", err)
	}
	c := &subConsume{st: st, ch: subPump(ctx, st.Recv)}
	ev := subNext(t, c.ch, 10*time.Second, "consume first event")
	if ev.GetSubscribed() == nil {
		t.Fatalf("first consume event %v, want subscribed", ev)
	}
	return c, ev.GetSubscribed()
}

// subConsumeMsgs reads exactly n messages, failing on any other event but
// heartbeats.
func subConsumeMsgs(t testing.TB, c *subConsume, n int, what string) []*jetwayv1.Message {
	t.Helper()
	var out []*jetwayv1.Message
	for len(out) < n {
		ev := subNext(t, c.ch, 5*time.Second, what)
		switch {
		case ev.GetMessage() != nil:
			out = append(out, ev.GetMessage())
		case ev.GetHeartbeat() != nil:
		default:
			t.Fatalf("%s: unexpected event %v", what, ev)
		}
	}
	return out
}

// subConsumeQuiet asserts no event other than a heartbeat within d.
func subConsumeQuiet(t testing.TB, c *subConsume, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case it := <-c.ch:
			if it.err != nil {
				t.Fatalf("%s: stream ended: %v", what, it.err)
			}
			if it.v.GetHeartbeat() == nil {
				t.Fatalf("%s: unexpected event %v", what, it.v)
			}
		case <-timer.C:
			return
		}
	}
}

// subConsumeEvent returns the next event that is not a heartbeat.
func subConsumeEvent(t testing.TB, c *subConsume, d time.Duration, what string) *jetwayv1.ConsumeResponse {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ev := subNext(t, c.ch, time.Until(deadline), what); ev.GetHeartbeat() == nil {
			return ev
		}
	}
}

func subConsumeAck(t testing.TB, c *subConsume, op *jetwayv1.AckOperation) {
	t.Helper()
	if err := c.st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Ack{Ack: op}}); err != nil {
		t.Fatalf("send ack: %v", err)
	}
}

// TestConsumeWindowAndAcks checks Consume's exact in-flight window, acks on
// the stream, failing and IN_PROGRESS ack results, the end at half-close
// with immediate redelivery of what the client held, and the first-request
// rule.
func TestConsumeWindowAndAcks(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "CON", "con.>")
	subDurable(t, ctx, b.JS, "CON", "c", 30*time.Second)
	subPublish(t, ctx, b.JS, "con.x", 50)

	c, info := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "CON", Consumer: "c", MaxInFlight: 5})
	if info.GetMaxInFlight() != 5 || info.GetConsumer() != "c" || info.GetCreated() {
		t.Errorf("subscribed = %v, want max_in_flight 5 on existing consumer c", info)
	}
	first := subConsumeMsgs(t, c, 5, "window of 5")
	subConsumeQuiet(t, c, 500*time.Millisecond, "6th message while 5 are unacked")

	// Ack two: exactly two more.
	subConsumeAck(t, c, &jetwayv1.AckOperation{Token: first[0].GetAckToken()})
	subConsumeAck(t, c, &jetwayv1.AckOperation{Token: first[1].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_ACK})
	more := subConsumeMsgs(t, c, 2, "two after two acks")
	subConsumeQuiet(t, c, 500*time.Millisecond, "after refilling the window")
	var seqs []uint64
	for _, m := range append(slices.Clone(first), more...) {
		seqs = append(seqs, m.GetStreamSequence())
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("delivered sequences %v, want 1..7", seqs)
	}

	// A token that is not one: an ack_result with the reason; the window
	// is unchanged.
	subConsumeAck(t, c, &jetwayv1.AckOperation{Token: "not-a-token"})
	ev := subConsumeEvent(t, c, 5*time.Second, "ack result of a bad token")
	if r := ev.GetAckResult(); r == nil || r.GetError().GetReason() != "ACK_TOKEN_INVALID" || r.GetToken() != "not-a-token" ||
		r.GetError().GetCode() != int32(codes.InvalidArgument) {
		t.Errorf("event %v, want ack_result with ACK_TOKEN_INVALID", ev)
	}
	subConsumeQuiet(t, c, 300*time.Millisecond, "after a refused ack")

	// IN_PROGRESS: a fresh token with a later deadline; still in flight.
	held := first[2]
	subConsumeAck(t, c, &jetwayv1.AckOperation{Token: held.GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_IN_PROGRESS})
	ev = subConsumeEvent(t, c, 5*time.Second, "ack result of IN_PROGRESS")
	r := ev.GetAckResult()
	if r == nil || r.GetError() != nil || r.GetNewToken() == "" || r.GetNewToken() == held.GetAckToken() || r.GetToken() != held.GetAckToken() {
		t.Fatalf("event %v, want ack_result with a new token", ev)
	}
	if !r.GetAckDeadline().AsTime().After(held.GetAckDeadline().AsTime()) {
		t.Errorf("extended deadline %v not after %v", r.GetAckDeadline().AsTime(), held.GetAckDeadline().AsTime())
	}
	subConsumeQuiet(t, c, 300*time.Millisecond, "IN_PROGRESS frees no slot")

	// Half-close: the stream ends OK; what it held goes to another client
	// at once.
	unacked := map[uint64]bool{}
	for _, m := range append(first[2:], more...) {
		unacked[m.GetStreamSequence()] = true
	}
	other, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "CON", Consumer: "c", MaxInFlight: 5})
	// The other client's window is free: it may receive newer messages
	// before the held ones come back.
	if err := c.st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	if err := subEnd(t, c.ch, 5*time.Second, "consume after CloseSend"); !errors.Is(err, io.EOF) {
		t.Fatalf("consume ended with %v, want OK", err)
	}
	// The other client acks everything it gets: every message of the
	// consumer must reach it (or have been acked) well before the 30s ack
	// wait, the held ones first as redeliveries.
	redelivered := map[uint64]bool{}
	acked := map[uint64]bool{first[0].GetStreamSequence(): true, first[1].GetStreamSequence(): true}
	var heldAt time.Duration
	// Well before the 30s ack wait, with room for a loaded machine (the
	// loop ends as soon as everything came).
	const within = 10 * time.Second
	deadline := time.Now().Add(within)
	for len(acked) < 50 && time.Now().Before(deadline) {
		var ev *jetwayv1.ConsumeResponse
		select {
		case it := <-other.ch:
			if it.err != nil {
				t.Fatalf("other client: %v", it.err)
			}
			ev = it.v
		case <-time.After(time.Until(deadline)):
			continue
		}
		m := ev.GetMessage()
		if m == nil {
			continue
		}
		if unacked[m.GetStreamSequence()] {
			if m.GetNumDelivered() != 2 {
				t.Errorf("seq %d num_delivered %d, want 2", m.GetStreamSequence(), m.GetNumDelivered())
			}
			redelivered[m.GetStreamSequence()] = true
			if len(redelivered) == len(unacked) {
				heldAt = time.Since(closed)
			}
		}
		acked[m.GetStreamSequence()] = true
		subConsumeAck(t, other, &jetwayv1.AckOperation{Token: m.GetAckToken()})
	}
	if len(redelivered) < len(unacked) {
		t.Errorf("after half-close, redelivered %v of the held %v within %v (ack_wait 30s)", subSorted(redelivered), subSorted(unacked), within)
	} else {
		t.Logf("consume: the %d held messages were redelivered %d ms after half-close", len(unacked), heldAt.Milliseconds())
	}
	if missing := subMissing(acked, 50); len(missing) > 0 {
		t.Errorf("after the first Consume (max_in_flight 5) half-closed, sequences %v reached no client within %v (ack_wait 30s): "+
			"pulled by the bridge for the closed stream but never handed over nor NAKed", missing, within)
	}

	// The first request must be start.
	bad, err := b.Messages.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Ack{Ack: &jetwayv1.AckOperation{Token: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("first request ack: %v, want INVALID_ARGUMENT", err)
	}
	empty, err := b.Messages.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Send(&jetwayv1.ConsumeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("first request empty: %v, want INVALID_ARGUMENT", err)
	}
}

// TestConsumeInProgressKeepsWindow: a message extended with IN_PROGRESS
// still counts against max_in_flight after its first ack deadline passes;
// the window frees only when it is acked.
func TestConsumeInProgressKeepsWindow(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "WPI", "wpi.>")
	subDurable(t, ctx, b.JS, "WPI", "w", 3*time.Second)
	subPublish(t, ctx, b.JS, "wpi.x", 3)

	c, _ := subConsumeOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "WPI", Consumer: "w", MaxInFlight: 1, Heartbeat: durationpb.New(time.Second)})
	m := subConsumeMsgs(t, c, 1, "first message")[0]
	firstDeadline := m.GetAckDeadline().AsTime()
	// Quiet for up to 2s, but leave at least 1s before the first deadline
	// for the IN_PROGRESS to reach the bridge on a loaded machine.
	subConsumeQuiet(t, c, min(2*time.Second, time.Until(firstDeadline.Add(-time.Second))), "window of 1 full")
	subConsumeAck(t, c, &jetwayv1.AckOperation{Token: m.GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_IN_PROGRESS})
	ev := subConsumeEvent(t, c, 5*time.Second, "IN_PROGRESS result")
	r := ev.GetAckResult()
	if r == nil || r.GetNewToken() == "" {
		t.Fatalf("event %v, want an ack_result with a new token", ev)
	}
	newDeadline := r.GetAckDeadline().AsTime()
	if !newDeadline.After(firstDeadline) {
		t.Fatalf("extended deadline %v not after %v", newDeadline, firstDeadline)
	}
	// Past the first deadline (plus a heartbeat tick), before the new one:
	// the message is still held, so nothing else may be delivered.
	wait := time.Until(firstDeadline.Add(1100 * time.Millisecond))
	if time.Now().Add(wait).After(newDeadline.Add(-200 * time.Millisecond)) {
		t.Skipf("machine too slow to fit the check between %v and %v", firstDeadline, newDeadline)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
quiet:
	for {
		select {
		case it := <-c.ch:
			if it.err != nil {
				t.Fatalf("stream ended: %v", it.err)
			}
			if msg := it.v.GetMessage(); msg != nil {
				t.Errorf("seq %d delivered %v after the first deadline while seq %d (IN_PROGRESS, new deadline in %v) was unacked on a max_in_flight 1 stream",
					msg.GetStreamSequence(), time.Since(firstDeadline).Round(time.Millisecond), m.GetStreamSequence(), time.Until(newDeadline).Round(time.Millisecond))
				break quiet
			}
		case <-timer.C:
			break quiet
		}
	}
	// The fresh token acks it.
	resp, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Operations: []*jetwayv1.AckOperation{{Token: r.GetNewToken()}}, Sync: true})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Errorf("ack with the new token: %v %v", err, resp)
	}
}

// ---------------------------------------------------------------------------
// 7. Slow client.

// TestSubscribeSlowClient queues many messages and reads them slowly: the
// bridge must stop pulling (ack pending stays near the window) and its heap
// must not grow with the backlog. Not parallel: it measures the process
// heap.
func TestSubscribeSlowClient(t *testing.T) {
	b, _ := subStart(t)
	// Publishing the backlog alone takes about 20s under -race on a loaded
	// 2-core machine: a bound with room for it rather than subStart's 45s.
	ctx := jetwaytest.Context(t, 3*time.Minute)
	subStream(t, ctx, b.JS, "SLOW", "slow.>")
	const n = 100_000
	start := time.Now()
	subPublishAsync(t, ctx, b.JS, "slow.x", n, 1000)
	t.Logf("published %d messages in %v", n, time.Since(start).Round(time.Millisecond))
	// No server-side cap on ack pending: only the bridge may stop pulling.
	if _, err := b.JS.CreateConsumer(ctx, "SLOW", jetstream.ConsumerConfig{
		Durable: "slow", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: -1,
	}); err != nil {
		t.Fatal(err)
	}
	cons, err := b.JS.Consumer(ctx, "SLOW", "slow")
	if err != nil {
		t.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := b.Messages.Subscribe(sctx, &jetwayv1.SubscribeRequest{Stream: "SLOW", Consumer: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := st.Recv()
	if err != nil || ev.GetSubscribed() == nil {
		t.Fatalf("first event %v, %v", ev, err)
	}
	window := int(ev.GetSubscribed().GetMaxInFlight())
	read, size := 0, 0
	var samples []string
	var pendingSamples []int
	readStart := time.Now()
	for time.Since(readStart) < 2*time.Second {
		ev, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m := ev.GetMessage(); m != nil {
			read++
			size = proto.Size(ev)
			if m.GetStreamSequence() != uint64(read) {
				t.Fatalf("message %d has seq %d", read, m.GetStreamSequence())
			}
		}
		if read%5 == 0 {
			ci, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			samples = append(samples, fmt.Sprintf("%d@%d", ci.NumAckPending, read))
			pendingSamples = append(pendingSamples, ci.NumAckPending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)

	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("slow client: read %d (one per 100ms), window %d, message ~%d bytes; consumer num_ack_pending %d, delivered %d, num_pending %d; ack pending over time (pending@read) %v",
		read, window, size, ci.NumAckPending, ci.Delivered.Stream, ci.NumPending, samples)
	t.Logf("slow client: heap %.1f MiB -> %.1f MiB (growth %+.1f MiB) with a backlog of %d", float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20), float64(growth)/(1<<20), n)
	// Ahead of the client: the bridge's window in nats.go, one in hand,
	// and what gRPC's flow-control windows hold. The client's receive
	// window grows by BDP estimation (up to a few hundred KiB here), so
	// that part varies from run to run (seen: 516 to 774 small messages);
	// what must not happen is growth while the client stays slow, checked
	// below against the samples.
	const slack = 2048
	if ci.NumAckPending > window+slack {
		t.Errorf("num_ack_pending %d: the bridge kept pulling for a slow client (window %d, allowed %d)", ci.NumAckPending, window, window+slack)
	}
	if len(pendingSamples) >= 2 && pendingSamples[len(pendingSamples)-1] > pendingSamples[0] {
		t.Errorf("num_ack_pending grew from %d to %d while the client stayed slow: the bridge kept pulling", pendingSamples[0], pendingSamples[len(pendingSamples)-1])
	}
	if ci.NumAckPending < read {
		t.Errorf("num_ack_pending %d < %d read and unacked", ci.NumAckPending, read)
	}
	if ci.NumPending < uint64(n-window-slack) {
		t.Errorf("num_pending %d: more than the window left the stream", ci.NumPending)
	}
	const bound = 16 << 20
	if growth > bound {
		t.Errorf("heap grew by %.1f MiB while a slow client held a backlog of %d, bound %d MiB", float64(growth)/(1<<20), n, bound>>20)
	}
}

// ---------------------------------------------------------------------------
// 8. REST streaming.

// TestSubscribeRESTNDJSON reads a Subscribe over REST as newline-delimited
// JSON with a plain HTTP client, line by line.
func TestSubscribeRESTNDJSON(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "RS", "rs.>")
	subPublish(t, ctx, b.JS, "rs.x", 3)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, lines := subHTTP(t, rctx, b, "/v1/streams/RS:subscribe?format=PAYLOAD_FORMAT_TEXT&heartbeat=1s&max_in_flight=10")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r, e := subLine(t, lines, 5*time.Second, "first line")
	if e != nil || r.GetSubscribed() == nil {
		t.Fatalf("first line %v %s, want result.subscribed", r, e)
	}
	if s := r.GetSubscribed(); !s.GetEphemeral() || !s.GetCreated() || s.GetMaxInFlight() != 10 || s.GetStream() != "RS" {
		t.Errorf("subscribed %v", s)
	}
	for i := 1; i <= 3; i++ {
		r, e := subLineMsg(t, lines, 5*time.Second, "message line")
		m := r.GetMessage()
		if e != nil || m == nil || m.GetStreamSequence() != uint64(i) || m.GetText() != fmt.Sprintf("m-%d", i) || m.GetAckToken() == "" {
			t.Fatalf("line %d: %v %s, want message %d with text", i, r, e, i)
		}
	}
	// Live: a message published now arrives on the open response.
	subPublish(t, ctx, b.JS, "rs.y", 1)
	if r, e := subLineMsg(t, lines, 5*time.Second, "live message"); r.GetMessage().GetStreamSequence() != 4 || r.GetMessage().GetSubject() != "rs.y" {
		t.Fatalf("live line %v %s", r, e)
	}
	// (Heartbeat timing after a message is TestSubscribeHeartbeat's.)
	// Heartbeat 1s: one comes; well before the 15s default, with room
	// for a loaded machine.
	if r, e := subLine(t, lines, 5*time.Second, "heartbeat line"); r.GetHeartbeat() == nil {
		t.Fatalf("idle line %v %s, want a heartbeat", r, e)
	}

	// The raw JSON uses proto names and the "result" wrapper.
	rctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	_, raw := subHTTP(t, rctx2, b, "/v1/streams/RS:subscribe?format=PAYLOAD_FORMAT_TEXT&config.deliver_policy=DELIVER_POLICY_LAST")
	subNext(t, raw, 5*time.Second, "raw subscribed")
	line := subNext(t, raw, 5*time.Second, "raw message")
	var generic map[string]map[string]map[string]any
	if err := json.Unmarshal([]byte(line), &generic); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if m := generic["result"]["message"]; m["text"] != "m-1" || m["stream_sequence"] != "4" {
		t.Errorf("raw message line %s, want text m-1 and stream_sequence \"4\"", line)
	}

	// A durable consumer created from query parameters, acked over REST.
	dctx, cancel3 := context.WithCancel(ctx)
	defer cancel3()
	_, dl := subHTTP(t, dctx, b, "/v1/streams/RS/consumers/rd:subscribe?config.deliver_policy=DELIVER_POLICY_NEW&config.ack_wait=2s&format=PAYLOAD_FORMAT_TEXT")
	r, e = subLine(t, dl, 5*time.Second, "durable subscribed")
	if s := r.GetSubscribed(); e != nil || s == nil || !s.GetCreated() || s.GetEphemeral() || s.GetConsumer() != "rd" {
		t.Fatalf("durable subscribed %v %s", r, e)
	}
	cons, err := b.JS.Consumer(ctx, "RS", "rd")
	if err != nil {
		t.Fatalf("consumer rd not created: %v", err)
	}
	if cfg := cons.CachedInfo().Config; cfg.AckWait != 2*time.Second || cfg.DeliverPolicy != jetstream.DeliverNewPolicy {
		t.Errorf("consumer rd ack wait %v deliver policy %v, want 2s and new", cfg.AckWait, cfg.DeliverPolicy)
	}
	published := time.Now() // the bridge delivers after this
	subPublish(t, ctx, b.JS, "rs.z", 1)
	r, e = subLine(t, dl, 5*time.Second, "durable message")
	received := time.Now() // and before this
	m := r.GetMessage()
	if e != nil || m.GetStreamSequence() != 5 {
		t.Fatalf("durable message %v %s, want seq 5", r, e)
	}
	// About the 2s ack wait after delivery, never past it; bounded by
	// instants around the delivery rather than by when the line was read.
	fetchWantDeadline(t, "durable message", m, published, received, 2*time.Second)
	body, _ := json.Marshal(map[string]any{"operations": []any{map[string]string{"token": m.GetAckToken()}}, "sync": true})
	ack := b.Do(t, http.MethodPost, "/v1/acks", string(body))
	var ar jetwayv1.AckResponse
	if ack.Status != http.StatusOK || protojson.Unmarshal(ack.Body, &ar) != nil || len(ar.GetResults()) != 1 || ar.GetResults()[0].GetError() != nil {
		t.Errorf("REST ack: %d %s", ack.Status, ack.Body)
	}

	// A refused request is a plain error response, not a stream.
	if r := b.Do(t, http.MethodGet, "/v1/streams/NOPE:subscribe", ""); r.Status != http.StatusNotFound {
		t.Errorf("subscribe to a missing stream: %d %s, want 404", r.Status, r.Body)
	}
}

// TestSubscribeRESTSSE reads Subscribe as Server-Sent Events, and resumes an
// ephemeral subscription with Last-Event-ID.
func TestSubscribeRESTSSE(t *testing.T) {
	t.Parallel()
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "SSE", "sse.>")
	subPublish(t, ctx, b.JS, "sse.x", 5)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, lines := subHTTP(t, sctx, b, "/v1/streams/SSE:subscribe?format=PAYLOAD_FORMAT_TEXT&heartbeat=1s", "Accept", "text/event-stream")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ev := subSSE(t, lines, 5*time.Second, "first event")
	var r jetwayv1.SubscribeResponse
	if ev.event != "subscribed" || ev.id != "" || ev.retry != strconv.Itoa(gateway.SSERetry) || protojson.Unmarshal([]byte(ev.data), &r) != nil || !r.GetSubscribed().GetEphemeral() {
		t.Fatalf("first event %+v, want a subscribed event without id", ev)
	}
	for i := 1; i <= 5; i++ {
		ev := subSSEMsg(t, lines, 5*time.Second, "message event")
		var r jetwayv1.SubscribeResponse
		if err := protojson.Unmarshal([]byte(ev.data), &r); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.event != "message" || ev.id != strconv.Itoa(i) || r.GetMessage().GetStreamSequence() != uint64(i) || r.GetMessage().GetText() != fmt.Sprintf("m-%d", i) {
			t.Fatalf("event %d = %+v", i, ev)
		}
	}
	// Heartbeat 1s: one comes; well before the 15s default, with room
	// for a loaded machine.
	if ev := subSSE(t, lines, 5*time.Second, "heartbeat event"); ev.event != "heartbeat" || ev.id != "" {
		t.Errorf("idle event %+v, want heartbeat without id", ev)
	}
	cancel()

	// Last-Event-ID: 2 resumes at sequence 3.
	rctx, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	_, lines = subHTTP(t, rctx, b, "/v1/streams/SSE:subscribe", "Accept", "text/event-stream", "Last-Event-ID", "2")
	if ev := subSSE(t, lines, 5*time.Second, "resumed subscribed"); ev.event != "subscribed" {
		t.Fatalf("resumed first event %+v", ev)
	}
	for want := 3; want <= 5; want++ {
		if ev := subSSE(t, lines, 5*time.Second, "resumed message"); ev.event != "message" || ev.id != strconv.Itoa(want) {
			t.Fatalf("resumed event %+v, want message id %d", ev, want)
		}
	}

	// Last-Event-ID wins over the request's start position, and a bad one
	// is refused.
	r3ctx, cancel3 := context.WithCancel(ctx)
	defer cancel3()
	_, lines = subHTTP(t, r3ctx, b, "/v1/streams/SSE:subscribe?config.deliver_policy=DELIVER_POLICY_NEW", "Accept", "text/event-stream", "Last-Event-ID", "4")
	subSSE(t, lines, 5*time.Second, "subscribed")
	if ev := subSSE(t, lines, 5*time.Second, "resumed message"); ev.id != "5" {
		t.Errorf("resume after 4 with deliver new: event %+v, want id 5", ev)
	}
	if r := b.Do(t, http.MethodGet, "/v1/streams/SSE:subscribe", "", "Accept", "text/event-stream", "Last-Event-ID", "x"); r.Status != http.StatusBadRequest {
		t.Errorf("Last-Event-ID x: %d %s, want 400", r.Status, r.Body)
	}
}

// TestSubscribeRESTNATSOutage runs the bridge on an external nats-server and
// shuts that server down under open NDJSON and SSE streams: each must get
// an in-band error and end.
func TestSubscribeRESTNATSOutage(t *testing.T) {
	t.Parallel()
	ns, b := subExternalNATS(t)
	ctx := jetwaytest.Context(t, 45*time.Second)
	subStream(t, ctx, b.JS, "OUT", "out.>")
	subPublish(t, ctx, b.JS, "out.x", 1)

	_, nd := subHTTP(t, ctx, b, "/v1/streams/OUT:subscribe?heartbeat=1s")
	if r, e := subLine(t, nd, 5*time.Second, "ndjson subscribed"); r.GetSubscribed() == nil {
		t.Fatalf("first line %v %s", r, e)
	}
	if r, e := subLineMsg(t, nd, 5*time.Second, "ndjson message"); r.GetMessage().GetStreamSequence() != 1 {
		t.Fatalf("second line %v %s", r, e)
	}
	_, sse := subHTTP(t, ctx, b, "/v1/streams/OUT:subscribe?heartbeat=1s", "Accept", "text/event-stream")
	if ev := subSSE(t, sse, 5*time.Second, "sse subscribed"); ev.event != "subscribed" {
		t.Fatalf("first event %+v", ev)
	}
	if ev := subSSEMsg(t, sse, 5*time.Second, "sse message"); ev.event != "message" || ev.id != "1" {
		t.Fatalf("second event %+v", ev)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	down := time.Now()
	const limit = 8 * time.Second

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		heartbeats := 0
		for {
			select {
			case it, ok := <-nd:
				if !ok {
					return
				}
				if it.err != nil {
					t.Errorf("NDJSON: the stream ended (%v) %v after NATS went away without an in-band error line", it.err, time.Since(down).Round(time.Millisecond))
					return
				}
				var c subChunk
				if err := json.Unmarshal([]byte(it.v), &c); err != nil {
					t.Errorf("NDJSON line %q: %v", it.v, err)
					return
				}
				if c.Error == nil {
					heartbeats++
					continue
				}
				var e struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(c.Error, &e); err != nil || e.Code != int(codes.Unavailable) {
					t.Errorf("NDJSON error line %s, want code 14 UNAVAILABLE", c.Error)
				}
				t.Logf("NDJSON: error line %v after NATS went away: %s", time.Since(down).Round(time.Millisecond), c.Error)
				select {
				case it, ok := <-nd:
					if ok && !errors.Is(it.err, io.EOF) {
						t.Errorf("NDJSON: after the error line got %q %v, want the end", it.v, it.err)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("NDJSON: the stream did not end within 5s of its error line")
				}
				return
			case <-time.After(limit - time.Since(down)):
				t.Errorf("NDJSON: no in-band error and no end %v after NATS went away (%d more result lines, e.g. heartbeats, meanwhile): the stream stays open while the bridge cannot deliver", limit, heartbeats)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		var events []string
		var ev subEvent
		for {
			select {
			case it, ok := <-sse:
				if !ok {
					return
				}
				if it.err != nil {
					t.Errorf("SSE: the stream ended (%v) without an error event; events: %v", it.err, events)
					return
				}
				switch line := it.v; {
				case strings.HasPrefix(line, "event: "):
					ev.event = strings.TrimPrefix(line, "event: ")
				case strings.HasPrefix(line, "data: "):
					ev.data = strings.TrimPrefix(line, "data: ")
				case line == "" && ev.event != "":
					events = append(events, ev.event)
					if ev.event == gateway.SSEErrorEvent {
						var e struct {
							Code int `json:"code"`
						}
						if err := json.Unmarshal([]byte(ev.data), &e); err != nil || e.Code != int(codes.Unavailable) {
							t.Errorf("SSE error data %q, want code 14", ev.data)
						}
						t.Logf("SSE: error event %v after NATS went away: %s", time.Since(down).Round(time.Millisecond), ev.data)
						return
					}
					ev = subEvent{}
				}
			case <-time.After(limit - time.Since(down)):
				t.Errorf("SSE: no error event and no end %v after NATS went away (events meanwhile: %v)", limit, events)
				return
			}
		}
	}()
	wg.Wait()
}

// ---------------------------------------------------------------------------
// 9. Shutdown.

// TestSubscribeShutdownDrains stops a bridge (on an external nats-server)
// under an open Subscribe: the stream ends with UNAVAILABLE at once and the
// messages it held are redelivered at once.
func TestSubscribeShutdownDrains(t *testing.T) {
	t.Parallel()
	_, b := subExternalNATS(t)
	ctx := jetwaytest.Context(t, 45*time.Second)
	subStream(t, ctx, b.JS, "DR", "dr.>")
	subDurable(t, ctx, b.JS, "DR", "dr", 30*time.Second)
	const n = 10
	subPublish(t, ctx, b.JS, "dr.x", n)

	// A plain client context: only the bridge may end the stream.
	ch, _, cancel := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "DR", Consumer: "dr"})
	defer cancel()
	for i := 0; i < n; i++ {
		subMsg(t, ch, 5*time.Second, "message before shutdown")
	}

	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- b.Stop() }()
	err := subEnd(t, ch, 4*time.Second, "subscribe during shutdown")
	ended := time.Since(start)
	if code, reason := subReason(err); code != codes.Unavailable {
		t.Errorf("stream ended with %v (%s), want UNAVAILABLE", err, reason)
	}
	t.Logf("subscribe ended %d ms after shutdown began: %v", ended.Milliseconds(), err)
	// Well under the 5s shutdown timeout, with room for a loaded machine.
	if ended > 3*time.Second {
		t.Errorf("stream ended %v after shutdown began, want well under the 5s shutdown timeout", ended)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not stop")
	}
	t.Logf("bridge stopped %d ms after shutdown began", time.Since(start).Milliseconds())

	// The external server still has the consumer: the held messages come
	// again at once.
	cons, err := b.JS.Consumer(ctx, "DR", "dr")
	if err != nil {
		t.Fatal(err)
	}
	fetchStart := time.Now()
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.NumDelivered != 2 {
			t.Errorf("seq %d num_delivered %d, want 2", md.Sequence.Stream, md.NumDelivered)
		}
		got++
	}
	if got != n {
		t.Errorf("native fetch after the bridge stopped got %d of %d held messages within 3s (ack_wait 30s)", got, n)
	}
	t.Logf("native fetch got %d redeliveries in %d ms", got, time.Since(fetchStart).Milliseconds())
}

// ---------------------------------------------------------------------------
// 10. Goroutines.

// TestSubscribeNoGoroutineLeak opens and closes 1,000 Subscribe streams (50
// at a time, durable and ephemeral) and a hundred Consume streams, and
// checks the goroutine count comes back. Not parallel: it counts the
// process's goroutines.
func TestSubscribeNoGoroutineLeak(t *testing.T) {
	b, ctx := subStart(t)
	subStream(t, ctx, b.JS, "LEAK", "leak.>")
	subDurable(t, ctx, b.JS, "LEAK", "g", 30*time.Second)
	subPublish(t, ctx, b.JS, "leak.x", 20)

	// One stream: open, take the first message when asked, leave.
	one := func(i int) error {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req := &jetwayv1.SubscribeRequest{Stream: "LEAK", Consumer: "g", MaxInFlight: 4}
		if i%4 == 3 {
			req = &jetwayv1.SubscribeRequest{Stream: "LEAK", MaxInFlight: 4}
		}
		st, err := b.Messages.Subscribe(sctx, req)
		if err != nil {
			return err
		}
		ev, err := st.Recv()
		if err != nil || ev.GetSubscribed() == nil {
			return fmt.Errorf("first event %v: %w", ev, err)
		}
		if i%2 == 0 {
			if _, err := st.Recv(); err != nil {
				return fmt.Errorf("second event: %w", err)
			}
		}
		return nil
	}
	oneConsume := func() error {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := b.Messages.Consume(sctx)
		if err != nil {
			return err
		}
		if err := st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: &jetwayv1.SubscribeRequest{Stream: "LEAK", Consumer: "g", MaxInFlight: 2}}}); err != nil {
			return err
		}
		if ev, err := st.Recv(); err != nil || ev.GetSubscribed() == nil {
			return fmt.Errorf("first consume event %v: %w", ev, err)
		}
		if ev, err := st.Recv(); err != nil || ev.GetMessage() == nil {
			return fmt.Errorf("second consume event %v: %w", ev, err)
		}
		return st.CloseSend()
	}
	run := func(total, par int, f func(i int) error) {
		t.Helper()
		sem := make(chan struct{}, par)
		errs := make(chan error, total)
		var wg sync.WaitGroup
		for i := 0; i < total; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := f(i); err != nil {
					errs <- fmt.Errorf("stream %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}

	// Warm up (connection pools, server-side workers), then take the
	// baseline.
	run(50, 50, one)
	settle := func() int {
		var last int
		for i := 0; i < 5; i++ {
			time.Sleep(100 * time.Millisecond)
			last = runtime.NumGoroutine()
		}
		return last
	}
	base := settle()
	start := time.Now()
	run(1000, 50, one)
	run(100, 20, func(int) error { return oneConsume() })
	t.Logf("1000 Subscribe + 100 Consume streams in %v", time.Since(start).Round(time.Millisecond))

	const slack = 10
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > base+slack && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	t.Logf("goroutines: %d before, %d after", base, n)
	if n > base+slack {
		t.Errorf("goroutines %d after closing every stream, %d before (slack %d); stacks:\n%s", n, base, slack, subGoroutineDump())
	}
	// The ephemeral consumers went away with their streams.
	s, err := b.JS.Stream(ctx, "LEAK")
	if err != nil {
		t.Fatal(err)
	}
	for cdl := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers == 1 {
			break
		}
		if time.Now().After(cdl) {
			t.Errorf("stream has %d consumers 3s after the last stream closed, want only the durable", info.State.Consumers)
			break
		}
	}
}
