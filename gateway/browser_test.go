package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// browserTStart is a bridge (auth off, the loopback default) with stream
// ORDERS holding three messages and a durable consumer ORDERS/billing.
func browserTStart(t *testing.T, opts ...jetwaytest.Option) (*jetwaytest.Bridge, context.Context) {
	t.Helper()
	b := jetwaytest.Start(t, opts...)
	ctx := jetwaytest.Context(t, 60*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.JS.Publish(ctx, "orders.new", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
		Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	return b, ctx
}

// browserTReq is a request with a raw body sent as contentType ("" sends
// no Content-Type) and header pairs.
func browserTReq(t testing.TB, b *jetwaytest.Bridge, method, path, contentType, body string, header ...string) jetwaytest.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.BaseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.Send(t, req)
}

// browserTWant checks a refusal's status and the ErrorInfo reason of its
// body, in the gateway's error shape.
func browserTWant(t testing.TB, what string, r jetwaytest.Response, status int, reason string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: %d %s, want %d %s", what, r.Status, r.Body, status, reason)
		return nil
	}
	if reason == "" {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	m := r.JSON(t)
	details, _ := m["details"].([]any)
	for _, d := range details {
		if d, _ := d.(map[string]any); d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" && d["reason"] == reason && d["domain"] == "jetway.dev" {
			if code, _ := m["code"].(float64); code == 0 || m["message"] == "" {
				t.Errorf("%s: body %s lacks a code or message", what, r.Body)
			}
			return m
		}
	}
	t.Errorf("%s: body %s, want ErrorInfo reason %s", what, r.Body, reason)
	return m
}

func browserTMsgs(t testing.TB, ctx context.Context, b *jetwaytest.Bridge) uint64 {
	t.Helper()
	s, err := b.JS.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestCrossOriginRefused: with auth off, a browser request from another
// origin that changes state is refused with 403 CROSS_ORIGIN_REFUSED,
// whatever its method, body or path (the stream keeps its messages);
// same-origin and non-browser requests pass.
func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	b, ctx := browserTStart(t)
	host := strings.TrimPrefix(b.BaseURL, "http://")
	refused := []struct {
		name, method, path, contentType, body string
		header                                []string
	}{
		{"the attack: text/plain purge from evil", http.MethodPost, "/v1/streams/ORDERS:purge", "text/plain", "{}", []string{"Origin", "http://evil.example"}},
		{"JSON purge from evil", http.MethodPost, "/v1/streams/ORDERS:purge", "application/json", "{}", []string{"Origin", "http://evil.example"}},
		{"purge without a body from evil", http.MethodPost, "/v1/streams/ORDERS:purge", "", "", []string{"Origin", "http://evil.example"}},
		{"Sec-Fetch-Site cross-site", http.MethodPost, "/v1/streams/ORDERS:purge", "application/json", "{}", []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site same-site", http.MethodPost, "/v1/streams/ORDERS:purge", "application/json", "{}", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://other.localhost"}},
		{"cross-site with the Host's origin", http.MethodPost, "/v1/streams/ORDERS:purge", "application/json", "{}", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://" + host}},
		{"no-cors publish", http.MethodPost, "/v1/subjects/orders.new:publish", "text/plain;charset=UTF-8", `{"text":"forged"}`, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}},
		{"form publish", http.MethodPost, "/v1/subjects/orders.new:publish", "application/x-www-form-urlencoded", "text=forged", []string{"Origin", "null"}},
		{"DELETE stream", http.MethodDelete, "/v1/streams/ORDERS", "", "", []string{"Origin", "http://evil.example"}},
		{"DELETE message", http.MethodDelete, "/v1/streams/ORDERS/messages/1", "", "", []string{"Sec-Fetch-Site", "cross-site"}},
		{"PUT stream", http.MethodPut, "/v1/streams/ORDERS", "application/json", `{"subjects":["orders.>","more.>"]}`, []string{"Origin", "https://evil.example"}},
		{"PATCH", http.MethodPatch, "/v1/streams/ORDERS", "application/json", "{}", []string{"Origin", "http://evil.example"}},
		{"unknown path", http.MethodPost, "/v1/nothing", "", "", []string{"Origin", "http://evil.example"}},
	}
	for _, tt := range refused {
		r := browserTReq(t, b, tt.method, tt.path, tt.contentType, tt.body, tt.header...)
		browserTWant(t, tt.name, r, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
	}
	if n := browserTMsgs(t, ctx, b); n != 3 {
		t.Errorf("ORDERS holds %d messages after the refused requests, want 3", n)
	}
	if _, err := b.JS.Stream(ctx, "ORDERS"); err != nil {
		t.Errorf("ORDERS after the refused requests: %v", err)
	}

	// Same-origin and non-browser requests pass.
	passed := []struct {
		name   string
		header []string
	}{
		{"no Origin, no Sec-Fetch-Site (curl, SDKs)", nil},
		{"Origin is the Host", []string{"Origin", "http://" + host}},
		{"Sec-Fetch-Site same-origin", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + host}},
		{"Sec-Fetch-Site none (typed by the user)", []string{"Sec-Fetch-Site", "none"}},
	}
	for _, tt := range passed {
		r := browserTReq(t, b, http.MethodPost, "/v1/subjects/orders.new:publish", "application/json", `{"text":"ok"}`, tt.header...)
		browserTWant(t, tt.name, r, http.StatusOK, "")
	}
	if n := browserTMsgs(t, ctx, b); n != 3+uint64(len(passed)) {
		t.Errorf("ORDERS holds %d messages, want %d", n, 3+len(passed))
	}
	if r := browserTReq(t, b, http.MethodPost, "/v1/streams/ORDERS:purge", "application/json", "{}", "Origin", "http://"+host); r.Status != http.StatusOK {
		t.Errorf("same-origin purge: %d %s", r.Status, r.Body)
	}
}

// TestCrossOriginAllowedOrigins: an origin in --allowed-origins may make
// cross-origin requests; another still may not, and the body rule still
// applies to the allowed one.
func TestCrossOriginAllowedOrigins(t *testing.T) {
	t.Parallel()
	b, _ := browserTStart(t, func(c *config.Config) {
		c.Browser.AllowedOrigins = config.Origins{"http://app.example:3000", "https://ops.example"}
	})
	for _, origin := range []string{"http://app.example:3000", "https://ops.example"} {
		r := browserTReq(t, b, http.MethodPost, "/v1/subjects/orders.new:publish", "application/json", `{"text":"ok"}`, "Origin", origin, "Sec-Fetch-Site", "cross-site")
		browserTWant(t, "allowed "+origin, r, http.StatusOK, "")
		if st, first := browserTSubscribe(t, b, "/v1/streams/ORDERS:subscribe", "Origin", origin, "Sec-Fetch-Site", "cross-site"); st != http.StatusOK || !strings.Contains(first, "subscribed") {
			t.Errorf("allowed %s subscribing: %d %s", origin, st, first)
		}
		r = browserTReq(t, b, http.MethodPost, "/v1/subjects/orders.new:publish", "text/plain", `{"text":"ok"}`, "Origin", origin, "Sec-Fetch-Site", "cross-site")
		browserTWant(t, "allowed "+origin+" with text/plain", r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	}
	for _, origin := range []string{"http://app.example", "http://app.example:3001", "https://app.example:3000", "http://evil.example"} {
		r := browserTReq(t, b, http.MethodPost, "/v1/subjects/orders.new:publish", "application/json", `{"text":"no"}`, "Origin", origin)
		browserTWant(t, "not allowed "+origin, r, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
	}
}

// browserTSubscribe opens a streaming GET and returns its status and first
// line (the whole body of an error), then closes it.
func browserTSubscribe(t testing.TB, b *jetwaytest.Bridge, path string, header ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.BaseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, string(body)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			return resp.StatusCode, line
		}
	}
	t.Fatalf("GET %s: stream ended without a line: %v", path, sc.Err())
	return 0, ""
}

// TestCrossSiteSubscribeRefused: Subscribe is a GET that creates consumers
// and takes messages, so a cross-site page (an <img>, an EventSource, a
// no-cors fetch) may not open it: 403 CROSS_ORIGIN_REFUSED, the durable
// consumer delivered nothing and no ephemeral consumer was created. The
// GETs that only read stay open to it (it cannot read their answers), and
// Subscribe from the same origin or a non-browser client works.
func TestCrossSiteSubscribeRefused(t *testing.T) {
	t.Parallel()
	b, ctx := browserTStart(t)
	host := strings.TrimPrefix(b.BaseURL, "http://")
	browsers := []struct {
		name   string
		header []string
	}{
		{"<img>", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"}},
		{"EventSource", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors", "Origin", "http://evil.example", "Accept", "text/event-stream"}},
		{"same-site no-cors fetch", []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "no-cors"}},
		{"an old browser's fetch (Origin only)", []string{"Origin", "http://evil.example"}},
	}
	for _, br := range browsers {
		for _, path := range []string{
			"/v1/streams/ORDERS/consumers/billing:subscribe",
			"/v1/streams/ORDERS:subscribe?consumer=billing",
			"/v1/streams/ORDERS:subscribe",
			"/v1/streams/ORDERS/consumers/created:subscribe?config.deliver_policy=DELIVER_POLICY_ALL",
		} {
			st, body := browserTSubscribe(t, b, path, br.header...)
			browserTWant(t, br.name+" GET "+path, jetwaytest.Response{Status: st, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
		}
	}
	c, err := b.JS.Consumer(ctx, "ORDERS", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if info := c.CachedInfo(); info.Delivered.Consumer != 0 || info.NumAckPending != 0 || info.NumPending != 3 {
		t.Errorf("billing after the refused subscribes: delivered %d, ack pending %d, pending %d; want 0, 0, 3",
			info.Delivered.Consumer, info.NumAckPending, info.NumPending)
	}
	stream, err := b.JS.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range stream.ConsumerNames(ctx).Name() {
		names = append(names, n)
	}
	if len(names) != 1 || names[0] != "billing" {
		t.Errorf("consumers of ORDERS after the refused subscribes: %v, want billing only", names)
	}

	for _, path := range []string{
		"/v1/streams", "/v1/streams/ORDERS", "/v1/streams/ORDERS/consumers", "/v1/streams/ORDERS/consumers/billing",
		"/v1/streams/ORDERS/messages/1", "/v1/streams/ORDERS/messages:last?subject=orders.new", "/v1/account",
	} {
		r := browserTReq(t, b, http.MethodGet, path, "", "", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors")
		browserTWant(t, "cross-site GET "+path, r, http.StatusOK, "")
	}
	for _, header := range [][]string{nil, {"Sec-Fetch-Site", "same-origin", "Origin", "http://" + host}, {"Origin", "http://" + host}} {
		if st, first := browserTSubscribe(t, b, "/v1/streams/ORDERS/consumers/billing:subscribe", header...); st != http.StatusOK || !strings.Contains(first, "subscribed") {
			t.Errorf("subscribe with %q: %d %s, want 200 and the subscribed event", header, st, first)
		}
	}
}

// TestRequestBodyMustBeJSON: a request body is taken only as
// application/json (parameters allowed, a charset only UTF-8); any other
// type, or none, is 415 UNSUPPORTED_MEDIA_TYPE with Accept-Post, and
// nothing is done. Requests without a body need no type.
func TestRequestBodyMustBeJSON(t *testing.T) {
	t.Parallel()
	b, ctx := browserTStart(t)
	publish := "/v1/subjects/orders.new:publish"
	body := `{"text":"x"}`
	for _, ct := range []string{
		"", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/jsonx", "application/json-seq", "text/json",
		"application/json; charset=iso-8859-1", "application/json; charset", "application/*", "*/*", "json",
	} {
		r := browserTReq(t, b, http.MethodPost, publish, ct, body)
		if browserTWant(t, "publish as "+ct, r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE") != nil {
			if ap := r.Header.Get("Accept-Post"); ap != "application/json" {
				t.Errorf("publish as %q: Accept-Post %q, want application/json", ct, ap)
			}
			if !strings.Contains(r.JSON(t)["message"].(string), "application/json") {
				t.Errorf("publish as %q: message %s does not name application/json", ct, r.Body)
			}
		}
	}
	// Every route with a body, and a chunked body of unknown length.
	for _, rr := range [][2]string{
		{http.MethodPost, "/v1/streams"}, {http.MethodPut, "/v1/streams/ORDERS"}, {http.MethodPost, "/v1/streams/ORDERS:purge"},
		{http.MethodPost, "/v1/streams/ORDERS/consumers"}, {http.MethodPut, "/v1/streams/ORDERS/consumers/billing"},
		{http.MethodPost, "/v1/streams/ORDERS/consumers/billing:fetch"}, {http.MethodPost, "/v1/acks"},
		{http.MethodDelete, "/v1/streams/ORDERS"}, {http.MethodGet, "/v1/streams/ORDERS/consumers/billing:subscribe"},
	} {
		r := browserTReq(t, b, rr[0], rr[1], "text/plain", "{}")
		browserTWant(t, rr[0]+" "+rr[1]+" as text/plain", r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	}
	req, err := http.NewRequest(http.MethodPost, b.BaseURL+publish, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	browserTWant(t, "chunked without a type", b.Send(t, req), http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	if n := browserTMsgs(t, ctx, b); n != 3 {
		t.Errorf("ORDERS holds %d messages after the refused bodies, want 3", n)
	}
	if _, err := b.JS.Stream(ctx, "ORDERS"); err != nil {
		t.Errorf("ORDERS after the refused bodies: %v", err)
	}

	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8"} {
		browserTWant(t, "publish as "+ct, browserTReq(t, b, http.MethodPost, publish, ct, body), http.StatusOK, "")
	}
	req, err = http.NewRequest(http.MethodPost, b.BaseURL+publish, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	browserTWant(t, "chunked JSON", b.Send(t, req), http.StatusOK, "")
	if n := browserTMsgs(t, ctx, b); n != 7 {
		t.Errorf("ORDERS holds %d messages, want 7", n)
	}
	// No body, no type: a purge and a delete with nothing to send, with or
	// without a stray Content-Type.
	browserTWant(t, "purge without a body", browserTReq(t, b, http.MethodPost, "/v1/streams/ORDERS:purge", "", ""), http.StatusOK, "")
	browserTWant(t, "delete with a stray type", browserTReq(t, b, http.MethodDelete, "/v1/streams/ORDERS/consumers/billing", "text/plain", ""), http.StatusOK, "")
}
