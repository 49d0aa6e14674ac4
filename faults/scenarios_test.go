package faults

import (
	"context"
	"testing"
	"time"
)

// samplePeriod spreads about 20 resource samples over a scenario.
func samplePeriod(d time.Duration) time.Duration { return max(time.Second, d/20) }

// pause waits d or until ctx is done: the pacing of fault injection, never
// a wait for a condition.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// stopAndRead waits until the clients recovered from the last fault, stops
// them (stop, then done closes), and reads stream back natively.
func stopAndRead(t *testing.T, chk *Checker, stop context.CancelFunc, done <-chan struct{}, urls, stream string) []StoredMsg {
	t.Helper()
	if err := waitFor(context.Background(), 30*time.Second, nil, "clients recovered after the last fault", chk.Recovered); err != nil {
		t.Error(err)
	}
	stop()
	select {
	case <-done:
	case <-time.After(retryBudget + callDeadline):
		t.Fatal("clients did not stop")
	}
	_, js := nativeJS(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stored, err := ReadStream(ctx, js, stream)
	if err != nil {
		t.Fatalf("read %s back: %v", stream, err)
	}
	return stored
}

// TestPublishNATSKill: unary Publish from 4 clients while nats-server is
// SIGKILLed and restarted on the same store and port every ~2 s.
func TestPublishNATSKill(t *testing.T) {
	d := duration(t, 9*time.Second)
	ns := startNATS(t, "nats")
	b := startBridge(t, ns.url)
	b.sample(t, samplePeriod(d))
	createStream(t, b, "S1", 1, "s1.>")

	chk := NewChecker()
	p := &publisher{msgs: b.msgs, chk: chk, subject: "s1.x"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s1", 4, 0) }()

	for end := time.Now().Add(d); time.Now().Before(end); {
		pause(ctx, 2*time.Second)
		healed := chk.FaultStart("SIGKILL nats-server")
		ns.Kill()
		pause(ctx, 200*time.Millisecond)
		ns.restart(t)
		healed()
	}
	stored := stopAndRead(t, chk, stop, done, ns.url, "S1")
	finish(t, chk, "publish-nats-kill", stored, CheckOptions{MsgIDs: true})
}
