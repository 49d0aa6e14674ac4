package server_test

// Push delivery (issue 19): real nats-server, real bridges, real HTTP
// receivers on loopback (httptest), outcomes read natively (consumer
// state, advisories).

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// allowPrivate lets the bridge push to the loopback receivers of tests.
func allowPrivate(c *config.Config) { c.Push.AllowPrivateEndpoints = true }

// pushReq is one request a receiver got.
type pushReq struct {
	header http.Header
	body   []byte
	at     time.Time
	seq    uint64
	nth    int // earlier requests for the same sequence
}

// receiver is an HTTP endpoint on loopback that records every request and
// answers with answer (which may block until release or the end of the
// test).
type receiver struct {
	*httptest.Server
	answer  func(w http.ResponseWriter, r *http.Request, req pushReq) int
	closing chan struct{}

	mu                    sync.Mutex
	got                   []pushReq
	perSeq                map[uint64]int
	inFlight, maxInFlight int
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req pushReq) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer, closing: make(chan struct{}), perSeq: map[uint64]int{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(func() {
		close(rc.closing)
		rc.Close()
	})
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	// A held request ends at the end of the test too.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-rc.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	r = r.WithContext(ctx)
	body, _ := io.ReadAll(r.Body)
	seq, _ := strconv.ParseUint(r.Header.Get("Jetway-Sequence"), 10, 64)
	rc.mu.Lock()
	req := pushReq{header: r.Header.Clone(), body: body, at: time.Now(), seq: seq, nth: rc.perSeq[seq]}
	rc.perSeq[seq]++
	rc.got = append(rc.got, req)
	rc.inFlight++
	rc.maxInFlight = max(rc.maxInFlight, rc.inFlight)
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.inFlight--
		rc.mu.Unlock()
	}()
	code := http.StatusOK
	if rc.answer != nil {
		code = rc.answer(w, r, req)
	}
	if code != 0 {
		w.WriteHeader(code)
	}
}

func (rc *receiver) requests() []pushReq {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]pushReq(nil), rc.got...)
}

func (rc *receiver) max() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.maxInFlight
}

// pushStream makes stream name on subjects name.> and its durable pull
// consumer "hook" with explicit acks.
func pushStream(t *testing.T, js jetstream.JetStream, name string, cc jetstream.ConsumerConfig) jetstream.Consumer {
	t.Helper()
	ctx := jetwaytest.Context(t, 10*time.Second)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if cc.Durable == "" {
		cc.Durable = "hook"
	}
	cc.AckPolicy = jetstream.AckExplicitPolicy
	if cc.AckWait == 0 {
		cc.AckWait = 10 * time.Second
	}
	c, err := js.CreateOrUpdateConsumer(ctx, name, cc)
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	return c
}

// publishN publishes n JSON messages {"n":i}, i from `from`, with
// message ids id-<i>.
func publishN(t *testing.T, js jetstream.JetStream, subject string, from, n int) {
	t.Helper()
	ctx := jetwaytest.Context(t, 30*time.Second)
	for i := from; i < from+n; i++ {
		m := &nats.Msg{Subject: subject, Data: []byte(`{"n":` + strconv.Itoa(i) + `}`), Header: nats.Header{}}
		m.Header.Set("Content-Type", "application/json")
		m.Header.Set("Nats-Msg-Id", fmt.Sprintf("id-%d", i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

func createPush(t *testing.T, b *jetwaytest.Bridge, sub *jetwayv1.PushSubscription) string {
	t.Helper()
	ctx := jetwaytest.Context(t, 10*time.Second)
	resp, err := jetwayv1.NewPushServiceClient(b.Conn).CreatePushSubscription(ctx, &jetwayv1.CreatePushSubscriptionRequest{Subscription: sub})
	if err != nil {
		t.Fatalf("CreatePushSubscription: %v", err)
	}
	return resp.GetSecret()
}

// ackedAll waits until the consumer has acked every one of n messages.
func ackedAll(t *testing.T, c jetstream.Consumer, n uint64, within time.Duration) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	jetwaytest.Eventually(t, within, "every message acked", func() error {
		ctx := jetwaytest.Context(t, 5*time.Second)
		var err error
		if info, err = c.Info(ctx); err != nil {
			return err
		}
		if info.AckFloor.Stream != n || info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("ack floor %d, ack pending %d, pending %d; want %d, 0, 0", info.AckFloor.Stream, info.NumAckPending, info.NumPending, n)
		}
		return nil
	})
	return info
}

// verifyWebhook is the Standard Webhooks verification, written from the
// specification (not the bridge's code): base64 HMAC-SHA256 of
// id.timestamp.body under the secret's bytes, among the space-separated
// "v1,<sig>" of webhook-signature, timestamp within 5 minutes.
func verifyWebhook(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return fmt.Errorf("id %q timestamp %q", id, ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s off", d)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(h.Get("webhook-signature")) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature verifies")
}

// TestPushDeliversAndAcks: a 2xx answer acks (read natively), with the
// payload as the body, its content type, the metadata headers, an ack
// token and a Standard Webhooks signature that verifies; Get and List
// never show the secret, and the endpoint's credentials are redacted.
func TestPushDeliversAndAcks(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "ORDERS", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	endpoint := strings.Replace(rc.URL, "http://", "http://user:pw@", 1) + "/hook?token=s3cret"
	secret := createPush(t, b, &jetwayv1.PushSubscription{Name: "orders-hook", Stream: "ORDERS", Consumer: "hook", Endpoint: endpoint})
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	publishN(t, b.JS, "orders.new", 0, 5)
	ackedAll(t, c, 5, 15*time.Second)
	got := rc.requests()
	if len(got) != 5 {
		t.Fatalf("%d requests, want 5", len(got))
	}
	for _, r := range got {
		h := r.header
		if err := verifyWebhook(secret, h, r.body); err != nil {
			t.Errorf("seq %d: signature: %v", r.seq, err)
		}
		want := map[string]string{
			"Content-Type": "application/json", "Jetway-Subject": "orders.new", "Jetway-Stream": "ORDERS",
			"Jetway-Delivery-Attempt": "1", "Jetway-Message-Id": fmt.Sprintf("id-%d", r.seq-1), "Jetway-Subscription": "orders-hook",
			"Webhook-Id": fmt.Sprintf("ORDERS:%d", r.seq),
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("seq %d: %s = %q, want %q", r.seq, k, h.Get(k), v)
			}
		}
		if h.Get("Jetway-Ack-Token") == "" || h.Get("Authorization") == "" {
			t.Errorf("seq %d: ack token %q, basic auth %q", r.seq, h.Get("Jetway-Ack-Token"), h.Get("Authorization"))
		}
		if string(r.body) != fmt.Sprintf(`{"n":%d}`, r.seq-1) {
			t.Errorf("seq %d: body %q", r.seq, r.body)
		}
	}
	if info := ackedAll(t, c, 5, time.Second); info.NumRedelivered != 0 {
		t.Errorf("redelivered %d", info.NumRedelivered)
	}
	// Get (gRPC) and List (REST) hide the secret and the credentials.
	ctx := jetwaytest.Context(t, 10*time.Second)
	g, err := jetwayv1.NewPushServiceClient(b.Conn).GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: "orders-hook"})
	if err != nil {
		t.Fatal(err)
	}
	if e := g.GetSubscription().GetEndpoint(); strings.Contains(e, "pw") || strings.Contains(e, "s3cret") || !strings.Contains(e, "/hook?…") {
		t.Errorf("endpoint shown as %q", e)
	}
	if st := g.GetSubscription().GetState(); st.GetDelivered() != 5 || !st.GetActive() || st.GetLastSuccess() == nil {
		t.Errorf("state %v", st)
	}
	r := b.Do(t, http.MethodGet, "/v1/push-subscriptions", "")
	if r.Status != 200 || strings.Contains(string(r.Body), "whsec_") || strings.Contains(string(r.Body), "s3cret") || !strings.Contains(string(r.Body), `"orders-hook"`) {
		t.Errorf("REST list: %d %s", r.Status, r.Body)
	}
}

// TestPushRESTLifecycle: create, get, update (pause, rotate the secret),
// delete over REST; the secret appears only in the create and rotate
// answers; errors carry their reasons.
func TestPushRESTLifecycle(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "LIFE", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	// Before any subscription there is no bucket: nothing is added to
	// the account, the list is empty, a name is not found.
	if r := b.Do(t, http.MethodGet, "/v1/push-subscriptions", ""); r.Status != 200 || strings.Join(strings.Fields(string(r.Body)), "") != `{"subscriptions":[],"partial":false,"replicas_missing":[]}` {
		t.Errorf("list before any: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "get before any", b.Do(t, http.MethodGet, "/v1/push-subscriptions/life", ""), 404, "PUSH_SUBSCRIPTION_NOT_FOUND")
	if _, err := b.JS.Stream(jetwaytest.Context(t, 5*time.Second), "KV_JETWAY_PUSH"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("bucket stream before any subscription: %v", err)
	}
	body := `{"name":"life","stream":"LIFE","consumer":"hook","endpoint":"` + rc.URL + `","concurrency":2,"timeout":"2s","content_mode":"PUSH_CONTENT_MODE_CLOUDEVENTS_BINARY"}`
	r := b.Do(t, http.MethodPost, "/v1/push-subscriptions", body)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"secret":"whsec_`) {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var created struct{ Secret string }
	_ = json.Unmarshal(r.Body, &created)
	authTWantREST(t, "create again", b.Do(t, http.MethodPost, "/v1/push-subscriptions", body), 409, "PUSH_SUBSCRIPTION_EXISTS")
	authTWantREST(t, "get missing", b.Do(t, http.MethodGet, "/v1/push-subscriptions/nope", ""), 404, "PUSH_SUBSCRIPTION_NOT_FOUND")
	authTWantREST(t, "bad name", b.Do(t, http.MethodGet, "/v1/push-subscriptions/a.b", ""), 400, "INVALID_NAME")
	authTWantREST(t, "no consumer", b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"x","stream":"LIFE","consumer":"nope","endpoint":"`+rc.URL+`"}`), 404, "CONSUMER_NOT_FOUND")
	authTWantREST(t, "bad scheme", b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"x","stream":"LIFE","consumer":"hook","endpoint":"ftp://example.com/"}`), 400, "INVALID_ENDPOINT")
	authTWantREST(t, "concurrency", b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"x","stream":"LIFE","consumer":"hook","endpoint":"`+rc.URL+`","concurrency":257}`), 400, "INVALID_ARGUMENT")
	authTWantREST(t, "timeout", b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"x","stream":"LIFE","consumer":"hook","endpoint":"`+rc.URL+`","timeout":"61s"}`), 400, "INVALID_ARGUMENT")
	r = b.Do(t, http.MethodGet, "/v1/push-subscriptions/life", "")
	if r.Status != 200 || strings.Contains(string(r.Body), "whsec_") || !strings.Contains(string(r.Body), `"concurrency":2`) {
		t.Errorf("get: %d %s", r.Status, r.Body)
	}
	// CloudEvents binary mode.
	publishN(t, b.JS, "life.created", 0, 1)
	ackedAll(t, c, 1, 15*time.Second)
	h := rc.requests()[0].header
	for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "id-0", "Ce-Source": "/jetway/streams/LIFE", "Ce-Type": "dev.jetway.message", "Ce-Subject": "life.created"} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, h.Get("Ce-Time")); err != nil {
		t.Errorf("Ce-Time %q", h.Get("Ce-Time"))
	}
	// Pause, with a new secret.
	r = b.Do(t, http.MethodPut, "/v1/push-subscriptions/life?rotate_secret=true", `{"endpoint":"`+rc.URL+`","paused":true}`)
	var rotated struct {
		Secret       string
		Subscription struct{ Paused bool }
	}
	if r.Status != 200 || json.Unmarshal(r.Body, &rotated) != nil || !strings.HasPrefix(rotated.Secret, "whsec_") || rotated.Secret == created.Secret || !rotated.Subscription.Paused {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "change stream", b.Do(t, http.MethodPut, "/v1/push-subscriptions/life", `{"stream":"OTHER","endpoint":"`+rc.URL+`"}`), 400, "INVALID_ARGUMENT")
	jetwaytest.Eventually(t, 10*time.Second, "paused", func() error {
		g := b.Do(t, http.MethodGet, "/v1/push-subscriptions/life", "")
		if !strings.Contains(string(g.Body), `"active":false`) {
			return fmt.Errorf("%s", g.Body)
		}
		return nil
	})
	publishN(t, b.JS, "life.created", 1, 1)
	// Resumed: delivered, signed with the new secret.
	if r := b.Do(t, http.MethodPut, "/v1/push-subscriptions/life", `{"endpoint":"`+rc.URL+`"}`); r.Status != 200 || strings.Contains(string(r.Body), "whsec_") {
		t.Fatalf("resume: %d %s", r.Status, r.Body)
	}
	ackedAll(t, c, 2, 15*time.Second)
	last := rc.requests()[len(rc.requests())-1]
	if err := verifyWebhook(rotated.Secret, last.header, last.body); err != nil {
		t.Errorf("new secret: %v", err)
	}
	if err := verifyWebhook(created.Secret, last.header, last.body); err == nil {
		t.Error("the old secret still verifies")
	}
	if r := b.Do(t, http.MethodDelete, "/v1/push-subscriptions/life", ""); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "get deleted", b.Do(t, http.MethodGet, "/v1/push-subscriptions/life", ""), 404, "PUSH_SUBSCRIPTION_NOT_FOUND")
}

// TestPushRetries: 500 then 200, and a receiver that times out then
// answers, are retried (the second attempt says so) and acked once.
func TestPushRetries(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c5 := pushStream(t, b.JS, "FIVE", jetstream.ConsumerConfig{BackOff: []time.Duration{200 * time.Millisecond, time.Second}, AckWait: 0, MaxDeliver: 5})
	ct := pushStream(t, b.JS, "SLOW", jetstream.ConsumerConfig{BackOff: []time.Duration{time.Second, time.Second}, MaxDeliver: 5})
	rc5 := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, req pushReq) int {
		if req.nth == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	rct := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, req pushReq) int {
		if req.nth == 0 {
			select { // past the subscription's timeout
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		return http.StatusOK
	})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "five", Stream: "FIVE", Consumer: "hook", Endpoint: rc5.URL})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "slow", Stream: "SLOW", Consumer: "hook", Endpoint: rct.URL, Timeout: durationpb.New(300 * time.Millisecond)})
	publishN(t, b.JS, "five.x", 0, 3)
	publishN(t, b.JS, "slow.x", 0, 1)
	ackedAll(t, c5, 3, 20*time.Second)
	ackedAll(t, ct, 1, 20*time.Second)
	for name, rc := range map[string]*receiver{"five": rc5, "slow": rct} {
		got := rc.requests()
		attempts := map[uint64][]string{}
		for _, r := range got {
			attempts[r.seq] = append(attempts[r.seq], r.header.Get("Jetway-Delivery-Attempt"))
		}
		for seq, a := range attempts {
			if strings.Join(a, ",") != "1,2" {
				t.Errorf("%s seq %d: attempts %v, want [1 2]", name, seq, a)
			}
		}
	}
	r := b.Do(t, http.MethodGet, "/v1/push-subscriptions/slow", "")
	if !strings.Contains(string(r.Body), "timeout after 300ms") {
		t.Errorf("slow state: %s", r.Body)
	}
}

// TestPushRetryAfter: a 429 with Retry-After: 2 is redelivered no sooner
// than 2 s later (the consumer's own backoff would be 100 ms).
func TestPushRetryAfter(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "LATER", jetstream.ConsumerConfig{BackOff: []time.Duration{100 * time.Millisecond}, MaxDeliver: 5})
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, req pushReq) int {
		if req.nth == 0 {
			w.Header().Set("Retry-After", "2")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "later", Stream: "LATER", Consumer: "hook", Endpoint: rc.URL})
	publishN(t, b.JS, "later.x", 0, 1)
	ackedAll(t, c, 1, 20*time.Second)
	got := rc.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	if d := got[1].at.Sub(got[0].at); d < 1900*time.Millisecond || d > 6*time.Second {
		t.Errorf("redelivered after %s, want about 2s", d)
	}
}

// TestPushTerminates404: a 404 TERMs the message once, with the reason
// "push <name>: HTTP 404" (JetStream's own advisory says so), and it is
// not delivered again.
func TestPushTerminates404(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "GONE", jetstream.ConsumerConfig{BackOff: []time.Duration{100 * time.Millisecond}, MaxDeliver: 5})
	nc := b.JS.Conn()
	adv, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.GONE.hook")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = adv.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, pushReq) int { return http.StatusNotFound })
	createPush(t, b, &jetwayv1.PushSubscription{Name: "gone", Stream: "GONE", Consumer: "hook", Endpoint: rc.URL})
	publishN(t, b.JS, "gone.x", 0, 1)
	m, err := adv.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no termination advisory: %v", err)
	}
	var a struct {
		StreamSeq uint64 `json:"stream_seq"`
		Reason    string `json:"reason"`
	}
	if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq != 1 || a.Reason != "push gone: HTTP 404" {
		t.Errorf("advisory %s (%v)", m.Data, err)
	}
	info := ackedAll(t, c, 1, 10*time.Second)
	if info.NumRedelivered != 0 || len(rc.requests()) != 1 {
		t.Errorf("redelivered %d, requests %d; want 0, 1", info.NumRedelivered, len(rc.requests()))
	}
	if _, err := adv.NextMsg(300 * time.Millisecond); err == nil {
		t.Error("a second termination")
	}
}

// TestPushAcceptedThenAckedByToken: a 202 leaves the message to the
// receiver, which acks it later through the bridge's Ack RPC with the
// token the request carried.
func TestPushAcceptedThenAckedByToken(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "LATE", jetstream.ConsumerConfig{AckWait: 30 * time.Second})
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, pushReq) int { return http.StatusAccepted })
	createPush(t, b, &jetwayv1.PushSubscription{Name: "late", Stream: "LATE", Consumer: "hook", Endpoint: rc.URL})
	publishN(t, b.JS, "late.x", 0, 2)
	jetwaytest.Eventually(t, 15*time.Second, "two requests", func() error {
		if n := len(rc.requests()); n != 2 {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	ctx := jetwaytest.Context(t, 10*time.Second)
	info, err := c.Info(ctx)
	if err != nil || info.NumAckPending != 2 {
		t.Fatalf("after 202: %+v %v, want 2 ack pending", info, err)
	}
	got := rc.requests()
	// One over gRPC, one over REST.
	resp, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: got[0].header.Get("Jetway-Ack-Token"), Kind: jetwayv1.AckKind_ACK_KIND_ACK}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("Ack: %v %v", resp, err)
	}
	r := b.Do(t, http.MethodPost, "/v1/acks", `{"sync":true,"operations":[{"token":"`+got[1].header.Get("Jetway-Ack-Token")+`","kind":"ACK_KIND_ACK"}]}`)
	if r.Status != 200 || strings.Contains(string(r.Body), `"error"`) {
		t.Fatalf("REST ack: %d %s", r.Status, r.Body)
	}
	if info := ackedAll(t, c, 2, 10*time.Second); info.NumRedelivered != 0 {
		t.Errorf("redelivered %d", info.NumRedelivered)
	}
}

// pushReplicas starts n bridges on one external nats-server, with the
// same ack keys.
func pushReplicas(t *testing.T, n int, opts ...jetwaytest.Option) []*jetwaytest.Bridge {
	t.Helper()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	out := make([]*jetwaytest.Bridge, n)
	for i := range out {
		out[i] = jetwaytest.Start(t, append([]jetwaytest.Option{allowPrivate, func(c *config.Config) {
			c.NATS.URLs, c.Server.ReplicaName = ns.ClientURL(), fmt.Sprintf("bridge-%d", i)
			c.Consume.AckKeys = base64.StdEncoding.EncodeToString([]byte("push-replicas-ack-key-0123456789abcdef"))
		}}, opts...)...)
	}
	return out
}

// TestPushTwoReplicasShareOneSubscription: both replicas deliver, and each
// message is delivered and acked once.
func TestPushTwoReplicasShareOneSubscription(t *testing.T) {
	t.Parallel()
	bs := pushReplicas(t, 2)
	c := pushStream(t, bs[0].JS, "SHARED", jetstream.ConsumerConfig{AckWait: 30 * time.Second})
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, pushReq) int {
		time.Sleep(5 * time.Millisecond)
		return http.StatusOK
	})
	createPush(t, bs[0], &jetwayv1.PushSubscription{Name: "shared", Stream: "SHARED", Consumer: "hook", Endpoint: rc.URL, Concurrency: 4})
	// Both replicas deliver it before the messages are there.
	waitActive(t, bs[0], "shared", "bridge-0", "bridge-1")
	const n = 200
	publishN(t, bs[0].JS, "shared.x", 0, n)
	if info := ackedAll(t, c, n, 30*time.Second); info.NumRedelivered != 0 {
		t.Errorf("redelivered %d", info.NumRedelivered)
	}
	seen := map[uint64]int{}
	for _, r := range rc.requests() {
		seen[r.seq]++
	}
	for seq := uint64(1); seq <= n; seq++ {
		if seen[seq] != 1 {
			t.Errorf("seq %d delivered %d times", seq, seen[seq])
		}
	}
	// Each replica's own count (the fleet's state lists them: see
	// TestPushStateIsTheFleets) is non-zero, and they sum to n.
	jetwaytest.Eventually(t, 10*time.Second, "the replicas' counts sum to n", func() error {
		g, err := jetwayv1.NewPushServiceClient(bs[1].Conn).GetPushSubscription(jetwaytest.Context(t, 5*time.Second), &jetwayv1.GetPushSubscriptionRequest{Name: "shared"})
		if err != nil {
			return err
		}
		var total int64
		for _, st := range g.GetSubscription().GetReplicas() {
			if st.GetDelivered() == 0 {
				return fmt.Errorf("%s delivered nothing", st.GetReplica())
			}
			total += st.GetDelivered()
		}
		if len(g.GetSubscription().GetReplicas()) != 2 || total != n {
			return fmt.Errorf("replicas %v delivered %d in all, want 2 and %d", replicasOf(g.GetSubscription()), total, n)
		}
		return nil
	})
}

// TestPushReplicaClosedMidDelivery: a replica closed while the receiver
// holds its requests loses nothing: what it had in flight is NAKed at its
// close and delivered by the other replica, and every message is acked.
func TestPushReplicaClosedMidDelivery(t *testing.T) {
	t.Parallel()
	bs := pushReplicas(t, 2, func(c *config.Config) { c.Server.ShutdownTimeout = 2 * time.Second })
	// The ack wait is long: only the close's NAKs bring the held
	// messages back within the test's bound.
	c := pushStream(t, bs[0].JS, "HELD", jetstream.ConsumerConfig{AckWait: 60 * time.Second})
	release := make(chan struct{})
	rc := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, _ pushReq) int {
		select {
		case <-release:
			return http.StatusOK
		case <-r.Context().Done():
			return 0
		}
	})
	createPush(t, bs[0], &jetwayv1.PushSubscription{Name: "held", Stream: "HELD", Consumer: "hook", Endpoint: rc.URL, Concurrency: 4, Timeout: durationpb.New(30 * time.Second)})
	waitActive(t, bs[0], "held", "bridge-0", "bridge-1")
	const n = 20
	publishN(t, bs[0].JS, "held.x", 0, n)
	// Both replicas hold their 4 (the receiver answers nothing yet).
	jetwaytest.Eventually(t, 10*time.Second, "8 requests held", func() error {
		if got := len(rc.requests()); got < 8 {
			return fmt.Errorf("%d requests", got)
		}
		return nil
	})
	if err := bs[1].Stop(); err != nil {
		t.Fatalf("close replica 1: %v", err)
	}
	close(release)
	ackedAll(t, c, n, 20*time.Second)
	seen := map[uint64]bool{}
	for _, r := range rc.requests() {
		seen[r.seq] = true
	}
	for seq := uint64(1); seq <= n; seq++ {
		if !seen[seq] {
			t.Errorf("seq %d never reached the receiver", seq)
		}
	}
}

// TestPushSlowEndpointDoesNotStallOthers: subscription A's endpoint never
// answers within the test and holds every replica slot
// (--push-max-in-flight 4, its concurrency 8); subscription B still
// delivers, on the slot each subscription keeps.
func TestPushSlowEndpointDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate, func(c *config.Config) { c.Push.MaxInFlight = 4 })
	pushStream(t, b.JS, "SLOWA", jetstream.ConsumerConfig{AckWait: 60 * time.Second})
	cb := pushStream(t, b.JS, "FASTB", jetstream.ConsumerConfig{})
	hung := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, _ pushReq) int {
		<-r.Context().Done()
		return 0
	})
	fast := newReceiver(t, nil)
	createPush(t, b, &jetwayv1.PushSubscription{Name: "a", Stream: "SLOWA", Consumer: "hook", Endpoint: hung.URL, Timeout: durationpb.New(60 * time.Second)})
	publishN(t, b.JS, "slowa.x", 0, 20)
	jetwaytest.Eventually(t, 10*time.Second, "A holds 5 requests (4 replica slots and its own)", func() error {
		if got := hung.max(); got != 5 {
			return fmt.Errorf("%d in flight", got)
		}
		return nil
	})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "b", Stream: "FASTB", Consumer: "hook", Endpoint: fast.URL})
	publishN(t, b.JS, "fastb.x", 0, 10)
	ackedAll(t, cb, 10, 15*time.Second)
	if got := hung.max(); got != 5 {
		t.Errorf("A reached %d in flight, want 5", got)
	}
}

// TestPushConcurrencyBound: a subscription never has more than its
// concurrency in flight, and uses all of it.
func TestPushConcurrencyBound(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate)
	c := pushStream(t, b.JS, "BOUND", jetstream.ConsumerConfig{})
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, pushReq) int {
		time.Sleep(30 * time.Millisecond)
		return http.StatusOK
	})
	createPush(t, b, &jetwayv1.PushSubscription{Name: "bound", Stream: "BOUND", Consumer: "hook", Endpoint: rc.URL, Concurrency: 3})
	publishN(t, b.JS, "bound.x", 0, 40)
	ackedAll(t, c, 40, 20*time.Second)
	if got := rc.max(); got != 3 {
		t.Errorf("at most %d in flight, want 3", got)
	}
}

// TestPushRefusesPrivateEndpoints: by default a loopback endpoint is
// refused at create (gRPC and REST), and, where another replica allowing
// it stored one, at delivery: the connection is never made.
func TestPushRefusesPrivateEndpoints(t *testing.T) {
	t.Parallel()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	url := func(c *config.Config) { c.NATS.URLs = ns.ClientURL() }
	strict := jetwaytest.Start(t, url)
	c := pushStream(t, strict.JS, "PRIV", jetstream.ConsumerConfig{BackOff: []time.Duration{100 * time.Millisecond}})
	rc := newReceiver(t, nil)
	ctx := jetwaytest.Context(t, 30*time.Second)
	ps := jetwayv1.NewPushServiceClient(strict.Conn)
	for _, ep := range []string{rc.URL, "http://localhost:8080/", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/", "http://[::1]:80/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/"} {
		_, err := ps.CreatePushSubscription(ctx, &jetwayv1.CreatePushSubscriptionRequest{Subscription: &jetwayv1.PushSubscription{Name: "p", Stream: "PRIV", Consumer: "hook", Endpoint: ep}})
		st := authTWantCode(t, "create "+ep, err, codes.InvalidArgument, "INVALID_ENDPOINT")
		if st != nil && !strings.Contains(st.Message(), "--push-allow-private-endpoints") {
			t.Errorf("%s: message %q", ep, st.Message())
		}
	}
	e := authTWantREST(t, "REST create", strict.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"p","stream":"PRIV","consumer":"hook","endpoint":"`+rc.URL+`"}`), 400, "INVALID_ENDPOINT")
	if !strings.Contains(e.Message, "loopback") {
		t.Errorf("REST message %q", e.Message)
	}
	// A replica that allows private endpoints stores one, and stops.
	lax := jetwaytest.Start(t, url, allowPrivate)
	createPush(t, lax, &jetwayv1.PushSubscription{Name: "p", Stream: "PRIV", Consumer: "hook", Endpoint: rc.URL})
	if err := lax.Stop(); err != nil {
		t.Fatal(err)
	}
	publishN(t, strict.JS, "priv.x", 0, 1)
	jetwaytest.Eventually(t, 15*time.Second, "delivery refused", func() error {
		g, err := ps.GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: "p"})
		if err != nil {
			return err
		}
		if le := g.GetSubscription().GetState().GetLastError(); !strings.Contains(le, "loopback address") || !strings.Contains(le, "--push-allow-private-endpoints") {
			return fmt.Errorf("last error %q", le)
		}
		return nil
	})
	if n := len(rc.requests()); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
	if info, err := c.Info(ctx); err != nil || info.NumAckPending+int(info.NumPending) != 1 || info.AckFloor.Stream != 0 {
		t.Errorf("consumer %+v %v: want the message still there", info, err)
	}
}

// TestPushTenantsStayApart: a tenant cannot create, read, change or
// delete a push subscription on another tenant's stream, and lists only
// its own.
func TestPushTenantsStayApart(t *testing.T) {
	t.Parallel()
	keyA, keyB := "push-tenant-a-key-0123456789abcdef", "push-tenant-b-key-0123456789abcdef"
	tenant := func(name, key, stream string) auth.IdentityConfig {
		return auth.IdentityConfig{Name: name, APIKeyHashes: []string{auth.HashAPIKey(key)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{strings.ToLower(stream) + ".>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{stream, stream + ".*"}, Subjects: &perm.Set{Allow: []string{strings.ToLower(stream) + ".>"}}},
			Admin:   &auth.AdminGrant{Streams: []string{stream}, Write: true, Subjects: &perm.Set{Allow: []string{strings.ToLower(stream) + ".>"}}},
		}}
	}
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{tenant("tenant-a", keyA, "TA"), tenant("tenant-b", keyB, "TB")}})
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	b := jetwaytest.Start(t, allowPrivate, func(c *config.Config) { c.Auth.ConfigFile, c.Log.AuditFile = path, auditPath })
	pushStream(t, b.JS, "TA", jetstream.ConsumerConfig{})
	pushStream(t, b.JS, "TB", jetstream.ConsumerConfig{})
	rc := newReceiver(t, nil)
	ha, hb := []string{"Authorization", "ApiKey " + keyA}, []string{"Authorization", "ApiKey " + keyB}
	if r := b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"b-hook","stream":"TB","consumer":"hook","endpoint":"`+rc.URL+`"}`, hb...); r.Status != 200 {
		t.Fatalf("tenant B create: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"a-hook","stream":"TA","consumer":"hook","endpoint":"`+rc.URL+`"}`, ha...); r.Status != 200 {
		t.Fatalf("tenant A create: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "A creates on TB", b.Do(t, http.MethodPost, "/v1/push-subscriptions", `{"name":"steal","stream":"TB","consumer":"hook","endpoint":"`+rc.URL+`"}`, ha...), 403, "NOT_PERMITTED")
	authTWantREST(t, "A gets B's", b.Do(t, http.MethodGet, "/v1/push-subscriptions/b-hook", "", ha...), 404, "PUSH_SUBSCRIPTION_NOT_FOUND")
	authTWantREST(t, "A updates B's", b.Do(t, http.MethodPut, "/v1/push-subscriptions/b-hook", `{"endpoint":"`+rc.URL+`/stolen"}`, ha...), 404, "PUSH_SUBSCRIPTION_NOT_FOUND")
	authTWantREST(t, "A deletes B's", b.Do(t, http.MethodDelete, "/v1/push-subscriptions/b-hook", "", ha...), 404, "PUSH_SUBSCRIPTION_NOT_FOUND")
	if r := b.Do(t, http.MethodGet, "/v1/push-subscriptions", "", ha...); r.Status != 200 || strings.Contains(string(r.Body), "b-hook") || !strings.Contains(string(r.Body), "a-hook") {
		t.Errorf("A lists: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodGet, "/v1/push-subscriptions/b-hook", "", hb...); r.Status != 200 || strings.Contains(string(r.Body), "stolen") || !strings.Contains(string(r.Body), `"identity":"tenant-b"`) {
		t.Errorf("B's subscription: %d %s", r.Status, r.Body)
	}
	// Admin writes are audited, naming the subscription, never its
	// endpoint.
	jetwaytest.Eventually(t, 5*time.Second, "audit records", func() error {
		var creates, refused int
		for _, rec := range auditRecords(t, auditPath) {
			if rec["method"] != "/jetway.v1.PushService/CreatePushSubscription" {
				continue
			}
			if strings.Contains(fmt.Sprint(rec), rc.URL) {
				return fmt.Errorf("the endpoint is in %v", rec)
			}
			switch {
			case rec["outcome"] == "ok" && rec["subscription.name"] != nil && rec["subscription.stream"] != nil:
				creates++
			case rec["outcome"] == "error" && rec["subscription.stream"] == "TB" && rec["identity"] == "tenant-a":
				refused++
			}
		}
		if creates != 2 || refused != 1 {
			return fmt.Errorf("%d creates, %d refused", creates, refused)
		}
		return nil
	})
}
