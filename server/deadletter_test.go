package server_test

// Dead letters (issue 19) through whole bridges on real nats-server: TERM
// through Ack (gRPC and REST) and max deliveries make exactly one dead
// letter each, with its headers; several replicas write each once;
// redrive sends them back once; tenants stay apart.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	"github.com/jetway-dev/jetway/deadletter"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// dlqSetup makes stream ORDERS (orders.>, retention as given), the DLQ
// stream on dlq.> and a consumer "work" dead-lettering to dlq.orders.
func dlqSetup(t *testing.T, ctx context.Context, js jetstream.JetStream, retention jetstream.RetentionPolicy, cons jetstream.ConsumerConfig) {
	t.Helper()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Retention: retention, AllowDirect: true, Duplicates: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}, AllowDirect: true, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	_ = cons
}

// dlqCount is the DLQ stream's message count, read natively.
func dlqCount(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// advisoriesDone waits until the advisory stream holds nothing (work
// queue: each advisory is removed once a worker acked it).
func advisoriesDone(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	jetwaytest.Eventually(t, 20*time.Second, "advisories handled", func() error {
		n, err := dlqCount(ctx, js, deadletter.AdvisoryStream)
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d advisories left", n)
		}
		return nil
	})
}

func wantCount(t *testing.T, ctx context.Context, js jetstream.JetStream, name string, want uint64) {
	t.Helper()
	jetwaytest.Eventually(t, 20*time.Second, fmt.Sprintf("%s holds %d", name, want), func() error {
		n, err := dlqCount(ctx, js, name)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%d messages", n)
		}
		return nil
	})
}

// TestDeadLetterTermOverGRPCAndREST: a TERM with a reason through Ack
// (gRPC, then REST) makes exactly one dead letter each, read natively,
// with every header and the identity from the ack token; the advisories
// of the two TERMs add nothing. Then a redrive sends them back to
// orders.new, where a native consumer sees them again; a second redrive
// adds nothing.
func TestDeadLetterTermOverGRPCAndREST(t *testing.T) {
	t.Parallel()
	key := "dlq-ops-key-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{{
		Name: "ops", APIKeyHashes: []string{auth.HashAPIKey(key)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{">"}},
			Consume: &auth.ConsumeGrant{Streams: []string{">"}},
			Admin:   &auth.AdminGrant{Write: true},
		},
	}}})
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 90*time.Second)
	actx := authTWith(ctx, "ApiKey "+key)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	if _, err := b.Admin.CreateConsumer(actx, &jetwayv1.CreateConsumerRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{
		Name: "work", AckWait: durationpb.New(30 * time.Second), DeadLetterSubject: "dlq.orders",
	}}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Admin.GetConsumer(actx, &jetwayv1.GetConsumerRequest{Stream: "ORDERS", Name: "work"})
	if err != nil {
		t.Fatal(err)
	}
	if d := got.GetConsumer().GetConfig().GetDeadLetterSubject(); d != "dlq.orders" {
		t.Errorf("GetConsumer dead_letter_subject %q", d)
	}
	if _, ok := got.GetConsumer().GetConfig().GetMetadata()[deadLetterKey]; ok {
		t.Errorf("metadata shows the bridge's key %s", deadLetterKey)
	}
	for i := 1; i <= 2; i++ {
		m := nats.NewMsg("orders.new")
		m.Header.Set("X-Order", fmt.Sprint(i))
		m.Header.Set("Nats-Expected-Stream", "ORDERS")
		m.Data = []byte(fmt.Sprintf(`{"id":%d}`, i))
		if _, err := b.JS.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("order-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	published := time.Now()
	f, err := b.Messages.Fetch(actx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "work", Batch: 2, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 2 {
		t.Fatalf("fetch: %v, %d messages", err, len(f.GetMessages()))
	}
	ack, err := b.Messages.Ack(actx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{
		{Token: f.GetMessages()[0].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_TERM, Reason: "bad json"},
	}})
	if err != nil || ack.GetResults()[0].GetError() != nil {
		t.Fatalf("gRPC TERM: %v %v", err, ack.GetResults()[0].GetError())
	}
	body := `{"sync":true,"operations":[{"token":` + jsonString(f.GetMessages()[1].GetAckToken()) + `,"kind":"ACK_KIND_TERM","reason":"no such customer"}]}`
	if r := b.Do(t, http.MethodPost, "/v1/acks", body, "Authorization", "ApiKey "+key); r.Status != http.StatusOK || strings.Contains(string(r.Body), `"error"`) {
		t.Fatalf("REST TERM: %d %s", r.Status, r.Body)
	}
	wantCount(t, ctx, b.JS, "DLQ", 2)
	advisoriesDone(t, ctx, b.JS)
	wantCount(t, ctx, b.JS, "DLQ", 2)

	dlq, err := b.JS.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	for i, reason := range []string{"bad json", "no such customer"} {
		m, err := dlq.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header
		want := map[string]string{
			deadletter.HeaderStream: "ORDERS", deadletter.HeaderConsumer: "work", deadletter.HeaderSequence: fmt.Sprint(i + 1),
			deadletter.HeaderSubject: "orders.new", deadletter.HeaderDeliveries: "1", deadletter.HeaderReason: "terminated",
			deadletter.HeaderTermReason: reason, deadletter.HeaderTerminatedBy: "ops", deadletter.HeaderMsgID: fmt.Sprintf("order-%d", i+1),
			"X-Order": fmt.Sprint(i + 1), "Nats-Msg-Id": fmt.Sprintf("jetway-dl:ORDERS:work:%d", i+1),
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("dead letter %d: %s = %q, want %q", i+1, k, got, v)
			}
		}
		if h.Get("Nats-Expected-Stream") != "" {
			t.Errorf("dead letter %d kept Nats-Expected-Stream", i+1)
		}
		if _, err := time.Parse(time.RFC3339Nano, h.Get(deadletter.HeaderTime)); err != nil {
			t.Errorf("dead letter %d: %s %q: %v", i+1, deadletter.HeaderTime, h.Get(deadletter.HeaderTime), err)
		}
		if string(m.Data) != fmt.Sprintf(`{"id":%d}`, i+1) {
			t.Errorf("dead letter %d payload %q", i+1, m.Data)
		}
	}

	// Listed, parsed, over gRPC and REST.
	l, err := b.DeadLetters.ListDeadLetters(actx, &jetwayv1.ListDeadLettersRequest{Stream: "DLQ", Filter: &jetwayv1.DeadLetterFilter{Reason: jetwayv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.GetDeadLetters()) != 2 || !l.GetEnd() || l.GetDeadLetters()[0].GetTerminatedBy() != "ops" || l.GetDeadLetters()[1].GetTermReason() != "no such customer" {
		t.Errorf("ListDeadLetters: %v", l)
	}
	if r := b.Do(t, http.MethodGet, "/v1/dead-letters/DLQ?filter.stream=ORDERS&max_messages=1", "", "Authorization", "ApiKey "+key); r.Status != http.StatusOK ||
		!strings.Contains(string(r.Body), `"origin_subject":"orders.new"`) || !strings.Contains(string(r.Body), `"next_sequence":"2"`) {
		t.Errorf("REST list: %d %s", r.Status, r.Body)
	}

	// Redrive (REST, NDJSON), then again: nothing more stored. (The
	// redriven copies reuse order-1 and order-2: past ORDERS's 1 s
	// duplicate window they are stored anew.)
	jetwaytest.Eventually(t, 10*time.Second, "ORDERS's duplicate window passed", func() error {
		if time.Since(published) < 1500*time.Millisecond {
			return errors.New("not yet")
		}
		return nil
	})
	before, _ := dlqCount(ctx, b.JS, "ORDERS")
	lines := redriveREST(t, b, key, `{}`)
	if sum := lines[len(lines)-1]["summary"]; sum == nil || fmt.Sprint(sum.(map[string]any)["redriven"]) != "2" {
		t.Fatalf("redrive: %v", lines)
	}
	wantCount(t, ctx, b.JS, "ORDERS", before+2)
	again, err := b.DeadLetters.RedriveDeadLetters(actx, &jetwayv1.RedriveDeadLettersRequest{Stream: "DLQ"})
	if err != nil {
		t.Fatal(err)
	}
	var last *jetwayv1.RedriveSummary
	for {
		ev, err := again.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s := ev.GetSummary(); s != nil {
			last = s
		}
	}
	if last.GetDuplicates() != 2 || last.GetRedriven() != 0 {
		t.Errorf("second redrive: %v", last)
	}
	if n, _ := dlqCount(ctx, b.JS, "ORDERS"); n != before+2 {
		t.Errorf("ORDERS holds %d after a second redrive, want %d", n, before+2)
	}
	// As Server-Sent Events (a dry run): progress events with the DLQ
	// sequence as their id, then the summary.
	req, err := http.NewRequest(http.MethodPost, b.BaseURL+"/v1/dead-letters/DLQ:redrive", strings.NewReader(`{"dry_run":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "ApiKey "+key)
	sse := b.Send(t, req)
	var events []string
	for _, ev := range strings.Split(strings.TrimSpace(string(sse.Body)), "\n\n") {
		var head []string
		for _, line := range strings.Split(ev, "\n") {
			if !strings.HasPrefix(line, "data:") {
				head = append(head, line)
			}
		}
		events = append(events, strings.Join(head, " "))
	}
	if want := []string{"id: 1 event: progress", "id: 2 event: progress", "event: summary"}; sse.Status != http.StatusOK ||
		sse.Header.Get("Content-Type") != "text/event-stream" || fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("SSE redrive: %d %s, events %q, want %q", sse.Status, sse.Header.Get("Content-Type"), events, want)
	}
	if !strings.Contains(string(sse.Body), `"dry_run":true`) {
		t.Errorf("SSE redrive summary: %s", sse.Body)
	}

	// A native consumer sees them again.
	c, err := b.JS.CreateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: before + 1})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if m.Headers().Get("X-Order") == "" || m.Subject() != "orders.new" {
			t.Errorf("redriven message %s %v", m.Subject(), m.Headers())
		}
	}
	if n != 2 {
		t.Errorf("native consumer saw %d redriven messages, want 2", n)
	}
}

const deadLetterKey = "jetway.dead_letter.subject"

// redriveREST posts a redrive and reads its NDJSON lines.
func redriveREST(t *testing.T, b *jetwaytest.Bridge, key, body string) []map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.BaseURL+"/v1/dead-letters/DLQ:redrive", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "ApiKey "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Result map[string]any `json:"result"`
			Error  any            `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("redrive line %q: %v", sc.Text(), err)
		}
		if line.Error != nil {
			t.Fatalf("redrive error line: %s", sc.Text())
		}
		out = append(out, line.Result)
	}
	if resp.StatusCode != http.StatusOK || len(out) == 0 {
		t.Fatalf("redrive: %d, %d lines", resp.StatusCode, len(out))
	}
	return out
}

// TestDeadLetterMaxDeliveries: a message NAKed until max_deliver 2 is
// exhausted makes one dead letter (reason max_deliveries, 2 deliveries).
func TestDeadLetterMaxDeliveries(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters)
	ctx := jetwaytest.Context(t, 60*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{
		Name: "work", MaxDeliver: 2, DeadLetterSubject: "dlq.orders",
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "orders.new", []byte("poison")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		f, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "work", Batch: 1, Wait: durationpb.New(5 * time.Second)})
		if err != nil || len(f.GetMessages()) != 1 {
			t.Fatalf("fetch %d: %v %v", i, err, f)
		}
		if _, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: f.GetMessages()[0].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_NAK}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A NAKed message waits for the next pull: JetStream finds its
	// deliveries exhausted (and advises) when it would deliver it again.
	if f, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "work", Batch: 1, Wait: durationpb.New(time.Second)}); err != nil || len(f.GetMessages()) != 0 {
		t.Fatalf("third fetch: %v %v", err, f)
	}
	wantCount(t, ctx, b.JS, "DLQ", 1)
	advisoriesDone(t, ctx, b.JS)
	dlq, _ := b.JS.Stream(ctx, "DLQ")
	m, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(deadletter.HeaderReason) != "max_deliveries" || m.Header.Get(deadletter.HeaderDeliveries) != "2" || string(m.Data) != "poison" ||
		m.Header.Get(deadletter.HeaderTerminatedBy) != "" {
		t.Errorf("dead letter: %v %q", m.Header, m.Data)
	}
	if n, _ := dlqCount(ctx, b.JS, "DLQ"); n != 1 {
		t.Errorf("DLQ holds %d, want 1", n)
	}
}

// TestDeadLetterWorkQueueTermKeepsPayload: on a work-queue stream a TERM
// removes the message; the copy made first keeps its payload.
func TestDeadLetterWorkQueueTermKeepsPayload(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters)
	ctx := jetwaytest.Context(t, 60*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.WorkQueuePolicy, jetstream.ConsumerConfig{})
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{Name: "work", DeadLetterSubject: "dlq.orders"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "orders.new", []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	f, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "work", Batch: 1, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 1 {
		t.Fatalf("fetch: %v %v", err, f)
	}
	if _, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: f.GetMessages()[0].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_TERM}}}); err != nil {
		t.Fatal(err)
	}
	wantCount(t, ctx, b.JS, "ORDERS", 0)
	advisoriesDone(t, ctx, b.JS)
	wantCount(t, ctx, b.JS, "DLQ", 1)
	dlq, _ := b.JS.Stream(ctx, "DLQ")
	m, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "keep me" || m.Header.Get(deadletter.HeaderLost) != "" {
		t.Errorf("dead letter %q %v", m.Data, m.Header)
	}
}

// TestDeadLetterReplicasWriteOnce: three bridges on one nats-server share
// the advisory consumer; 30 messages TERMed natively (so only advisories
// make their dead letters) give exactly 30 dead letters. A redrive at 10
// a second takes its time.
func TestDeadLetterReplicasWriteOnce(t *testing.T) {
	t.Parallel()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	keys := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	var bridges []*jetwaytest.Bridge
	for i := 0; i < 3; i++ {
		bridges = append(bridges, jetwaytest.Start(t, jetwaytest.WithDeadLetters, func(c *config.Config) { c.NATS.URLs = ns.ClientURL(); c.Consume.AckKeys = keys }))
	}
	b := bridges[0]
	ctx := jetwaytest.Context(t, 90*time.Second)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{Name: "work", DeadLetterSubject: "dlq.orders"}}); err != nil {
		t.Fatal(err)
	}
	// Every worker is there before the TERMs (advisories are sent only
	// while a stream captures them).
	jetwaytest.Eventually(t, 20*time.Second, "advisory consumer", func() error {
		_, err := b.JS.Consumer(ctx, deadletter.AdvisoryStream, deadletter.AdvisoryConsumer)
		return err
	})
	const n = 30
	for i := 0; i < n; i++ {
		if _, err := b.JS.Publish(ctx, "orders.new", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := b.JS.Consumer(ctx, "ORDERS", "work")
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(n-got, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.TermWithReason("native"); err != nil {
				t.Fatal(err)
			}
			got++
		}
	}
	wantCount(t, ctx, b.JS, "DLQ", n)
	advisoriesDone(t, ctx, b.JS)
	if c, _ := dlqCount(ctx, b.JS, "DLQ"); c != n {
		t.Fatalf("DLQ holds %d, want %d", c, n)
	}
	l, err := bridges[1].DeadLetters.ListDeadLetters(ctx, &jetwayv1.ListDeadLettersRequest{Stream: "DLQ", MaxMessages: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, d := range l.GetDeadLetters() {
		if seen[d.GetOriginSequence()] || d.GetTerminatedBy() != "" || d.GetTermReason() != "native" {
			t.Errorf("dead letter %v", d)
		}
		seen[d.GetOriginSequence()] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct dead letters, want %d", len(seen), n)
	}

	// The rate holds: 6 dead letters at 10 a second take at least 0.5 s.
	start := time.Now()
	s, err := bridges[2].DeadLetters.RedriveDeadLetters(ctx, &jetwayv1.RedriveDeadLettersRequest{Stream: "DLQ", StartSequence: 1, EndSequence: 6, Rate: 10})
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sum := ev.GetSummary(); sum != nil && (sum.GetRedriven() != 6 || sum.GetLastSequence() != 6) {
			t.Errorf("summary %v", sum)
		}
		events++
	}
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("6 redrives at 10/s took %v", el)
	}
	if events != 7 {
		t.Errorf("%d events, want 6 progress and a summary", events)
	}
}

// TestDeadLetterTenantsStayApart: tenant A may not aim dead letters into
// B's subjects, nor list or redrive B's DLQ stream, nor redrive into a
// subject it may not publish to.
func TestDeadLetterTenantsStayApart(t *testing.T) {
	t.Parallel()
	aKey, bKey, opsKey := "dl-tenant-a-0123456789abcdef", "dl-tenant-b-0123456789abcdef", "dl-ops-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "a", APIKeyHashes: []string{auth.HashAPIKey(aKey)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"a.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"A", "A.*"}},
			Admin:   &auth.AdminGrant{Streams: []string{"A", "ADLQ", "SHARED"}, Write: true, Subjects: &perm.Set{Allow: []string{"a.>"}}},
		}},
		{Name: "b", APIKeyHashes: []string{auth.HashAPIKey(bKey)}, Grant: auth.Grant{
			Admin: &auth.AdminGrant{Streams: []string{"B", "BDLQ"}, Write: true, Subjects: &perm.Set{Allow: []string{"b.>"}}},
		}},
		{Name: "ops", APIKeyHashes: []string{auth.HashAPIKey(opsKey)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{">"}}, Admin: &auth.AdminGrant{Write: true},
		}},
	}})
	b := jetwaytest.Start(t, jetwaytest.WithDeadLetters, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 60*time.Second)
	as, ops := authTWith(ctx, "ApiKey "+aKey), authTWith(ctx, "ApiKey "+opsKey)
	for _, s := range []jetstream.StreamConfig{
		{Name: "A", Subjects: []string{"a.orders.>"}}, {Name: "ADLQ", Subjects: []string{"a.dlq.>"}, AllowDirect: true},
		{Name: "BDLQ", Subjects: []string{"b.dlq.>"}, AllowDirect: true}, {Name: "SHARED", Subjects: []string{"shared.dlq"}, AllowDirect: true},
		{Name: "C", Subjects: []string{"c.>"}},
	} {
		if _, err := b.JS.CreateStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	_, err := b.Admin.CreateConsumer(as, &jetwayv1.CreateConsumerRequest{Stream: "A", Config: &jetwayv1.ConsumerConfig{Name: "w", DeadLetterSubject: "b.dlq.a"}})
	authTWantCode(t, "a aims dead letters at b.dlq.a", err, codes.PermissionDenied, "NOT_PERMITTED")
	authTWantREST(t, "REST a aims dead letters at b.dlq.a", b.Do(t, http.MethodPost, "/v1/streams/A/consumers", `{"name":"w","dead_letter_subject":"b.dlq.a"}`, "Authorization", "ApiKey "+aKey), http.StatusForbidden, "NOT_PERMITTED")
	_, err = b.Admin.CreateConsumer(as, &jetwayv1.CreateConsumerRequest{Stream: "A", Config: &jetwayv1.ConsumerConfig{Name: "w", Metadata: map[string]string{deadLetterKey: "b.dlq.a"}}})
	authTWantCode(t, "a sets the metadata key itself", err, codes.InvalidArgument, "INVALID_CONFIG")
	_, err = b.Admin.CreateConsumer(as, &jetwayv1.CreateConsumerRequest{Stream: "A", Config: &jetwayv1.ConsumerConfig{Name: "w", DeadLetterSubject: "a.dlq.*"}})
	authTWantCode(t, "a wildcard dead-letter subject", err, codes.InvalidArgument, "INVALID_SUBJECT")
	_, err = b.Admin.CreateConsumer(ops, &jetwayv1.CreateConsumerRequest{Stream: "A", Config: &jetwayv1.ConsumerConfig{Name: "w", DeadLetterSubject: "$JS.EVENT.x"}})
	authTWantCode(t, "a reserved dead-letter subject", err, codes.InvalidArgument, "INVALID_SUBJECT")
	if _, err := b.Admin.CreateConsumer(as, &jetwayv1.CreateConsumerRequest{Stream: "A", Config: &jetwayv1.ConsumerConfig{Name: "w", DeadLetterSubject: "a.dlq.orders"}}); err != nil {
		t.Fatalf("a aims dead letters at its own a.dlq.orders: %v", err)
	}
	_, err = b.DeadLetters.ListDeadLetters(as, &jetwayv1.ListDeadLettersRequest{Stream: "BDLQ"})
	authTWantCode(t, "a lists BDLQ", err, codes.PermissionDenied, "NOT_PERMITTED")
	authTWantREST(t, "REST a lists BDLQ", b.Do(t, http.MethodGet, "/v1/dead-letters/BDLQ", "", "Authorization", "ApiKey "+aKey), http.StatusForbidden, "NOT_PERMITTED")
	rs, err := b.DeadLetters.RedriveDeadLetters(as, &jetwayv1.RedriveDeadLettersRequest{Stream: "BDLQ"})
	if err == nil {
		_, err = rs.Recv()
	}
	authTWantCode(t, "a redrives BDLQ", err, codes.PermissionDenied, "NOT_PERMITTED")

	// A dead letter in SHARED (which a administers) whose origin is c.x:
	// a may not publish there, so it is skipped and counted.
	m := nats.NewMsg("shared.dlq")
	m.Header.Set(deadletter.HeaderStream, "C")
	m.Header.Set(deadletter.HeaderSequence, "1")
	m.Header.Set(deadletter.HeaderSubject, "c.x")
	m.Header.Set(deadletter.HeaderReason, "terminated")
	m.Data = []byte("x")
	if _, err := b.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	rs, err = b.DeadLetters.RedriveDeadLetters(as, &jetwayv1.RedriveDeadLettersRequest{Stream: "SHARED"})
	if err != nil {
		t.Fatal(err)
	}
	var sum *jetwayv1.RedriveSummary
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p := ev.GetProgress(); p != nil && p.GetOutcome() != jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_NOT_PERMITTED {
			t.Errorf("progress %v", p)
		}
		if s := ev.GetSummary(); s != nil {
			sum = s
		}
	}
	if sum.GetNotPermitted() != 1 || sum.GetRedriven() != 0 {
		t.Errorf("summary %v", sum)
	}
	if n, _ := dlqCount(ctx, b.JS, "C"); n != 0 {
		t.Errorf("C holds %d: the refused redrive published", n)
	}
}
