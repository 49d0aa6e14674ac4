package console_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/deadletter"
	"github.com/jetway-dev/jetway/internal/browsertest"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// hostile is markup that sets document.body.dataset.pwned when it runs.
func hostile(where string) string {
	return `<img src=x onerror="document.body.dataset.pwned='` + where + `'"><script>document.body.dataset.pwned='` + where + `'</script><b>`
}

// TestReviewConsoleHostileDeadLettersInBrowser (review 20): dead letters
// published natively into the DLQ stream with markup in every field the
// console shows (origin stream, consumer and subject, TERM reason,
// terminated-by, message id, header names and values), a binary payload
// and payloads of 900 KB each: the console lists them all (page after
// page), shows each as text and runs nothing. Then a redrive of consumer
// "work"'s 20 at 2 a second, stopped after two outcomes: counted
// natively, the bridge published at most one more after the Stop, none
// in the 4 s the page stayed open.
func TestReviewConsoleHostileDeadLettersInBrowser(t *testing.T) {
	browsertest.Require(t)
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 2*time.Minute)
	for _, s := range []jetstream.StreamConfig{
		{Name: "ORDERS", Subjects: []string{"orders.>"}},
		{Name: "DLQ", Subjects: []string{"dlq.>"}, AllowDirect: true, Duplicates: 2 * time.Minute},
	} {
		if _, err := b.JS.CreateStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(h map[string]string, data []byte) {
		t.Helper()
		m := nats.NewMsg("dlq.orders")
		for k, v := range h {
			m.Header.Set(k, v)
		}
		m.Data = data
		if _, err := b.JS.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	const nHostile = 3
	for i := range nHostile {
		data := []byte(hostile("payload"))
		if i == 1 {
			data = []byte{0xff, 0xfe, 0x00, '<', 'b', '>'}
		}
		publish(map[string]string{
			deadletter.HeaderStream:       hostile("stream"),
			deadletter.HeaderConsumer:     hostile("consumer"),
			deadletter.HeaderSequence:     strconv.Itoa(i + 1),
			deadletter.HeaderSubject:      hostile("subject"),
			deadletter.HeaderReason:       hostile("reason"),
			deadletter.HeaderTermReason:   hostile("term"),
			deadletter.HeaderTerminatedBy: hostile("by"),
			deadletter.HeaderMsgID:        hostile("msgid"),
			deadletter.HeaderDeliveries:   hostile("deliveries"),
			deadletter.HeaderTime:         hostile("time"),
			"X-Hostile":                   hostile("header"),
		}, data)
	}
	const nWork = 20
	for i := range nWork {
		publish(map[string]string{
			deadletter.HeaderStream: "ORDERS", deadletter.HeaderConsumer: "work", deadletter.HeaderSequence: strconv.Itoa(i + 1),
			deadletter.HeaderSubject: "orders.new", deadletter.HeaderReason: deadletter.ReasonTerminated,
		}, bytes.Repeat([]byte("x"), 900<<10))
	}

	ev := browsertest.Run(t, "review20.mjs", 2*time.Minute, map[string]any{
		"base": b.BaseURL, "dlq": "DLQ", "hostile": nHostile, "linger": 4000,
	})
	t.Logf("browser events:\n%s", ev)
	for _, e := range ev {
		if e.Step() == "page_error" {
			t.Errorf("page error: %s %s", e.String("kind"), e.String("text"))
		}
	}
	e := ev.First(t, "listed")
	if e.String("rows") != strconv.Itoa(nHostile+nWork) || e.String("error") != "" {
		t.Errorf("listed: %v, want %d rows and no error", e, nHostile+nWork)
	}
	if e.String("pwned") != "" || e.String("nodes") != "0" {
		t.Errorf("a dead letter's field ran in the list: %v", e)
	}
	n := 0
	for _, e := range ev {
		if e.Step() != "inspected" {
			continue
		}
		n++
		if e.String("pwned") != "" || e.String("nodes") != "0" {
			t.Errorf("a dead letter's field ran when inspected: %v", e)
		}
		for _, k := range []string{"origin", "subject", "term_reason", "by", "msgid", "headers"} {
			if !strings.Contains(e.String(k), "<script>") {
				t.Errorf("inspected %s: %q, want the markup shown as text", k, e.String(k))
			}
		}
	}
	if n != nHostile {
		t.Errorf("%d inspected, want %d", n, nHostile)
	}
	stopped := ev.First(t, "stopped")
	seen, _ := strconv.Atoi(stopped.String("rows"))
	if l := ev.First(t, "lingered"); l.String("rows") != stopped.String("rows") || l.String("error") != "" || l.String("status") != "stopped" {
		t.Errorf("after the Stop: %v (stopped: %v)", l, stopped)
	}
	if got := int(jetwaytest.StreamMessages(t, b.JS, "ORDERS")); got < seen || got > seen+1 {
		t.Errorf("ORDERS holds %d after a Stop that had seen %d outcomes: the redrive went on", got, seen)
	}
}
