// Package metrics is the bridge's Prometheus instrumentation: gRPC (and so
// REST, which reaches the services through the same interceptors) rate,
// latency and codes per method from go-grpc-middleware's Prometheus
// provider, what the services do (bridge.Observer), the NATS connection,
// consumer lag read from JetStream at scrape time, build info, and the Go
// runtime and process.
//
// Every label set is bounded: methods and codes are fixed, streams are
// what operators create, consumers are durables only (an ephemeral's name
// is random), reasons are ErrorInfo reasons, push subscriptions are what
// operators create. Nothing is labelled by subject, endpoint or identity.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

const namespace = "jetway"

// latencyBuckets are the histogram buckets, in seconds, of RPCs and push
// requests.
func latencyBuckets() []float64 {
	return []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
}

// Metrics is one bridge's registry and instruments.
type Metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics

	published     *prometheus.CounterVec
	publishFailed *prometheus.CounterVec
	delivered     *prometheus.CounterVec
	redelivered   *prometheus.CounterVec
	acked         *prometheus.CounterVec
	ackRefused    *prometheus.CounterVec
	streams       *prometheus.GaugeVec
	fetchWaiting  prometheus.Gauge
	reconnects    prometheus.Counter
	quota         *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	deadLetterErr *prometheus.CounterVec
	inFlight      prometheus.Gauge
	inFlightBytes prometheus.Gauge
	pushRequests  *prometheus.CounterVec
	pushSeconds   *prometheus.HistogramVec
	pushInFlight  prometheus.Gauge
}

// NATS is what the metrics read of the bridge's NATS connection at scrape
// time.
type NATS struct {
	// Connected reports whether the connection is up.
	Connected func() bool
	// RTT is the connection's round trip (an error when not connected).
	RTT func() (time.Duration, error)
	// JetStream is the connection's JetStream context, for consumer lag.
	JetStream func(context.Context) (jetstream.JetStream, error)
}

// New builds the registry.
func New(nats NATS, log *slog.Logger) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(latencyBuckets()),
		)),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "published_total",
			Help: "Messages JetStream stored (or found a duplicate of) through the bridge, by stream."}, []string{"stream"}),
		publishFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "publish_errors_total",
			Help: "Publishes that failed, by ErrorInfo reason."}, []string{"reason"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "delivered_total",
			Help: "Messages handed to clients (Subscribe, Consume, Fetch), by stream."}, []string{"stream"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "redelivered_total",
			Help: "Messages handed to clients that JetStream had delivered before, by stream."}, []string{"stream"}),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "acks_total",
			Help: "Ack operations sent to JetStream, by kind (ack, nak, term, in_progress)."}, []string{"kind"}),
		ackRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ack_refusals_total",
			Help: "Ack operations refused before reaching JetStream, by ErrorInfo reason (ACK_TOKEN_EXPIRED, ACK_TOKEN_INVALID, ACK_TOKEN_NOT_PERMITTED…)."}, []string{"reason"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "open_streams",
			Help: "Open Subscribe and Consume streams, by rpc."}, []string{"rpc"}),
		fetchWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "fetch_waiting",
			Help: "Fetch calls waiting on JetStream (long polls)."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "consume_in_flight_messages",
			Help: "Messages Consume streams delivered that their clients have not acked yet."}),
		inFlightBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "consume_in_flight_bytes",
			Help: "Bytes of the messages Consume streams delivered that their clients have not acked yet."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "dead_letters_total",
			Help: "Dead letters written (a copy JetStream already had counts too), by reason (max_deliveries, terminated)."}, []string{"reason"}),
		deadLetterErr: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "dead_letter_errors_total",
			Help: "Dead letters not written (retried), by reason."}, []string{"reason"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "quota_refusals_total",
			Help: "Calls refused by an identity's quota, by identity (as configured) and limit (rate, streams)."}, []string{"identity", "limit"}),
		pushRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "push", Name: "requests_total",
			Help: "Push requests this replica made, by subscription and outcome (acked, deferred: 202, retried: NAKed, terminated: TERMed, error: the ack, NAK or TERM failed)."}, []string{"subscription", "outcome"}),
		pushSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "push", Name: "request_seconds",
			Help:    "Duration of push requests, sent until the response's headers and body were read (or the request failed), by subscription.",
			Buckets: latencyBuckets()}, []string{"subscription"}),
		pushInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "push", Name: "in_flight",
			Help: "Push deliveries in progress on this replica (request and settling), every subscription together."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "nats", Name: "reconnects_total",
			Help: "Times the bridge's NATS connection came back after a loss."}),
	}
	for _, rpc := range []string{"subscribe", "consume"} {
		m.streams.WithLabelValues(rpc)
	}
	version, revision := buildVersion()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the bridge's module version, VCS revision and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()}})
	build.Set(1)
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "nats", Name: "connected",
		Help: "1 while the bridge's NATS connection is up."}, func() float64 {
		if nats.Connected != nil && nats.Connected() {
			return 1
		}
		return 0
	})
	rtt := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "nats", Name: "rtt_seconds",
		Help: "Round trip to the NATS server, measured at scrape time (-1 when not connected)."}, func() float64 {
		if nats.RTT == nil || nats.Connected == nil || !nats.Connected() {
			return -1
		}
		d, err := nats.RTT()
		if err != nil {
			return -1
		}
		return d.Seconds()
	})
	reg.MustRegister(m.grpc, m.published, m.publishFailed, m.delivered, m.redelivered, m.acked, m.ackRefused,
		m.streams, m.fetchWaiting, m.reconnects, m.quota, m.deadLetters, m.deadLetterErr, m.inFlight, m.inFlightBytes,
		m.pushRequests, m.pushSeconds, m.pushInFlight, build, connected, rtt,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if nats.JetStream != nil {
		reg.MustRegister(&lagCollector{js: nats.JetStream, log: log})
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, Timeout: 10 * time.Second})
}

// UnaryServerInterceptor and StreamServerInterceptor count and time RPCs.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamServerInterceptor counts and times streaming RPCs.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return m.grpc.StreamServerInterceptor()
}

// InitializeMetrics creates the series of every method of s at zero.
func (m *Metrics) InitializeMetrics(s *grpc.Server) { m.grpc.InitializeMetrics(s) }

// DeadLetterWritten counts a dead letter written (deadletter.Observer).
func (m *Metrics) DeadLetterWritten(reason string) { m.deadLetters.WithLabelValues(reason).Inc() }

// DeadLetterFailed counts a dead letter not written (deadletter.Observer).
func (m *Metrics) DeadLetterFailed(reason string) { m.deadLetterErr.WithLabelValues(reason).Inc() }

// PushRequest counts and times a push request (push.Observer).
func (m *Metrics) PushRequest(subscription, outcome string, took time.Duration) {
	m.pushRequests.WithLabelValues(subscription, outcome).Inc()
	m.pushSeconds.WithLabelValues(subscription).Observe(took.Seconds())
}

// PushInFlight moves the push in-flight gauge (push.Observer).
func (m *Metrics) PushInFlight(delta int) { m.pushInFlight.Add(float64(delta)) }

// QuotaRefused counts a call refused by an identity's quota.
func (m *Metrics) QuotaRefused(identity, limit string) {
	m.quota.WithLabelValues(identity, limit).Inc()
}

// Reconnected counts a reconnect of the bridge's NATS connection.
func (m *Metrics) Reconnected() { m.reconnects.Inc() }

// The bridge.Observer methods.

// Published counts a stored publish.
func (m *Metrics) Published(stream string) { m.published.WithLabelValues(stream).Inc() }

// PublishFailed counts a failed publish.
func (m *Metrics) PublishFailed(reason string) { m.publishFailed.WithLabelValues(reason).Inc() }

// Delivered counts a delivery.
func (m *Metrics) Delivered(stream string, redelivered bool) {
	m.delivered.WithLabelValues(stream).Inc()
	if redelivered {
		m.redelivered.WithLabelValues(stream).Inc()
	}
}

// Acked counts an ack operation sent.
func (m *Metrics) Acked(kind string) { m.acked.WithLabelValues(kind).Inc() }

// AckRefused counts an ack operation refused.
func (m *Metrics) AckRefused(reason string) { m.ackRefused.WithLabelValues(reason).Inc() }

// StreamOpened counts an open stream.
func (m *Metrics) StreamOpened(rpc string) { m.streams.WithLabelValues(rpc).Inc() }

// StreamClosed uncounts it.
func (m *Metrics) StreamClosed(rpc string) { m.streams.WithLabelValues(rpc).Dec() }

// InFlight moves the Consume in-flight gauges.
func (m *Metrics) InFlight(msgs, bytes int) {
	m.inFlight.Add(float64(msgs))
	m.inFlightBytes.Add(float64(bytes))
}

// FetchWaiting moves the waiting Fetch gauge.
func (m *Metrics) FetchWaiting(delta int) { m.fetchWaiting.Add(float64(delta)) }

// buildVersion is the module version and VCS revision go build stamped.
func buildVersion() (version, revision string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return bi.Main.Version, revision
}
