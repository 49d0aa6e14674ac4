package config_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetway-dev/jetway/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseDefaults(t *testing.T) {
	c, err := config.Parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.GRPCListen != "127.0.0.1:9090" || c.Server.HTTPListen != "127.0.0.1:8080" {
		t.Errorf("listen defaults %q %q, want loopback 9090/8080", c.Server.GRPCListen, c.Server.HTTPListen)
	}
	if c.NATS.URLs != "" || c.NATS.DataDir != "jetway-data" || c.NATS.EmbeddedListen != "" || c.NATS.EmbeddedUser != "jetway" || c.NATS.EmbeddedPasswordFile != "" ||
		c.NATS.ReconnectWait != 2*time.Second {
		t.Errorf("NATS defaults %+v", c.NATS)
	}
	if c.Push.Replicas != 1 || c.Push.MaxInFlight != 256 || c.DeadLetters.Replicas != 1 {
		t.Errorf("push %+v, dead letters %+v: want 1 replica, 256 in flight", c.Push, c.DeadLetters)
	}
	if p, err := config.Parse([]string{"--push-replicas", "3"}, env(nil), io.Discard); err != nil || p.Push.Replicas != 3 {
		t.Errorf("--push-replicas 3: %+v %v", p.Push, err)
	}
	if c.Log.Format != "text" || c.Log.Level != slog.LevelInfo {
		t.Errorf("log defaults %+v", c.Log)
	}
	if !c.Server.FollowLiveHeap || c.Server.PprofListen != "" {
		t.Errorf("server defaults %+v: want follow-live-heap on, pprof off", c.Server)
	}
	if s := c.Server; s.HTTPReadHeaderTimeout != 10*time.Second || s.HTTPReadBodyTimeout != 30*time.Second ||
		s.GRPCConnectionTimeout != 10*time.Second || s.MaxConnections != 4096 {
		t.Errorf("server defaults %+v: want header 10s, body 30s, gRPC handshake 10s, 4096 connections", s)
	}
}

// TestParseConnectionBounds: the read and handshake timeouts and the
// connection cap come from flags and the environment, must be positive
// (the cap may be 0: none), and are logged.
func TestParseConnectionBounds(t *testing.T) {
	c, err := config.Parse([]string{"--http-read-body-timeout", "2s", "--max-connections", "0"},
		env(map[string]string{"JETWAY_HTTP_READ_HEADER_TIMEOUT": "3s", "JETWAY_GRPC_CONNECTION_TIMEOUT": "4s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Server; s.HTTPReadBodyTimeout != 2*time.Second || s.HTTPReadHeaderTimeout != 3*time.Second ||
		s.GRPCConnectionTimeout != 4*time.Second || s.MaxConnections != 0 {
		t.Errorf("parsed %+v", s)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", c))
	for _, want := range []string{`"http_read_header_timeout":3000000000`, `"http_read_body_timeout":2000000000`, `"grpc_connection_timeout":4000000000`, `"max_connections":0`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s: %s", want, buf.String())
		}
	}
	for _, args := range [][]string{
		{"--http-read-header-timeout", "0s"}, {"--http-read-body-timeout", "-1s"},
		{"--grpc-connection-timeout", "0s"}, {"--max-connections", "-1"},
		{"--nats-reconnect-wait", "0s"},
	} {
		if _, err := config.Parse(args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err = %v, want it to name %s", args, err, args[0])
		}
	}
}

func TestParseEnvAndFlagPrecedence(t *testing.T) {
	e := env(map[string]string{
		"JETWAY_NATS_URL":         "nats://env:4222",
		"JETWAY_GRPC_LISTEN":      "0.0.0.0:1",
		"JETWAY_SHUTDOWN_TIMEOUT": "3s",
		"JETWAY_LOG_LEVEL":        "debug",
		"JETWAY_FOLLOW_LIVE_HEAP": "false",
	})
	c, err := config.Parse([]string{"--grpc-listen", "127.0.0.1:2"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URLs != "nats://env:4222" {
		t.Errorf("env not applied: %q", c.NATS.URLs)
	}
	if c.Server.GRPCListen != "127.0.0.1:2" {
		t.Errorf("flag did not win over env: %q", c.Server.GRPCListen)
	}
	if c.Server.ShutdownTimeout != 3*time.Second || c.Log.Level != slog.LevelDebug || c.Server.FollowLiveHeap {
		t.Errorf("env values: %v %v", c.Server.ShutdownTimeout, c.Log.Level)
	}
}

// secretFile writes data to a file of the test's and returns its path.
func secretFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func key(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

// TestParseSecretFiles: ack keys, the NATS password and the NATS token
// come from files named by flags or the environment.
func TestParseSecretFiles(t *testing.T) {
	keys := secretFile(t, "ack-keys", key(1)+"\n"+key(2)+",\n")
	c, err := config.Parse([]string{"--ack-keys-file", keys}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Consume.AckKeyBytes()
	if err != nil || len(got) != 2 || got[0][0] != 1 || got[1][0] != 2 {
		t.Errorf("keys from --ack-keys-file: %v, %v; want keys 1 and 2 in order", got, err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings for secrets in files: %q", c.Warnings)
	}

	pw, tok := secretFile(t, "pw", "hunter2\n"), secretFile(t, "tok", "tok3n")
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want func(config.Config) bool
	}{
		{"password file flag", []string{"--nats-url", "nats://x:4222", "--nats-user", "u", "--nats-password-file", pw}, nil,
			func(c config.Config) bool { return c.NATS.Credentials.PasswordFile == pw }},
		{"token file env", []string{"--nats-url", "nats://x:4222"}, map[string]string{"JETWAY_NATS_TOKEN_FILE": tok},
			func(c config.Config) bool { return c.NATS.Credentials.TokenFile == tok }},
		{"ack keys file env", nil, map[string]string{"JETWAY_ACK_KEYS_FILE": keys},
			func(c config.Config) bool { return c.Consume.AckKeysFile == keys }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Errorf("not loaded: %+v %+v", c.NATS.Credentials, c.Consume)
			}
			if _, err := c.NATS.Credentials.Options(); err != nil {
				t.Errorf("credentials: %v", err)
			}
		})
	}
}

// TestParseWarnsAboutInlineSecrets: a secret flag on the command line
// gives a warning naming the flag and its file form, never the value; the
// same secret from the environment gives none.
func TestParseWarnsAboutInlineSecrets(t *testing.T) {
	secrets := []string{key(7), "hunter2", "tok3n", "s3cret"}
	c, err := config.Parse([]string{
		"--ack-keys", key(7),
		"--nats-url", "nats://alice:s3cret@10.0.0.1:4222",
		"--nats-user", "bob", "--nats-password", "hunter2",
	}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"--ack-keys on the command line", "--ack-keys-file", "--nats-password on the command line", "--nats-password-file", "--nats-url with user information"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("warnings contain the secret %q:\n%s", s, all)
		}
	}

	c, err = config.Parse([]string{"--nats-url", "nats://10.0.0.1:4222"}, env(map[string]string{
		"JETWAY_ACK_KEYS": key(7), "JETWAY_NATS_TOKEN": "tok3n",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings for secrets from the environment: %q", c.Warnings)
	}
}

func TestParseErrors(t *testing.T) {
	pw, keys := secretFile(t, "pw", "pw"), secretFile(t, "keys", key(1))
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"bad env duration", nil, map[string]string{"JETWAY_SHUTDOWN_TIMEOUT": "soon"}, "JETWAY_SHUTDOWN_TIMEOUT"},
		{"bad log format", []string{"--log-format", "xml"}, nil, "log-format"},
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"stray argument", []string{"serve"}, nil, "unexpected argument"},
		{"window", []string{"--publish-window", "0"}, nil, "publish-window"},
		{"two credentials", []string{"--nats-token", "t", "--nats-user", "u", "--nats-password", "p"}, nil, "only one"},
		{"user without password", []string{"--nats-user", "u"}, nil, "together"},
		{"cert without key", []string{"--nats-tls-cert", "c.pem"}, nil, "together"},
		{"bad seed", nil, map[string]string{"JETWAY_NATS_NKEY": "SUnotaseed"}, "not a valid seed"},
		{"ack keys file and inline", []string{"--ack-keys-file", keys, "--ack-keys", key(2)}, nil, "set only one"},
		{"ack keys file and env", []string{"--ack-keys-file", keys}, map[string]string{"JETWAY_ACK_KEYS": key(2)}, "set only one"},
		{"ack keys file missing", []string{"--ack-keys-file", filepath.Join(t.TempDir(), "none")}, nil, "--ack-keys-file"},
		{"ack keys file empty", []string{"--ack-keys-file", secretFile(t, "empty", "\n")}, nil, "empty"},
		{"ack keys file short key", []string{"--ack-keys-file", secretFile(t, "short", "c2hvcnQ=")}, nil, "--ack-keys-file: key 1 is 5 bytes"},
		{"password file and inline", []string{"--nats-url", "nats://x:1", "--nats-user", "u", "--nats-password", "p", "--nats-password-file", pw}, nil, "either a password file or a password"},
		{"token file and inline", []string{"--nats-url", "nats://x:1", "--nats-token", "t", "--nats-token-file", pw}, nil, "either a token file or a token"},
		{"NATS credentials with the embedded server", []string{"--nats-user", "u", "--nats-password-file", pw}, nil, "are for --nats-url"},
		{"embedded port without a user", []string{"--embedded-nats-listen", "0.0.0.0:4222", "--embedded-nats-user", ""}, nil, "never anonymous"},
		{"push replicas 0", []string{"--push-replicas", "0"}, nil, "--push-replicas 0: want 1 to 5"},
		{"push replicas 6", nil, map[string]string{"JETWAY_PUSH_REPLICAS": "6"}, "--push-replicas 6: want 1 to 5"},
		{"dead-letters replicas 6", []string{"--dead-letters-replicas", "6"}, nil, "--dead-letters-replicas 6: want 1 to 5"},
		{"token file missing", []string{"--nats-url", "nats://x:1", "--nats-token-file", filepath.Join(t.TempDir(), "none")}, nil, "token file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	c, err := config.Parse([]string{
		"--nats-url", "nats://alice:s3cret@10.0.0.1:4222,nats://tok3n@10.0.0.2:4222",
		"--nats-user", "alice", "--nats-password", "hunter2",
	}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", c))
	out := buf.String()
	for _, secret := range []string{"s3cret", "tok3n", "hunter2"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, `"user":"alice"`) || !strings.Contains(out, "10.0.0.1:4222") {
		t.Errorf("log lost non-secret fields: %s", out)
	}
	// External NATS: no embedded server's settings.
	for _, k := range []string{"data_dir", "embedded_listen"} {
		if strings.Contains(out, `"`+k+`"`) {
			t.Errorf("external mode logs %s: %s", k, out)
		}
	}
}

// TestParseHelpListsFileForms: --help lists the file forms of secrets and
// the new listeners' flags, and prints every default without a panic.
func TestParseHelpListsFileForms(t *testing.T) {
	var out bytes.Buffer
	if _, err := config.Parse([]string{"--help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	for _, want := range []string{"-ack-keys-file string", "-nats-password-file string", "-nats-token-file string",
		"-embedded-nats-user string", "-embedded-nats-password-file string", "-pprof-listen string", "-ack-keys string"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(help, "panic") || strings.Contains(help, "-pprof\n") {
		t.Errorf("help:\n%s", help)
	}
}

// TestAllowedOrigins: --allowed-origins (and JETWAY_ALLOWED_ORIGINS) takes
// comma-separated origins exactly as browsers send them, refuses at start
// anything that could never match an Origin header, defaults to none, and
// is logged.
func TestAllowedOrigins(t *testing.T) {
	c, err := config.Parse(nil, env(nil), io.Discard)
	if err != nil || len(c.Browser.AllowedOrigins) != 0 {
		t.Fatalf("default: %v, %v; want none", c.Browser.AllowedOrigins, err)
	}
	c, err = config.Parse([]string{"--allowed-origins", "https://app.example, http://127.0.0.1:3000,http://[::1]:8081"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example", "http://127.0.0.1:3000", "http://[::1]:8081"}; !slices.Equal(c.Browser.AllowedOrigins, want) {
		t.Errorf("flag: %q, want %q", c.Browser.AllowedOrigins, want)
	}
	c, err = config.Parse([]string{"--allowed-origins", "https://flag.example"}, env(map[string]string{"JETWAY_ALLOWED_ORIGINS": "https://env.example,https://env2.example"}), io.Discard)
	if err != nil || !slices.Equal(c.Browser.AllowedOrigins, []string{"https://flag.example"}) {
		t.Errorf("flag over env: %q, %v; want the flag's list only", c.Browser.AllowedOrigins, err)
	}
	c, err = config.Parse(nil, env(map[string]string{"JETWAY_ALLOWED_ORIGINS": "https://env.example"}), io.Discard)
	if err != nil || !slices.Equal(c.Browser.AllowedOrigins, []string{"https://env.example"}) {
		t.Errorf("env: %q, %v", c.Browser.AllowedOrigins, err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", c))
	if !strings.Contains(buf.String(), `"allowed_origins":"https://env.example"`) {
		t.Errorf("log lacks the allowed origins: %s", buf.String())
	}

	for _, bad := range []string{
		"app.example", "*", "null", "https://*.example", "ftp://app.example", "HTTPS://app.example",
		"https://App.Example", "https://app.example/", "https://app.example/path", "https://app.example?x",
		"https://app.example#f", "https://user@app.example", "https://app.example:", "https://app.example:0",
		"https://app.example:65536", "https://app.example:08080", "https://app.example:443", "http://app.example:80",
		"https://a.example,,https://b.example", "https://a.example,", "https://",
	} {
		_, err := config.Parse([]string{"--allowed-origins", bad}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "allowed-origins") {
			t.Errorf("--allowed-origins %q: %v, want an error naming the flag", bad, err)
		}
		_, err = config.Parse(nil, env(map[string]string{"JETWAY_ALLOWED_ORIGINS": bad}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "JETWAY_ALLOWED_ORIGINS") {
			t.Errorf("JETWAY_ALLOWED_ORIGINS=%q: %v, want an error naming the variable", bad, err)
		}
	}
}

// TestParseEmbeddedStoreSettings: the embedded server's fsync policy
// (a duration or always), store limits (bytes, with or without a suffix)
// and domain come from flags and the environment, default to
// nats-server's own, and are logged; --nats-js-domain is for --nats-url.
func TestParseEmbeddedStoreSettings(t *testing.T) {
	c, err := config.Parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.NATS; n.EmbeddedSync != (config.SyncPolicy{}) || n.EmbeddedMaxMemoryStore != 0 || n.EmbeddedMaxFileStore != 0 || n.EmbeddedJSDomain != "" || n.JSDomain != "" {
		t.Errorf("defaults %+v: want nats-server's (zero values)", n)
	}
	c, err = config.Parse([]string{"--embedded-sync-interval", "always", "--embedded-max-memory-store", "1GiB", "--embedded-js-domain", "edge"},
		env(map[string]string{"JETWAY_EMBEDDED_MAX_FILE_STORE": "1048576", "JETWAY_EMBEDDED_SYNC_INTERVAL": "1s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.NATS; n.EmbeddedSync != (config.SyncPolicy{Always: true}) || n.EmbeddedMaxMemoryStore != 1<<30 || n.EmbeddedMaxFileStore != 1<<20 || n.EmbeddedJSDomain != "edge" {
		t.Errorf("got %+v: want sync always (the flag over the environment), 1GiB memory, 1MiB file, domain edge", n)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", c))
	for _, want := range []string{`"sync_interval":"always"`, `"max_memory_store":"1073741824"`, `"max_file_store":"1048576"`, `"js_domain":"edge"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s: %s", want, buf.String())
		}
	}
	c, err = config.Parse([]string{"--embedded-sync-interval", "250ms", "--embedded-max-file-store", "2GB"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.NATS; n.EmbeddedSync != (config.SyncPolicy{Interval: 250 * time.Millisecond}) || n.EmbeddedMaxFileStore != 2e9 {
		t.Errorf("got %+v: want sync every 250ms, 2GB file store", n)
	}
	c, err = config.Parse([]string{"--nats-url", "nats://x:1"}, env(map[string]string{"JETWAY_NATS_JS_DOMAIN": "hub"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.JSDomain != "hub" {
		t.Errorf("JSDomain %q, want hub", c.NATS.JSDomain)
	}
	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", c))
	if out := buf.String(); !strings.Contains(out, `"js_domain":"hub"`) || strings.Contains(out, "sync_interval") || strings.Contains(out, "max_file_store") {
		t.Errorf("external mode log: want the domain and no embedded store settings: %s", out)
	}

	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"sync interval not a duration", []string{"--embedded-sync-interval", "often"}, "want a duration"},
		{"sync interval negative", []string{"--embedded-sync-interval", "-1s"}, "negative"},
		{"store limit not a size", []string{"--embedded-max-file-store", "lots"}, "number of bytes"},
		{"store limit negative", []string{"--embedded-max-memory-store", "-1"}, "negative"},
		{"store limit overflows", []string{"--embedded-max-file-store", "9000000000TiB"}, "too large"},
		{"sync with --nats-url", []string{"--nats-url", "nats://x:1", "--embedded-sync-interval", "always"}, "--embedded-sync-interval: for the embedded server"},
		{"limits with --nats-url", []string{"--nats-url", "nats://x:1", "--embedded-max-memory-store", "1", "--embedded-max-file-store", "1"}, "--embedded-max-memory-store, --embedded-max-file-store: for the embedded server"},
		{"embedded domain with --nats-url", []string{"--nats-url", "nats://x:1", "--embedded-js-domain", "a"}, "--embedded-js-domain: for the embedded server"},
		{"embedded port with --nats-url", []string{"--nats-url", "nats://x:1", "--embedded-nats-listen", "127.0.0.1:4222"}, "--embedded-nats-listen: for the embedded server"},
		{"NATS domain with the embedded server", []string{"--nats-js-domain", "hub"}, "--nats-js-domain is for --nats-url"},
		{"domain with a dot", []string{"--nats-url", "nats://x:1", "--nats-js-domain", "a.b"}, "one subject token"},
		{"embedded domain with a wildcard", []string{"--embedded-js-domain", "*"}, "one subject token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse(tt.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
