package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/embedded"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// start runs an embedded server for the test.
func start(t *testing.T, cfg embedded.Config) *embedded.Server {
	t.Helper()
	cfg.DataDir = t.TempDir()
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// dial connects with opts within 5 seconds and closes at the end of the
// test.
func dial(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// TestClientPortRequiresCredentials: on the client port an anonymous
// client and a wrong password are refused (Authorization Violation), the
// right ones reach JetStream's API; the in-process connection needs them
// too.
func TestClientPortRequiresCredentials(t *testing.T) {
	t.Parallel()
	s := start(t, embedded.Config{Listen: "127.0.0.1:-1", User: "jetway", Password: "right-password"})
	if _, err := dial(t, s.ClientURL()); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous: %v, want authorization violation", err)
	}
	if _, err := dial(t, s.ClientURL(), nats.UserInfo("jetway", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong password: %v, want authorization violation", err)
	}
	if _, err := dial(t, s.ClientURL(), nats.UserInfo("other", "right-password")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong user: %v, want authorization violation", err)
	}
	nc, err := dial(t, s.ClientURL(), nats.UserInfo("jetway", "right-password"))
	if err != nil {
		t.Fatalf("right credentials: %v", err)
	}
	if _, err := nc.Request("$JS.API.STREAM.NAMES", nil, 5*time.Second); err != nil {
		t.Errorf("JetStream API with the right credentials: %v", err)
	}

	// The first option is the in-process connection alone: without the
	// credentials it is refused as a TCP client is. (nats.go over the
	// in-process pipe sees the refusal as a closed pipe, and only after
	// nats-server's 10 s write deadline: hence t.Parallel.)
	if _, err := dial(t, "", s.ConnectOptions()[0]); err == nil {
		t.Error("in process without credentials: connected")
	}
	nc, err = dial(t, "", s.ConnectOptions()...)
	if err != nil {
		t.Fatalf("in process with ConnectOptions: %v", err)
	}
	if _, err := nc.Request("$JS.API.STREAM.NAMES", nil, 5*time.Second); err != nil {
		t.Errorf("JetStream API in process: %v", err)
	}
}

// TestClientPortRawAnonymousConnect speaks the protocol as an attacker
// would: CONNECT {} and PING get -ERR 'Authorization Violation', never
// PONG.
func TestClientPortRawAnonymousConnect(t *testing.T) {
	s := start(t, embedded.Config{Listen: "127.0.0.1:-1", User: "jetway", Password: "pw"})
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"auth_required":true`) {
		t.Fatalf("first line %q, %v; want INFO with auth_required", info, err)
	}
	if _, err := conn.Write([]byte("CONNECT {}\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(line) != "-ERR 'Authorization Violation'" {
		t.Errorf("reply to an anonymous CONNECT: %q, want -ERR 'Authorization Violation'", line)
	}
}

// TestClientPortWithoutCredentialsRefused: a port, loopback or not, never
// opens without credentials.
func TestClientPortWithoutCredentialsRefused(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:-1", "0.0.0.0:-1"} {
		for _, c := range []embedded.Config{{}, {User: "jetway"}, {Password: "pw"}} {
			c.Listen, c.DataDir = listen, t.TempDir()
			s, err := embedded.Start(c)
			if err == nil {
				s.Shutdown()
			}
			if !errors.Is(err, embedded.ErrNoCredentials) {
				t.Errorf("%s with user %q and a password %t: %v, want ErrNoCredentials", listen, c.User, c.Password != "", err)
			}
		}
	}
}

// TestNoPortInProcessOnly: with no port (the default) the bridge's
// in-process connection needs no credentials, as before.
func TestNoPortInProcessOnly(t *testing.T) {
	s := start(t, embedded.Config{})
	nc, err := dial(t, "", s.ConnectOptions()...)
	if err != nil {
		t.Fatalf("in process: %v", err)
	}
	if _, err := nc.Request("$JS.API.STREAM.NAMES", nil, 5*time.Second); err != nil {
		t.Errorf("JetStream API in process: %v", err)
	}
}

// TestLoadOrGeneratePassword: the first call writes a random password to
// a new file of mode 0600, later calls read it back; a file others may
// read, or an empty one, is refused.
func TestLoadOrGeneratePassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", embedded.PasswordFileName)
	pw, created, err := embedded.LoadOrGeneratePassword(path)
	if err != nil || !created || len(pw) < 40 {
		t.Fatalf("first call: %d-character password, created %t, %v; want a new one of 43", len(pw), created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	again, created, err := embedded.LoadOrGeneratePassword(path)
	if err != nil || created || again != pw {
		t.Errorf("second call: same password %t, created %t, %v; want the kept one", again == pw, created, err)
	}
	other := filepath.Join(t.TempDir(), "other")
	pw2, _, err := embedded.LoadOrGeneratePassword(other)
	if err != nil || pw2 == pw {
		t.Errorf("another file: same password %t, %v; want a new random one", pw2 == pw, err)
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := embedded.LoadOrGeneratePassword(path); err == nil || !strings.Contains(err.Error(), "0640") {
		t.Errorf("group-readable file: %v, want it refused", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := embedded.LoadOrGeneratePassword(path); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v, want it refused", err)
	}
	// A 0600 file of another user (planted in a directory others may
	// write) is not taken. Changing a file's owner needs root.
	if os.Geteuid() == 0 {
		if err := os.WriteFile(path, []byte("planted"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, _, err := embedded.LoadOrGeneratePassword(path); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("another user's file: %v, want it refused", err)
		}
	}
}

// TestRefusedLoginsLogBounded: a client sending 100 logins with a 3000
// byte user name gets the server's refusal lines clipped and rate-limited:
// what it sends does not reach the log whole, nor one line per attempt.
func TestRefusedLoginsLogBounded(t *testing.T) {
	var logs jetwaytest.LogBuffer
	s := start(t, embedded.Config{Listen: "127.0.0.1:-1", User: "jetway", Password: "right-password",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	user := strings.Repeat("u", 3000)
	for range 100 {
		c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil { // INFO
			t.Fatal(err)
		}
		fmt.Fprintf(c, "CONNECT {\"user\":%q,\"pass\":\"x\",\"verbose\":false}\r\nPING\r\n", user)
		_, _ = io.ReadAll(c) // -ERR 'Authorization Violation', then closed
		_ = c.Close()
	}
	out := logs.String()
	lines := strings.Count(out, "\n")
	if lines > 40 {
		t.Errorf("%d log lines for 100 refused logins, want them rate-limited", lines)
	}
	if strings.Contains(out, strings.Repeat("u", 600)) {
		t.Errorf("the client's 3000-byte user name reached the log unclipped")
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 1200 {
			t.Errorf("log line of %d bytes: %.200s…", len(l), l)
			break
		}
	}
}

// TestStoreSettings: sync always and the store limits reach nats-server:
// its JetStream configuration shows them, and a stream reserving more
// than a store's limit is refused while one within it is created.
func TestStoreSettings(t *testing.T) {
	t.Parallel()
	const memLimit, fileLimit = 4 << 20, 8 << 20
	s := start(t, embedded.Config{SyncAlways: true, MaxMemoryStore: memLimit, MaxFileStore: fileLimit, Domain: "edge"})
	c := s.JetStreamConfig()
	if !c.SyncAlways || c.MaxMemory != memLimit || c.MaxStore != fileLimit || c.Domain != "edge" {
		t.Errorf("JetStream config %+v: want sync always, memory %d, file %d, domain edge", c, memLimit, fileLimit)
	}
	nc, err := dial(t, "", s.ConnectOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name     string
		storage  jetstream.StorageType
		maxBytes int64
		refused  jetstream.ErrorCode // 0: created
	}{
		// 10047 insufficient storage resources, 10028 insufficient memory.
		{"FILE_OVER", jetstream.FileStorage, fileLimit + 1, 10047},
		{"MEM_OVER", jetstream.MemoryStorage, memLimit + 1, 10028},
		{"FILE_WITHIN", jetstream.FileStorage, fileLimit / 2, 0},
		{"MEM_WITHIN", jetstream.MemoryStorage, memLimit / 2, 0},
	} {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tt.name, Subjects: []string{tt.name}, Storage: tt.storage, MaxBytes: tt.maxBytes})
		var apiErr *jetstream.APIError
		switch {
		case tt.refused != 0 && !(errors.As(err, &apiErr) && apiErr.ErrorCode == tt.refused):
			t.Errorf("%s, max bytes %d: %v, want error code %d", tt.name, tt.maxBytes, err, tt.refused)
		case tt.refused == 0 && err != nil:
			t.Errorf("%s, max bytes %d: %v", tt.name, tt.maxBytes, err)
		}
	}
	// With sync always, a stored message is acknowledged as usual.
	if _, err := js.Publish(ctx, "FILE_WITHIN", []byte("x")); err != nil {
		t.Errorf("publish with sync always: %v", err)
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ai.Domain != "edge" || ai.Streams != 2 {
		t.Errorf("account info %+v: want domain edge, 2 streams", ai)
	}

	s = start(t, embedded.Config{SyncInterval: 250 * time.Millisecond})
	if c := s.JetStreamConfig(); c.SyncAlways || c.SyncInterval != 250*time.Millisecond || c.MaxStore <= 0 || c.MaxMemory <= 0 {
		t.Errorf("JetStream config %+v: want a sync every 250ms, nats-server's default limits", c)
	}
	s = start(t, embedded.Config{})
	if c := s.JetStreamConfig(); c.SyncAlways || c.SyncInterval != 2*time.Minute {
		t.Errorf("JetStream config %+v: want nats-server's default sync, every 2m", c)
	}
	if _, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), SyncAlways: true, SyncInterval: time.Second}); err == nil {
		t.Error("sync always with an interval: started")
	}
}

// TestFileStoreFull: past --embedded-max-file-store a publish to a stream
// with no limit of its own is refused (10023 insufficient resources), not
// stored and then dropped: what the stream holds stays.
func TestFileStoreFull(t *testing.T) {
	t.Parallel()
	s := start(t, embedded.Config{MaxFileStore: 64 << 10})
	nc, err := dial(t, "", s.ConnectOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 4096)
	stored := uint64(0)
	for ; stored < 32; stored++ { // 128 KiB: twice the cap
		if _, err = js.Publish(ctx, "s", payload); err != nil {
			break
		}
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10023 {
		t.Fatalf("publish %d past a 64 KiB file store: %v, want 10023 insufficient resources", stored+1, err)
	}
	st, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State; got.Msgs != stored || got.FirstSeq != 1 {
		t.Errorf("stream state %+v: want the %d acknowledged messages from sequence 1", got, stored)
	}
}
