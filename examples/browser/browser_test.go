package browser_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/examples/browser"
	"github.com/jetway-dev/jetway/internal/browsertest"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

const appKey = "order-board-app-key-0123456789abcdef"

// TestOrderBoard runs the example from two origins of its own against a
// bridge with authentication on and --allowed-origins listing one of
// them: from that one the page tails ORDERS with EventSource and an
// access token in the URL, publishes, takes a message from the durable
// "board" and acks it; from the other it gets nothing done.
func TestOrderBoard(t *testing.T) {
	browsertest.Require(t)
	// The apps' servers first: the bridge must know the allowed origin.
	// Their handler is set once the bridge's URL is known.
	var allowedApp, refusedApp atomic.Pointer[http.Handler]
	serve := func(h *atomic.Pointer[http.Handler]) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
		t.Cleanup(s.Close)
		return s
	}
	allowed, refused := serve(&allowedApp), serve(&refusedApp)
	// localhost: another site than the bridge's 127.0.0.1 for the browser.
	allowedOrigin := strings.Replace(allowed.URL, "127.0.0.1", "localhost", 1)
	refusedOrigin := strings.Replace(refused.URL, "127.0.0.1", "localhost", 1)

	data, err := json.Marshal(auth.File{Identities: []auth.IdentityConfig{{
		Name: "order-board", APIKeyHashes: []string{auth.HashAPIKey(appKey)},
		Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"orders.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS", "ORDERS.board"}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := jetwaytest.Start(t, func(c *config.Config) {
		c.Auth.ConfigFile = authFile
		c.Browser.AllowedOrigins = config.Origins{allowedOrigin}
	})
	ctx := jetwaytest.Context(t, 2*time.Minute)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "orders.web", []byte(`{"item":"first"}`)); err != nil {
		t.Fatal(err)
	}
	board, err := b.JS.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
		Durable: "board", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, FilterSubject: "orders.>",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := browser.Config{Bridge: b.BaseURL, APIKey: appKey, Stream: "ORDERS", Subject: "orders.web", Consumer: "board", TokenTTL: 2 * time.Minute}
	h := browser.Handler(cfg)
	allowedApp.Store(&h)
	refusedApp.Store(&h)

	ev := browsertest.Run(t, "crossorigin.mjs", 2*time.Minute, map[string]any{
		"allowed": allowedOrigin + "/", "refused": refusedOrigin + "/", "item": "book",
	})
	t.Logf("browser events:\n%s", ev)
	// Page errors after allowed_closed are expected: the refused origin's page errors are expected.
	ev.NoPageErrorsBefore(t, "allowed_closed")
	if e := ev.First(t, "allowed_tail"); e.String("status") != "open" {
		t.Errorf("allowed origin's tail: %v", e)
	}
	if e := ev.First(t, "allowed_publish"); e.String("state") != "ok" || e.String("sequence") != "2" {
		t.Errorf("allowed origin's publish: %v", e)
	}
	if e := ev.First(t, "allowed_tailed"); e.String("text") != `2 orders.web {"item":"book"}` {
		t.Errorf("allowed origin's tail got %v", e)
	}
	if e := ev.First(t, "allowed_take"); e.String("state") != "taken" || e.String("sequence") != "1" {
		t.Errorf("allowed origin's take: %v", e)
	}
	if e := ev.First(t, "allowed_ack"); e.String("state") != "ok" {
		t.Errorf("allowed origin's ack: %v", e)
	}
	if e := ev.First(t, "refused_tail"); e.String("state") != "refused" {
		t.Errorf("refused origin's tail: %v", e)
	}
	if e := ev.First(t, "refused_publish"); e.String("state") != "failed" {
		t.Errorf("refused origin's publish: %v", e)
	}
	if e := ev.First(t, "refused_take"); e.String("state") != "failed" {
		t.Errorf("refused origin's take: %v", e)
	}
	ev.First(t, "done")

	// JetStream saw the allowed page's publish and ack, and nothing of
	// the refused page's.
	s, err := b.JS.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		// CachedInfo is from Stream's lookup, after the browser ran.
		t.Errorf("ORDERS holds %d messages, want 2 (the first, the allowed page's)", n)
	}
	ci, err := board.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.AckFloor.Stream != 1 || ci.NumAckPending != 0 || ci.NumPending != 1 {
		t.Errorf("board: ack floor %d, %d ack pending, %d pending; want 1, 0, 1", ci.AckFloor.Stream, ci.NumAckPending, ci.NumPending)
	}

	// What the refused page's browser would send without CORS (a request
	// the page cannot read the answer of) is refused before it does
	// anything.
	for _, path := range []string{"/v1/subjects/orders.web:publish", "/v1/streams/ORDERS/consumers/board:fetch"} {
		r := b.Do(t, http.MethodPost, path, `{}`, "Authorization", "ApiKey "+appKey, "Origin", refusedOrigin, "Sec-Fetch-Site", "cross-site")
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "CROSS_ORIGIN_REFUSED") {
			t.Errorf("POST %s from %s: %d %s, want 403 CROSS_ORIGIN_REFUSED", path, refusedOrigin, r.Status, r.Body)
		}
	}
}
