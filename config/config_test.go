package config_test

import (
	"bytes"
	"io"
	"log/slog"
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
