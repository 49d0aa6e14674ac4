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
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
			func(k string) string { return env[k] }, &logs)
	}()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"serving"`) {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("not serving after 15s:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
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
