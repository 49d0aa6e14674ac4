package deadletter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
)

// (internal/jetwaytest starts a whole server, which imports this
// package: the test has its own nats-server and polling.)

func natsServer(t *testing.T) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTermReasonUnforgeable: the bridge's prefix verifies only for its
// message and under its keys; any change reads as a native client's.
func TestTermReasonUnforgeable(t *testing.T) {
	keys := termKeys([][]byte{[]byte("0123456789abcdef0123456789abcdef")})
	other := termKeys([][]byte{[]byte("another key 0123456789abcdef0123")})
	enc := encodeTerm(keys[0], "S", "c", 7, `al"ice`, true, "bad [jetway by=\"x\"] input")
	if got := decodeTerm(keys, "S", "c", 7, enc); !got.signed || got.identity != `al"ice` || !got.copied || got.reason != "bad [jetway by=\"x\"] input" {
		t.Errorf("decode: %+v", got)
	}
	for name, tc := range map[string]struct {
		keys [][]byte
		seq  uint64
		raw  string
	}{
		"other message":  {keys, 8, enc},
		"other key":      {other, 7, enc},
		"reason changed": {keys, 7, enc + "!"},
		"copied added":   {keys, 7, encodeTerm(keys[0], "S", "c", 7, "mallory", false, "r")[:len(`[jetway by="mallory"`)] + " copied" + encodeTerm(keys[0], "S", "c", 7, "mallory", false, "r")[len(`[jetway by="mallory"`):]},
		"forged":         {keys, 7, `[jetway by="ops" copied sig=AAAAAAAAAAAAAAAAAAAAAA] x`},
	} {
		if got := decodeTerm(tc.keys, "S", "c", tc.seq, tc.raw); got.signed || got.reason != tc.raw {
			t.Errorf("%s: %+v, want the raw reason unsigned", name, got)
		}
	}
}

// TestWorkerTakesOverAnAbandonedAdvisory: an advisory one replica took and
// never acked (it died) is written by another once its ack wait passes;
// none is missed.
func TestWorkerTakesOverAnAbandonedAdvisory(t *testing.T) {
	ns := natsServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	w, err := NewWriter(WriterOptions{AckKeys: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	getJS := func(context.Context) (jetstream.JetStream, error) { return js, nil }
	wk, err := NewWorker(w, getJS, WorkerOptions{AckWait: time.Second, Retry: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	adv, err := wk.Ensure(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []jetstream.StreamConfig{{Name: "S", Subjects: []string{"s.>"}}, {Name: "DLQ", Subjects: []string{"dlq.>"}, AllowDirect: true}} {
		if _, err := js.CreateStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy,
		Metadata: map[string]string{bridge.DeadLetterSubjectKey: "dlq.s"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("payload")); err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if err := m.TermWithReason("native"); err != nil {
			t.Fatal(err)
		}
	}
	// The dying replica: takes the advisory, never acks.
	held, err := adv.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range held.Messages() {
		n++
	}
	if n != 1 {
		t.Fatalf("held %d advisories, want 1", n)
	}
	// The survivor.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- wk.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, 20*time.Second, "the dead letter", func() error {
		st, err := js.Stream(ctx, "DLQ")
		if err != nil {
			return err
		}
		m, err := st.GetMsg(ctx, 1)
		if err != nil {
			return err
		}
		if string(m.Data) != "payload" || m.Header.Get(HeaderTermReason) != "native" || m.Header.Get(HeaderTerminatedBy) != "" {
			return fmt.Errorf("dead letter %q %v", m.Data, m.Header)
		}
		return nil
	})
	eventually(t, 20*time.Second, "the advisory acked", func() error {
		st, err := js.Stream(ctx, AdvisoryStream)
		if err != nil {
			return err
		}
		if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
			return errors.Join(err, fmt.Errorf("%d advisories left", info.State.Msgs))
		}
		return nil
	})
}
