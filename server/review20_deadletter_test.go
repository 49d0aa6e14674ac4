package server_test

// Review of the console's dead letters and the redrive (review 20):
// hostile and huge dead letters published natively into a DLQ stream,
// hostile query parameters, clients that leave a redrive or read it
// slowly.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/jetway-dev/jetway/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/deadletter"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// publishDeadLetter stores a dead letter natively in the DLQ stream
// (dlq.orders), as the bridge writes one, from ORDERS sequence seq.
func publishDeadLetter(t *testing.T, js jetstream.JetStream, seq int, data []byte) {
	t.Helper()
	ctx := jetwaytest.Context(t, 20*time.Second)
	m := nats.NewMsg("dlq.orders")
	m.Header.Set(deadletter.HeaderStream, "ORDERS")
	m.Header.Set(deadletter.HeaderConsumer, "work")
	m.Header.Set(deadletter.HeaderSequence, strconv.Itoa(seq))
	m.Header.Set(deadletter.HeaderSubject, "orders.new")
	m.Header.Set(deadletter.HeaderReason, deadletter.ReasonTerminated)
	m.Data = data
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("publish dead letter %d: %v", seq, err)
	}
}

// TestReviewListDeadLettersHugePayloads: a DLQ stream of 24 dead letters
// of 900 KB each (just under NATS's 1 MB max payload) lists over REST and
// gRPC page by page: each page a bounded size (about the bridge's Fetch
// byte cap, 3 MiB, not max_messages of them: 100 such payloads are
// 90 MB in the bridge's memory, more than gRPC carries, and an answer the
// console could never show), and the pages together hold all 24, in order.
func TestReviewListDeadLettersHugePayloads(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 2*time.Minute)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	const n, size = 24, 900 << 10
	for i := 1; i <= n; i++ {
		publishDeadLetter(t, b.JS, i, bytes.Repeat([]byte{byte('a' + i%26)}, size))
	}
	const maxPage = 8 << 20 // the 3 MiB cap, one crossing it, base64 and JSON

	// REST, as the console asks (max_messages 100).
	var seqs []uint64
	next := uint64(0)
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatalf("more than %d pages", n)
		}
		r := b.Do(t, http.MethodGet, fmt.Sprintf("/v1/dead-letters/DLQ?max_messages=100&start_sequence=%d", next), "")
		if r.Status != http.StatusOK {
			t.Fatalf("page %d from %d: %d %.300s", pages, next, r.Status, r.Body)
		}
		if len(r.Body) > maxPage {
			t.Fatalf("page %d from %d: %d bytes", pages, next, len(r.Body))
		}
		var page struct {
			DeadLetters []struct {
				Sequence string `json:"sequence"`
				Data     []byte `json:"data"`
			} `json:"dead_letters"`
			NextSequence string `json:"next_sequence"`
			End          bool   `json:"end"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.DeadLetters) == 0 && !page.End {
			t.Fatalf("page %d from %d: empty, not the end", pages, next)
		}
		for _, d := range page.DeadLetters {
			s, _ := strconv.ParseUint(d.Sequence, 10, 64)
			if len(d.Data) != size {
				t.Errorf("dead letter %d: %d bytes", s, len(d.Data))
			}
			seqs = append(seqs, s)
		}
		next, _ = strconv.ParseUint(page.NextSequence, 10, 64)
		if page.End {
			break
		}
	}
	if len(seqs) != n || seqs[0] != 1 || seqs[n-1] != n {
		t.Fatalf("REST pages hold %v, want 1…%d", seqs, n)
	}

	// gRPC, with grpc-go's default 4 MB receive limit.
	seqs, next = nil, 0
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatalf("more than %d pages", n)
		}
		page, err := b.DeadLetters.ListDeadLetters(ctx, &jetwayv1.ListDeadLettersRequest{Stream: "DLQ", StartSequence: next, MaxMessages: 1000})
		if err != nil {
			t.Fatalf("gRPC page %d from %d: %v", pages, next, err)
		}
		for _, d := range page.GetDeadLetters() {
			seqs = append(seqs, d.GetSequence())
		}
		next = page.GetNextSequence()
		if page.GetEnd() {
			break
		}
	}
	if len(seqs) != n {
		t.Fatalf("gRPC pages hold %d dead letters, want %d", len(seqs), n)
	}
}

// TestReviewRedriveClientLeaves: a REST client that leaves a redrive at
// 2 a second (NDJSON, then Server-Sent Events) after its second progress
// event stops it: counted natively in ORDERS, at most one more dead
// letter is published after the client closed (the one whose publish was
// under way), none in the 3 s after (6 at that rate had it gone on).
func TestReviewRedriveClientLeaves(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 2*time.Minute)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	const n = 30
	for i := 1; i <= n; i++ {
		publishDeadLetter(t, b.JS, i, []byte("payload "+strconv.Itoa(i)))
	}
	for _, accept := range []string{"application/json", "text/event-stream"} {
		before, err := dlqCount(ctx, b.JS, "ORDERS")
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.BaseURL+"/v1/dead-letters/DLQ:redrive", strings.NewReader(`{"rate":2}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: redrive %d", accept, resp.StatusCode)
		}
		sc := bufio.NewScanner(resp.Body)
		events := 0
		for events < 2 && sc.Scan() {
			if strings.Contains(sc.Text(), `"progress"`) {
				events++
			}
		}
		if events != 2 {
			t.Fatalf("%s: %d progress events before the end: %v", accept, events, sc.Err())
		}
		resp.Body.Close()
		left, err := dlqCount(ctx, b.JS, "ORDERS")
		if err != nil {
			t.Fatal(err)
		}
		// At 2 a second, a redrive still running publishes 6 in 3 s.
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			now, err := dlqCount(ctx, b.JS, "ORDERS")
			if err != nil {
				t.Fatal(err)
			}
			if now > left+1 {
				t.Fatalf("%s: ORDERS went from %d (client gone) to %d: the redrive went on without its client", accept, left, now)
			}
			time.Sleep(200 * time.Millisecond)
		}
		after, _ := dlqCount(ctx, b.JS, "ORDERS")
		t.Logf("%s: %d published before the client left (2 events read), %d after", accept, left-before, after-left)
	}
}

// TestReviewRedriveDeleteKeepsWhatTheOriginalShadows: a dead letter
// redriven, with delete, while its original's message id is still in the
// original stream's duplicate window (a message TERMed and redriven
// within 2 minutes of its publish, as README's commands do) is taken by
// JetStream for the original itself: nothing is stored, and the dead
// letter must be kept (deleted, the message was in neither stream any
// more for its consumer). Once the window has passed it is redriven and
// deleted; a copy of it redriven again within the new copy's window is a
// duplicate of that copy and deleted.
func TestReviewRedriveDeleteKeepsWhatTheOriginalShadows(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, time.Minute)
	for _, s := range []jetstream.StreamConfig{
		{Name: "ORDERS", Subjects: []string{"orders.>"}, Duplicates: 2 * time.Second},
		{Name: "DLQ", Subjects: []string{"dlq.>"}, AllowDirect: true, Duplicates: 2 * time.Minute},
	} {
		if _, err := b.JS.CreateStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	orig := nats.NewMsg("orders.new")
	orig.Data = []byte(`{"id":1}`)
	if _, err := b.JS.PublishMsg(ctx, orig, jetstream.WithMsgID("order-1")); err != nil {
		t.Fatal(err)
	}
	deadLetter := func() {
		m := nats.NewMsg("dlq.orders")
		m.Header.Set(deadletter.HeaderStream, "ORDERS")
		m.Header.Set(deadletter.HeaderConsumer, "refunds")
		m.Header.Set(deadletter.HeaderSequence, "1")
		m.Header.Set(deadletter.HeaderSubject, "orders.new")
		m.Header.Set(deadletter.HeaderReason, deadletter.ReasonTerminated)
		m.Header.Set(deadletter.HeaderMsgID, "order-1")
		m.Data = orig.Data
		if _, err := b.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter()
	redrive := func() *jetwayv1.RedriveProgress {
		t.Helper()
		rs, err := b.DeadLetters.RedriveDeadLetters(ctx, &jetwayv1.RedriveDeadLettersRequest{Stream: "DLQ", Delete: true})
		if err != nil {
			t.Fatal(err)
		}
		var p *jetwayv1.RedriveProgress
		for {
			ev, err := rs.Recv()
			if err != nil {
				break
			}
			if ev.GetProgress() != nil {
				p = ev.GetProgress()
			}
		}
		return p
	}

	p := redrive()
	if p.GetOutcome() != jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_DUPLICATE || p.GetDeleted() {
		t.Errorf("redriven within the original's window: %v, want DUPLICATE, kept", p)
	}
	if n, err := dlqCount(ctx, b.JS, "DLQ"); err != nil || n != 1 {
		t.Fatalf("DLQ holds %d (%v) after a redrive JetStream took for the original: the dead letter was deleted, and redriven nowhere", n, err)
	}
	jetwaytest.Eventually(t, 20*time.Second, "redriven once the original's window passed", func() error {
		p = redrive()
		if p.GetOutcome() != jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_REDRIVEN || !p.GetDeleted() {
			return fmt.Errorf("%v", p)
		}
		return nil
	})
	wantCount(t, ctx, b.JS, "ORDERS", 2)
	wantCount(t, ctx, b.JS, "DLQ", 0)
	// A second copy (a redrive that published, then died before deleting)
	// is a duplicate of the redriven copy: deleted.
	deadLetter()
	if p := redrive(); p.GetOutcome() != jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_DUPLICATE || !p.GetDeleted() || p.GetStoredSequence() != 2 {
		t.Errorf("a repeated redrive: %v, want DUPLICATE of ORDERS 2, deleted", p)
	}
	wantCount(t, ctx, b.JS, "ORDERS", 2)
	wantCount(t, ctx, b.JS, "DLQ", 0)
}

// TestReviewRedriveShutdownAtLowRate: a redrive at 1 a second when the
// bridge shuts down ends at once with UNAVAILABLE naming the sequence to
// continue from (README), not after the batch of dead letters it holds
// (20 here, 20 s at that rate: the shutdown timeout cut it first).
func TestReviewRedriveShutdownAtLowRate(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.ShutdownTimeout = 10 * time.Second })
	ctx := jetwaytest.Context(t, time.Minute)
	dlqSetup(t, ctx, b.JS, jetstream.LimitsPolicy, jetstream.ConsumerConfig{})
	for i := 1; i <= 20; i++ {
		publishDeadLetter(t, b.JS, i, []byte("x"))
	}
	rs, err := b.DeadLetters.RedriveDeadLetters(ctx, &jetwayv1.RedriveDeadLettersRequest{Stream: "DLQ", Rate: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := rs.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop() }()
	start := time.Now()
	for {
		ev, err := rs.Recv()
		if err == nil {
			if ev.GetSummary() != nil {
				t.Fatalf("the redrive ended with a summary at shutdown: %v", ev)
			}
			continue
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "from sequence") {
			t.Errorf("the redrive at shutdown ended with %v, want UNAVAILABLE naming the sequence to continue from", err)
		}
		break
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the redrive ended %v after the shutdown began", d)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v", err)
	}
}
