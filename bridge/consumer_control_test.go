package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// Consumer control (issue 18): priority groups, pause and resume, reset,
// and refused pulls, over gRPC and REST, each checked natively with
// nats.go.

// --- adminREST: the consumer control routes of http.yaml ---

func (c *adminREST) consumerVerb(verb string, stream, name string, body, out proto.Message) error {
	c.t.Helper()
	return c.call(http.MethodPost, "/v1/streams/"+adminSeg(stream)+"/consumers/"+adminSeg(name)+":"+verb, body, out)
}

func (c *adminREST) PauseConsumer(_ context.Context, in *jetwayv1.PauseConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.PauseConsumerResponse, error) {
	out := &jetwayv1.PauseConsumerResponse{}
	body := proto.CloneOf(in)
	body.Stream, body.Name = "", ""
	return out, c.consumerVerb("pause", in.GetStream(), in.GetName(), body, out)
}

func (c *adminREST) ResumeConsumer(_ context.Context, in *jetwayv1.ResumeConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.ResumeConsumerResponse, error) {
	out := &jetwayv1.ResumeConsumerResponse{}
	return out, c.consumerVerb("resume", in.GetStream(), in.GetName(), &jetwayv1.ResumeConsumerRequest{}, out)
}

func (c *adminREST) ResetConsumer(_ context.Context, in *jetwayv1.ResetConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.ResetConsumerResponse, error) {
	out := &jetwayv1.ResetConsumerResponse{}
	body := proto.CloneOf(in)
	body.Stream, body.Name = "", ""
	return out, c.consumerVerb("reset", in.GetStream(), in.GetName(), body, out)
}

func (c *adminREST) UnpinConsumer(_ context.Context, in *jetwayv1.UnpinConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.UnpinConsumerResponse, error) {
	out := &jetwayv1.UnpinConsumerResponse{}
	body := proto.CloneOf(in)
	body.Stream, body.Name = "", ""
	return out, c.consumerVerb("unpin", in.GetStream(), in.GetName(), body, out)
}

// ccStream creates stream S on s.> with n messages on s.<i>.
func ccStream(t testing.TB, ctx context.Context, js jetstream.JetStream, n int) {
	t.Helper()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for i := 1; i <= n; i++ {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.%d", i), []byte(fmt.Sprintf("m-%d", i))); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func ccInfo(t testing.TB, ctx context.Context, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(ctx, "S", name)
	if err != nil {
		t.Fatalf("native consumer info %s: %v", name, err)
	}
	return c.CachedInfo()
}

// TestConsumerPriorityConfig: priority groups, policy and timeout are
// created through the bridge, seen natively, read back by GetConsumer
// (before, a priority-group consumer read back without them, so sending
// what GetConsumer returned to UpdateConsumer failed), and round-trip
// through UpdateConsumer; consumers created natively read back too.
func TestConsumerPriorityConfig(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		ccStream(t, ctx, b.JS, 0)
		created, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{
			Name: "PIN", PriorityGroups: []string{"jobs"}, PriorityPolicy: jetwayv1.PriorityPolicy_PRIORITY_POLICY_PINNED_CLIENT,
			PriorityTimeout: durationpb.New(45 * time.Second),
		}})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		native := ccInfo(t, ctx, b.JS, "PIN").Config
		if native.PriorityPolicy != jetstream.PriorityPolicyPinned || fmt.Sprint(native.PriorityGroups) != "[jobs]" || native.PinnedTTL != 45*time.Second {
			t.Errorf("native config = policy %v groups %v ttl %v", native.PriorityPolicy, native.PriorityGroups, native.PinnedTTL)
		}
		got, err := c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "S", Name: "PIN"})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		cfg := got.GetConsumer().GetConfig()
		if cfg.GetPriorityPolicy() != jetwayv1.PriorityPolicy_PRIORITY_POLICY_PINNED_CLIENT || fmt.Sprint(cfg.GetPriorityGroups()) != "[jobs]" ||
			cfg.GetPriorityTimeout().AsDuration() != 45*time.Second {
			t.Errorf("GetConsumer config = %v", cfg)
		}
		if !proto.Equal(created.GetConsumer().GetConfig(), cfg) {
			t.Errorf("create answered %v, get %v", created.GetConsumer().GetConfig(), cfg)
		}
		// What was read goes back unchanged (description changed).
		cfg.Description = "workers"
		if _, err := c.UpdateConsumer(ctx, &jetwayv1.UpdateConsumerRequest{Stream: "S", Config: cfg}); err != nil {
			t.Fatalf("update with the read configuration: %v", err)
		}
		if n := ccInfo(t, ctx, b.JS, "PIN").Config; n.Description != "workers" || n.PriorityPolicy != jetstream.PriorityPolicyPinned {
			t.Errorf("after update: %+v", n)
		}
		for name, policy := range map[string]jetstream.PriorityPolicy{"OVER": jetstream.PriorityPolicyOverflow, "PRIO": jetstream.PriorityPolicyPrioritized} {
			if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: name, PriorityPolicy: policy, PriorityGroups: []string{"a", "b"}}); err != nil {
				t.Fatalf("native create %s: %v", name, err)
			}
		}
		list, err := c.ListConsumers(ctx, &jetwayv1.ListConsumersRequest{Stream: "S"})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		want := map[string]jetwayv1.PriorityPolicy{
			"OVER": jetwayv1.PriorityPolicy_PRIORITY_POLICY_OVERFLOW, "PIN": jetwayv1.PriorityPolicy_PRIORITY_POLICY_PINNED_CLIENT,
			"PRIO": jetwayv1.PriorityPolicy_PRIORITY_POLICY_PRIORITIZED,
		}
		for _, ci := range list.GetConsumers() {
			if ci.GetConfig().GetPriorityPolicy() != want[ci.GetName()] {
				t.Errorf("%s: policy %v, want %v", ci.GetName(), ci.GetConfig().GetPriorityPolicy(), want[ci.GetName()])
			}
		}
		// A policy without groups is the server's refusal.
		_, err = c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{
			Name: "BAD", PriorityPolicy: jetwayv1.PriorityPolicy_PRIORITY_POLICY_OVERFLOW,
		}})
		adminWantCode(t, err, codes.InvalidArgument, "INVALID_CONFIG")
		_, err = c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{
			Name: "BAD", PriorityPolicy: 99,
		}})
		adminWantField(t, adminWantCode(t, err, codes.InvalidArgument, "INVALID_CONFIG"), "config.priority_policy")
	})
}

// TestConsumerPauseResume: a paused consumer delivers nothing and says so
// (natively and in ConsumerInfo); resumed, it delivers. A consumer created
// with pause_until starts paused.
func TestConsumerPauseResume(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		f := fetchClient(fetchGRPC{b})
		if tr.name == "rest" {
			f = fetchREST{t, b}
		}
		ccStream(t, ctx, b.JS, 1)
		if _, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{Name: "C"}}); err != nil {
			t.Fatalf("create: %v", err)
		}
		until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
		p, err := c.PauseConsumer(ctx, &jetwayv1.PauseConsumerRequest{Stream: "S", Name: "C", PauseUntil: timestamppb.New(until)})
		if err != nil {
			t.Fatalf("pause: %v", err)
		}
		if !p.GetPaused() || !p.GetPauseUntil().AsTime().Equal(until) || p.GetPauseRemaining().AsDuration() <= 59*time.Minute {
			t.Errorf("pause answer = %v", p)
		}
		if n := ccInfo(t, ctx, b.JS, "C"); !n.Paused || n.PauseRemaining <= 0 || n.Config.PauseUntil == nil || !n.Config.PauseUntil.Equal(until) {
			t.Errorf("native: paused %v remaining %v until %v", n.Paused, n.PauseRemaining, n.Config.PauseUntil)
		}
		got, err := c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "S", Name: "C"})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if ci := got.GetConsumer(); !ci.GetPaused() || ci.GetPauseRemaining().AsDuration() <= 0 || !ci.GetConfig().GetPauseUntil().AsTime().Equal(until) {
			t.Errorf("ConsumerInfo = paused %v remaining %v until %v", ci.GetPaused(), ci.GetPauseRemaining(), ci.GetConfig().GetPauseUntil())
		}
		// Paused: a Fetch waits out its wait with nothing.
		fr, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: durationpb.New(300 * time.Millisecond)})
		if err != nil || len(fr.GetMessages()) != 0 {
			t.Fatalf("fetch while paused = %v, %v; want nothing", fr, err)
		}
		r, err := c.ResumeConsumer(ctx, &jetwayv1.ResumeConsumerRequest{Stream: "S", Name: "C"})
		if err != nil || r.GetPaused() {
			t.Fatalf("resume = %v, %v", r, err)
		}
		if n := ccInfo(t, ctx, b.JS, "C"); n.Paused {
			t.Errorf("native: still paused")
		}
		fr, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: durationpb.New(5 * time.Second)})
		if err != nil || len(fr.GetMessages()) != 1 {
			t.Fatalf("fetch after resume = %v, %v; want the message", fr, err)
		}
		// Created paused.
		if _, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{
			Name: "LATER", PauseUntil: timestamppb.New(until),
		}}); err != nil {
			t.Fatalf("create paused: %v", err)
		}
		if n := ccInfo(t, ctx, b.JS, "LATER"); !n.Paused {
			t.Errorf("created with pause_until: not paused")
		}
		// Refusals.
		_, err = c.PauseConsumer(ctx, &jetwayv1.PauseConsumerRequest{Stream: "S", Name: "C"})
		adminWantField(t, adminWantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT"), "pause_until")
		_, err = c.PauseConsumer(ctx, &jetwayv1.PauseConsumerRequest{Stream: "S", Name: "C", PauseUntil: timestamppb.New(time.Now().Add(-time.Minute))})
		adminWantField(t, adminWantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT"), "pause_until")
		_, err = c.PauseConsumer(ctx, &jetwayv1.PauseConsumerRequest{Stream: "S", Name: "NOPE", PauseUntil: timestamppb.New(until)})
		adminWantCode(t, err, codes.NotFound, "CONSUMER_NOT_FOUND")
		_, err = c.ResumeConsumer(ctx, &jetwayv1.ResumeConsumerRequest{Stream: "S", Name: "NOPE"})
		adminWantCode(t, err, codes.NotFound, "CONSUMER_NOT_FOUND")
	})
}

// ccNextSeq fetches one message natively and returns its stream sequence.
func ccNextSeq(t testing.TB, js jetstream.JetStream, ctx context.Context, name string) uint64 {
	t.Helper()
	cons, err := js.Consumer(ctx, "S", name)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("native fetch: %v", err)
	}
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("native ack: %v", err)
		}
		return md.Sequence.Stream
	}
	t.Fatalf("native fetch: no message (%v)", batch.Error())
	return 0
}

// TestConsumerReset: a durable that has read everything is moved back to
// a sequence, to a time, and to its ack floor; the next message a native
// client gets is the one asked. Consumers that cannot be reset say why.
func TestConsumerReset(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		ccStream(t, ctx, b.JS, 5)
		if _, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{Name: "C"}}); err != nil {
			t.Fatalf("create: %v", err)
		}
		for want := uint64(1); want <= 5; want++ {
			if got := ccNextSeq(t, b.JS, ctx, "C"); got != want {
				t.Fatalf("read seq %d, want %d", got, want)
			}
		}
		r, err := c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "C", Sequence: 2})
		if err != nil {
			t.Fatalf("reset to 2: %v", err)
		}
		if r.GetResetSequence() != 2 || r.GetConsumer().GetName() != "C" || r.GetConsumer().GetNumPending() != 4 {
			t.Errorf("reset answer = seq %d, consumer %v", r.GetResetSequence(), r.GetConsumer())
		}
		if got := ccNextSeq(t, b.JS, ctx, "C"); got != 2 {
			t.Errorf("after reset to 2: next %d", got)
		}
		// By time: the stored time of message 4.
		m4, err := b.JS.Stream(ctx, "S")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := m4.GetMsg(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		r, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "C", Time: timestamppb.New(raw.Time)})
		if err != nil {
			t.Fatalf("reset to a time: %v", err)
		}
		if r.GetResetSequence() != 4 {
			t.Errorf("reset to message 4's time: sequence %d", r.GetResetSequence())
		}
		if got := ccNextSeq(t, b.JS, ctx, "C"); got != 4 {
			t.Errorf("after reset to a time: next %d, want 4", got)
		}
		// A time after the last message: only new messages.
		r, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "C", Time: timestamppb.New(time.Now().Add(time.Hour))})
		if err != nil || r.GetResetSequence() != 6 {
			t.Fatalf("reset to the future = %v, %v; want sequence 6", r, err)
		}
		if _, err := b.JS.Publish(ctx, "s.6", []byte("m-6")); err != nil {
			t.Fatal(err)
		}
		if got := ccNextSeq(t, b.JS, ctx, "C"); got != 6 {
			t.Errorf("after reset to the future: next %d, want 6", got)
		}
		// Without a position: back to the ack floor (seq 6 is acked, so 7).
		r, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "C"})
		if err != nil || r.GetResetSequence() != 7 {
			t.Errorf("reset to the ack floor = %v, %v; want 7", r, err)
		}
		// Refusals.
		_, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "C", Sequence: 2, Time: timestamppb.Now()})
		adminWantField(t, adminWantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT"), "time")
		if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "NEW", DeliverPolicy: jetstream.DeliverNewPolicy}); err != nil {
			t.Fatal(err)
		}
		_, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "NEW", Sequence: 1})
		adminWantField(t, adminWantCode(t, err, codes.FailedPrecondition, "NOT_ALLOWED"), "sequence")
		if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "FROM3", DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: 3}); err != nil {
			t.Fatal(err)
		}
		_, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "FROM3", Sequence: 2})
		adminWantField(t, adminWantCode(t, err, codes.FailedPrecondition, "NOT_ALLOWED"), "sequence")
		_, err = c.ResetConsumer(ctx, &jetwayv1.ResetConsumerRequest{Stream: "S", Name: "NOPE", Sequence: 1})
		adminWantCode(t, err, codes.NotFound, "CONSUMER_NOT_FOUND")
	})
}

// TestFetchPinnedClient: the first client to fetch for a pinned group gets
// a pin id (in FetchResponse.pin_id and the Nats-Pin-Id header, the one
// ConsumerInfo shows); another client gets nothing while it is pinned; a
// wrong pin id is PIN_ID_MISMATCH; a fetch without the group is
// PULL_REFUSED; after UnpinConsumer the old pin is refused and the next
// client is pinned.
func TestFetchPinnedClient(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, f fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		admin := b.Admin
		ccStream(t, ctx, b.JS, 6)
		if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{
			Durable: "C", PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"jobs"}, PinnedTTL: time.Minute,
		}); err != nil {
			t.Fatal(err)
		}
		group := &jetwayv1.PullPriority{Group: "jobs"}
		wait := durationpb.New(3 * time.Second)
		a, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Batch: 2, Wait: wait, Priority: group})
		if err != nil || len(a.GetMessages()) == 0 {
			t.Fatalf("first fetch = %v, %v", a, err)
		}
		pin := a.GetPinId()
		if pin == "" || a.GetMessages()[0].GetHeaders()["Nats-Pin-Id"].GetValues()[0] != pin {
			t.Fatalf("pin id %q, headers %v", pin, a.GetMessages()[0].GetHeaders())
		}
		if pg := ccInfo(t, ctx, b.JS, "C").PriorityGroups; len(pg) != 1 || pg[0].PinnedClientID != pin {
			t.Errorf("native priority groups = %+v, want pinned %q", pg, pin)
		}
		gi, err := admin.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "S", Name: "C"})
		if err != nil || len(gi.GetConsumer().GetPriorityGroups()) != 1 || gi.GetConsumer().GetPriorityGroups()[0].GetPinnedClientId() != pin {
			t.Errorf("GetConsumer priority groups = %v, %v", gi.GetConsumer().GetPriorityGroups(), err)
		}
		// Another client (no pin id) gets nothing while A is pinned.
		other, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: durationpb.New(300 * time.Millisecond), Priority: group})
		if err != nil || len(other.GetMessages()) != 0 {
			t.Fatalf("second client = %v, %v; want nothing", other, err)
		}
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: &jetwayv1.PullPriority{Group: "jobs", PinId: "NOTTHEPIN"}})
		adminWantCode(t, err, codes.FailedPrecondition, "PIN_ID_MISMATCH")
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait})
		adminWantCode(t, err, codes.FailedPrecondition, "PULL_REFUSED")
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: &jetwayv1.PullPriority{Group: "other"}})
		adminWantCode(t, err, codes.FailedPrecondition, "PULL_REFUSED")
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: &jetwayv1.PullPriority{Group: "jobs", MinPending: 1}})
		adminWantCode(t, err, codes.FailedPrecondition, "PULL_REFUSED") // not an overflow consumer
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: &jetwayv1.PullPriority{Group: "bad group"}})
		adminWantField(t, adminWantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT"), "priority.group")
		// A, passing its pin back (to any replica), goes on.
		a2, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: &jetwayv1.PullPriority{Group: "jobs", PinId: pin}})
		if err != nil || len(a2.GetMessages()) != 1 || a2.GetPinId() != pin {
			t.Fatalf("pinned client again = %v, %v", a2, err)
		}
		if _, err := admin.UnpinConsumer(ctx, &jetwayv1.UnpinConsumerRequest{Stream: "S", Name: "C", Group: "jobs"}); err != nil {
			t.Fatalf("unpin: %v", err)
		}
		if pg := ccInfo(t, ctx, b.JS, "C").PriorityGroups; len(pg) == 1 && pg[0].PinnedClientID != "" {
			t.Errorf("native after unpin: pinned %q", pg[0].PinnedClientID)
		}
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: &jetwayv1.PullPriority{Group: "jobs", PinId: pin}})
		adminWantCode(t, err, codes.FailedPrecondition, "PIN_ID_MISMATCH")
		bResp, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: wait, Priority: group})
		if err != nil || len(bResp.GetMessages()) == 0 || bResp.GetPinId() == "" || bResp.GetPinId() == pin {
			t.Fatalf("next client after unpin = %v, %v; want messages and a new pin", bResp, err)
		}
		_, err = admin.UnpinConsumer(ctx, &jetwayv1.UnpinConsumerRequest{Stream: "S", Name: "C", Group: "nogroup"})
		if err == nil {
			t.Errorf("unpin of an unknown group: no error")
		}
	})
}

// TestFetchOverflow: an overflow pull gets messages only while the
// consumer has at least min_pending pending.
func TestFetchOverflow(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, f fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		ccStream(t, ctx, b.JS, 3)
		if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{
			Durable: "C", PriorityPolicy: jetstream.PriorityPolicyOverflow, PriorityGroups: []string{"g"},
		}); err != nil {
			t.Fatal(err)
		}
		r, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: durationpb.New(300 * time.Millisecond),
			Priority: &jetwayv1.PullPriority{Group: "g", MinPending: 10}})
		if err != nil || len(r.GetMessages()) != 0 {
			t.Fatalf("min_pending 10 with 3 pending = %v, %v; want nothing", r, err)
		}
		r, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Batch: 3, Wait: durationpb.New(5 * time.Second),
			Priority: &jetwayv1.PullPriority{Group: "g", MinPending: 2}})
		if err != nil || len(r.GetMessages()) == 0 {
			t.Fatalf("min_pending 2 with 3 pending = %v, %v; want messages", r, err)
		}
		if n := ccInfo(t, ctx, b.JS, "C"); n.NumAckPending != len(r.GetMessages()) {
			t.Errorf("native ack pending %d, fetched %d", n.NumAckPending, len(r.GetMessages()))
		}
		_, err = f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: durationpb.New(time.Second),
			Priority: &jetwayv1.PullPriority{Group: "g", PinId: "abc"}})
		adminWantCode(t, err, codes.FailedPrecondition, "PULL_REFUSED") // not a pinned consumer
	})
}

// TestSubscribePinnedClient: a Subscribe for a pinned group gets its
// messages with the pin id, which ConsumerInfo shows; a second client
// gets nothing; after UnpinConsumer the first stream's pulls are refused
// for their old pin, and it asks to be pinned again (as nats.go does)
// rather than fail. A Subscribe without the group is refused before its
// first event.
func TestSubscribePinnedClient(t *testing.T) {
	b, ctx := subStart(t)
	ccStream(t, ctx, b.JS, 0)
	if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{
		Durable: "C", PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"jobs"}, PinnedTTL: time.Minute,
		AckPolicy: jetstream.AckNonePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	// Refused up front, over gRPC and REST.
	st, err := b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "S", Consumer: "C"})
	if err == nil {
		_, err = st.Recv()
	}
	if code, reason := subReason(err); code != codes.FailedPrecondition || reason != "PULL_REFUSED" {
		t.Errorf("subscribe without a group: %v %s (%v)", code, reason, err)
	}
	if r := b.Do(t, http.MethodGet, "/v1/streams/S/consumers/C:subscribe", ""); r.Status != http.StatusBadRequest {
		t.Errorf("REST subscribe without a group: %d %s", r.Status, r.Body)
	}
	prio := &jetwayv1.PullPriority{Group: "jobs"}
	chA, _, cancelA := subOpen(t, ctx, b, &jetwayv1.SubscribeRequest{Stream: "S", Consumer: "C", Priority: prio})
	defer cancelA()
	if _, err := b.JS.Publish(ctx, "s.1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	m := subMsg(t, chA, 10*time.Second, "A's first message")
	pin := m.GetHeaders()["Nats-Pin-Id"].GetValues()
	if len(pin) != 1 || pin[0] == "" {
		t.Fatalf("A's message headers %v: no pin id", m.GetHeaders())
	}
	if pg := ccInfo(t, ctx, b.JS, "C").PriorityGroups; len(pg) != 1 || pg[0].PinnedClientID != pin[0] {
		t.Errorf("native priority groups %+v, want pinned %q", pg, pin[0])
	}
	// A second client (REST Fetch, no pin id) gets nothing while A is
	// pinned; its pull expires at the server (no request of it is left).
	if _, err := b.JS.Publish(ctx, "s.2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	other, err := (fetchREST{t, b}).Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Wait: durationpb.New(300 * time.Millisecond), Priority: prio})
	if err != nil || len(other.GetMessages()) != 0 {
		t.Errorf("second client = %v, %v; want nothing", other, err)
	}
	if m := subMsg(t, chA, 10*time.Second, "A's second message"); m.GetStreamSequence() != 2 {
		t.Errorf("A got seq %d, want 2", m.GetStreamSequence())
	}
	// Unpinned, A asks to be pinned again and goes on.
	if _, err := b.Admin.UnpinConsumer(ctx, &jetwayv1.UnpinConsumerRequest{Stream: "S", Name: "C", Group: "jobs"}); err != nil {
		t.Fatalf("unpin: %v", err)
	}
	if _, err := b.JS.Publish(ctx, "s.3", []byte("three")); err != nil {
		t.Fatal(err)
	}
	m = subMsg(t, chA, 15*time.Second, "A after unpin")
	newPin := m.GetHeaders()["Nats-Pin-Id"].GetValues()
	if m.GetStreamSequence() != 3 || len(newPin) != 1 || newPin[0] == pin[0] {
		t.Errorf("after unpin: seq %d pin %v (old %q)", m.GetStreamSequence(), newPin, pin[0])
	}
	jetwaytest.Eventually(t, 5*time.Second, "native pin is A's new one", func() error {
		if pg := ccInfo(t, ctx, b.JS, "C").PriorityGroups; len(pg) != 1 || pg[0].PinnedClientID != newPin[0] {
			return fmt.Errorf("priority groups %+v", pg)
		}
		return nil
	})
}

// TestFetchPrioritized: with the prioritized policy (nats-server 2.12+), a
// waiting Fetch of priority 0 gets a new message before one of priority 5
// that has waited longer; the next message goes to the one left.
func TestFetchPrioritized(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, f fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		ccStream(t, ctx, b.JS, 0)
		if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{
			Durable: "C", PriorityPolicy: jetstream.PriorityPolicyPrioritized, PriorityGroups: []string{"g"},
		}); err != nil {
			t.Fatal(err)
		}
		type result struct {
			prio int32
			r    *jetwayv1.FetchResponse
			err  error
		}
		got := make(chan result, 2)
		fetch := func(prio int32) {
			r, err := f.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "C", Batch: 1, Wait: durationpb.New(10 * time.Second),
				Priority: &jetwayv1.PullPriority{Group: "g", Priority: prio}})
			got <- result{prio, r, err}
		}
		waiting := func(n int) {
			jetwaytest.Eventually(t, 5*time.Second, fmt.Sprintf("%d waiting pulls", n), func() error {
				if w := ccInfo(t, ctx, b.JS, "C").NumWaiting; w != n {
					return fmt.Errorf("%d waiting", w)
				}
				return nil
			})
		}
		go fetch(5)
		waiting(1)
		go fetch(0)
		waiting(2)
		for i, want := range []int32{0, 5} {
			if _, err := b.JS.Publish(ctx, fmt.Sprintf("s.%d", i), []byte(fmt.Sprintf("m-%d", i))); err != nil {
				t.Fatal(err)
			}
			select {
			case res := <-got:
				if res.err != nil || len(res.r.GetMessages()) != 1 {
					t.Fatalf("priority %d fetch = %v, %v", res.prio, res.r, res.err)
				}
				if res.prio != want {
					t.Errorf("message %d went to the priority %d fetch, want priority %d", i, res.prio, want)
				}
			case <-ctx.Done():
				t.Fatalf("message %d reached no fetch", i)
			}
		}
		if n := ccInfo(t, ctx, b.JS, "C").NumAckPending; n != 2 {
			t.Errorf("native ack pending %d, want 2", n)
		}
	})
}

// TestUpdateConsumerLosesNothing: settings the API does not carry (replay
// policy, ack sampling) survive an UpdateConsumer through the bridge, read
// natively; what the request changes is changed.
func TestUpdateConsumerLosesNothing(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		a := tr.client(t, b)
		ccStream(t, ctx, b.JS, 0)
		if _, err := b.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{
			Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, ReplayPolicy: jetstream.ReplayOriginalPolicy,
			SampleFrequency: "50%", Description: "before",
		}); err != nil {
			t.Fatal(err)
		}
		got, err := a.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "S", Name: "C"})
		if err != nil {
			t.Fatal(err)
		}
		cfg := got.GetConsumer().GetConfig()
		cfg.Description = "after"
		if _, err := a.UpdateConsumer(ctx, &jetwayv1.UpdateConsumerRequest{Stream: "S", Config: cfg}); err != nil {
			t.Fatalf("update what GetConsumer read: %v", err)
		}
		n := ccInfo(t, ctx, b.JS, "C").Config
		if n.Description != "after" || n.ReplayPolicy != jetstream.ReplayOriginalPolicy || n.SampleFrequency != "50%" {
			t.Errorf("native after update: description %q, replay %v, sample %q; want after, original, 50%%", n.Description, n.ReplayPolicy, n.SampleFrequency)
		}
	})
}
