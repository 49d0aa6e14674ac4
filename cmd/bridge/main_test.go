package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// running is a run in progress: its logs and how to end it.
type running struct {
	logs *jetwaytest.LogBuffer
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
	logs := &jetwaytest.LogBuffer{}
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
func firstLogged(t *testing.T, logs *jetwaytest.LogBuffer, msg, key string) string {
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

// TestRunSIGHUPAppliesAFixedPasswordFile starts the bridge with a password
// file NATS refuses and a minute between attempts, so that only SIGHUP
// makes the next one: after several refused attempts (each logged with
// its cause, past nats.go's own give-up at the second), the file is fixed
// and SIGHUP makes the bridge ready, without a restart.
func TestRunSIGHUPAppliesAFixedPasswordFile(t *testing.T) {
	const password = "the-right-password-0123"
	ns := jetwaytest.NATSServer(t, &natsserver.Options{
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*natsserver.User{{Username: "bridge", Password: password}},
	})
	pwFile := filepath.Join(t.TempDir(), "nats-password")
	write := func(v string) {
		if err := os.WriteFile(pwFile+".tmp", []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(pwFile+".tmp", pwFile); err != nil {
			t.Fatal(err)
		}
	}
	write("a-wrong-password-4567")
	r := startRun(t, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--nats-url", ns.ClientURL(), "--nats-user", "bridge", "--nats-password-file", pwFile,
		"--nats-connect-timeout", "200ms", "--nats-reconnect-wait", "1m"}, map[string]string{})
	readyz := func() int {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + r.logged(t, "serving", "http") + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	refused := func() int {
		return strings.Count(r.logs.String(), `"msg":"NATS connection attempt failed","error":"nats: Authorization Violation"`)
	}
	hup := func() {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, r.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for n := 1; n <= 3; n++ {
		poll("a refused attempt", func() bool { return refused() >= n })
		hup()
	}
	poll("the fourth refused attempt", func() bool { return refused() >= 4 })
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("readyz with a refused password = %d, want 503", code)
	}
	write(password)
	hup()
	poll("readyz 200 after the fix and SIGHUP", func() bool { return readyz() == http.StatusOK })
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if strings.Contains(r.logs.String(), password) || strings.Contains(r.logs.String(), "a-wrong-password-4567") {
		t.Errorf("the log holds a password:\n%s", r.logs.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	var logs jetwaytest.LogBuffer
	err := run(context.Background(), nil, []string{"--log-format", "yaml"}, func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Fatalf("err = %v", err)
	}
}

// TestRunLogsEffectiveValues: the JSON start-up log gives durations as the
// flags take them ("15s", not nanoseconds), http_max_body as derived
// rather than 0 (the serving line has the value in effect), and no
// external NATS settings for the embedded server.
func TestRunLogsEffectiveValues(t *testing.T) {
	r := startRun(t, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
		map[string]string{"JETWAY_DATA_DIR": t.TempDir()})
	var start, serving map[string]any
	for _, line := range strings.Split(r.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch m["msg"] {
		case "starting jetway bridge":
			start = m
		case "serving":
			serving = m
		}
	}
	if start == nil || serving == nil {
		t.Fatalf("no start or serving line:\n%s", r.logs.String())
	}
	cfg, _ := start["config"].(map[string]any)
	srv, _ := cfg["server"].(map[string]any)
	nats, _ := cfg["nats"].(map[string]any)
	if got := srv["shutdown_timeout"]; got != "15s" {
		t.Errorf("shutdown_timeout logged as %v (%T), want \"15s\"", got, got)
	}
	if got, ok := srv["http_max_body"].(string); !ok || !strings.HasPrefix(got, "auto") {
		t.Errorf("http_max_body logged as %v, want the derived form", srv["http_max_body"])
	}
	if _, ok := nats["url"]; ok {
		t.Errorf("embedded mode logs a NATS url: %v", nats)
	}
	if n, ok := serving["http_max_body"].(float64); !ok || n <= 0 {
		t.Errorf("serving line's http_max_body %v, want the value in effect", serving["http_max_body"])
	}
}

// TestCommandLine: --help (and help, -h) lists the subcommands and the
// flags and succeeds; version and --version print the module version;
// hash-key --help prints its usage without reading stdin; a listen address
// that is no address says so rather than tripping the loopback rule.
func TestCommandLine(t *testing.T) {
	ctx := context.Background()
	noEnv := func(string) string { return "" }
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}, {"serve", "--help"}} {
		var out, errOut bytes.Buffer
		if err := dispatch(ctx, nil, args, noEnv, strings.NewReader(""), &out, &errOut); err != nil {
			t.Errorf("%v: %v, want success", args, err)
		}
		all := out.String() + errOut.String()
		for _, want := range []string{"-nats-url", "-http-listen"} {
			if !strings.Contains(all, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, all)
			}
		}
		if args[0] != "serve" {
			for _, want := range []string{"token", "hash-key", "version", "serve"} {
				if !strings.Contains(out.String(), "bridge "+want) {
					t.Errorf("%v: help lacks the %s subcommand:\n%s", args, want, out.String())
				}
			}
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if err := dispatch(ctx, nil, args, noEnv, strings.NewReader(""), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "jetway bridge ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("%v: %q, %v; want the version", args, out.String(), err)
		}
	}
	// A stdin that fails the test if read: --help must not wait on it.
	var hashOut bytes.Buffer
	if err := dispatch(ctx, nil, []string{"hash-key", "--help"}, noEnv, failReader{t}, io.Discard, &hashOut); err != nil || !strings.Contains(hashOut.String(), "stdin") {
		t.Errorf("hash-key --help: %v, %q", err, hashOut.String())
	}
	var out bytes.Buffer
	if err := dispatch(ctx, nil, []string{"hash-key"}, noEnv, strings.NewReader("0123456789abcdef0123\n"), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "sha256:") {
		t.Errorf("hash-key: %q, %v", out.String(), err)
	}
	for _, flagArgs := range [][]string{{"--http-listen", "nonsense"}, {"--grpc-listen", "127.0.0.1:99999"}, {"--http-listen", "0.0.0.0"}, {"--pprof-listen", "x"}} {
		err := dispatch(ctx, nil, append(flagArgs, "--data-dir", t.TempDir()), noEnv, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "bad address") || strings.Contains(err.Error(), "loopback") {
			t.Errorf("%v: %v, want a bad address error", flagArgs, err)
		}
	}
}

// failReader fails the test when read.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("stdin was read")
	return 0, io.EOF
}

// TestRunRefusesLockedDataDir: run on a data dir another bridge serves
// from returns at once with an error naming that bridge; the first goes on.
func TestRunRefusesLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	listen := []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}
	first := startRun(t, listen, map[string]string{"JETWAY_DATA_DIR": dir})
	httpAddr := first.logged(t, "serving", "http")

	var logs jetwaytest.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	err := run(ctx, nil, append(listen, "--data-dir", dir), func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "http "+httpAddr) {
		t.Fatalf("second run: %v, want the data dir refused, naming http %s", err, httpAddr)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("second run took %s to refuse", d)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("first bridge's readyz = %d after the refusal, want 200", resp.StatusCode)
	}
}

// TestRunUnwritableDataDir: a data dir that cannot be created fails run
// at once with the cause.
func TestRunUnwritableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs jetwaytest.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	began := time.Now()
	err := run(ctx, nil, []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", filepath.Join(file, "data")}, func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("run: %v, want the cause (not a directory)", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("run took %s to fail", d)
	}
}
