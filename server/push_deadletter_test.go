package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/deadletter"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestPushRefusalIsDeadLettered: an endpoint's 404 terminates the delivery
// and the message goes to the consumer's dead letters, once, with its
// payload, although the stream is a work queue (the TERM removes the
// message: the copy is made first), marked as terminated by push.
func TestPushRefusalIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, allowPrivate, jetwaytest.WithDeadLetters)
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	wq, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "WQ", Subjects: []string{"wq.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "WQ", Config: &jetwayv1.ConsumerConfig{
		Name: "hook", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT, DeadLetterSubject: "dlq.wq",
	}}); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, pushReq) int { return http.StatusNotFound })
	createPush(t, b, &jetwayv1.PushSubscription{Name: "gone", Stream: "WQ", Consumer: "hook", Endpoint: rc.URL})
	publishN(t, b.JS, "wq.x", 7, 1)

	dlq, err := b.JS.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	jetwaytest.Eventually(t, 15*time.Second, "a dead letter", func() error {
		if n := dlq.CachedInfo().State.Msgs; n != 1 {
			_, _ = dlq.Info(ctx)
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	m, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		deadletter.HeaderStream: "WQ", deadletter.HeaderConsumer: "hook", deadletter.HeaderSequence: "1",
		deadletter.HeaderSubject: "wq.x", deadletter.HeaderReason: "terminated",
		deadletter.HeaderTermReason: "push gone: HTTP 404", deadletter.HeaderTerminatedBy: "jetway-push",
		deadletter.HeaderMsgID: "id-7",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("dead letter %s = %q, want %q", k, got, v)
		}
	}
	if string(m.Data) != `{"n":7}` {
		t.Errorf("dead letter payload %q", m.Data)
	}
	// The advisory of the same TERM is handled too, and writes nothing
	// more: the advisory consumer drains with one dead letter stored.
	adv, err := b.JS.Consumer(ctx, deadletter.AdvisoryStream, deadletter.AdvisoryConsumer)
	if err != nil {
		t.Fatal(err)
	}
	jetwaytest.Eventually(t, 15*time.Second, "the advisory handled", func() error {
		info, err := adv.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.Delivered.Stream == 0 {
			return fmt.Errorf("advisories pending %d, ack pending %d, delivered %d", info.NumPending, info.NumAckPending, info.Delivered.Stream)
		}
		return nil
	})
	if info, err := dlq.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("dead letters after the advisory: %v, %v; want 1", info.State.Msgs, err)
	}
	if info, err := wq.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("work queue after the TERM: %d messages, %v; want 0", info.State.Msgs, err)
	}
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests to the endpoint, want 1", n)
	}
}
