package console_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
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
	takeOne(t, c)
	return b
}

// takeOne fetches one message of c natively and acks nothing: it stays
// pending until its ack wait ends.
func takeOne(t *testing.T, c jetstream.Consumer) {
	t.Helper()
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for range batch.Messages() {
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
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
	// Page errors after token_signin are expected: the browser logs the refused publish that follows.
	ev.NoPageErrorsBefore(t, "token_signin")
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

const (
	// dlqOpsKey may read and change ORDERS and DLQ, consume ORDERS and
	// publish to orders.>: it TERMs, lists and redrives.
	dlqOpsKey = "console-dlq-ops-key-0123456789abcdef"
	// dlqViewerKey may only read ORDERS and DLQ.
	dlqViewerKey = "console-dlq-viewer-key-0123456789abcdef"
)

// startDeadLetterBridge runs a bridge with dead letters on and two
// identities (ops, viewer), stream ORDERS with two messages on orders.eu,
// stream DLQ on dlq.> (allow_direct) and three dead letters in it: both
// messages TERMed by ops through the bridge from consumer "billing"
// (dead-letter subject dlq.orders), the second with a hostile payload and
// reason, and the first delivered max_deliver (1) times by consumer
// "audit" (dlq.audit).
func startDeadLetterBridge(t *testing.T) *jetwaytest.Bridge {
	t.Helper()
	streams := []string{"ORDERS", "DLQ"}
	data, err := json.Marshal(auth.File{Identities: []auth.IdentityConfig{{
		Name: "ops", APIKeyHashes: []string{auth.HashAPIKey(dlqOpsKey)},
		Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"orders.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS", "ORDERS.*"}},
			Admin:   &auth.AdminGrant{Streams: streams, Write: true},
		},
	}, {
		Name: "viewer", APIKeyHashes: []string{auth.HashAPIKey(dlqViewerKey)},
		Grant: auth.Grant{Admin: &auth.AdminGrant{Streams: streams}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 60*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}, AllowDirect: true, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []jetstream.ConsumerConfig{
		{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, Metadata: map[string]string{"jetway.dead_letter.subject": "dlq.orders"}},
		{Durable: "audit", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: 1, Metadata: map[string]string{"jetway.dead_letter.subject": "dlq.audit"}},
	} {
		if _, err := b.JS.CreateOrUpdateConsumer(ctx, "ORDERS", c); err != nil {
			t.Fatalf("create consumer %s: %v", c.Durable, err)
		}
	}
	for _, p := range []string{`{"id":1}`, hostilePayload} {
		if _, err := b.JS.Publish(ctx, "orders.eu", []byte(p)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "ApiKey "+dlqOpsKey)
	f, err := b.Messages.Fetch(actx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "billing", Batch: 2, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 2 {
		t.Fatalf("fetch: %v, %d messages", err, len(f.GetMessages()))
	}
	var ops []*jetwayv1.AckOperation
	for i, reason := range []string{"bad json", hostileReason} {
		ops = append(ops, &jetwayv1.AckOperation{Token: f.GetMessages()[i].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_TERM, Reason: reason})
	}
	ack, err := b.Messages.Ack(actx, &jetwayv1.AckRequest{Sync: true, Operations: ops})
	if err != nil {
		t.Fatalf("TERM: %v", err)
	}
	for _, r := range ack.GetResults() {
		if r.GetError() != nil {
			t.Fatalf("TERM: %v", r.GetError())
		}
	}
	audit, err := b.JS.Consumer(ctx, "ORDERS", "audit")
	if err != nil {
		t.Fatal(err)
	}
	takeOne(t, audit)
	// audit's delivery, never acked, is advised as max deliveries at its
	// ack wait's end; the worker stores it.
	jetwaytest.Eventually(t, 30*time.Second, "DLQ holds three dead letters", func() error {
		if n := jetwaytest.StreamMessages(t, b.JS, "DLQ"); n != 3 {
			return fmt.Errorf("%d messages", n)
		}
		return nil
	})
	return b
}

const (
	hostilePayload = `<img src=x onerror="document.body.dataset.pwned='payload'">`
	hostileReason  = `<script>document.body.dataset.pwned='reason'</script>`
)

// TestConsoleDeadLettersInBrowser drives the console's dead letters in
// chromium: a consumer's dead-letter subject leads to its dead letters in
// the DLQ stream (found by the streams' subjects), listed with origin,
// reason and who TERMed them; one inspected (a hostile payload and TERM
// reason shown as text, nothing run); a filter by reason; a dry run that
// changes nothing; a confirmed redrive that deletes what it redrove, read
// back natively; and a read-only credential that lists but may not
// redrive.
func TestConsoleDeadLettersInBrowser(t *testing.T) {
	browsertest.Require(t)
	b := startDeadLetterBridge(t)
	shot := browsertest.ScreenshotPath("jetway-console-dead-letters")
	ev := browsertest.Run(t, "deadletters.mjs", 2*time.Minute, map[string]any{
		"base":       b.BaseURL,
		"credential": dlqOpsKey,
		"viewer":     dlqViewerKey,
		"stream":     "ORDERS",
		"consumer":   "billing",
		"dlq":        "DLQ",
		"screenshot": shot,
	})
	t.Logf("browser events:\n%s", ev)
	// Page errors after viewer_listed are expected: the browser logs the refused redrive that follows.
	ev.NoPageErrorsBefore(t, "viewer_listed")
	if e := ev.First(t, "consumers"); e.String("dead_letter_subjects") != `{"audit":"dlq.audit","billing":"dlq.orders"}` {
		t.Errorf("consumers: %v", e)
	}
	wantRows := `[{"by":"ops","deliveries":"1","origin":"ORDERS / billing #1","payload":"{\"id\":1}","reason":"terminated","seq":"1","subject":"orders.eu"},` +
		`{"by":"ops","deliveries":"1","origin":"ORDERS / billing #2","payload":` + jsonString(t, hostilePayload) + `,"reason":"terminated","seq":"2","subject":"orders.eu"}]`
	e := ev.First(t, "listed")
	if e.String("dlq") != "DLQ" || e.String("origin") != "ORDERS" || e.String("consumer") != "billing" || e.String("rows") != wantRows {
		t.Errorf("billing's dead letters:\n got %v\nwant rows %s", e, wantRows)
	}
	e = ev.First(t, "inspected")
	if e.String("seq") != "2" || e.String("term_reason") != hostileReason || e.String("payload") != hostilePayload || e.String("by") != "ops" {
		t.Errorf("inspected: %v", e)
	}
	if e.String("pwned") != "" || e.String("injected") != "0" {
		t.Errorf("a dead letter's payload or reason ran in the page: %v", e)
	}
	// The original had no headers; the copy's message id is the DLQ's
	// (the Jetway-Dead-Letter-* headers are the fields above).
	if e.String("headers") != "Nats-Msg-Id: jetway-dl:ORDERS:billing:2" {
		t.Errorf("inspected headers: %q", e.String("headers"))
	}
	if e := ev.First(t, "by_reason"); e.String("rows") != `[{"by":"","deliveries":"1","origin":"ORDERS / audit #1","payload":"{\"id\":1}","reason":"max deliveries","seq":"3","subject":"orders.eu"}]` {
		t.Errorf("max-deliveries dead letters: %v", e)
	}
	e = ev.First(t, "dry_run")
	if e.String("matched") != "2" || e.String("redriven") != "2" || e.String("deleted") != "0" || e.String("dialogs") != "0" ||
		e.String("outcomes") != `["would be redriven","would be redriven"]` {
		t.Errorf("dry run: %v", e)
	}
	e = ev.First(t, "redriven")
	if e.String("matched") != "2" || e.String("redriven") != "2" || e.String("deleted") != "2" || e.String("outcomes") != `["redriven","redriven"]` {
		t.Errorf("redrive: %v", e)
	}
	if d := e.String("dialogs"); !strings.Contains(d, "DLQ") || !strings.Contains(d, "consumer billing") || !strings.Contains(d, "delete") {
		t.Errorf("the redrive's confirmation: %s", d)
	}
	if e := ev.First(t, "after"); e.String("rows") != "[]" || e.String("empty_shown") != "true" {
		t.Errorf("billing's dead letters after the redrive: %v", e)
	}
	if e := ev.First(t, "viewer_listed"); !strings.Contains(e.String("rows"), `"origin":"ORDERS / audit #1"`) || strings.Contains(e.String("rows"), "billing") {
		t.Errorf("the viewer's list: %v", e)
	}
	if e := ev.First(t, "viewer_refused"); !strings.Contains(e.String("error"), "NOT_PERMITTED") {
		t.Errorf("the viewer's redrive: %v", e)
	}
	ev.First(t, "done")
	t.Logf("screenshot of the dead letters: %s", shot)

	// Natively: the two redriven copies are in ORDERS after the
	// originals, with their payloads; the DLQ keeps audit's only.
	if n := jetwaytest.StreamMessages(t, b.JS, "ORDERS"); n != 4 {
		t.Errorf("ORDERS holds %d messages, want 4", n)
	}
	if n := jetwaytest.StreamMessages(t, b.JS, "DLQ"); n != 1 {
		t.Errorf("DLQ holds %d messages, want 1", n)
	}
	ctx := jetwaytest.Context(t, 10*time.Second)
	s, err := b.JS.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{3: `{"id":1}`, 4: hostilePayload} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != "orders.eu" || string(m.Data) != want {
			t.Errorf("ORDERS %d: %s %q, want orders.eu %q", seq, m.Subject, m.Data, want)
		}
	}
}

func jsonString(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
