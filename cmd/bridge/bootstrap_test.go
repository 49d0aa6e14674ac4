package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestBootstrapCommand: `bridge bootstrap --dry-run` against a real
// nats-server (reached through JETWAY_NATS_URL, as the bridge would be,
// and its JetStream domain) prints the plan and creates nothing; without
// --dry-run it applies it; an edited file's dry run prints the field's
// diff (also as JSON); a failing entry is a non-zero exit; a wrong
// domain reaches no JetStream.
func TestBootstrapCommand(t *testing.T) {
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir()})
	ctx := jetwaytest.Context(t, time.Minute)
	env := map[string]string{"JETWAY_NATS_URL": ns.ClientURL()}
	getenv := func(k string) string { return env[k] }
	dir := t.TempDir()
	file := filepath.Join(dir, "bootstrap.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bootstrap := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := dispatch(ctx, nil, append([]string{"bootstrap", "--nats-js-domain", "hub"}, args...), getenv, strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	write("streams: [{name: ORDERS, subjects: [orders.>], max_age: 3600s}]\nconsumers: [{stream: ORDERS, config: {name: billing}}]\n")

	out, err := bootstrap("--dry-run", file)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	want := "stream \"ORDERS\": would create\nconsumer \"billing\" on stream \"ORDERS\": would create\n2 would create, 0 would update, 0 unchanged, 0 would fail\n"
	if out != want {
		t.Errorf("dry run printed\n%s\nwant\n%s", out, want)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, "ORDERS"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after the dry run: %v, want no stream", err)
	}

	if out, err := bootstrap(file); err != nil || !strings.Contains(out, "2 created") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := js.Consumer(ctx, "ORDERS", "billing"); err != nil {
		t.Fatal(err)
	}

	write("streams: [{name: ORDERS, max_age: 7200s}]\n")
	out, err = bootstrap("--dry-run", file)
	if err != nil || !strings.Contains(out, "stream \"ORDERS\": would update\n    max_age: \"3600s\" -> \"7200s\"\n") {
		t.Errorf("dry run of an edit: %v\n%s", err, out)
	}
	out, err = bootstrap("--dry-run", "--json", file)
	var report struct {
		DryRun  bool `json:"dry_run"`
		Results []struct {
			Action  string `json:"action"`
			Changes []struct{ Field, From, To string }
		}
	}
	if err != nil || json.Unmarshal([]byte(out), &report) != nil || !report.DryRun || len(report.Results) != 1 ||
		report.Results[0].Action != "updated" || report.Results[0].Changes[0].To != `"7200s"` {
		t.Errorf("JSON dry run: %v\n%s", err, out)
	}

	write("streams: [{name: ORDERS, storage: STORAGE_TYPE_MEMORY}]\n")
	out, err = bootstrap(file)
	if !errors.Is(err, errBootstrapFailed) || !strings.Contains(out, "failed: cannot change on update: storage") {
		t.Errorf("a conflict: %v\n%s", err, out)
	}

	write("streams: [{name: ORDERS}]\n")
	var out2 bytes.Buffer
	err = dispatch(ctx, nil, []string{"bootstrap", "--nats-js-domain", "elsewhere", "--nats-request-timeout", "300ms", file}, getenv, strings.NewReader(""), &out2, io.Discard)
	if !errors.Is(err, errBootstrapFailed) || !strings.Contains(out2.String(), "unavailable") {
		t.Errorf("a wrong domain: %v\n%s", err, out2.String())
	}
}

// TestBootstrapCommandUsage: no file, no NATS URL, an invalid file:
// errors that say so, before any connection.
func TestBootstrapCommandUsage(t *testing.T) {
	ctx := jetwaytest.Context(t, 30*time.Second)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("streams: [{name: A, max_agee: 1s}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"JETWAY_NATS_URL": "nats://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"bootstrap"}, env, "want one FILE"},
		{[]string{"bootstrap", bad}, map[string]string{}, "--nats-url"},
		{[]string{"bootstrap", bad}, env, `streams[0]: unknown field "max_agee"`},
	} {
		err := dispatch(ctx, nil, tc.args, func(k string) string { return tc.env[k] }, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	var help bytes.Buffer
	if err := dispatch(ctx, nil, []string{"bootstrap", "--help"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, &help); err != nil ||
		!strings.Contains(help.String(), "-dry-run") || !strings.Contains(help.String(), "-nats-creds") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}
