package server_test

// Review of issue 19 (dead letters): forged dead letters in a DLQ stream
// must not make a redrive do what a client's Publish could not.

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/deadletter"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// redriveAll redrives stream and returns its progress events and summary.
func redriveAll(t *testing.T, b *jetwaytest.Bridge, stream string) ([]*jetwayv1.RedriveProgress, *jetwayv1.RedriveSummary) {
	t.Helper()
	ctx := jetwaytest.Context(t, 30*time.Second)
	rs, err := b.DeadLetters.RedriveDeadLetters(ctx, &jetwayv1.RedriveDeadLettersRequest{Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*jetwayv1.RedriveProgress
	var sum *jetwayv1.RedriveSummary
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("redrive: %v", err)
		}
		if p := ev.GetProgress(); p != nil {
			ps = append(ps, p)
		}
		if s := ev.GetSummary(); s != nil {
			sum = s
		}
	}
	return ps, sum
}

// TestReviewRedriveForgedReservedSubject: a dead letter published natively
// into the DLQ stream whose origin subject is the JetStream API
// ($JS.API.STREAM.PURGE.ORDERS) must not be published there by a redrive
// (Publish refuses the reserved spaces: a redrive would run admin
// operations with the bridge's connection). It fails, and ORDERS keeps its
// messages.
func TestReviewRedriveForgedReservedSubject(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	for range 3 {
		if _, err := b.JS.Publish(ctx, "orders.new", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	forged := nats.NewMsg("dlq.orders")
	forged.Header.Set(deadletter.HeaderStream, "ORDERS")
	forged.Header.Set(deadletter.HeaderSequence, "1")
	forged.Header.Set(deadletter.HeaderSubject, "$JS.API.STREAM.PURGE.ORDERS")
	forged.Header.Set(deadletter.HeaderReason, deadletter.ReasonTerminated)
	forged.Data = []byte("{}")
	if _, err := b.JS.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	ps, sum := redriveAll(t, b, "DLQ")
	if n, err := dlqCount(ctx, b.JS, "ORDERS"); err != nil || n != 3 {
		t.Fatalf("ORDERS holds %d messages (%v) after the redrive, want 3: the redrive ran $JS.API.STREAM.PURGE", n, err)
	}
	if len(ps) != 1 || ps[0].GetOutcome() != jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_FAILED || sum.GetRedriven() != 0 {
		t.Fatalf("progress %v, summary %v: want one FAILED", ps, sum)
	}
}

// TestReviewRedriveForgedHeaders: a forged dead letter's headers that a
// client's Publish refuses (Nats-*: here Nats-Expected-Last-Sequence;
// Status, which nats.go reads as a protocol status) are not sent by a
// redrive: the message is redriven without them.
func TestReviewRedriveForgedHeaders(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	forged := nats.NewMsg("dlq.orders")
	forged.Header.Set(deadletter.HeaderStream, "ORDERS")
	forged.Header.Set(deadletter.HeaderSequence, "7")
	forged.Header.Set(deadletter.HeaderSubject, "orders.new")
	forged.Header.Set(deadletter.HeaderReason, deadletter.ReasonTerminated)
	forged.Header["nats-expected-stream"] = []string{"DLQ"}
	forged.Header.Set("Status", "404")
	forged.Header.Set("X-Keep", "yes")
	forged.Data = []byte("payload")
	if _, err := b.JS.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	ps, sum := redriveAll(t, b, "DLQ")
	if sum.GetRedriven() != 1 {
		t.Fatalf("progress %v, summary %v: want one redriven", ps, sum)
	}
	st, err := b.JS.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Status") != "" || m.Header.Get("X-Keep") != "yes" || string(m.Data) != "payload" {
		t.Fatalf("redriven headers %v data %q", m.Header, m.Data)
	}
	if _, ok := m.Header["nats-expected-stream"]; ok {
		t.Fatalf("redriven with the forged nats-expected-stream header: %v", m.Header)
	}
}

// TestReviewNativeDeadLetterSubjectReserved: a consumer made natively
// (nats CLI, any client with consumer-create rights on its stream) can
// carry the metadata key jetway.dead_letter.subject unchecked. Its dead
// letters must not be published to a reserved subject: with the subject
// $JS.API.STREAM.PURGE.ORDERS a native TERM of an empty message would
// make the bridge's dead-letter worker purge ORDERS on the bridge's own
// connection (and $KV.JETWAY_PUSH.<name> would store a push
// subscription). The dead letter is not written; ORDERS keeps its
// messages.
func TestReviewNativeDeadLetterSubjectReserved(t *testing.T) {
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters)
	ctx := jetwaytest.Context(t, 60*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
		Durable: "native", AckPolicy: jetstream.AckExplicitPolicy,
		Metadata: map[string]string{"jetway.dead_letter.subject": "$JS.API.STREAM.PURGE.ORDERS"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "keep", "keep"} {
		if _, err := b.JS.Publish(ctx, "orders.new", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	// Through the bridge: the TERM's copy is refused, so the message is
	// not terminated (the copy must come first).
	f, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "native", Batch: 1, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 1 {
		t.Fatalf("fetch: %v %v", err, f)
	}
	_, ackErr := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: f.GetMessages()[0].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_TERM}}})
	t.Logf("bridge TERM: %v", ackErr)
	// Natively: the advisory path.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.TermWithReason("native"); err != nil {
			t.Fatal(err)
		}
	}
	// Both TERMs' advisories stored and handled.
	jetwaytest.Eventually(t, 20*time.Second, "two advisories handled", func() error {
		st, err := b.JS.Stream(ctx, deadletter.AdvisoryStream)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.LastSeq < 2 || info.State.Msgs != 0 {
			return fmt.Errorf("advisory stream state %+v", info.State)
		}
		return nil
	})
	if n, err := dlqCount(ctx, b.JS, "ORDERS"); err != nil || n != 3 {
		t.Fatalf("ORDERS holds %d messages (%v), want 3: a dead letter ran $JS.API.STREAM.PURGE", n, err)
	}
}

// TestReviewPublishRefusesDeadLetterHeaders: a client's Publish (gRPC, and
// so REST and ingest) may not set Jetway-Dead-Letter-* headers: only the
// bridge writes them. Otherwise anyone who may publish to a DLQ subject
// forges a dead letter "terminated by" anyone, whose origin subject is one
// it may not publish to: the redrive of an operator who may then
// publishes the forger's payload there.
func TestReviewPublishRefusesDeadLetterHeaders(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 30*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	hv := func(v string) *jetwayv1.HeaderValues { return &jetwayv1.HeaderValues{Values: []string{v}} }
	_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "dlq.orders", Payload: &jetwayv1.PublishRequest_Text{Text: "forged"}, Headers: map[string]*jetwayv1.HeaderValues{
		"jetway-dead-letter-stream": hv("ORDERS"), deadletter.HeaderSequence: hv("1"), deadletter.HeaderSubject: hv("orders.new"),
		deadletter.HeaderTerminatedBy: hv("admin"),
	}})
	authTWantCode(t, "publish a forged dead letter", err, codes.InvalidArgument, "INVALID_HEADER")
	r := b.Do(t, "POST", "/v1/subjects/dlq.orders:publish", `{"text":"forged","headers":{"Jetway-Dead-Letter-Stream":{"values":["ORDERS"]}}}`)
	authTWantREST(t, "REST publish a forged dead letter", r, 400, "INVALID_HEADER")
	if n, _ := dlqCount(ctx, b.JS, "DLQ"); n != 0 {
		t.Fatalf("DLQ holds %d", n)
	}
}

// TestReviewNativeTermReasonInjection: a native client's TERM reason goes
// into the dead letter's Jetway-Dead-Letter-Term-Reason header; CR and LF
// in it must not inject headers (here a second origin subject and a
// Nats-Rollup) into the dead letter the bridge publishes.
func TestReviewNativeTermReasonInjection(t *testing.T) {
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters)
	ctx := jetwaytest.Context(t, 60*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{Name: "work", DeadLetterSubject: "dlq.orders"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "orders.new", []byte("poison")); err != nil {
		t.Fatal(err)
	}
	cons, err := b.JS.Consumer(ctx, "ORDERS", "work")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.TermWithReason("bad\r\nJetway-Dead-Letter-Subject: orders.injected\r\nX-Injected: yes"); err != nil {
			t.Fatal(err)
		}
	}
	wantCount(t, ctx, b.JS, "DLQ", 1)
	dlq, err := b.JS.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("X-Injected") != "" || len(m.Header.Values(deadletter.HeaderSubject)) != 1 || m.Header.Get(deadletter.HeaderSubject) != "orders.new" {
		t.Fatalf("headers injected by a TERM reason: %v", m.Header)
	}
	t.Logf("term reason stored: %q", m.Header.Get(deadletter.HeaderTermReason))
}
