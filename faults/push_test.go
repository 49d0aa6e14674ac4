package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestPushBridgeKill: two bridge processes deliver one push subscription to
// an HTTP receiver that refuses every tenth message with 404 (its dead
// letters) and answers the rest 200. Each bridge is SIGKILLed and
// restarted while messages are published and delivered. Every message
// answered 200 at least once must be acked; every refused one must be in
// the dead-letter stream exactly once, with its payload; none other.
func TestPushBridgeKill(t *testing.T) {
	const total = 300
	ns := startNATS(t, "nats")
	b1 := startBridge(t, ns.url, "--push-allow-private-endpoints")
	b2 := startBridge(t, ns.url, "--push-allow-private-endpoints")
	_, js := nativeJS(t, ns.url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, callDeadline)
	_, err := b1.admin.CreateConsumer(cctx, &jetwayv1.CreateConsumerRequest{Stream: "P", Config: &jetwayv1.ConsumerConfig{
		Name: "hook", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT, AckWait: durationpb.New(2 * time.Second),
		DeadLetterSubject: "dlq.p",
	}})
	ccancel()
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	okd := map[string]int{}  // ids answered 200, by count
	refd := map[string]int{} // ids answered 404, by count
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Jetway-Message-Id")
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "m-"))
		mu.Lock()
		defer mu.Unlock()
		if n%10 == 0 {
			refd[id]++
			w.WriteHeader(http.StatusNotFound)
			return
		}
		okd[id]++
		time.Sleep(5 * time.Millisecond) // work in hand when a bridge dies
	}))
	t.Cleanup(rc.Close)

	cctx, ccancel = context.WithTimeout(ctx, callDeadline)
	_, err = jetwayv1.NewPushServiceClient(b1.conn).CreatePushSubscription(cctx, &jetwayv1.CreatePushSubscriptionRequest{
		Subscription: &jetwayv1.PushSubscription{Name: "hook", Stream: "P", Consumer: "hook", Endpoint: rc.URL, Concurrency: 8, Timeout: durationpb.New(2 * time.Second)},
	})
	ccancel()
	if err != nil {
		t.Fatal(err)
	}

	pubDone := make(chan error, 1)
	go func() {
		for i := range total {
			id := fmt.Sprintf("m-%d", i)
			pctx, pcancel := context.WithTimeout(ctx, callDeadline)
			_, err := js.Publish(pctx, "p.x", []byte(id), jetstream.WithMsgID(id))
			pcancel()
			if err != nil {
				pubDone <- fmt.Errorf("publish %s: %w", id, err)
				return
			}
			time.Sleep(3 * time.Millisecond)
		}
		pubDone <- nil
	}()
	for _, b := range []*bridgeProc{b1, b2} {
		pause(ctx, 300*time.Millisecond)
		b.Kill()
		pause(ctx, 300*time.Millisecond)
		b.restart(t)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}

	cons, err := js.Consumer(ctx, "P", "hook")
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	adv, err := js.Consumer(ctx, "JETWAY_DEAD_LETTER_ADVISORIES", "jetway-dead-letters")
	if err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, 60*time.Second, nil, "every message acked or dead-lettered, every advisory handled", func() bool {
		ci, err := cons.Info(ctx)
		if err != nil || ci.NumPending != 0 || ci.NumAckPending != 0 {
			return false
		}
		ai, err := adv.Info(ctx)
		if err != nil || ai.NumPending != 0 || ai.NumAckPending != 0 {
			return false
		}
		di, err := dlq.Info(ctx)
		return err == nil && di.State.Msgs >= total/10
	}); err != nil {
		ci, _ := cons.Info(ctx)
		if ci != nil {
			t.Logf("consumer: pending %d, ack pending %d, redelivered %d", ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
		}
		t.Fatal(err)
	}

	// The dead letters, read natively: each refused id once, with its
	// payload.
	di, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	copies := map[string]int{}
	for seq := di.State.FirstSeq; seq <= di.State.LastSeq; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		id := m.Header.Get("Jetway-Dead-Letter-Msg-Id")
		copies[id]++
		if string(m.Data) != id {
			t.Errorf("dead letter %d of %s has payload %q", seq, id, m.Data)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	dup, redelivered := 0, 0
	for i := range total {
		id := fmt.Sprintf("m-%d", i)
		if i%10 == 0 {
			if copies[id] != 1 {
				t.Errorf("%s refused %d times, in the dead letters %d times; want once", id, refd[id], copies[id])
			}
			if refd[id] > 1 {
				redelivered++
			}
			continue
		}
		if okd[id] == 0 {
			t.Errorf("%s never reached the receiver", id)
		}
		if okd[id] > 1 {
			dup++
		}
		if copies[id] != 0 {
			t.Errorf("%s was answered 200 but is in the dead letters", id)
		}
	}
	if n := len(copies); n != total/10 {
		t.Errorf("%d distinct dead letters, want %d", n, total/10)
	}
	t.Logf("push under 2 bridge kills: %d messages, %d dead letters, %d delivered more than once, %d refused more than once",
		total, len(copies), dup, redelivered)
}
