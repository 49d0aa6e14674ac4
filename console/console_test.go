package console_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/browsertest"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// consoleKey is the API key of the "operator" identity of these tests.
const consoleKey = "console-operator-key-0123456789abcdef"

// startBridge runs a bridge with client authentication on: one identity,
// "operator", signing in with consoleKey, that may publish to orders.>,
// tail ORDERS and read (not change) the streams; ORDERS holds two
// messages and a durable consumer "billing" that has taken one of them
// without acking it.
func startBridge(t *testing.T, opts ...jetwaytest.Option) *jetwaytest.Bridge {
	t.Helper()
	data, err := json.Marshal(auth.File{Identities: []auth.IdentityConfig{{
		Name: "operator", APIKeyHashes: []string{auth.HashAPIKey(consoleKey)},
		Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"orders.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS", "ORDERS.*"}},
			Admin:   &auth.AdminGrant{Streams: []string{"ORDERS"}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := jetwaytest.Start(t, append([]jetwaytest.Option{func(c *config.Config) { c.Auth.ConfigFile = path }}, opts...)...)
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for _, p := range []string{`{"id":1}`, `{"id":2}`} {
		if _, err := b.JS.Publish(ctx, "orders.eu", []byte(p)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	c, err := b.JS.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for range batch.Messages() {
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return b
}

// TestConsoleHeaders: the console is served without credentials, with the
// security headers, and the API next to it still wants them.
func TestConsoleHeaders(t *testing.T) {
	b := startBridge(t)
	for _, path := range []string{"/console/", "/console/console.js", "/console/api.js", "/console/style.css"} {
		r := b.Do(t, http.MethodGet, path, "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		for h, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		} {
			if got := r.Header.Get(h); !strings.HasPrefix(got, want) {
				t.Errorf("GET %s: %s = %q, want %q…", path, h, got, want)
			}
		}
	}
	if r := b.Do(t, http.MethodGet, "/console/console.js", ""); !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("console.js Content-Type %q", r.Header.Get("Content-Type"))
	}
	if r := b.Do(t, http.MethodGet, "/console/missing.js", ""); r.Status != http.StatusNotFound {
		t.Errorf("GET /console/missing.js: %d, want 404", r.Status)
	}
	if r := b.Do(t, http.MethodGet, "/v1/streams", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("GET /v1/streams without a credential: %d, want 401", r.Status)
	}
}

// TestConsoleInBrowser drives the console in chromium against a bridge
// with authentication on: sign in with an API key, the streams, a stream's
// consumers and their counts, the live tail, a publish seen in the tail,
// the message read back by sequence, an access token minted and used to
// sign in again (it may read, not publish). It saves a screenshot and logs where.
func TestConsoleInBrowser(t *testing.T) {
	browsertest.Require(t)
	b := startBridge(t)
	shot := browsertest.ScreenshotPath("jetway-console")
	ev := browsertest.Run(t, "console.mjs", 2*time.Minute, map[string]any{
		"base":       b.BaseURL,
		"credential": consoleKey,
		"stream":     "ORDERS",
		"subject":    "orders.console",
		"payload":    `{"hello": "console"}`,
		"screenshot": shot,
		"tokens":     true,
	})
	t.Logf("browser events:\n%s", ev)
	for _, e := range ev {
		if e.Step() == "token_signin" {
			break // the browser logs the refused publish that follows
		}
		if e.Step() == "page_error" {
			t.Errorf("page error: %s %s", e.String("kind"), e.String("text"))
		}
	}
	if e := ev.First(t, "opened"); e.String("status") != "200" || !strings.HasPrefix(e.String("csp"), "default-src 'self'") {
		t.Errorf("opened: %v", e)
	}
	e := ev.First(t, "streams")
	if e.String("streams") != `["ORDERS"]` {
		t.Errorf("streams: %v", e)
	}
	if strings.Contains(e.String("url"), consoleKey) || e.String("session_has_credential") != "true" || e.String("local_storage_keys") != "0" {
		t.Errorf("the credential must be in sessionStorage only: %v", e)
	}
	e = ev.First(t, "stream")
	if want := `[{"name":"billing","num_ack_pending":"1","num_pending":"1","num_redelivered":"0"}]`; e.String("consumers") != want {
		t.Errorf("consumers %s, want %s", e.String("consumers"), want)
	}
	if !strings.HasPrefix(e.String("state"), "2 messages") {
		t.Errorf("stream state %q", e.String("state"))
	}
	if e := ev.First(t, "published"); e.String("sequence") != "3" {
		t.Errorf("published: %v", e)
	}
	if e := ev.First(t, "tailed"); e.String("sequence") != "3" || e.String("subject") != "orders.console" || e.String("payload") != `{"hello":"console"}` {
		t.Errorf("tailed: %v", e)
	}
	if e := ev.First(t, "browsed"); e.String("sequence") != "3" || e.String("subject") != "orders.console" || e.String("payload") != `{"hello":"console"}` {
		t.Errorf("browsed: %v", e)
	}
	// The token minted in the console (read only, ORDERS) signs in and
	// may not publish.
	if e := ev.First(t, "minted"); e.String("token_prefix") != "jwy_" || e.String("identity") != "operator" || e.String("expires_at") == "" {
		t.Errorf("minted: %v", e)
	}
	if e := ev.First(t, "token_signin"); e.String("who") != "signed in (Bearer)" {
		t.Errorf("signed in with the token: %v", e)
	}
	if e := ev.First(t, "token_refused"); !strings.Contains(e.String("error"), "NOT_PERMITTED") && !strings.Contains(e.String("error"), "PERMISSION_DENIED") {
		t.Errorf("a read-only token's publish: %v", e)
	}
	ev.First(t, "done")
	t.Logf("screenshot of the console: %s", shot)

	// What the browser did reached JetStream.
	ctx := jetwaytest.Context(t, 10*time.Second)
	m, err := b.JS.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := m.GetMsg(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "orders.console" || string(msg.Data) != `{"hello":"console"}` {
		t.Errorf("stored %s %q", msg.Subject, msg.Data)
	}
}
