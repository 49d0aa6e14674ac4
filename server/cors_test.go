package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestCORS: preflights of an allowed origin are granted what the API
// reads, for the REST routes and the streaming ones, and its answers
// expose what clients need; another origin gets no CORS header, and what
// it would change is refused.
func TestCORS(t *testing.T) {
	const app, evil = "http://app.example:3000", "https://evil.example"
	b := jetwaytest.Start(t, func(c *config.Config) {
		if err := c.Browser.AllowedOrigins.Set(app); err != nil {
			t.Fatal(err)
		}
		if err := c.Browser.CORSAllowedHeaders.Set("X-Tenant"); err != nil {
			t.Fatal(err)
		}
		c.Browser.CORSMaxAge = 10 * time.Minute
	})
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	preflight := func(origin, path, method, headers string) jetwaytest.Response {
		return browserTSend(t, nil, http.MethodOptions, b.BaseURL+path, "", "",
			"Origin", origin, "Access-Control-Request-Method", method, "Access-Control-Request-Headers", headers,
			"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors")
	}
	for _, c := range []struct{ path, method, headers string }{
		{"/v1/subjects/orders.new:publish", "POST", "authorization,content-type,idempotency-key,traceparent"},
		{"/v1/streams/ORDERS:subscribe", "GET", "authorization,last-event-id"},
		{"/v1/streams/ORDERS/consumers/c:fetch", "POST", "authorization,content-type,x-request-id,x-tenant"},
		{"/v1/streams/ORDERS", "DELETE", "authorization"},
	} {
		r := preflight(app, c.path, c.method, c.headers)
		if r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != app {
			t.Errorf("preflight %s %s: %d, Allow-Origin %q", c.method, c.path, r.Status, r.Header.Get("Access-Control-Allow-Origin"))
		}
		if got := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers")); got != c.headers {
			t.Errorf("preflight %s %s: Allow-Headers %q, want %q", c.method, c.path, got, c.headers)
		}
		if got := r.Header.Get("Access-Control-Allow-Methods"); got != c.method {
			t.Errorf("preflight %s %s: Allow-Methods %q", c.method, c.path, got)
		}
		if r.Header.Get("Access-Control-Max-Age") != "600" || r.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight: Max-Age %q, Allow-Credentials %q", r.Header.Get("Access-Control-Max-Age"), r.Header.Get("Access-Control-Allow-Credentials"))
		}
		if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight: Vary %q", r.Header.Values("Vary"))
		}
	}
	// Not granted: another origin, a header the API does not read, a
	// method not configured.
	for what, r := range map[string]jetwaytest.Response{
		"another origin": preflight(evil, "/v1/subjects/orders.new:publish", "POST", "content-type"),
		"a null origin":  preflight("null", "/v1/subjects/orders.new:publish", "POST", "content-type"),
		"another header": preflight(app, "/v1/subjects/orders.new:publish", "POST", "content-type,x-forwarded-for"),
		"PATCH":          preflight(app, "/v1/streams/ORDERS", "PATCH", ""),
	} {
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight of %s: Allow-Origin %q, want none", what, got)
		}
	}

	// The request itself, from the allowed origin: answered with the
	// headers a page may read.
	publish := func(origin string) jetwaytest.Response {
		return browserTSend(t, nil, http.MethodPost, b.BaseURL+"/v1/subjects/orders.new:publish", "application/json", `{"text":"hi"}`,
			"Origin", origin, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors")
	}
	r := publish(app)
	if r.Status != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("publish from %s: %d %s, Allow-Origin %q", app, r.Status, r.Body, r.Header.Get("Access-Control-Allow-Origin"))
	}
	exposed := r.Header.Get("Access-Control-Expose-Headers")
	for _, h := range []string{"Retry-After", "X-Request-Id", "Www-Authenticate"} {
		if !strings.Contains(strings.ToLower(exposed), strings.ToLower(h)) {
			t.Errorf("Expose-Headers %q lacks %s", exposed, h)
		}
	}
	r = publish(evil)
	authTWantREST(t, "publish from "+evil, r, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("refusal for %s: Allow-Origin %q", evil, got)
	}
	if n, err := b.JS.Stream(ctx, "ORDERS"); err != nil || n.CachedInfo().State.Msgs != 1 {
		t.Errorf("stream holds %v messages (%v), want 1: the allowed origin's", n.CachedInfo().State.Msgs, err)
	}
}

// TestCORSCredentials: --cors-allow-credentials answers credentialed
// requests of allowed origins.
func TestCORSCredentials(t *testing.T) {
	const app = "https://app.example"
	b := jetwaytest.Start(t, func(c *config.Config) {
		_ = c.Browser.AllowedOrigins.Set(app)
		c.Browser.CORSAllowCredentials = true
	})
	r := browserTSend(t, nil, http.MethodOptions, b.BaseURL+"/v1/streams", "", "",
		"Origin", app, "Access-Control-Request-Method", "GET")
	if r.Header.Get("Access-Control-Allow-Credentials") != "true" || r.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("credentialed preflight: %v", r.Header)
	}
}

// TestCORSNoneByDefault: without --allowed-origins no origin gets any
// CORS header, preflight or not (rs/cors alone would answer "*").
func TestCORSNoneByDefault(t *testing.T) {
	b := jetwaytest.Start(t)
	for _, origin := range []string{"https://evil.example", "null", "http://localhost:3000"} {
		r := browserTSend(t, nil, http.MethodOptions, b.BaseURL+"/v1/streams", "", "",
			"Origin", origin, "Access-Control-Request-Method", "GET")
		r2 := browserTSend(t, nil, http.MethodGet, b.BaseURL+"/v1/streams", "", "", "Origin", origin, "Sec-Fetch-Site", "cross-site")
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Credentials"} {
			if v := r.Header.Get(h) + r2.Header.Get(h); v != "" {
				t.Errorf("origin %s, no allowed origins: %s %q", origin, h, v)
			}
		}
	}
}
