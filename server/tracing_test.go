package server_test

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// otlpReceiver is a real OTLP/gRPC trace receiver on loopback: what the
// bridge's exporter sends, it keeps.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, r)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return r, "http://" + lis.Addr().String()
}

// traceparent of a caller's span: trace id, span id, sampled.
func traceparent(trace, span string) string { return "00-" + trace + "-" + span + "-01" }

// TestTracingLinksConsumerToProducer publishes with a caller's trace
// context over gRPC and REST, reads the messages natively and through the
// bridge, and checks what a real OTLP receiver got: the publish's producer
// span in the caller's trace, its context in the NATS message's
// traceparent header (read by nats.go), and the consumer's deliver span
// linked to it.
func TestTracingLinksConsumerToProducer(t *testing.T) {
	recv, endpoint := startOTLPReceiver(t)
	b := jetwaytest.Start(t, func(c *config.Config) { c.Tracing.Endpoint = endpoint })
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	const (
		grpcTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		restTrace = "0af7651916cd43dd8448eb211c80319c"
		caller    = "00f067aa0ba902b7"
	)
	pctx := metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(grpcTrace, caller), "tracestate", "vendor=1")
	if _, err := b.Messages.Publish(pctx, &jetwayv1.PublishRequest{Subject: "t.grpc", Payload: &jetwayv1.PublishRequest_Text{Text: "g"}}); err != nil {
		t.Fatal(err)
	}
	r := b.Do(t, http.MethodPost, "/v1/subjects/t.rest:publish", `{"text":"r"}`, "traceparent", traceparent(restTrace, caller))
	if r.Status != http.StatusOK {
		t.Fatalf("REST publish: %d %s", r.Status, r.Body)
	}

	// Natively: each message carries a traceparent in the caller's trace,
	// whose span is the bridge's producer span (not the caller's).
	headerSpan := map[string]string{} // trace → span id in the header
	for _, subj := range []string{"t.grpc", "t.rest"} {
		m, err := b.JS.Stream(ctx, "T")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := m.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			t.Fatal(err)
		}
		tp := raw.Header.Get("traceparent")
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || (parts[1] != grpcTrace && parts[1] != restTrace) || parts[2] == caller {
			t.Fatalf("%s: traceparent %q, want the caller's trace with the bridge's span", subj, tp)
		}
		headerSpan[parts[1]] = parts[2]
		if subj == "t.grpc" && raw.Header.Get("tracestate") != "vendor=1" {
			t.Errorf("%s: tracestate %q, want the caller's", subj, raw.Header.Get("tracestate"))
		}
	}

	// Through the bridge: a Fetch in a trace of its own.
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "T", Consumer: "C", Batch: 2, Wait: durationpb.New(2 * time.Second)})
	if err != nil || len(got.GetMessages()) != 2 {
		t.Fatalf("fetch: %v, %d messages", err, len(got.GetMessages()))
	}
	for _, m := range got.GetMessages() {
		if len(m.GetHeaders()["traceparent"].GetValues()) != 1 {
			t.Errorf("delivered %s without its traceparent: %v", m.GetSubject(), m.GetHeaders())
		}
	}
	// Stopping flushes the exporter.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}

	spans := recv.all()
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[hex.EncodeToString(s.GetSpanId())] = s
	}
	for _, trace := range []string{grpcTrace, restTrace} {
		prod := byID[headerSpan[trace]]
		if prod == nil {
			t.Fatalf("trace %s: no span %s (the header's) among %d received", trace, headerSpan[trace], len(spans))
		}
		if prod.GetName() != "publish" || prod.GetKind() != tracepb.Span_SPAN_KIND_PRODUCER || hex.EncodeToString(prod.GetTraceId()) != trace {
			t.Errorf("trace %s: header's span is %q kind %v in trace %x, want a producer span publish in the caller's trace", trace, prod.GetName(), prod.GetKind(), prod.GetTraceId())
		}
		// Its parent chain reaches the caller's span.
		reached := false
		for s := prod; s != nil; s = byID[hex.EncodeToString(s.GetParentSpanId())] {
			if hex.EncodeToString(s.GetParentSpanId()) == caller {
				reached = true
				break
			}
		}
		if !reached {
			t.Errorf("trace %s: the producer span's parents do not reach the caller's span %s", trace, caller)
		}
		// A deliver span links to it.
		linked := false
		for _, s := range spans {
			for _, l := range s.GetLinks() {
				if s.GetName() == "deliver" && s.GetKind() == tracepb.Span_SPAN_KIND_CONSUMER && hex.EncodeToString(l.GetSpanId()) == headerSpan[trace] && hex.EncodeToString(l.GetTraceId()) == trace {
					linked = true
				}
			}
		}
		if !linked {
			t.Errorf("trace %s: no deliver span links to the producer span %s", trace, headerSpan[trace])
		}
	}
	// The RPCs have server spans, REST named by its route.
	names := map[string]bool{}
	for _, s := range spans {
		names[s.GetName()] = true
	}
	for _, want := range []string{"jetway.v1.MessageService/Publish", "jetway.v1.MessageService/Fetch", "POST /v1/subjects/{subject}:publish"} {
		if !names[want] {
			t.Errorf("no span %q among %v", want, names)
		}
	}
}

// TestTraceContextPassesWithTracingOff: without an OTLP endpoint the bridge
// records nothing, but a caller's traceparent still reaches the message.
func TestTraceContextPassesWithTracingOff(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	tp := traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
	pctx := metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
	if _, err := b.Messages.Publish(pctx, &jetwayv1.PublishRequest{Subject: "t.grpc", Payload: &jetwayv1.PublishRequest_Text{Text: "g"}}); err != nil {
		t.Fatal(err)
	}
	if r := b.Do(t, http.MethodPost, "/v1/subjects/t.rest:publish", `{"text":"r"}`, "Traceparent", tp); r.Status != http.StatusOK {
		t.Fatalf("REST publish: %d %s", r.Status, r.Body)
	}
	// A message's own traceparent wins over the call's.
	own := traceparent("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
	if _, err := b.Messages.Publish(pctx, &jetwayv1.PublishRequest{Subject: "t.own", Payload: &jetwayv1.PublishRequest_Text{Text: "o"},
		Headers: map[string]*jetwayv1.HeaderValues{"traceparent": {Values: []string{own}}}}); err != nil {
		t.Fatal(err)
	}
	st, err := b.JS.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	for subj, want := range map[string]string{"t.grpc": tp, "t.rest": tp, "t.own": own} {
		raw, err := st.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Values("traceparent"); len(got) != 1 || got[0] != want {
			t.Errorf("%s: traceparent %v, want [%s]", subj, got, want)
		}
	}
}
