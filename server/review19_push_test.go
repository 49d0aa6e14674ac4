package server_test

// Review of issue 19 (push delivery): address tricks, redirects and
// proxies must not let an endpoint reach a loopback receiver when
// --push-allow-private-endpoints is off.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// loopbackCounter serves on 127.0.0.1 and, when it can, on [::1] at the
// same port, counting every request.
type loopbackCounter struct {
	port int
	v6   bool
	hits atomic.Int64
}

func newLoopbackCounter(t *testing.T) *loopbackCounter {
	t.Helper()
	lc := &loopbackCounter{}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		lc.hits.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lc.port = l4.Addr().(*net.TCPAddr).Port
	serve := func(l net.Listener) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(l)
		}()
		t.Cleanup(func() {
			_ = srv.Close()
			<-done
		})
	}
	serve(l4)
	if l6, err := net.Listen("tcp6", "[::1]:"+strconv.Itoa(lc.port)); err == nil {
		lc.v6 = true
		serve(l6)
	}
	return lc
}

// TestReviewPushSSRFTricks: with private endpoints refused, no spelling
// of a loopback address reaches a receiver on it: each is refused at
// create (INVALID_ENDPOINT) or, when it passes (a name that resolves
// later), refused at connect, and the receiver gets no request.
func TestReviewPushSSRFTricks(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	lc := newLoopbackCounter(t)
	p := strconv.Itoa(lc.port)
	eps := []string{
		"http://127.0.0.1:" + p + "/",
		"http://127.1:" + p + "/",
		"http://2130706433:" + p + "/",
		"http://0177.0.0.1:" + p + "/",
		"http://0x7f.0.0.1:" + p + "/",
		"http://127.0.0.1.:" + p + "/",
		"http://0:" + p + "/",
		"http://0.0.0.0:" + p + "/",
		"http://localhost:" + p + "/",
		"http://LocalHost.:" + p + "/",
		"http://evil.example@127.0.0.1:" + p + "/",
		"http://127.0.0.1:" + p + "@example.com/",
		"http://[::ffff:127.0.0.1]:" + p + "/",
		"http://[::ffff:7f00:1]:" + p + "/",
		"http://[0:0:0:0:0:ffff:127.0.0.1]:" + p + "/",
		"http://[::127.0.0.1]:" + p + "/",
		"http://[::1]:" + p + "/",
		"http://[::]:" + p + "/",
		"http://[::1%25lo]:" + p + "/",
		"http://[fe80::1%25lo]:" + p + "/",
		"https://127.0.0.1:" + p + "/",
	}
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SSRF", Subjects: []string{"ssrf.>"}}); err != nil {
		t.Fatal(err)
	}
	ps := jetwayv1.NewPushServiceClient(b.Conn)
	var accepted []string
	for i, ep := range eps {
		name := "s" + strconv.Itoa(i)
		if _, err := b.JS.CreateOrUpdateConsumer(ctx, "SSRF", jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, BackOff: []time.Duration{100 * time.Millisecond}, MaxDeliver: -1}); err != nil {
			t.Fatal(err)
		}
		_, err := ps.CreatePushSubscription(ctx, &jetwayv1.CreatePushSubscriptionRequest{Subscription: &jetwayv1.PushSubscription{Name: name, Stream: "SSRF", Consumer: name, Endpoint: ep}})
		if err != nil {
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
				t.Errorf("create %s: %v, want INVALID_ARGUMENT", ep, err)
			}
			continue
		}
		accepted = append(accepted, name)
		t.Logf("accepted at create (checked at connect): %s", ep)
		if ep != "http://127.0.0.1:"+p+"@example.com/" {
			// Only the one whose host is example.com may pass create.
			t.Errorf("create %s: accepted, want INVALID_ENDPOINT at create", ep)
		}
	}
	if _, err := b.JS.Publish(ctx, "ssrf.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Every accepted subscription tried (and was refused) at least once.
	jetwaytest.Eventually(t, 20*time.Second, "every accepted endpoint tried", func() error {
		for _, name := range accepted {
			g, err := ps.GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: name})
			if err != nil {
				return err
			}
			if g.GetSubscription().GetState().GetFailed() == 0 {
				return fmt.Errorf("%s not tried yet", name)
			}
		}
		return nil
	})
	if n := lc.hits.Load(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests (v6 listener: %v)", n, lc.v6)
	}
}

// TestReviewPushRedirectAndProxy: an endpoint that answers a redirect to
// another receiver is not followed there, and HTTP_PROXY / HTTPS_PROXY
// in the environment are not used (the proxy sees nothing).
func TestReviewPushRedirectAndProxy(t *testing.T) {
	target := newLoopbackCounter(t)
	proxy := newLoopbackCounter(t)
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:"+strconv.Itoa(proxy.port))
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:"+strconv.Itoa(proxy.port))
	t.Setenv("NO_PROXY", "")
	b := jetwaytest.Start(t, allowPrivate)
	var redirects atomic.Int64
	redir := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ pushReq) int {
		redirects.Add(1)
		w.Header().Set("Location", "http://127.0.0.1:"+strconv.Itoa(target.port)+"/")
		return http.StatusTemporaryRedirect
	})
	pushStream(t, b.JS, "REDIR", jetstream.ConsumerConfig{BackOff: []time.Duration{100 * time.Millisecond}})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "redir", Stream: "REDIR", Consumer: "hook", Endpoint: redir.URL})
	publishN(t, b.JS, "redir.x", 0, 1)
	jetwaytest.Eventually(t, 20*time.Second, "redirect answered twice", func() error {
		if redirects.Load() < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if n, m := target.hits.Load(), proxy.hits.Load(); n != 0 || m != 0 {
		t.Fatalf("redirect target got %d requests, the environment's proxy %d", n, m)
	}
}

// TestReviewPushBucketForgery: an identity that may only publish (here
// on ">", an ingest gateway's grant) and administers no stream cannot
// write a subscription record into the bridge's JETWAY_PUSH bucket
// through Publish or the KV API (one aimed at tenant B's stream and
// consumer would deliver B's messages to its endpoint, on the bridge's
// own connection), nor read the bucket's records, which hold every
// subscription's secret.
func TestReviewPushBucketForgery(t *testing.T) {
	keyB, keyI := "push-review-b-key-0123456789abcdef", "push-review-ingest-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "tenant-b", APIKeyHashes: []string{auth.HashAPIKey(keyB)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"tb.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"TB", "TB.*"}, Subjects: &perm.Set{Allow: []string{"tb.>"}}},
			Admin:   &auth.AdminGrant{Streams: []string{"TB"}, Write: true, Subjects: &perm.Set{Allow: []string{"tb.>"}}},
		}},
		{Name: "ingest", APIKeyHashes: []string{auth.HashAPIKey(keyI)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{">"}},
		}},
	}})
	b := jetwaytest.Start(t, allowPrivate, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 60*time.Second)
	pushStream(t, b.JS, "TB", jetstream.ConsumerConfig{})
	good := newReceiver(t, nil)
	stolen := newReceiver(t, nil)
	hb, hi := []string{"Authorization", "ApiKey " + keyB}, []string{"Authorization", "ApiKey " + keyI}
	if r := b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"b-hook","stream":"TB","consumer":"hook","endpoint":"`+good.URL+`","paused":true}`, hb...); r.Status != 200 {
		t.Fatalf("tenant B create: %d %s", r.Status, r.Body)
	}
	rec, _ := json.Marshal(map[string]any{
		"name": "steal", "stream": "TB", "consumer": "hook", "endpoint": stolen.URL, "concurrency": 1,
		"timeout": int64(time.Second), "content_mode": "raw", "identity": "tenant-b",
		"secret": "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
	})
	pub := b.Do(t, http.MethodPost, "/v1/subjects/$KV.JETWAY_PUSH.steal:publish", `{"text":`+strconv.Quote(string(rec))+`}`, hi...)
	kvPut := b.Do(t, http.MethodPut, "/v1/kv/JETWAY_PUSH/entries/steal2", `{"value":"`+base64.StdEncoding.EncodeToString(rec)+`"}`, hi...)
	t.Logf("publish: %d %s; kv put: %d %s", pub.Status, pub.Body, kvPut.Status, kvPut.Body)
	publishN(t, b.JS, "tb.x", 0, 3)
	// Give a forged record time to start a deliverer (they start within
	// milliseconds of the watch seeing them).
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(stolen.requests()) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := len(stolen.requests()); n != 0 {
		t.Errorf("a forged subscription record delivered %d of tenant B's messages to the attacker (publish %d, kv put %d)", n, pub.Status, kvPut.Status)
	}
	if pub.Status == 200 || kvPut.Status == 200 {
		t.Errorf("a publish-only identity wrote the JETWAY_PUSH bucket: publish %d, kv put %d", pub.Status, kvPut.Status)
	}
}

// TestReviewPushHostileEndpointBounded: an endpoint that answers 200 and
// then drips an endless body, and one that sends an endless body as fast
// as it can, hold a delivery no longer than its timeout and read at most
// 64 KiB each; goroutines stay bounded and another subscription keeps
// flowing.
func TestReviewPushHostileEndpointBounded(t *testing.T) {
	b := jetwaytest.Start(t, allowPrivate)
	ctx := jetwaytest.Context(t, 60*time.Second)
	var dripped, flooded atomic.Int64
	drip := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ pushReq) int {
		w.WriteHeader(http.StatusOK)
		fl, _ := w.(http.Flusher)
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return 0
			}
			dripped.Add(1)
			if fl != nil {
				fl.Flush()
			}
			select {
			case <-r.Context().Done():
				return 0
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	flood := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ pushReq) int {
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		for r.Context().Err() == nil {
			n, err := w.Write(chunk)
			flooded.Add(int64(n))
			if err != nil {
				return 0
			}
		}
		return 0
	})
	good := newReceiver(t, nil)
	pushStream(t, b.JS, "DRIP", jetstream.ConsumerConfig{})
	pushStream(t, b.JS, "FLOOD", jetstream.ConsumerConfig{})
	gc := pushStream(t, b.JS, "GOOD", jetstream.ConsumerConfig{})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "drip", Stream: "DRIP", Consumer: "hook", Endpoint: drip.URL, Concurrency: 4, Timeout: durationpb.New(500 * time.Millisecond)})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "flood", Stream: "FLOOD", Consumer: "hook", Endpoint: flood.URL, Concurrency: 4, Timeout: durationpb.New(500 * time.Millisecond)})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "good", Stream: "GOOD", Consumer: "hook", Endpoint: good.URL, Concurrency: 2})
	base := runtime.NumGoroutine()
	publishN(t, b.JS, "drip.x", 0, 20)
	publishN(t, b.JS, "flood.x", 0, 20)
	publishN(t, b.JS, "good.x", 0, 20)
	peak := base
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, runtime.NumGoroutine())
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	ackedAll(t, gc, 20, 15*time.Second)
	jetwaytest.Eventually(t, 20*time.Second, "hostile endpoints' requests settled", func() error {
		g, err := jetwayv1.NewPushServiceClient(b.Conn).GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: "flood"})
		if err != nil {
			return err
		}
		if n := len(flood.requests()); n < 8 {
			return fmt.Errorf("flood got %d requests; state %v", n, g.GetSubscription().GetState())
		}
		return nil
	})
	close(stop)
	<-sampled
	// Each request reads at most 64 KiB of a response: far less than the
	// flood could write in its time (TCP buffers add some).
	if n, reqs := flooded.Load(), int64(len(flood.requests())); n > reqs*(64<<10+8<<20) {
		t.Errorf("flood wrote %d bytes over %d requests", n, reqs)
	}
	// 8 requests in flight at most, each a few goroutines (HTTP/1
	// connection reader and writer, the receiver's handler and its
	// watcher, the delivery): far below 200 more.
	if peak-base > 200 {
		t.Errorf("goroutines rose from %d to %d", base, peak)
	}
	t.Logf("goroutines %d -> peak %d; dripped %d bytes, flooded %d bytes over %d requests", base, peak, dripped.Load(), flooded.Load(), len(flood.requests()))
}

// TestReviewPushRevokedIdentityStopsDelivering: a push subscription is
// delivered on the bridge's own connection as its identity (the ack
// tokens name it). When that identity no longer may consume the stream
// (here: a bridge started with an auth config without it, as after a
// revocation and restart), delivery must stop: otherwise a revoked
// tenant's endpoint keeps receiving the stream.
func TestReviewPushRevokedIdentityStopsDelivering(t *testing.T) {
	// Finding 7 of the review, fixed: push.Options.Permit.
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	key := "push-review-revoked-0123456789abcdef"
	grant := auth.IdentityConfig{Name: "tenant-a", APIKeyHashes: []string{auth.HashAPIKey(key)}, Grant: auth.Grant{
		Consume: &auth.ConsumeGrant{Streams: []string{"TA", "TA.*"}, Subjects: &perm.Set{Allow: []string{"ta.>"}}},
		Admin:   &auth.AdminGrant{Streams: []string{"TA"}, Write: true, Subjects: &perm.Set{Allow: []string{"ta.>"}}},
	}}
	other := auth.IdentityConfig{Name: "ops", APIKeyHashes: []string{auth.HashAPIKey("push-review-ops-key-0123456789abcdef")}}
	before := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{grant, other}})
	after := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{other}})
	common := func(c *config.Config) {
		c.NATS.URLs = ns.ClientURL()
		c.Consume.AckKeys = base64.StdEncoding.EncodeToString([]byte("push-review-ack-key-0123456789abcdef"))
	}
	b1 := jetwaytest.Start(t, allowPrivate, common, func(c *config.Config) { c.Auth.ConfigFile = before })
	pushStream(t, b1.JS, "TA", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	if r := b1.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"a-hook","stream":"TA","consumer":"hook","endpoint":"`+rc.URL+`"}`, "Authorization", "ApiKey "+key); r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if err := b1.Stop(); err != nil {
		t.Fatal(err)
	}
	b2 := jetwaytest.Start(t, allowPrivate, common, func(c *config.Config) { c.Auth.ConfigFile = after })
	publishN(t, b2.JS, "ta.x", 0, 3)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(rc.requests()) == 0 {
		<-time.After(100 * time.Millisecond) // a bounded wait for nothing to happen
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("a revoked identity's endpoint got %d deliveries", n)
	}
}

// TestSystemStreamsOutOfReach: an identity with every grant on every
// stream ("*") can neither read nor write the bridge's own streams (the
// push bucket holds signing secrets), nor see them listed, nor squat their
// names before the bridge makes them.
func TestSystemStreamsOutOfReach(t *testing.T) {
	key := "system-streams-review-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "everything", APIKeyHashes: []string{auth.HashAPIKey(key)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{">"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"*", "*.*"}, Subjects: &perm.Set{Allow: []string{">"}}, CreateDurables: true},
			Admin:   &auth.AdminGrant{Streams: []string{"*"}, Write: true, Subjects: &perm.Set{Allow: []string{">"}}},
		}},
	}})
	b := jetwaytest.Start(t, allowPrivate, jetwaytest.WithDeadLetters, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 30*time.Second)
	h := []string{"Authorization", "ApiKey " + key}
	pushStream(t, b.JS, "OWN", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	if r := b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"own","stream":"OWN","consumer":"hook","endpoint":"`+rc.URL+`","paused":true}`, h...); r.Status != 200 {
		t.Fatalf("create push subscription: %d %s", r.Status, r.Body)
	}
	// The bucket and the advisory stream exist now.
	for _, s := range []string{"KV_JETWAY_PUSH", "JETWAY_DEAD_LETTER_ADVISORIES"} {
		jetwaytest.Eventually(t, 10*time.Second, s+" made", func() error { _, err := b.JS.Stream(ctx, s); return err })
		for _, c := range []struct{ method, path, body string }{
			{http.MethodGet, "/v1/streams/" + s, ""},
			{http.MethodGet, "/v1/streams/" + s + "/messages/1", ""},
			{http.MethodGet, "/v1/streams/" + s + "/messages:last?subject=%3E", ""},
			{http.MethodGet, "/v1/streams/" + s + "/messages", ""},
			{http.MethodGet, "/v1/streams/" + s + "/consumers", ""},
			{http.MethodPost, "/v1/streams/" + s + ":purge", "{}"},
			{http.MethodDelete, "/v1/streams/" + s, ""},
			{http.MethodPost, "/v1/streams/" + s + "/consumers", `{"name":"peek"}`},
			{http.MethodPost, "/v1/streams/" + s + "/consumers/jetway-dead-letters:fetch", `{"batch":1,"no_wait":true}`},
			{http.MethodGet, "/v1/streams/" + s + ":subscribe", ""},
		} {
			if r := b.Do(t, c.method, c.path, c.body, h...); r.Status != http.StatusForbidden {
				t.Errorf("%s %s: %d %s, want 403", c.method, c.path, r.Status, r.Body)
			}
		}
	}
	r := b.Do(t, http.MethodGet, "/v1/streams", "", h...)
	if r.Status != 200 || strings.Contains(string(r.Body), "KV_JETWAY_PUSH") || strings.Contains(string(r.Body), "JETWAY_DEAD_LETTER_ADVISORIES") {
		t.Errorf("ListStreams shows a system stream: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodPost, "/v1/streams", `{"name":"KV_JETWAY_PUSH","subjects":["squat.>"]}`, h...); r.Status != http.StatusForbidden {
		t.Errorf("create a stream named KV_JETWAY_PUSH: %d %s, want 403", r.Status, r.Body)
	}
}
