package config_test

import (
	"bytes"
	"io"
	"log/slog"
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
	if c.NATS.URLs != "" || c.NATS.DataDir != "jetway-data" || c.NATS.EmbeddedListen != "" {
		t.Errorf("NATS defaults %+v", c.NATS)
	}
	if c.Log.Format != "text" || c.Log.Level != slog.LevelInfo {
		t.Errorf("log defaults %+v", c.Log)
	}
	if !c.Server.FollowLiveHeap || c.Server.Pprof {
		t.Errorf("server defaults %+v: want follow-live-heap on, pprof off", c.Server)
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

func TestParseErrors(t *testing.T) {
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
