package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// parityPublish publishes req over one transport: the gRPC Publish, or
// REST's POST /v1/subjects/{subject}:publish with the request as JSON. A
// REST error comes back as a status with the reason of its body.
func parityPublish(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context, req *jetwayv1.PublishRequest) (*jetwayv1.PublishResponse, error) {
	t.Helper()
	if tr.name == "grpc" {
		return b.Messages.Publish(ctx, req)
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r := b.Do(t, http.MethodPost, "/v1/subjects/"+url.PathEscape(req.GetSubject())+":publish", string(body))
	if r.Status != http.StatusOK {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		}
		_ = json.Unmarshal(r.Body, &e)
		reason := ""
		if len(e.Details) > 0 {
			reason = e.Details[0].Reason
		}
		return nil, status.Error(codes.Code(e.Code), reason+": "+e.Message)
	}
	out := &jetwayv1.PublishResponse{}
	if err := protojson.Unmarshal(r.Body, out); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return out, nil
}

// parityReason is a gRPC error's ErrorInfo reason (gRPC) or the reason
// parityPublish put first in the message (REST).
func parityReason(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	reason, _, _ := strings.Cut(st.Message(), ":")
	return reason
}

// TestPublishRollup: a rollup publish removes the older messages of its
// subject (or of the stream), read natively; a stream without
// allow_rollup refuses it.
func TestPublishRollup(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, AllowRollup: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "NR", Subjects: []string{"nr.>"}}); err != nil {
			t.Fatal(err)
		}
		for _, subj := range []string{"r.a", "r.a", "r.b"} {
			if _, err := b.JS.Publish(ctx, subj, []byte("old")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "r.a", Payload: &jetwayv1.PublishRequest_Text{Text: "state"}, Rollup: jetwayv1.Rollup_ROLLUP_SUBJECT}); err != nil {
			t.Fatalf("rollup subject: %v", err)
		}
		st, _ := b.JS.Stream(ctx, "R")
		info, _ := st.Info(ctx, jetstream.WithSubjectFilter("r.>"))
		if info.State.Msgs != 2 || info.State.Subjects["r.a"] != 1 || info.State.Subjects["r.b"] != 1 {
			t.Errorf("after a subject rollup: %d messages, subjects %v; want r.a 1, r.b 1", info.State.Msgs, info.State.Subjects)
		}
		if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "r.c", Payload: &jetwayv1.PublishRequest_Text{Text: "all"}, Rollup: jetwayv1.Rollup_ROLLUP_ALL}); err != nil {
			t.Fatalf("rollup all: %v", err)
		}
		if info, _ := st.Info(ctx); info.State.Msgs != 1 {
			t.Errorf("after a stream rollup: %d messages, want 1", info.State.Msgs)
		}
		_, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "nr.a", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}, Rollup: jetwayv1.Rollup_ROLLUP_SUBJECT})
		if err == nil {
			t.Error("rollup on a stream without allow_rollup: accepted")
		}
	})
}

// TestPublishCounters: increments add up (big integers included), the
// ack and GetCounter give the total, a native read sees the same, and a
// stream without allow_msg_counter refuses.
func TestPublishCounters(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}, AllowMsgCounter: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "NC", Subjects: []string{"nc.>"}}); err != nil {
			t.Fatal(err)
		}
		admin := tr.client(t, b)
		if c, err := admin.GetCounter(ctx, &jetwayv1.GetCounterRequest{Stream: "C", Subject: "c.views"}); err != nil || c.GetValue() != "0" {
			t.Errorf("counter never incremented: %v %v, want 0", c, err)
		}
		var last *jetwayv1.PublishResponse
		for _, incr := range []string{"5", "-2", "100000000000000000000"} {
			var err error
			if last, err = parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "c.views", Increment: incr}); err != nil {
				t.Fatalf("increment %s: %v", incr, err)
			}
		}
		const want = "100000000000000000003"
		if last.GetValue() != want {
			t.Errorf("ack value %q, want %s", last.GetValue(), want)
		}
		c, err := admin.GetCounter(ctx, &jetwayv1.GetCounterRequest{Stream: "C", Subject: "c.views"})
		if err != nil || c.GetValue() != want || c.GetSequence() != last.GetSequence() {
			t.Errorf("GetCounter: %v %v, want %s at %d", c, err, want, last.GetSequence())
		}
		st, _ := b.JS.Stream(ctx, "C")
		m, err := st.GetLastMsgForSubject(ctx, "c.views")
		if err != nil || !strings.Contains(string(m.Data), want) {
			t.Errorf("native read: %s %v", m.Data, err)
		}
		for _, bad := range []string{"1.5", "+1", "x", strings.Repeat("9", 200)} {
			if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "c.views", Increment: bad}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("increment %q: %v, want INVALID_ARGUMENT", bad, err)
			}
		}
		if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "c.views", Increment: "1", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("increment with a payload: %v, want INVALID_ARGUMENT", err)
		}
		if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "nc.views", Increment: "1"}); parityReason(err) != "NOT_ALLOWED" {
			t.Errorf("increment on a stream without counters: %v, want NOT_ALLOWED", err)
		}
		if _, err := admin.GetCounter(ctx, &jetwayv1.GetCounterRequest{Stream: "NC", Subject: "nc.views"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("GetCounter on a stream without counters: %v", err)
		}
	})
}

// TestPublishExpectedLastSubjectSequenceSubject: the expected sequence
// is compared with another subject's (or filter's) last.
func TestPublishExpectedLastSubjectSequenceSubject(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "E", Subjects: []string{"e.>"}}); err != nil {
			t.Fatal(err)
		}
		ack, err := b.JS.Publish(ctx, "e.orders.1", []byte("x")) // seq 1
		if err != nil {
			t.Fatal(err)
		}
		req := func(seq uint64) *jetwayv1.PublishRequest {
			return &jetwayv1.PublishRequest{Subject: "e.events", Payload: &jetwayv1.PublishRequest_Text{Text: "y"},
				ExpectedLastSubjectSequence: &seq, ExpectedLastSubjectSequenceSubject: "e.orders.*"}
		}
		if _, err := parityPublish(t, tr, b, ctx, req(ack.Sequence)); err != nil {
			t.Errorf("expected last sequence of e.orders.* = %d: %v", ack.Sequence, err)
		}
		if _, err := parityPublish(t, tr, b, ctx, req(7)); parityReason(err) != "WRONG_LAST_SEQUENCE" {
			t.Errorf("wrong expectation: %v, want WRONG_LAST_SEQUENCE", err)
		}
		if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "e.x", ExpectedLastSubjectSequenceSubject: "e.orders.*"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("the subject without the sequence: %v, want INVALID_ARGUMENT", err)
		}
	})
}

// TestPublishSchedule: a delayed message is stored as a schedule and
// JetStream publishes its payload to the target when due (read
// natively); a stream without allow_msg_schedules refuses; the target is
// checked.
func TestPublishSchedule(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, AllowMsgSchedules: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "NS", Subjects: []string{"ns.>"}}); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
		sched := &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_At{At: timestamppb.New(at)}, Target: "s.due"}
		if _, err := parityPublish(t, tr, b, ctx, &jetwayv1.PublishRequest{Subject: "s.schedules.reminder", Payload: &jetwayv1.PublishRequest_Text{Text: "wake up"}, Schedule: sched}); err != nil {
			t.Fatalf("schedule: %v", err)
		}
		st, _ := b.JS.Stream(ctx, "S")
		jetwaytest.Eventually(t, 10*time.Second, "the scheduled message on s.due", func() error {
			m, err := st.GetLastMsgForSubject(ctx, "s.due")
			if err != nil {
				return err
			}
			if string(m.Data) != "wake up" {
				return errors.New("payload " + string(m.Data))
			}
			if m.Time.Before(at.Add(-time.Second)) {
				return errors.New("published before it was due: " + m.Time.String())
			}
			return nil
		})
		for what, c := range map[string]struct {
			req  *jetwayv1.PublishRequest
			code codes.Code
		}{
			"no allow_msg_schedules": {&jetwayv1.PublishRequest{Subject: "ns.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_At{At: timestamppb.New(at)}, Target: "ns.due"}}, codes.FailedPrecondition},
			"target is the subject":  {&jetwayv1.PublishRequest{Subject: "s.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_At{At: timestamppb.New(at)}, Target: "s.s"}}, codes.InvalidArgument},
			"no target":              {&jetwayv1.PublishRequest{Subject: "s.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_At{At: timestamppb.New(at)}}}, codes.InvalidArgument},
			"target in no stream":    {&jetwayv1.PublishRequest{Subject: "s.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_At{At: timestamppb.New(at)}, Target: "elsewhere.x"}}, codes.InvalidArgument},
			"bad pattern":            {&jetwayv1.PublishRequest{Subject: "s.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_Pattern{Pattern: "@sometimes"}, Target: "s.due"}}, codes.InvalidArgument},
			"bad time zone":          {&jetwayv1.PublishRequest{Subject: "s.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_Pattern{Pattern: "@hourly"}, Target: "s.due", TimeZone: "Mars/Olympus"}}, codes.InvalidArgument},
			"fractional ttl":         {&jetwayv1.PublishRequest{Subject: "s.s", Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_Pattern{Pattern: "@hourly"}, Target: "s.due", Ttl: durationpb.New(1500 * time.Millisecond)}}, codes.InvalidArgument},
		} {
			if _, err := parityPublish(t, tr, b, ctx, c.req); status.Code(err) != c.code {
				t.Errorf("%s: %v, want %v", what, err, c.code)
			}
		}
	})
}

// parityBatch sends an atomic PublishBatch over one transport.
func parityBatch(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context, req *jetwayv1.PublishBatchRequest) (*jetwayv1.PublishBatchResponse, error) {
	t.Helper()
	if tr.name == "grpc" {
		return b.Messages.PublishBatch(ctx, req)
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r := b.Do(t, http.MethodPost, "/v1/messages:publish", string(body))
	if r.Status != http.StatusOK {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		}
		_ = json.Unmarshal(r.Body, &e)
		reason := ""
		if len(e.Details) > 0 {
			reason = e.Details[0].Reason
		}
		return nil, status.Error(codes.Code(e.Code), reason+": "+e.Message)
	}
	out := &jetwayv1.PublishBatchResponse{}
	if err := protojson.Unmarshal(r.Body, out); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return out, nil
}

// TestPublishAtomicBatch: an atomic batch is stored whole (read
// natively) and answered with one ack; a batch with a failing message
// (a wrong expected sequence on its first, a message to a subject no
// stream captures) stores nothing; a stream without allow_atomic refuses.
func TestPublishAtomicBatch(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "A", Subjects: []string{"a.>"}, AllowAtomicPublish: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "NA", Subjects: []string{"na.>"}}); err != nil {
			t.Fatal(err)
		}
		msg := func(subj, text string) *jetwayv1.PublishRequest {
			return &jetwayv1.PublishRequest{Subject: subj, Payload: &jetwayv1.PublishRequest_Text{Text: text}}
		}
		resp, err := parityBatch(t, tr, b, ctx, &jetwayv1.PublishBatchRequest{Atomic: true, Messages: []*jetwayv1.PublishRequest{
			msg("a.order", "created"), msg("a.stock", "reserved"), msg("a.order", "paid"),
		}})
		if err != nil {
			t.Fatalf("atomic batch: %v", err)
		}
		if bt := resp.GetBatch(); bt.GetStream() != "A" || bt.GetCount() != 3 || bt.GetLastSequence() != 3 || bt.GetBatchId() == "" || len(resp.GetResults()) != 0 {
			t.Errorf("batch ack %v", resp)
		}
		st, _ := b.JS.Stream(ctx, "A")
		if m, err := st.GetMsg(ctx, 2); err != nil || string(m.Data) != "reserved" || m.Subject != "a.stock" {
			t.Errorf("native read of message 2: %v %v", m, err)
		}
		// Fails on its first message's expectation: nothing stored.
		seq := uint64(99)
		first := msg("a.order", "late")
		first.ExpectedLastSequence = &seq
		if _, err := parityBatch(t, tr, b, ctx, &jetwayv1.PublishBatchRequest{Atomic: true, Messages: []*jetwayv1.PublishRequest{first, msg("a.x", "y")}}); parityReason(err) != "WRONG_LAST_SEQUENCE" {
			t.Errorf("batch with a wrong expectation: %v, want WRONG_LAST_SEQUENCE", err)
		}
		// A later expectation is refused before anything is sent.
		later := msg("a.x", "z")
		later.ExpectedLastSequence = &seq
		if _, err := parityBatch(t, tr, b, ctx, &jetwayv1.PublishBatchRequest{Atomic: true, Messages: []*jetwayv1.PublishRequest{msg("a.x", "y"), later}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("expectation on a later message: %v, want INVALID_ARGUMENT", err)
		}
		if _, err := parityBatch(t, tr, b, ctx, &jetwayv1.PublishBatchRequest{Atomic: true, Messages: []*jetwayv1.PublishRequest{msg("na.x", "y")}}); parityReason(err) != "NOT_ALLOWED" {
			t.Errorf("atomic batch on a stream without allow_atomic: %v, want NOT_ALLOWED", err)
		}
		if info, _ := st.Info(ctx); info.State.Msgs != 3 {
			t.Errorf("stream holds %d messages after the refused batches, want the first batch's 3", info.State.Msgs)
		}
	})
}
