package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// scrape reads a /metrics page over HTTP and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %d %s", url, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value is the sample of family name whose labels include want; -1 when
// there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestMetrics drives the bridge over gRPC and REST and reads /metrics
// over HTTP, from the HTTP port (authentication off) and from
// --metrics-listen: the RPC counts and latencies per method and code
// (REST included), what was published, failed, delivered, acked and
// refused, the open streams, the NATS connection, build info and the
// durable consumer's lag.
func TestMetrics(t *testing.T) {
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.MetricsListen = "127.0.0.1:0" })
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "M", Subjects: []string{"m.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, "M", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "m.x", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if r := b.Do(t, http.MethodPost, "/v1/subjects/m.rest:publish", `{"text":"x"}`); r.Status != http.StatusOK {
		t.Fatalf("REST publish: %d %s", r.Status, r.Body)
	}
	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "nowhere.x", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}); err == nil {
		t.Fatal("publish where no stream listens: OK")
	}
	got, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "M", Consumer: "C", Batch: 2, Wait: durationpb.New(2 * time.Second)})
	if err != nil || len(got.GetMessages()) != 2 {
		t.Fatalf("fetch: %v, %d messages", err, len(got.GetMessages()))
	}
	if _, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{
		{Token: got.GetMessages()[0].GetAckToken()}, {Token: "AQAAnot-a-token"},
	}}); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sub, err := b.Messages.Subscribe(sctx, &jetwayv1.SubscribeRequest{Stream: "M", Config: &jetwayv1.ConsumerConfig{FilterSubjects: []string{"m.none"}}, Heartbeat: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil { // the first heartbeat or its consumer info: the stream is open
		t.Fatal(err)
	}
	// A Consume stream holding one message unacked.
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, "M", jetstream.ConsumerConfig{Durable: "D", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	cons, err := b.Messages.Consume(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: &jetwayv1.SubscribeRequest{Stream: "M", Consumer: "D", MaxInFlight: 1}}}); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := cons.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetMessage() != nil {
			break
		}
	}

	for _, url := range []string{b.BaseURL + "/metrics", "http://" + b.Server.MetricsAddr().String() + "/metrics"} {
		f := scrape(t, url)
		checks := []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"jetway_published_total", map[string]string{"stream": "M"}, 4},
			{"jetway_publish_errors_total", map[string]string{"reason": "NO_STREAM_FOR_SUBJECT"}, 1},
			{"grpc_server_handled_total", map[string]string{"grpc_method": "Publish", "grpc_code": "OK"}, 4}, // 3 gRPC + 1 REST
			{"grpc_server_handled_total", map[string]string{"grpc_method": "Publish", "grpc_code": "NotFound"}, 1},
			{"grpc_server_handling_seconds", map[string]string{"grpc_method": "Publish"}, 5},
			{"jetway_delivered_total", map[string]string{"stream": "M"}, 3}, // 2 fetched, 1 consumed
			{"jetway_acks_total", map[string]string{"kind": "ack"}, 1},
			{"jetway_ack_refusals_total", map[string]string{"reason": "ACK_TOKEN_INVALID"}, 1},
			{"jetway_open_streams", map[string]string{"rpc": "subscribe"}, 1},
			{"jetway_open_streams", map[string]string{"rpc": "consume"}, 1},
			{"jetway_consume_in_flight_messages", nil, 1},
			{"jetway_fetch_waiting", nil, 0},
			{"jetway_nats_connected", nil, 1},
			{"jetway_build_info", nil, 1},
			{"jetway_consumer_pending_messages", map[string]string{"stream": "M", "consumer": "C"}, 2},
			{"jetway_consumer_ack_pending_messages", map[string]string{"stream": "M", "consumer": "C"}, 1},
			{"jetway_consumer_lag_scrape_error", nil, 0},
		}
		for _, c := range checks {
			if got := value(f, c.name, c.labels); got != c.want {
				t.Errorf("%s: %s%v = %v, want %v", url, c.name, c.labels, got, c.want)
			}
		}
		if rtt := value(f, "jetway_nats_rtt_seconds", nil); rtt <= 0 || rtt > 1 {
			t.Errorf("%s: jetway_nats_rtt_seconds = %v", url, rtt)
		}
		if f["go_goroutines"] == nil || f["process_resident_memory_bytes"] == nil {
			t.Errorf("%s: no Go runtime or process metrics", url)
		}
		for name := range f {
			if strings.Contains(name, "subject") {
				t.Errorf("%s: a metric labelled by subject: %s", url, name)
			}
		}
	}

	// The streams end: their gauges go back to zero.
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := scrape(t, b.BaseURL+"/metrics")
		open := value(f, "jetway_open_streams", map[string]string{"rpc": "subscribe"}) + value(f, "jetway_open_streams", map[string]string{"rpc": "consume"})
		held := value(f, "jetway_consume_in_flight_messages", nil) + value(f, "jetway_consume_in_flight_bytes", nil)
		if open == 0 && held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the streams ended: %v open, %v in flight (messages + bytes)", open, held)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsNotOnTheAPIPortWithAuthentication: with client
// authentication on, /metrics is served only on --metrics-listen, never
// on the HTTP port an unauthenticated caller can reach.
func TestMetricsNotOnTheAPIPortWithAuthentication(t *testing.T) {
	e := authTStartWith(t, slog.New(slog.DiscardHandler), func(c *config.Config) { c.Server.MetricsListen = "127.0.0.1:0" })
	if r := e.b.Do(t, http.MethodGet, "/metrics", ""); r.Status == http.StatusOK {
		t.Errorf("GET /metrics on the API port with authentication on: %d, want a refusal", r.Status)
	}
	// rate-grpc may make 2 calls a second (burst 2): the third is refused.
	key := authTWith(e.ctx, "ApiKey "+e.rateGRPCKey)
	refused := false
	for range 10 {
		if _, err := e.b.Admin.GetAccountInfo(key, &jetwayv1.GetAccountInfoRequest{}); err != nil {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("no call of rate-grpc refused by its quota")
	}
	f := scrape(t, "http://"+e.b.Server.MetricsAddr().String()+"/metrics")
	if f["jetway_build_info"] == nil {
		t.Error("no jetway_build_info on --metrics-listen")
	}
	if got := value(f, "jetway_quota_refusals_total", map[string]string{"identity": "rate-grpc", "limit": "rate"}); got != 1 {
		t.Errorf("jetway_quota_refusals_total{identity=rate-grpc,limit=rate} = %v, want 1", got)
	}
	if got := value(f, "grpc_server_handled_total", map[string]string{"grpc_method": "GetAccountInfo", "grpc_code": "ResourceExhausted"}); got != 1 {
		t.Errorf("grpc_server_handled_total{GetAccountInfo,ResourceExhausted} = %v, want 1", got)
	}
}
