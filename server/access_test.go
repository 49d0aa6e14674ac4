package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// accessTMint mints an access token over REST with an API key and
// returns it.
func accessTMint(t *testing.T, e *authTEnv, key, body string) string {
	t.Helper()
	r := e.b.Do(t, http.MethodPost, "/v1/access-tokens", body, "Authorization", "ApiKey "+key)
	if r.Status != http.StatusOK {
		t.Fatalf("mint %s: HTTP %d %s", body, r.Status, r.Body)
	}
	var out struct {
		Token, ID, Identity string
		ExpiresAt           time.Time `json:"expires_at"`
		Operations          []string
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.Token, "jwy_") || out.ID == "" || out.Identity == "" || out.ExpiresAt.Before(time.Now()) || len(out.Operations) == 0 {
		t.Fatalf("mint: %s", r.Body)
	}
	return out.Token
}

// TestAccessTokens: a token minted by an identity acts as that identity
// narrowed to its operations, streams and subjects, over gRPC and REST;
// it cannot mint, write or reach what its identity cannot.
func TestAccessTokens(t *testing.T) {
	logs := &jetwaytest.LogBuffer{}
	e := authTStartWith(t, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	pub := accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_PUBLISH"],"subjects":["orders.eu.>"],"ttl":"60s"}`)
	bearer := "Bearer " + pub

	if err := e.publish(bearer, "orders.eu.1"); err != nil {
		t.Errorf("publish within the token: %v", err)
	}
	if r := e.restPublish(t, bearer, "orders.eu.2"); r.Status != http.StatusOK {
		t.Errorf("REST publish within the token: %d %s", r.Status, r.Body)
	}
	authTWantCode(t, "publish outside the token's subjects", e.publish(bearer, "orders.us.1"), codes.PermissionDenied, "NOT_PERMITTED")
	authTWantREST(t, "REST publish outside the token's subjects", e.restPublish(t, bearer, "orders.us.1"), http.StatusForbidden, "NOT_PERMITTED")
	authTWantCode(t, "publish outside the identity's grant", e.publish(bearer, "audit.x"), codes.PermissionDenied, "NOT_PERMITTED")

	// Not its operations: reads, consuming, minting, admin writes.
	ctx := authTWith(e.ctx, bearer)
	_, err := e.b.Admin.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "ORDERS"})
	authTWantCode(t, "GetStream with a publish token", err, codes.PermissionDenied, "NOT_PERMITTED")
	_, err = e.b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "billing", Batch: 1, Wait: durationpb.New(time.Second)})
	authTWantCode(t, "Fetch with a publish token", err, codes.PermissionDenied, "NOT_PERMITTED")
	_, err = e.b.Access.CreateAccessToken(ctx, &jetwayv1.CreateAccessTokenRequest{Operations: []jetwayv1.Operation{jetwayv1.Operation_OPERATION_PUBLISH}})
	authTWantCode(t, "a token minting a token", err, codes.PermissionDenied, "NOT_PERMITTED")
	_, err = e.b.Admin.DeleteStream(ctx, &jetwayv1.DeleteStreamRequest{Name: "ORDERS"})
	authTWantCode(t, "DeleteStream with a token", err, codes.PermissionDenied, "NOT_PERMITTED")

	// Mint refusals: a grant the identity lacks, a malformed request,
	// a lifetime over the maximum, a NATS user.
	for _, c := range []struct{ key, body, reason string }{
		{e.reporterKey, `{"operations":["OPERATION_PUBLISH"]}`, "NOT_PERMITTED"},
		{e.ordersKey, `{"operations":[]}`, "INVALID_ACCESS_TOKEN_REQUEST"},
		{e.ordersKey, `{"operations":["OPERATION_READ"],"ttl":"172800s"}`, "INVALID_ACCESS_TOKEN_REQUEST"},
		{e.ordersKey, `{"operations":["OPERATION_READ"],"streams":["OR.DERS"]}`, "INVALID_ACCESS_TOKEN_REQUEST"},
		{e.ordersKey, `{"operations":["OPERATION_READ"],"subjects":["a..b"]}`, "INVALID_ACCESS_TOKEN_REQUEST"},
		{e.ordersKey, `{"operations":["OPERATION_UNSPECIFIED"]}`, "INVALID_ARGUMENT"},
	} {
		r := e.b.Do(t, http.MethodPost, "/v1/access-tokens", c.body, "Authorization", "ApiKey "+c.key)
		want := http.StatusBadRequest
		if c.reason == "NOT_PERMITTED" {
			want = http.StatusForbidden
		}
		authTWantREST(t, "mint "+c.body, r, want, c.reason)
	}
	_, err = e.b.Access.CreateAccessToken(authTWith(e.ctx, e.bearer(t, e.alice, e.aliceJWT)), &jetwayv1.CreateAccessTokenRequest{Operations: []jetwayv1.Operation{jetwayv1.Operation_OPERATION_PUBLISH}})
	authTWantCode(t, "a NATS user minting", err, codes.PermissionDenied, "NOT_PERMITTED")
	r := e.b.Do(t, http.MethodPost, "/v1/access-tokens", `{"operations":["OPERATION_READ"]}`)
	authTRESTUnauthenticated(t, "mint without credentials", r)

	// A tampered token, a token with another key.
	tampered := pub[:len(pub)-3] + "AAA"
	if pub[len(pub)-3:] == "AAA" {
		tampered = pub[:len(pub)-3] + "BBB"
	}
	authTUnauthenticated(t, "tampered token", e.publish("Bearer "+tampered, "orders.eu.3"))
	authTRESTUnauthenticated(t, "REST tampered token", e.restPublish(t, "Bearer "+tampered, "orders.eu.3"))

	// A read token for ORDERS only sees ORDERS.
	read := "Bearer " + accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_READ"],"streams":["ORDERS"]}`)
	if r := e.b.Do(t, http.MethodGet, "/v1/streams/ORDERS", "", "Authorization", read); r.Status != http.StatusOK {
		t.Errorf("GetStream with a read token: %d %s", r.Status, r.Body)
	}
	authTWantCode(t, "publish with a read token", e.publish(read, "orders.eu.4"), codes.PermissionDenied, "NOT_PERMITTED")

	if strings.Contains(logs.String(), pub[len(pub)-20:]) || strings.Contains(logs.String(), "jwy_") {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}
}

// TestAccessTokenLiveTail: a consume token in the URL of an SSE
// Subscribe tails the stream (what a browser's EventSource does), the
// response is what browsers and proxies need, and the URL token is
// refused everywhere else.
func TestAccessTokenLiveTail(t *testing.T) {
	logs := &jetwaytest.LogBuffer{}
	e := authTStartWith(t, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	tok := accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_CONSUME"],"streams":["ORDERS"],"subjects":["orders.eu.>"],"ttl":"3s"}`)
	q := url.Values{"access_token": {tok}, "config.filter_subjects": {"orders.eu.>"}, "config.ack_policy": {"ACK_POLICY_NONE"},
		"config.deliver_policy": {"DELIVER_POLICY_NEW"}, "format": {"PAYLOAD_FORMAT_TEXT"}}
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.b.BaseURL+"/v1/streams/ORDERS:subscribe?"+q.Encode(), nil)
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE with the token in the URL: %d", resp.StatusCode)
	}
	for k, want := range map[string]string{"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Content-Type": "text/event-stream", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "Grpc-") {
			t.Errorf("response header %s: %q", k, resp.Header.Values(k))
		}
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-ctx.Done():
				t.Fatalf("no %q line", prefix)
			}
		}
	}
	if l := next("retry: "); l != "retry: 2000" {
		t.Errorf("retry line %q", l)
	}
	next("event: subscribed")
	if err := e.publish("ApiKey "+e.ordersKey, "orders.eu.tail"); err != nil {
		t.Fatal(err)
	}
	next("event: message")
	if l := next("data: "); !strings.Contains(l, `"orders.eu.tail"`) {
		t.Errorf("message data %s", l)
	}
	// The token's stream ends when the token does (3 s), in-band, with
	// the event EventSource does not take for its own error.
	next("event: jetway-error")
	if l := next("data: "); !strings.Contains(l, `"UNAUTHENTICATED"`) || !strings.Contains(l, "access token expired") {
		t.Errorf("end-of-token event data %s", l)
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("the stream ended after %s, want about the token's 3s", d)
	}

	// Refused: the URL token on a route that takes headers, a
	// credential that is not an access token, both forms at once, two.
	for _, c := range []struct{ method, path, body, authz string }{
		{http.MethodGet, "/v1/streams/ORDERS?access_token=" + tok, "", ""},
		{http.MethodPost, "/v1/subjects/orders.eu.x:publish?access_token=" + tok, `{"text":"x"}`, ""},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?access_token=" + url.QueryEscape(e.ordersKey), "", ""},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?access_token=" + tok, "", "ApiKey " + e.ordersKey},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?access_token=" + tok + "&access_token=" + tok, "", ""},
	} {
		r := e.b.Do(t, c.method, c.path, c.body, authTRESTAuth(c.authz)...)
		authTWantREST(t, c.method+" "+c.path[:min(len(c.path), 40)], r, http.StatusBadRequest, "ACCESS_TOKEN_IN_QUERY")
		if strings.Contains(string(r.Body), tok[10:30]) {
			t.Errorf("the refusal repeats the token: %s", r.Body)
		}
	}
	// An expired token in the URL: 401, like any bad credential.
	r := e.b.Do(t, http.MethodGet, "/v1/streams/ORDERS:subscribe?access_token="+tok, "")
	authTRESTUnauthenticated(t, "expired token in the URL", r)
	if strings.Contains(logs.String(), tok[10:40]) {
		t.Errorf("the token reached the log")
	}
}

// TestAccessTokenAckOnly: a worker handed an ack-only token acks a
// delivery its identity fetched, and can do nothing else.
func TestAccessTokenAckOnly(t *testing.T) {
	e := authTStart(t)
	if err := e.publish("ApiKey "+e.ordersKey, "orders.eu.ack"); err != nil {
		t.Fatal(err)
	}
	f, err := e.b.Messages.Fetch(authTWith(e.ctx, "ApiKey "+e.ordersKey), &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "billing", Batch: 1, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 1 {
		t.Fatalf("fetch: %v %v", f, err)
	}
	ackTok := f.GetMessages()[0].GetAckToken()
	other := "Bearer " + accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_ACK"],"streams":["SECRET"]}`)
	res, err := e.b.Messages.Ack(authTWith(e.ctx, other), &jetwayv1.AckRequest{Operations: []*jetwayv1.AckOperation{{Token: ackTok, Kind: jetwayv1.AckKind_ACK_KIND_ACK}}, Sync: true})
	if err != nil || res.GetResults()[0].GetError().GetReason() != "NOT_PERMITTED" {
		t.Errorf("ack of ORDERS with a token for SECRET: %v %v", res, err)
	}
	worker := "Bearer " + accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_ACK"],"streams":["ORDERS"]}`)
	res, err = e.b.Messages.Ack(authTWith(e.ctx, worker), &jetwayv1.AckRequest{Operations: []*jetwayv1.AckOperation{{Token: ackTok, Kind: jetwayv1.AckKind_ACK_KIND_ACK}}, Sync: true})
	if err != nil || res.GetResults()[0].GetError() != nil {
		t.Errorf("ack with the worker's token: %v %v", res, err)
	}
	authTWantCode(t, "publish with an ack token", e.publish(worker, "orders.eu.x"), codes.PermissionDenied, "NOT_PERMITTED")
	// The ack took: nothing is pending on billing.
	ci, err := e.b.JS.Consumer(e.ctx, "ORDERS", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if info := ci.CachedInfo(); info.NumAckPending != 0 {
		t.Errorf("ack pending %d after the worker's ack", info.NumAckPending)
	}
}

// TestAccessTokensOtherReplica: a replica with the same ack keys takes
// another's tokens; one with other keys refuses them.
func TestAccessTokensOtherReplica(t *testing.T) {
	keyA := "YWNrLWtleS1hLTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWI="
	keyB := "YWNrLWtleS1iLTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWI="
	e := authTStartWith(t, nil, func(c *config.Config) { c.Consume.AckKeys = keyA })
	tok := "Bearer " + accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_READ"]}`)
	same := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = e.authFile; c.Consume.AckKeys = keyB + "," + keyA })
	other := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = e.authFile; c.Consume.AckKeys = keyB })
	_, err := same.Admin.GetStream(authTWith(e.ctx, tok), &jetwayv1.GetStreamRequest{Name: "ORDERS"})
	authTWantCode(t, "the token on a replica that verifies with the same key", err, codes.NotFound, "STREAM_NOT_FOUND")
	_, err = other.Admin.GetStream(authTWith(e.ctx, tok), &jetwayv1.GetStreamRequest{Name: "ORDERS"})
	authTUnauthenticated(t, "the token on a replica with other keys", err)
}

// TestAccessTokensNeedAuth: without client authentication there is no
// token to mint.
func TestAccessTokensNeedAuth(t *testing.T) {
	b := jetwaytest.Start(t)
	r := b.Do(t, http.MethodPost, "/v1/access-tokens", `{"operations":["OPERATION_READ"]}`)
	authTWantREST(t, "mint with auth off", r, http.StatusBadRequest, "ACCESS_TOKENS_UNAVAILABLE")
}
