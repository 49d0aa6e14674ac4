package bootstrap_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bootstrap"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
	"github.com/jetway-dev/jetway/refusal"
)

// natsJS runs a nats-server with JetStream and returns its URL.
func natsURL(t *testing.T) string {
	t.Helper()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	return ns.ClientURL()
}

// connect is a connection of its own (as each replica has) whose
// refused publishes reach package refusal, as the bridge's do.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) { refusal.Record(nc, err) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func parse(t *testing.T, file string) *bootstrap.File {
	t.Helper()
	f, err := bootstrap.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// actions is "kind name action" per result.
func actions(r *bootstrap.Report) []string {
	var out []string
	for _, res := range r.Results {
		out = append(out, res.Kind+" "+res.Name+" "+string(res.Action))
	}
	return out
}

func wantActions(t *testing.T, r *bootstrap.Report, want ...string) {
	t.Helper()
	if got := actions(r); strings.Join(got, ",") != strings.Join(want, ",") {
		var b strings.Builder
		_ = r.WriteText(&b)
		t.Fatalf("actions %q, want %q\n%s", got, want, b.String())
	}
}

const v1 = `
streams:
  - name: ORDERS
    subjects: ["orders.>"]
    max_age: 3600s
consumers:
  - stream: ORDERS
    config: {name: billing, ack_wait: 10s, max_deliver: 5}
`

// TestEnsureCreatesUpdatesAndLeavesAlone: a first run creates, a second
// changes nothing, an edited file updates only the field it changed,
// and what the file does not set — a field of the API it leaves out, and
// settings the API does not model (RePublish, metadata), set natively —
// survives the update.
func TestEnsureCreatesUpdatesAndLeavesAlone(t *testing.T) {
	ctx := jetwaytest.Context(t, time.Minute)
	js := connect(t, natsURL(t))
	r := parse(t, v1).Ensure(ctx, js, bootstrap.Options{})
	wantActions(t, r, "stream ORDERS created", "consumer billing created")
	st, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != time.Hour || cfg.Metadata[bootstrap.ClaimKey] != "" {
		t.Fatalf("created %+v", cfg)
	}
	wantActions(t, parse(t, v1).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS unchanged", "consumer billing unchanged")

	// Natively: settings the file does not set.
	cfg.RePublish = &jetstream.RePublish{Source: "orders.>", Destination: "copy.orders.>"}
	cfg.Metadata = map[string]string{"team": "orders"}
	cfg.MaxMsgs = 1000
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "ORDERS", "billing")
	if err != nil {
		t.Fatal(err)
	}
	ccfg := cons.CachedInfo().Config
	ccfg.Metadata = map[string]string{"owner": "billing"}
	if _, err := js.UpdateConsumer(ctx, "ORDERS", ccfg); err != nil {
		t.Fatal(err)
	}

	v2 := strings.Replace(strings.Replace(v1, "3600s", "7200s", 1), "ack_wait: 10s", "ack_wait: 20s", 1)
	r = parse(t, v2).Ensure(ctx, js, bootstrap.Options{})
	wantActions(t, r, "stream ORDERS updated", "consumer billing updated")
	if c := r.Results[0].Changes; len(c) != 1 || c[0].String() != `max_age: "3600s" -> "7200s"` {
		t.Errorf("stream changes %v", c)
	}
	if c := r.Results[1].Changes; len(c) != 1 || c[0].String() != `ack_wait: "10s" -> "20s"` {
		t.Errorf("consumer changes %v", c)
	}
	st, err = js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	got := st.CachedInfo().Config
	if got.MaxAge != 2*time.Hour || got.RePublish == nil || got.RePublish.Destination != "copy.orders.>" || got.Metadata["team"] != "orders" || got.MaxMsgs != 1000 {
		t.Errorf("after the update: max_age %v, republish %+v, metadata %v, max_msgs %d", got.MaxAge, got.RePublish, got.Metadata, got.MaxMsgs)
	}
	cons, err = js.Consumer(ctx, "ORDERS", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if c := cons.CachedInfo().Config; c.AckWait != 20*time.Second || c.Metadata["owner"] != "billing" || c.MaxDeliver != 5 {
		t.Errorf("consumer after the update: %+v", c)
	}
	wantActions(t, parse(t, v2).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS unchanged", "consumer billing unchanged")

	// A backoff natively: JetStream makes its first step the ack wait,
	// which is then not a difference to apply at every start.
	ccfg = cons.CachedInfo().Config
	ccfg.BackOff = []time.Duration{2 * time.Second, 4 * time.Second}
	if _, err := js.UpdateConsumer(ctx, "ORDERS", ccfg); err != nil {
		t.Fatal(err)
	}
	wantActions(t, parse(t, v2).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS unchanged", "consumer billing unchanged")
	withBackoff := strings.Replace(v2, "ack_wait: 20s", "backoff: [3s]", 1)
	wantActions(t, parse(t, withBackoff).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS unchanged", "consumer billing updated")
	wantActions(t, parse(t, withBackoff).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS unchanged", "consumer billing unchanged")
}

// TestEnsureDryRunWritesNothing: a dry run reports the plan (a consumer
// of a stream to be created is to be created too) and leaves JetStream
// as it was.
func TestEnsureDryRunWritesNothing(t *testing.T) {
	ctx := jetwaytest.Context(t, time.Minute)
	js := connect(t, natsURL(t))
	r := parse(t, v1).Ensure(ctx, js, bootstrap.Options{DryRun: true})
	wantActions(t, r, "stream ORDERS created", "consumer billing created")
	if _, err := js.Stream(ctx, "ORDERS"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after a dry run: %v, want no stream", err)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `stream "ORDERS": would create`) || !strings.Contains(b.String(), "2 would create, 0 would update, 0 unchanged, 0 would fail") {
		t.Errorf("dry-run text:\n%s", b.String())
	}
	wantActions(t, parse(t, v1).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS created", "consumer billing created")
	r = parse(t, strings.Replace(v1, "3600s", "60s", 1)).Ensure(ctx, js, bootstrap.Options{DryRun: true})
	wantActions(t, r, "stream ORDERS updated", "consumer billing unchanged")
	if st, err := js.Stream(ctx, "ORDERS"); err != nil || st.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("after a dry-run update: %v", err)
	}
}

// TestEnsureConflicts: changes JetStream refuses on update fail their
// entry, once, with ErrConflict and no write; the others go on.
func TestEnsureConflicts(t *testing.T) {
	ctx := jetwaytest.Context(t, time.Minute)
	js := connect(t, natsURL(t))
	wantActions(t, parse(t, v1).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS created", "consumer billing created")
	bad := `
streams:
  - {name: ORDERS, storage: STORAGE_TYPE_MEMORY}
  - {name: OTHER}
consumers:
  - stream: ORDERS
    config: {name: billing, deliver_policy: DELIVER_POLICY_NEW}
  - stream: MISSING
    config: {name: x}
`
	r := parse(t, bad).Ensure(ctx, js, bootstrap.Options{})
	wantActions(t, r, "stream ORDERS failed", "stream OTHER created", "consumer billing failed", "consumer x failed")
	for i, want := range []string{"storage", "", "deliver_policy", "stream not found"} {
		res := r.Results[i]
		if want == "" {
			continue
		}
		if !strings.Contains(res.Err.Error(), want) || bootstrap.Retryable(res.Err) {
			t.Errorf("%s: %v (retryable %v), want a permanent failure about %s", res.Entry(), res.Err, bootstrap.Retryable(res.Err), want)
		}
		if i < 3 && !errors.Is(res.Err, bootstrap.ErrConflict) {
			t.Errorf("%s: %v, want ErrConflict", res.Entry(), res.Err)
		}
	}
	if r.Err() == nil || r.Retryable() {
		t.Errorf("report: err %v, retryable %v", r.Err(), r.Retryable())
	}
	if st, err := js.Stream(ctx, "ORDERS"); err != nil || st.CachedInfo().Config.Storage != jetstream.FileStorage {
		t.Errorf("ORDERS changed: %v", err)
	}
}

// TestEnsureRacingReplicas: replicas starting at once, each with its
// own connection, ensure the same file: all succeed, exactly one
// reports each entry created, and JetStream holds the file's
// configuration (no claim left). Then a second version of the file
// changes one field: every replica reports updated or unchanged, none
// fails, and the change is there.
func TestEnsureRacingReplicas(t *testing.T) {
	const replicas = 6
	ctx := jetwaytest.Context(t, 2*time.Minute)
	url := natsURL(t)
	conns := make([]jetstream.JetStream, replicas)
	for i := range conns {
		conns[i] = connect(t, url)
	}
	// Memory storage: nats-server 2.15.2's file store reads its config
	// unlocked when a consumer is created (fileStore.ConsumerStore reads
	// fs.cfg.Name) while a stream update writes it (UpdateConfig), which
	// the race detector reports in this process; racing replicas do
	// exactly that (one removes its claim while another creates a
	// consumer). The memory store locks both.
	file := `
streams:
  - {name: EVENTS, subjects: ["events.>"], storage: STORAGE_TYPE_MEMORY}
  - {name: ORDERS, subjects: ["orders.>"], storage: STORAGE_TYPE_MEMORY, max_age: 3600s}
consumers:
  - stream: ORDERS
    config: {name: billing, ack_wait: 10s, max_deliver: 5}
  - stream: ORDERS
    config: {name: audit, filter_subjects: ["orders.new"]}
  - stream: EVENTS
    config: {name: tail}
`
	race := func(f *bootstrap.File) []*bootstrap.Report {
		reports := make([]*bootstrap.Report, replicas)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				reports[i] = f.Ensure(ctx, conns[i], bootstrap.Options{})
			}()
		}
		close(start)
		wg.Wait()
		return reports
	}
	reports := race(parse(t, file))
	created := map[string]int{}
	for i, r := range reports {
		if err := r.Err(); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		for _, res := range r.Results {
			switch res.Action {
			case bootstrap.Created:
				created[res.Entry()]++
			case bootstrap.Unchanged:
			default:
				t.Errorf("replica %d: %s %s, want created or unchanged", i, res.Entry(), res.Action)
			}
		}
	}
	if len(created) != 5 {
		t.Errorf("created: %v, want 5 entries", created)
	}
	for e, n := range created {
		if n != 1 {
			t.Errorf("%s reported created by %d replicas, want 1", e, n)
		}
	}
	js := conns[0]
	checkStream := func(name string, maxAge time.Duration) {
		t.Helper()
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := st.CachedInfo().Config; c.MaxAge != maxAge || c.Metadata[bootstrap.ClaimKey] != "" {
			t.Errorf("%s: max_age %v, metadata %v", name, c.MaxAge, c.Metadata)
		}
	}
	checkStream("ORDERS", time.Hour)
	checkStream("EVENTS", 0)
	for _, c := range [][2]string{{"ORDERS", "billing"}, {"ORDERS", "audit"}, {"EVENTS", "tail"}} {
		cons, err := js.Consumer(ctx, c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		if md := cons.CachedInfo().Config.Metadata; md[bootstrap.ClaimKey] != "" {
			t.Errorf("%s/%s: claim left: %v", c[0], c[1], md)
		}
	}

	reports = race(parse(t, strings.Replace(file, "3600s", "7200s", 1)))
	updated := 0
	for i, r := range reports {
		if err := r.Err(); err != nil {
			t.Fatalf("replica %d, second version: %v", i, err)
		}
		for _, res := range r.Results {
			switch {
			case res.Action == bootstrap.Updated && res.Name == "ORDERS" && res.Kind == "stream":
				updated++
			case res.Action == bootstrap.Unchanged:
			default:
				t.Errorf("replica %d: %s %s", i, res.Entry(), res.Action)
			}
		}
	}
	// Reads and updates are not one operation: replicas that read before
	// the first update applied it too (the same write).
	if updated < 1 {
		t.Errorf("no replica updated ORDERS")
	}
	t.Logf("second version: %d of %d replicas reported ORDERS updated", updated, replicas)
	checkStream("ORDERS", 2*time.Hour)
}

// TestEnsureClaimLeftBehindIsRemoved: a stream with a claim (its creator
// died before removing it) reports unchanged, and loses the claim.
func TestEnsureClaimLeftBehindIsRemoved(t *testing.T) {
	ctx := jetwaytest.Context(t, time.Minute)
	js := connect(t, natsURL(t))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, MaxAge: time.Hour,
		Metadata: map[string]string{bootstrap.ClaimKey: "dead", "keep": "me"}}); err != nil {
		t.Fatal(err)
	}
	wantActions(t, parse(t, v1).Ensure(ctx, js, bootstrap.Options{}), "stream ORDERS unchanged", "consumer billing created")
	st, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if md := st.CachedInfo().Config.Metadata; md[bootstrap.ClaimKey] != "" || md["keep"] != "me" {
		t.Errorf("metadata %v", md)
	}
}

// TestEnsurePermissionDenied: a NATS user that may not use the stream
// API fails at once (not at the call timeout), permanently.
func TestEnsurePermissionDenied(t *testing.T) {
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir(),
		Users: []*natsserver.User{{Username: "u", Password: "p", Permissions: &natsserver.Permissions{
			Publish: &natsserver.SubjectPermission{Deny: []string{"$JS.API.STREAM.>"}},
		}}}})
	js := connect(t, fmt.Sprintf("nats://u:p@%s", strings.TrimPrefix(ns.ClientURL(), "nats://")))
	ctx := jetwaytest.Context(t, time.Minute)
	began := time.Now()
	r := parse(t, v1).Ensure(ctx, js, bootstrap.Options{CallTimeout: 20 * time.Second})
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("took %v: the refusal did not end the call", took)
	}
	if res := r.Results[0]; res.Action != bootstrap.Failed || !strings.Contains(res.Err.Error(), "permission denied") || bootstrap.Retryable(res.Err) {
		t.Errorf("%s: %s %v", res.Entry(), res.Action, res.Err)
	}
}

// TestEnsureRetryingWaitsForJetStream: while JetStream is not there
// (a server without it, then one with it) EnsureRetrying retries, and
// succeeds once it is; a permanent failure ends it at once.
func TestEnsureRetrying(t *testing.T) {
	ctx := jetwaytest.Context(t, time.Minute)
	js := connect(t, natsURL(t))
	calls := 0
	get := func(context.Context) (bootstrap.JetStream, error) {
		calls++
		if calls < 3 {
			return nil, errors.New("not connected yet")
		}
		return js, nil
	}
	r, err := parse(t, v1).EnsureRetrying(ctx, get, bootstrap.Options{}, bootstrap.Retry{First: time.Millisecond})
	if err != nil || calls != 3 {
		t.Fatalf("EnsureRetrying = %v after %d calls", err, calls)
	}
	wantActions(t, r, "stream ORDERS created", "consumer billing created")
	_, err = parse(t, `{streams: [{name: ORDERS, storage: STORAGE_TYPE_MEMORY}]}`).EnsureRetrying(ctx, get, bootstrap.Options{}, bootstrap.Retry{})
	if !errors.Is(err, bootstrap.ErrConflict) {
		t.Errorf("EnsureRetrying = %v, want ErrConflict", err)
	}
}
