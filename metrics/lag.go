package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of one scrape's look at JetStream: it lists streams and their
// durable consumers within lagTimeout, at most maxLagConsumers of them.
// A look is reused for lagCacheFor, so that scrapes by several
// Prometheus servers (or a caller polling /metrics) cost JetStream's API
// one look at most every few seconds.
const (
	lagTimeout      = 3 * time.Second
	maxLagConsumers = 1000
	lagCacheFor     = 5 * time.Second
)

var (
	pendingDesc = prometheus.NewDesc(namespace+"_consumer_pending_messages",
		"Messages of the stream the durable consumer has not delivered yet (its lag: what an autoscaler such as KEDA scales on).",
		[]string{"stream", "consumer"}, nil)
	ackPendingDesc = prometheus.NewDesc(namespace+"_consumer_ack_pending_messages",
		"Messages the durable consumer delivered that are not acked yet.",
		[]string{"stream", "consumer"}, nil)
	redeliveredDesc = prometheus.NewDesc(namespace+"_consumer_redelivered_messages",
		"Messages the durable consumer is redelivering (delivered more than once, not acked).",
		[]string{"stream", "consumer"}, nil)
	lagErrorDesc = prometheus.NewDesc(namespace+"_consumer_lag_scrape_error",
		"1 when the last look at JetStream's consumers failed or was cut short (timeout, more than 1000 consumers).",
		nil, nil)
)

// lagCollector reads the durable consumers' state from JetStream when
// scraped. It runs under the scrape's own bounds, in the scrape's
// goroutine.
type lagCollector struct {
	js  func(context.Context) (jetstream.JetStream, error)
	log *slog.Logger

	mu     sync.Mutex // one look at a time
	at     time.Time
	cached []prometheus.Metric
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- ackPendingDesc
	ch <- redeliveredDesc
	ch <- lagErrorDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached == nil || time.Since(c.at) >= lagCacheFor {
		buf := make(chan prometheus.Metric, 64)
		var got []prometheus.Metric
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range buf {
				got = append(got, m)
			}
		}()
		c.look(buf)
		close(buf)
		<-done
		c.cached, c.at = got, time.Now()
	}
	for _, m := range c.cached {
		ch <- m
	}
}

// look reads the consumers' state from JetStream.
func (c *lagCollector) look(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	failed := 0.0
	defer func() { ch <- prometheus.MustNewConstMetric(lagErrorDesc, prometheus.GaugeValue, failed) }()
	js, err := c.js(ctx)
	if err != nil {
		failed = 1
		return
	}
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if names.Err() != nil {
		failed = 1
		c.log.Debug("metrics: list streams", slog.Any("error", names.Err()))
	}
	seen := 0
	for _, name := range streams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			failed = 1
			continue
		}
		infos := st.ListConsumers(ctx)
		for info := range infos.Info() {
			if info.Config.Durable == "" {
				continue // an ephemeral: a random name, an unbounded label
			}
			if seen++; seen > maxLagConsumers {
				failed = 1
				cancel()
				break
			}
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(info.NumPending), name, info.Name)
			ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(info.NumAckPending), name, info.Name)
			ch <- prometheus.MustNewConstMetric(redeliveredDesc, prometheus.GaugeValue, float64(info.NumRedelivered), name, info.Name)
		}
		if infos.Err() != nil && ctx.Err() == nil {
			failed = 1
		}
		if ctx.Err() != nil {
			failed = 1
			return
		}
	}
}
