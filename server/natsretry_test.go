package server_test

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// heldCredential is a kind of credential file with two values, and
// nats-servers accepting one of them only: the bridge is started with
// the one its server refuses, which the test then fixes.
type heldCredential struct {
	name   string
	values [2]string // the file's contents
	// server is the options of a nats-server (JetStream on) that accepts
	// values[i] only.
	server func(t *testing.T, i int) *natsserver.Options
	// use points the bridge at the file.
	use func(c *config.Config, file string)
}

func heldCredentials(t *testing.T) []heldCredential {
	t.Helper()
	var seeds [2]string
	var pubs [2]string
	for i := range seeds {
		kp, _ := nkeys.CreateUser()
		pubs[i], _ = kp.PublicKey()
		seed, _ := kp.Seed()
		seeds[i] = string(seed)
	}
	passwords := [2]string{"first-password-0123456789", "second-password-9876543210"}
	return []heldCredential{
		{
			name: "nkey seed file", values: seeds,
			server: func(t *testing.T, i int) *natsserver.Options {
				return &natsserver.Options{JetStream: true, StoreDir: t.TempDir(), Nkeys: []*natsserver.NkeyUser{{Nkey: pubs[i]}}}
			},
			use: func(c *config.Config, file string) { c.NATS.Credentials.NKeySeedFile = file },
		},
		{
			name: "password file", values: [2]string{passwords[0] + "\n", passwords[1] + "\n"},
			server: func(t *testing.T, i int) *natsserver.Options {
				return &natsserver.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*natsserver.User{{Username: "bridge", Password: passwords[i]}}}
			},
			use: func(c *config.Config, file string) {
				c.NATS.Credentials.User, c.NATS.Credentials.PasswordFile = "bridge", file
			},
		},
	}
}

// writeRenamed writes a file beside path and renames it over path, as
// operators (and Kubernetes secret volumes) rotate files.
func writeRenamed(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logLines are the JSON log lines with message msg.
func logLines(logs *jetwaytest.LogBuffer, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// publishes creates a stream and publishes to it through the bridge.
func publishes(t *testing.T, b *jetwaytest.Bridge) {
	t.Helper()
	ctx := jetwaytest.Context(t, 10*time.Second)
	if _, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "FIXED", Subjects: []string{"fixed.>"}}}); err != nil {
		t.Fatalf("create stream after recovery: %v", err)
	}
	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "fixed.a", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}); err != nil {
		t.Fatalf("publish after recovery: %v", err)
	}
}

func noSecret(t *testing.T, logs *jetwaytest.LogBuffer, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if secret = strings.TrimSpace(secret); strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a credential %q", secret)
		}
	}
}

func isAuthViolation(v any) bool {
	s, _ := v.(string)
	return strings.Contains(strings.ToLower(s), "authorization violation")
}

// TestWrongNATSCredentialAtStartIsRetriedUntilFixed starts the bridge
// with an nkey seed file or a password file NATS refuses and holds it
// wrong for several attempts, past the point where nats.go gives up on
// its own (two refusals by the same server): the bridge keeps trying,
// logs each refusal with its cause and no secret, and stays not ready.
// Once the file is right the bridge becomes ready and publishes, without
// a restart: by itself at its next attempt, or at once on Reload (what
// SIGHUP calls; there the pause between attempts is a minute, so that
// every attempt after the first is one Reload asked for).
func TestWrongNATSCredentialAtStartIsRetriedUntilFixed(t *testing.T) {
	for _, hc := range heldCredentials(t) {
		for _, reload := range []bool{false, true} {
			name := hc.name + "/by itself"
			if reload {
				name = hc.name + "/on reload"
			}
			t.Run(name, func(t *testing.T) {
				ns := jetwaytest.NATSServer(t, hc.server(t, 1))
				file := filepath.Join(t.TempDir(), "credential")
				writeRenamed(t, file, hc.values[0])
				logs := &jetwaytest.LogBuffer{}
				wait := 100 * time.Millisecond
				if reload {
					wait = time.Minute
				}
				b := jetwaytest.StartWithoutNATSClientWithLogger(t, slog.New(slog.NewJSONHandler(logs, nil)), func(c *config.Config) {
					c.NATS.URLs = ns.ClientURL()
					hc.use(c, file)
					c.NATS.ConnectTimeout = 300 * time.Millisecond
					c.NATS.ReconnectWait = wait
				})
				defer func() {
					if t.Failed() {
						t.Logf("bridge log:\n%s", logs.String())
					}
				}()
				failures := func(n int) func() bool {
					return func() bool { return len(logLines(logs, "NATS connection attempt failed")) >= n }
				}
				if reload {
					for n := 2; n <= 4; n++ {
						waitFor(t, "a failed attempt before the reload", failures(n-1))
						b.Server.Reload()
						waitFor(t, "the attempt of the reload", failures(n))
					}
				} else {
					waitFor(t, "4 failed attempts", failures(4))
				}

				for i, l := range logLines(logs, "NATS connection attempt failed") {
					if !isAuthViolation(l["error"]) {
						t.Errorf("failed attempt %d logged as %v, want its cause (Authorization Violation)", i+1, l["error"])
					}
				}
				waiting := logLines(logs, "NATS not connected yet; serving as not ready and retrying")
				if len(waiting) != 1 || !isAuthViolation(waiting[0]["last_error"]) {
					t.Errorf("not-connected lines %v, want one with last_error Authorization Violation", waiting)
				}
				if r := b.Do(t, http.MethodGet, "/readyz", ""); r.Status != http.StatusServiceUnavailable {
					t.Errorf("readyz with a refused credential = %d, want 503", r.Status)
				}
				if r := b.Do(t, http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
					t.Errorf("healthz while retrying = %d, want 200 (the process recovers by itself)", r.Status)
				}
				if n := ns.NumClients(); n != 0 {
					t.Errorf("%d clients connected to NATS with a refused credential", n)
				}

				writeRenamed(t, file, hc.values[1])
				if reload {
					b.Server.Reload()
				}
				waitFor(t, "readyz 200 after the file was fixed", func() bool {
					return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK
				})
				publishes(t, b)
				if len(logLines(logs, "NATS connected")) == 0 {
					t.Error("no NATS connected line after recovery")
				}
				noSecret(t, logs, hc.values[:]...)
			})
		}
	}
}

// TestNATSCredentialRefusedAfterConnectIsRetriedUntilFixed connects the
// bridge, then restarts its nats-server accepting the credential's other
// value only, as when an operator rotates it on the server first: the
// bridge's reconnect attempts are refused, each logged with its cause,
// past the second refusal (where nats.go closes the connection unless
// told not to), and it recovers without a restart once the file holds
// the new value: by itself (for an nkey, a seed of another user needs a
// new connection, which the bridge makes), or on Reload.
func TestNATSCredentialRefusedAfterConnectIsRetriedUntilFixed(t *testing.T) {
	for _, hc := range heldCredentials(t) {
		for _, reload := range []bool{false, true} {
			name := hc.name + "/by itself"
			if reload {
				name = hc.name + "/on reload"
			}
			t.Run(name, func(t *testing.T) {
				port := freePort(t)
				first := hc.server(t, 0)
				first.Port = port
				ns := jetwaytest.NATSServer(t, first)
				file := filepath.Join(t.TempDir(), "credential")
				writeRenamed(t, file, hc.values[0])
				logs := &jetwaytest.LogBuffer{}
				b := jetwaytest.StartWithoutNATSClientWithLogger(t, slog.New(slog.NewJSONHandler(logs, nil)), func(c *config.Config) {
					c.NATS.URLs = ns.ClientURL()
					hc.use(c, file)
					c.NATS.ReconnectWait = 100 * time.Millisecond
				})
				defer func() {
					if t.Failed() {
						t.Logf("bridge log:\n%s", logs.String())
					}
				}()
				waitFor(t, "readyz 200 with the first credential", func() bool {
					return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK
				})

				before := len(logLines(logs, "NATS connection attempt failed"))
				ns.Shutdown()
				ns.WaitForShutdown()
				second := hc.server(t, 1)
				second.Port = port
				ns = jetwaytest.NATSServer(t, second)
				// The first attempts may find no server yet (connection
				// refused); then each is refused, and logged as such.
				waitFor(t, "4 refused reconnect attempts", func() bool {
					refused := 0
					for _, l := range logLines(logs, "NATS connection attempt failed")[before:] {
						if isAuthViolation(l["error"]) {
							refused++
						}
					}
					return refused >= 4
				})
				for _, l := range logLines(logs, "NATS connection attempt failed") {
					if e, _ := l["error"].(string); e == "" {
						t.Errorf("failed attempt logged without its cause: %v", l)
					}
				}
				if r := b.Do(t, http.MethodGet, "/readyz", ""); r.Status != http.StatusServiceUnavailable {
					t.Errorf("readyz with a refused credential = %d, want 503", r.Status)
				}

				writeRenamed(t, file, hc.values[1])
				if reload {
					b.Server.Reload()
				}
				waitFor(t, "readyz 200 after the file was fixed", func() bool {
					return b.Do(t, http.MethodGet, "/readyz", "").Status == http.StatusOK
				})
				publishes(t, b)
				noSecret(t, logs, hc.values[:]...)
			})
		}
	}
}

// freePort is a loopback port free a moment ago, for a server restarted
// on the same port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
