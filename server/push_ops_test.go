package server_test

// Push delivery as operators see it: its metrics, the replicas of its
// bucket, and the message headers forwarded to receivers. Real
// nats-server, real bridges, real HTTP receivers on loopback.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestPushMetrics: a receiver answers 200 (seq 1), 500 then 200 (seq 2),
// 404 (seq 3) and 202 (seq 4); /metrics then counts exactly those
// outcomes for the subscription (2 acked, 1 retried, 1 terminated, 1
// deferred, no error) and times every request; the in-flight gauge
// shows a held request (seq 5) and goes back to 0. The consumer has no
// backoff: the 500 is retried after 1 s, and its ack wait of 30 s keeps
// the 202 from coming back.
func TestPushMetrics(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "OBSERVED", jetstream.ConsumerConfig{AckWait: 30 * time.Second, MaxDeliver: 5})
	hold := make(chan struct{})
	rc := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, req pushReq) int {
		switch req.seq {
		case 2:
			if req.nth == 0 {
				return http.StatusInternalServerError
			}
		case 3:
			return http.StatusNotFound
		case 4:
			return http.StatusAccepted
		case 5:
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		return http.StatusOK
	})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "observed", Stream: "OBSERVED", Consumer: "hook", Endpoint: rc.URL})
	publishN(t, b.JS, "observed.x", 0, 4)
	url := b.BaseURL + "/metrics"
	outcome := func(o string) map[string]string {
		return map[string]string{"subscription": "observed", "outcome": o}
	}
	want := map[string]float64{"acked": 2, "retried": 1, "terminated": 1, "deferred": 1}
	jetwaytest.Eventually(t, 20*time.Second, "five requests counted", func() error {
		f := scrape(t, url)
		if n := value(f, "jetway_push_request_seconds", map[string]string{"subscription": "observed"}); n != 5 {
			return fmt.Errorf("jetway_push_request_seconds count %v, want 5", n)
		}
		return nil
	})
	f := scrape(t, url)
	for o, n := range want {
		if got := value(f, "jetway_push_requests_total", outcome(o)); got != n {
			t.Errorf("jetway_push_requests_total{subscription=observed,outcome=%s} = %v, want %v", o, got, n)
		}
	}
	if got := value(f, "jetway_push_requests_total", outcome("error")); got > 0 {
		t.Errorf("jetway_push_requests_total{outcome=error} = %v, want none", got)
	}
	if got := value(f, "jetway_push_in_flight", nil); got != 0 {
		t.Errorf("jetway_push_in_flight = %v after every request settled, want 0", got)
	}
	for _, m := range f["jetway_push_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if n := l.GetName(); n != "subscription" && n != "outcome" {
				t.Errorf("jetway_push_requests_total has a label %q", n)
			}
		}
	}
	if got := len(f["jetway_push_request_seconds"].GetMetric()[0].GetHistogram().GetBucket()); got < 10 {
		t.Errorf("jetway_push_request_seconds has %d buckets", got)
	}

	// A held request is in flight; released, it is acked and the gauge
	// is back to 0.
	publishN(t, b.JS, "observed.x", 4, 1)
	jetwaytest.Eventually(t, 10*time.Second, "one push in flight", func() error {
		if got := value(scrape(t, url), "jetway_push_in_flight", nil); got != 1 {
			return fmt.Errorf("jetway_push_in_flight = %v, want 1", got)
		}
		return nil
	})
	close(hold)
	jetwaytest.Eventually(t, 10*time.Second, "the held request acked", func() error {
		f := scrape(t, url)
		if got := value(f, "jetway_push_requests_total", outcome("acked")); got != 3 {
			return fmt.Errorf("acked %v, want 3", got)
		}
		if got := value(f, "jetway_push_in_flight", nil); got != 0 {
			return fmt.Errorf("jetway_push_in_flight = %v, want 0", got)
		}
		return nil
	})
	if info, err := c.Info(jetwaytest.Context(t, 5*time.Second)); err != nil || info.NumAckPending != 1 {
		t.Errorf("consumer: %+v %v; want only the 202 pending", info, err)
	}
}

// TestPushBucketReplicas: on the single embedded server the bucket's
// stream is made with one replica (the default --push-replicas 1), read
// natively.
func TestPushBucketReplicas(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	pushStream(t, b.JS, "ONE", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	createPush(t, b, &jetwayv1.PushSubscription{Name: "one", Stream: "ONE", Consumer: "hook", Endpoint: rc.URL})
	s, err := b.JS.Stream(jetwaytest.Context(t, 5*time.Second), "KV_JETWAY_PUSH")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 1 {
		t.Errorf("KV_JETWAY_PUSH has %d replicas, want 1", r)
	}
}

// TestPushBucketReplicasOnASingleServer: --push-replicas 3 on a server
// that is not clustered: the first create answers 400 INVALID_CONFIG
// naming the flag (the operator's setting, not an internal error), and
// makes no bucket.
func TestPushBucketReplicasOnASingleServer(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate, func(c *config.Config) { c.Push.Replicas = 3 })
	pushStream(t, b.JS, "ONE", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	r := b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"one","stream":"ONE","consumer":"hook","endpoint":"`+rc.URL+`"}`)
	authTWantREST(t, "create with --push-replicas 3", r, 400, "INVALID_CONFIG")
	if !strings.Contains(string(r.Body), "--push-replicas") {
		t.Errorf("the answer does not name the flag: %s", r.Body)
	}
	if _, err := b.JS.Stream(jetwaytest.Context(t, 5*time.Second), "KV_JETWAY_PUSH"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("KV_JETWAY_PUSH: %v, want none", err)
	}
}

// TestPushBucketReplicasOnACluster: with --push-replicas 3 on a 3-node
// cluster the bucket's stream has 3 replicas; its leader's node lost, the
// subscription is still there and still delivers.
func TestPushBucketReplicasOnACluster(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	var urls []string
	for _, ns := range nodes {
		urls = append(urls, ns.ClientURL())
	}
	b := jetwaytest.Start(t, allowPrivate, func(c *config.Config) {
		c.NATS.URLs, c.Push.Replicas = strings.Join(urls, ","), 3
	})
	ctx := jetwaytest.Context(t, 90*time.Second)
	// The meta leader is elected after the routes form: retry, each
	// attempt with a short deadline (JetStream drops API requests
	// unanswered before the election).
	jetwaytest.Eventually(t, 30*time.Second, "R3 stream and consumer", func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := b.JS.CreateOrUpdateStream(actx, jetstream.StreamConfig{Name: "HA", Subjects: []string{"ha.>"}, Replicas: 3}); err != nil {
			return err
		}
		_, err := b.JS.CreateOrUpdateConsumer(actx, "HA", jetstream.ConsumerConfig{Durable: "hook", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second})
		return err
	})
	rc := newReceiver(t, nil)
	createPush(t, b, &jetwayv1.PushSubscription{Name: "ha", Stream: "HA", Consumer: "hook", Endpoint: rc.URL})
	s, err := b.JS.Stream(ctx, "KV_JETWAY_PUSH")
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("KV_JETWAY_PUSH: replicas %d, cluster %+v; want 3, a leader and 2 followers", info.Config.Replicas, info.Cluster)
	}
	for _, ns := range nodes {
		if ns.Name() == info.Cluster.Leader {
			ns.Shutdown()
		}
	}
	// The subscription survives its bucket leader's node: Get reads it
	// (once a new leader is elected) and a message published now is
	// delivered and acked.
	jetwaytest.Eventually(t, 30*time.Second, "the subscription read after the node loss", func() error {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := jetwayv1.NewPushServiceClient(b.Conn).GetPushSubscription(gctx, &jetwayv1.GetPushSubscriptionRequest{Name: "ha"})
		return err
	})
	jetwaytest.Eventually(t, 30*time.Second, "a publish after the node loss", func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.JS.Publish(pctx, "ha.x", []byte("after"), jetstream.WithMsgID("after"))
		return err
	})
	jetwaytest.Eventually(t, 45*time.Second, "delivered after the node loss", func() error {
		for _, r := range rc.requests() {
			if string(r.body) == "after" {
				return nil
			}
		}
		return fmt.Errorf("%d requests, none of the message published after", len(rc.requests()))
	})
}

// TestPushForwardsHeaders: a message's headers reach the receiver as
// Jetway-Header-<Name> (every value, raw and CloudEvents mode alike),
// Nats-* never; a hostile set, published natively (values with control
// characters, 100 headers, a 20 KiB value) is cut down to valid, bounded
// headers and the message is still delivered and acked on its first
// attempt, its signature (over the body only) verifying. Names that are
// not HTTP tokens (a space, ':', non-ASCII…) are tried too: JetStream
// refuses them at publish; any it stored would be delivered without.
func TestPushForwardsHeaders(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	raw := pushStream(t, b.JS, "HDRS", jetstream.ConsumerConfig{AckWait: 30 * time.Second})
	ce := pushStream(t, b.JS, "HDRSCE", jetstream.ConsumerConfig{AckWait: 30 * time.Second})
	rc := newReceiver(t, nil)
	secret := createPush(t, b, &jetwayv1.PushSubscription{Name: "hdrs", Stream: "HDRS", Consumer: "hook", Endpoint: rc.URL})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "hdrs-ce", Stream: "HDRSCE", Consumer: "hook", Endpoint: rc.URL,
		ContentMode: jetwayv1.PushContentMode_PUSH_CONTENT_MODE_CLOUDEVENTS_BINARY})
	ctx := jetwaytest.Context(t, 30*time.Second)
	ordinary := func(subject string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte("ordinary")
		m.Header.Set("Content-Type", "application/json")
		m.Header.Set("X-Tenant", "acme")
		m.Header["x-multi"] = []string{"a", "b"}
		m.Header.Set("Nats-Msg-Id", "ordinary-1")
		m.Header.Set("Jetway-Dead-Letter-Reason", "terminated")
		return m
	}
	for _, m := range []*nats.Msg{ordinary("hdrs.x"), ordinary("hdrsce.x")} {
		if _, err := b.JS.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	hostile := nats.NewMsg("hdrs.x")
	hostile.Data = []byte("hostile")
	for k, v := range map[string]string{"X-Ctl": "a\x01b", "X-Del": "a\x7fb", "X-Nul": "\x00", "X-Big": strings.Repeat("z", 20<<10), "X-Fine": "fine"} {
		hostile.Header.Set(k, v)
	}
	for i := range 100 {
		hostile.Header.Set(fmt.Sprintf("X-N-%03d", i), "v")
	}
	if _, err := b.JS.PublishMsg(ctx, hostile); err != nil {
		t.Fatalf("publish the hostile headers (NATS refused them): %v", err)
	}
	// Names that are not HTTP tokens: JetStream refuses them (nats-server
	// 2.15: "could not decode headers"), so none reaches a deliverer;
	// one it stores is delivered without it.
	stored := uint64(2)
	for _, name := range []string{"Bad Name", "Colon:Name", "Ünicode", "(paren)", "a/b", "a@b", "a,b"} {
		m := nats.NewMsg("hdrs.x")
		m.Data = []byte("hostile-name")
		m.Header.Set(name, "v")
		m.Header.Set("X-Fine", "fine")
		if _, err := b.JS.PublishMsg(ctx, m); err != nil {
			t.Logf("header name %q: NATS refuses it: %v", name, err)
			continue
		}
		stored++
	}
	ackedAll(t, raw, stored, 15*time.Second)
	ackedAll(t, ce, 1, 15*time.Second)

	var hostileGot []http.Header
	for _, r := range rc.requests() {
		h := r.header
		if got := h.Get("Jetway-Delivery-Attempt"); got != "1" {
			t.Errorf("%s seq %d: attempt %s, want 1 (delivered at once)", h.Get("Jetway-Stream"), r.seq, got)
		}
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "jetway-header-nats-") {
				t.Errorf("%s forwarded", k)
			}
		}
		if string(r.body) == "hostile" {
			hostileGot = append(hostileGot, h)
			continue
		}
		if string(r.body) == "hostile-name" {
			for k := range h {
				if strings.HasPrefix(k, "Jetway-Header-") && k != "Jetway-Header-X-Fine" {
					t.Errorf("hostile name forwarded: %q", k)
				}
			}
			continue
		}
		want := map[string][]string{
			"Jetway-Header-X-Tenant": {"acme"}, "Jetway-Header-X-Multi": {"a", "b"}, "Jetway-Header-Content-Type": {"application/json"},
			"Jetway-Header-Jetway-Dead-Letter-Reason": {"terminated"}, "Content-Type": {"application/json"}, "Jetway-Message-Id": {"ordinary-1"},
		}
		for k, v := range want {
			if got := h.Values(k); !slices.Equal(got, v) {
				t.Errorf("%s: %s = %q, want %q", h.Get("Jetway-Stream"), k, got, v)
			}
		}
		if h.Get("Jetway-Skipped-Headers") != "" {
			t.Errorf("%s: skipped %s of the ordinary headers", h.Get("Jetway-Stream"), h.Get("Jetway-Skipped-Headers"))
		}
		if h.Get("Jetway-Stream") == "HDRSCE" && h.Get("Ce-Specversion") != "1.0" {
			t.Errorf("CloudEvents request without ce-specversion: %v", h)
		}
	}
	if len(hostileGot) != 1 {
		t.Fatalf("the hostile message was requested %d times, want once", len(hostileGot))
	}
	h := hostileGot[0]
	n, size := 0, 0
	for k, vs := range h {
		if !strings.HasPrefix(k, "Jetway-Header-") {
			continue
		}
		for _, v := range vs {
			n++
			size += len(k) + len(": \r\n") + len(v)
		}
		if k == "Jetway-Header-X-Ctl" || k == "Jetway-Header-X-Del" || k == "Jetway-Header-X-Nul" || k == "Jetway-Header-X-Big" {
			t.Errorf("%s forwarded", k)
		}
	}
	if n != 64 || size > 16<<10 {
		t.Errorf("%d headers, %d bytes forwarded; want 64, at most 16 KiB", n, size)
	}
	// In name order: X-Big (over 16 KiB), X-Ctl and X-Del (control
	// characters) skipped, X-Fine and X-N-000 to X-N-062 forwarded (64),
	// X-N-063 to X-N-099 and X-Nul skipped: 41.
	if h.Get("Jetway-Skipped-Headers") != "41" || h.Get("Jetway-Header-X-Fine") != "fine" || h.Get("Jetway-Header-X-N-062") != "v" || h.Get("Jetway-Header-X-N-063") != "" {
		t.Errorf("skipped %q, X-Fine %q, X-N-062 %q, X-N-063 %q", h.Get("Jetway-Skipped-Headers"), h.Get("Jetway-Header-X-Fine"), h.Get("Jetway-Header-X-N-062"), h.Get("Jetway-Header-X-N-063"))
	}
	// The signature covers the body only: the forwarded headers change
	// nothing of it.
	if err := verifyWebhook(secret, h, []byte("hostile")); err != nil {
		t.Errorf("signature: %v", err)
	}
}
