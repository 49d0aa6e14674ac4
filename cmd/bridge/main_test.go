package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink the test can read while run writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunStartsAndStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	env := map[string]string{"JETWAY_DATA_DIR": t.TempDir(), "JETWAY_LOG_FORMAT": "json"}
	// run's result is kept once it is known: done is closed after runErr
	// is set. Whichever way the test ends, run has returned (or had 20s
	// after the cancel) before the test does and its data directory is
	// removed.
	var runErr error
	done := make(chan struct{})
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("run did not return within 20s of the cancel")
		}
	}()
	go func() {
		defer close(done)
		runErr = run(ctx, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
			func(k string) string { return env[k] }, &logs)
	}()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"serving"`) {
		select {
		case <-done:
			t.Fatalf("run ended early: %v\n%s", runErr, logs.String())
		case <-deadline:
			t.Fatalf("not serving after 15s:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
		if runErr != nil {
			t.Fatalf("run: %v", runErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped log:\n%s", logs.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	var logs syncBuffer
	err := run(context.Background(), []string{"--log-format", "yaml"}, func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Fatalf("err = %v", err)
	}
}
