package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/jetway-dev/jetway/internal/jetwaytest"
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

// running is a run in progress: its logs and how to end it.
type running struct {
	logs *syncBuffer
	// stop cancels run and returns its result, within 20s.
	stop func() error
}

// startRun calls run with args and env (a JSON log) and waits until it
// logs "serving". Whichever way the test ends, run has returned (or had
// 20s after the cancel) before the test does and its data directory is
// removed.
func startRun(t *testing.T, args []string, env map[string]string) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	env["JETWAY_LOG_FORMAT"] = "json"
	// run's result is kept once it is known: done is closed after runErr
	// is set.
	var runErr error
	done := make(chan struct{})
	stop := func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(20 * time.Second):
			return errors.New("run did not return within 20s of the cancel")
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	go func() {
		defer close(done)
		runErr = run(ctx, nil, args, func(k string) string { return env[k] }, logs)
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
	return running{logs: logs, stop: stop}
}

// logged returns the string attribute key of the first log line with
// message msg.
func (r running) logged(t *testing.T, msg, key string) string {
	t.Helper()
	return firstLogged(t, r.logs, msg, key)
}

// firstLogged returns the string attribute key of the first JSON log line
// in logs with message msg.
func firstLogged(t *testing.T, logs *syncBuffer, msg, key string) string {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			if v, ok := m[key].(string); ok {
				return v
			}
		}
	}
	t.Fatalf("no %q log with %q:\n%s", msg, key, logs.String())
	return ""
}

func TestRunStartsAndStopsOnCancel(t *testing.T) {
	r := startRun(t, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
		map[string]string{"JETWAY_DATA_DIR": t.TempDir()})
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(r.logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped log:\n%s", r.logs.String())
	}
}

// TestRunSecretsFromFilesNotLogged runs the bridge against a nats-server
// that wants a password, given by --nats-password-file, with ack keys in
// --ack-keys-file: it connects (ready), and the start-up log holds
// neither secret. An ack key on the command line is warned about, by
// name and not by value.
func TestRunSecretsFromFilesNotLogged(t *testing.T) {
	const password = "pw-only-in-a-file-0123"
	ns := jetwaytest.NATSServer(t, &natsserver.Options{
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*natsserver.User{{Username: "bridge", Password: password}},
	})
	dir := t.TempDir()
	ackKey := base64.StdEncoding.EncodeToString([]byte("ack-key-only-in-a-file-0123456789"))
	inlineKey := base64.StdEncoding.EncodeToString([]byte("ack-key-on-the-command-line-01234"))
	pwFile, keysFile := filepath.Join(dir, "nats-password"), filepath.Join(dir, "ack-keys")
	for p, v := range map[string]string{pwFile: password + "\n", keysFile: ackKey + "\n"} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--nats-url", ns.ClientURL(), "--nats-user", "bridge", "--nats-password-file", pwFile}

	r := startRun(t, append(base, "--ack-keys-file", keysFile), map[string]string{})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + r.logged(t, "serving", "http") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz = %d with the password from its file, want 200", resp.StatusCode)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, secret := range []string{password, ackKey} {
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("the log holds a secret %q:\n%s", secret, r.logs.String())
		}
	}

	r = startRun(t, append(base, "--ack-keys", inlineKey), map[string]string{})
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if strings.Contains(r.logs.String(), inlineKey) {
		t.Errorf("the log holds the inline ack key:\n%s", r.logs.String())
	}
	if !strings.Contains(r.logs.String(), "--ack-keys on the command line is visible to every local user") {
		t.Errorf("no warning about --ack-keys on the command line:\n%s", r.logs.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	var logs syncBuffer
	err := run(context.Background(), nil, []string{"--log-format", "yaml"}, func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Fatalf("err = %v", err)
	}
}
