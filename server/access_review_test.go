package server_test

// Security review of access tokens, CORS and ingest (branch review).
// Each test states the behaviour a fix should give; on main (673889d)
// TestReviewAccessTokenConcurrentStreams, TestReviewAccessTokenSubjects
// and TestReviewURLTokenPreflight FAIL, demonstrating the findings.

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestReviewAccessTokenConcurrentStreams: the identity streams2 has
// concurrent_streams 2. Its API key gets QUOTA_EXCEEDED on a third
// Subscribe (TestAuthConcurrentStreamsQuota), but an access token it
// mints opens as many streams as it likes: auth.Interceptor.Stream
// returns from the access-token branch before acquireStream.
func TestReviewAccessTokenConcurrentStreams(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	tok := "Bearer " + accessTMint(t, e, e.streamsKey, `{"operations":["OPERATION_CONSUME"],"streams":["ORDERS"],"ttl":"60s"}`)
	open := func() (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(authTWith(e.ctx, tok))
		s, err := e.b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "ORDERS"})
		if err == nil {
			var r *jetwayv1.SubscribeResponse
			if r, err = s.Recv(); err == nil && r.GetSubscribed() == nil {
				err = fmt.Errorf("first event %v", r)
			}
		}
		if err != nil {
			cancel()
			return nil, err
		}
		return cancel, nil
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	const tries = 10
	opened := 0
	for range tries {
		c, err := open()
		if err != nil {
			break
		}
		cancels = append(cancels, c)
		opened++
	}
	if opened > 2 {
		t.Errorf("an access token of streams2 (concurrent_streams: 2) opened %d concurrent Subscribe streams (of %d tried); want at most 2, then QUOTA_EXCEEDED", opened, tries)
	}
}

// TestReviewAccessTokenSubjects: a token minted for subjects
// ["orders.eu.>"] on stream ORDERS must not read orders.us.* messages
// through a durable consumer (whose filters an admin set) nor through
// GetMessage / GetLastMessage: a subject-narrowed token consumes with
// filtered ephemeral subscriptions only, and READ cannot be narrowed by
// subjects (refused at mint).
func TestReviewAccessTokenSubjects(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	if _, err := e.b.JS.Publish(e.ctx, "orders.us.private", []byte("US only")); err != nil {
		t.Fatal(err)
	}
	r := e.b.Do(t, http.MethodPost, "/v1/access-tokens", `{"operations":["OPERATION_CONSUME","OPERATION_READ"],"streams":["ORDERS"],"subjects":["orders.eu.>"],"ttl":"60s"}`, "Authorization", "ApiKey "+e.ordersKey)
	authTWantREST(t, "mint READ narrowed by subjects", r, http.StatusBadRequest, "INVALID_ACCESS_TOKEN_REQUEST")
	tok := "Bearer " + accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_CONSUME"],"streams":["ORDERS"],"subjects":["orders.eu.>"],"ttl":"60s"}`)
	ctx := authTWith(e.ctx, tok)

	// The ephemeral path holds (a filter outside the subjects is refused).
	s, err := e.b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{FilterSubjects: []string{"orders.us.>"}}})
	if err == nil {
		_, err = s.Recv()
	}
	if err == nil {
		t.Error("ephemeral Subscribe on orders.us.> with an orders.eu.> token: accepted")
	}

	// Durable: billing has no filter; the token reads orders.us.private.
	_, err = e.b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "billing", Batch: 10, Wait: durationpb.New(2 * time.Second)})
	authTWantCode(t, "Fetch from a durable with a subject-narrowed token", err, codes.PermissionDenied, "NOT_PERMITTED")

	// Direct reads.
	if m, err := e.b.Admin.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "ORDERS", Sequence: 1}); err == nil {
		t.Errorf("GetMessage with an orders.eu.> token returned %q", m.GetMessage().GetSubject())
	}
	if m, err := e.b.Admin.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "ORDERS", Subject: "orders.us.private"}); err == nil {
		t.Errorf("GetLastMessage(orders.us.private) with an orders.eu.> token returned %q", m.GetMessage().GetSubject())
	}
}

// TestReviewURLTokenPreflight: a page on an allowed origin whose request
// carries ?access_token= and needs a preflight (an ingest POST with
// Content-Type: application/json, a Subscribe fetch with Last-Event-ID)
// gets 400 ACCESS_TOKEN_IN_QUERY for the OPTIONS preflight, without CORS
// headers, so the browser never sends the request: queryTokens runs
// before rs/cors and refuses every method but the route's own.
func TestReviewURLTokenPreflight(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	e := authTStartWith(t, nil, func(c *config.Config) { _ = c.Browser.AllowedOrigins.Set(app) })
	tok := accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_PUBLISH"],"subjects":["orders.eu.>"],"ttl":"60s"}`)
	req, err := http.NewRequest(http.MethodOptions, e.b.BaseURL+"/v1/subjects/orders.eu.hook:ingest?access_token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", app)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	r := e.b.Send(t, req)
	if r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("preflight of an ingest with a URL token from an allowed origin: %d ACAO=%q %s", r.Status, r.Header.Get("Access-Control-Allow-Origin"), r.Body)
	}
}

// TestReviewHeld collects attacks that held, so that they keep holding.
func TestReviewHeld(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	e := authTStartWith(t, nil, func(c *config.Config) { _ = c.Browser.AllowedOrigins.Set(app) })
	if _, err := e.b.JS.CreateStream(e.ctx, jetstream.StreamConfig{Name: "HOOKS", Subjects: []string{"hooks.>"}}); err != nil {
		t.Fatal(err)
	}
	read := accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_READ","OPERATION_CONSUME"],"streams":["ORDERS"],"ttl":"60s"}`)
	pub := accessTMint(t, e, e.ordersKey, `{"operations":["OPERATION_PUBLISH"],"subjects":["orders.eu.>"],"ttl":"60s"}`)

	for _, c := range []struct {
		what, method, path, body string
		header                   []string
		want                     int
	}{
		{"URL token on GetStream", "GET", "/v1/streams/ORDERS?access_token=" + read, "", nil, 400},
		{"URL token on Publish", "POST", "/v1/subjects/orders.eu.1:publish?access_token=" + pub, `{"text":"x"}`, []string{"Content-Type", "application/json"}, 400},
		{"URL token on batch publish", "POST", "/v1/messages:publish?access_token=" + pub, `{"messages":[{"subject":"orders.eu.1","text":"x"}]}`, []string{"Content-Type", "application/json"}, 400},
		{"two URL tokens", "GET", "/v1/streams/ORDERS:subscribe?access_token=" + read + "&access_token=" + read, "", nil, 400},
		{"URL token and Authorization", "GET", "/v1/streams/ORDERS:subscribe?access_token=" + read, "", []string{"Authorization", "ApiKey " + e.ordersKey}, 400},
		{"API key in the URL", "GET", "/v1/streams/ORDERS:subscribe?access_token=" + e.ordersKey, "", nil, 400},
		{"Access_Token spelling is no credential", "GET", "/v1/streams/ORDERS?Access_Token=" + read, "", nil, 401},
		{"access%5Ftoken is no credential", "GET", "/v1/streams/ORDERS?access%5Ftoken=" + read, "", nil, 401},
		{"alg none", "GET", "/v1/streams/ORDERS", "", []string{"Authorization", "Bearer jwy_eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsImF1ZCI6WyJqZXR3YXktYWNjZXNzIl0sImV4cCI6OTk5OTk5OTk5OSwiaWF0IjoxLCJvcHMiOlsicmVhZCJdfQ."}, 401},
		{"cross-site ingest text/plain with URL token", "POST", "/v1/subjects/hooks.x:ingest?access_token=" + pub, "x", []string{"Content-Type", "text/plain", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403},
		{"null-origin ingest form", "POST", "/v1/subjects/hooks.x:ingest?access_token=" + pub, "a=b", []string{"Content-Type", "application/x-www-form-urlencoded", "Origin", "null"}, 403},
		{"cross-site img GET subscribe with URL token", "GET", "/v1/streams/ORDERS:subscribe?config.filter_subjects=orders.eu.%3E&access_token=" + read, "", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}, 403},
		{"same-site subscribe", "GET", "/v1/streams/ORDERS:subscribe?config.filter_subjects=orders.eu.%3E&access_token=" + read, "", []string{"Sec-Fetch-Site", "same-site", "Origin", "https://x.example.com"}, 403},
		{"ingest to _INBOX", "POST", "/v1/subjects/_INBOX.x:ingest", "x", []string{"Authorization", "ApiKey " + e.ordersKey}, 400},
		{"ingest to $JS.API", "POST", "/v1/subjects/$JS.API.STREAM.DELETE.ORDERS:ingest", "x", []string{"Authorization", "ApiKey " + e.ordersKey}, 400},
		{"ingest copies Cookie", "POST", "/v1/subjects/orders.eu.x:ingest?header=cookie", "x", []string{"Authorization", "ApiKey " + e.ordersKey, "Cookie", "a=b"}, 400},
		{"ingest copies nAts-Msg-Id", "POST", "/v1/subjects/orders.eu.x:ingest?header=nAts-Msg-Id", "x", []string{"Authorization", "ApiKey " + e.ordersKey, "Nats-Msg-Id", "1"}, 400},
		{"ingest copies Status", "POST", "/v1/subjects/orders.eu.x:ingest?header=Status", "", []string{"Authorization", "ApiKey " + e.ordersKey, "Status", "404"}, 400},
		{"GetStream of another stream", "GET", "/v1/streams/SECRET", "", []string{"Authorization", "Bearer " + read}, 403},
	} {
		r := e.b.Do(t, c.method, c.path, c.body, c.header...)
		if r.Status != c.want {
			t.Errorf("%s: HTTP %d, want %d: %s", c.what, r.Status, c.want, r.Body)
		}
	}

	// A disallowed origin gets no CORS header, on preflights or answers.
	for _, origin := range []string{"null", "https://app.example.com.evil.com", "http://app.example.com", "https://app.example.com:8443", "https://app.example.com."} {
		req, _ := http.NewRequest(http.MethodOptions, e.b.BaseURL+"/v1/streams", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		if r := e.b.Send(t, req); r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q", origin, r.Header.Get("Access-Control-Allow-Origin"))
		}
		r := e.b.Do(t, "GET", "/v1/streams/ORDERS", "", "Origin", origin, "Authorization", "Bearer "+read)
		if r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET from %s: Access-Control-Allow-Origin %q", origin, r.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}
