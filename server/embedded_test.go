package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/embedded"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
	"github.com/jetway-dev/jetway/server"
)

// startLogged runs server.Start with loopback listeners, args and a
// debug-level JSON log the test reads. A started server is stopped (and
// waited for, within 30 s) at the end of the test.
func startLogged(t *testing.T, args ...string) (*server.Server, *jetwaytest.LogBuffer, error) {
	t.Helper()
	cfg, err := config.Parse(append([]string{
		"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--shutdown-timeout", "5s",
	}, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		return nil, nil, err
	}
	logs := &jetwaytest.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		cancel()
		return nil, logs, err
	}
	t.Cleanup(func() {
		cancel()
		done := make(chan error, 1)
		go func() { done <- srv.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not stop within 30s")
		}
	})
	return srv, logs, nil
}

// natsDial connects to url with creds, within 5 s, closed at the end of
// the test.
func natsDial(t *testing.T, url string, creds auth.NATSCredentials) (*nats.Conn, error) {
	t.Helper()
	opts, err := creds.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// TestEmbeddedPortRequiresCredentials: the embedded server's port refuses
// anonymous clients and wrong passwords; the generated password, kept in
// <data-dir>/embedded-nats-password (mode 0600), reaches JetStream; and
// the bridge serves Publish and Fetch through its in-process connection,
// which authenticates too.
func TestEmbeddedPortRequiresCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.DataDir = dir })
	ctx := jetwaytest.Context(t, 20*time.Second)
	url, creds := b.Server.NATSURL(), b.Server.NATSCredentials()
	if url == "" || creds.User != "jetway" || creds.Password == "" {
		t.Fatalf("NATSURL %q, NATSCredentials user %q, password set %t", url, creds.User, creds.Password != "")
	}

	if _, err := natsDial(t, url, auth.NATSCredentials{}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous: %v, want authorization violation", err)
	}
	if _, err := natsDial(t, url, auth.NATSCredentials{User: "jetway", Password: "wrong"}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong password: %v, want authorization violation", err)
	}

	path := filepath.Join(dir, embedded.PasswordFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("generated password file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", path, fi.Mode().Perm())
	}
	nc, err := natsDial(t, url, auth.NATSCredentials{User: "jetway", PasswordFile: path})
	if err != nil {
		t.Fatalf("with the generated password file: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EMB", Subjects: []string{"emb.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("JetStream with the generated password: %v", err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "EMB", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "emb.x", Payload: &jetwayv1.PublishRequest_Text{Text: "hi"}}); err != nil {
		t.Fatalf("Publish through the bridge: %v", err)
	}
	resp, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "EMB", Consumer: "C", Batch: 1, Wait: durationpb.New(2 * time.Second)})
	if err != nil || len(resp.GetMessages()) != 1 || string(resp.GetMessages()[0].GetData()) != "hi" {
		t.Fatalf("Fetch through the bridge: %v, %v; want the message published", resp, err)
	}
}

// TestEmbeddedPortConfiguredPassword: --embedded-nats-user and
// --embedded-nats-password-file set the port's credentials (nothing is
// generated); a missing password file stops the start.
func TestEmbeddedPortConfiguredPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("configured-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _, err := startLogged(t, "--data-dir", dir, "--embedded-nats-listen", "127.0.0.1:-1",
		"--embedded-nats-user", "ops", "--embedded-nats-password-file", pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsDial(t, srv.NATSURL(), auth.NATSCredentials{User: "ops", PasswordFile: pwFile}); err != nil {
		t.Errorf("configured credentials: %v", err)
	}
	if _, err := natsDial(t, srv.NATSURL(), auth.NATSCredentials{}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous: %v, want authorization violation", err)
	}
	if _, err := natsDial(t, srv.NATSURL(), auth.NATSCredentials{User: "jetway", PasswordFile: pwFile}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("the default user: %v, want authorization violation", err)
	}
	if _, err := os.Stat(filepath.Join(dir, embedded.PasswordFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a password was generated besides the configured one: %v", err)
	}

	_, _, err = startLogged(t, "--data-dir", t.TempDir(), "--embedded-nats-listen", "127.0.0.1:-1",
		"--embedded-nats-password-file", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "--embedded-nats-password-file") {
		t.Errorf("missing password file: %v, want a start error naming the flag", err)
	}
}

// TestEmbeddedPortAllInterfaces: a port on every interface is no more
// anonymous than a loopback one; a restart on the same data directory
// keeps the generated password.
func TestEmbeddedPortAllInterfaces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, _, err := startLogged(t, "--data-dir", dir, "--embedded-nats-listen", "0.0.0.0:-1")
	if err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(srv.NATSURL(), "0.0.0.0", "127.0.0.1", 1)
	if _, err := natsDial(t, url, auth.NATSCredentials{}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous on 0.0.0.0: %v, want authorization violation", err)
	}
	first := srv.NATSCredentials().Password
	if _, err := natsDial(t, url, srv.NATSCredentials()); err != nil {
		t.Errorf("generated credentials on 0.0.0.0: %v", err)
	}

	// Another bridge on the same data directory would share the store;
	// the password file alone is what a restart reads.
	again, _, err := startLogged(t, "--data-dir", t.TempDir(), "--embedded-nats-listen", "127.0.0.1:-1",
		"--embedded-nats-password-file", filepath.Join(dir, embedded.PasswordFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsDial(t, again.NATSURL(), auth.NATSCredentials{User: "jetway", Password: first}); err != nil {
		t.Errorf("the kept password on a restart: %v", err)
	}
}

// TestEmbeddedStartLogHasNoSecret: the start-up log names the password
// file, never the password, at debug level too (nats-server's own logs
// included).
func TestEmbeddedStartLogHasNoSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, logs, err := startLogged(t, "--data-dir", dir, "--embedded-nats-listen", "127.0.0.1:-1")
	if err != nil {
		t.Fatal(err)
	}
	// A refused and an accepted client log their attempts.
	_, _ = natsDial(t, srv.NATSURL(), auth.NATSCredentials{User: "jetway", Password: "wrong"})
	if _, err := natsDial(t, srv.NATSURL(), srv.NATSCredentials()); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if pw := srv.NATSCredentials().Password; strings.Contains(out, pw) {
		t.Errorf("the log holds the generated password:\n%s", out)
	}
	if !strings.Contains(out, filepath.Join(dir, embedded.PasswordFileName)) {
		t.Errorf("the log does not name the password file:\n%s", out)
	}
}

// TestEmbeddedNoPort: with no port (the default) nothing is generated,
// there is no URL or credentials, and the bridge works in process.
func TestEmbeddedNoPort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, _, err := startLogged(t, "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if srv.NATSURL() != "" || srv.NATSCredentials() != (auth.NATSCredentials{}) {
		t.Errorf("NATSURL %q, credentials set %t; want none without a port", srv.NATSURL(), srv.NATSCredentials() != (auth.NATSCredentials{}))
	}
	if _, err := os.Stat(filepath.Join(dir, embedded.PasswordFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("password file without a port: %v", err)
	}
}

// TestEmbeddedStoreFlags: --embedded-sync-interval always, the store
// limits and --embedded-js-domain reach the embedded server: the start-up
// line says what is in effect, a stream reserving more than the file
// store's limit is refused through the bridge (RESOURCE_EXHAUSTED), one
// within it takes a publish, and a client on the port sees the domain.
func TestEmbeddedStoreFlags(t *testing.T) {
	t.Parallel()
	srv, logs, err := startLogged(t, "--data-dir", t.TempDir(), "--embedded-nats-listen", "127.0.0.1:-1",
		"--embedded-sync-interval", "always", "--embedded-max-file-store", "1MiB", "--embedded-max-memory-store", "2MiB", "--embedded-js-domain", "edge",
		// Counted below: no dead-letter advisory stream.
		"--dead-letters=false")
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{`"fsync":"always (before each acknowledgement)"`, `"max_file_store":1048576`, `"max_memory_store":2097152`, `"js_domain":"edge"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the start-up log lacks %s:\n%s", want, out)
		}
	}
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin, msgs := jetwayv1.NewAdminServiceClient(conn), jetwayv1.NewMessageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "BIG", Subjects: []string{"big"}, MaxBytes: 2 << 20}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a stream of 2 MiB on a 1 MiB file store: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "SMALL", Subjects: []string{"small"}, MaxBytes: 512 << 10}}); err != nil {
		t.Fatalf("a stream of 512 KiB: %v", err)
	}
	if _, err := msgs.Publish(ctx, &jetwayv1.PublishRequest{Subject: "small", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}); err != nil {
		t.Errorf("publish with sync always: %v", err)
	}
	nc, err := natsDial(t, srv.NATSURL(), srv.NATSCredentials())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.NewWithDomain(nc, "edge")
	if err != nil {
		t.Fatal(err)
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil || ai.Domain != "edge" || ai.Streams != 1 {
		t.Errorf("account info through $JS.edge.API: %+v, %v; want domain edge, 1 stream", ai, err)
	}
}
