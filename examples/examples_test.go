// Package examples runs the clients in other languages under examples/
// against a live bridge (internal/jetwaytest): the Node gRPC client, the
// Python gRPC client and the serverless handler, each as a subprocess
// given the bridge's addresses in the environment, without credentials on
// a bridge without auth and with an API key on one with auth.
//
// The tools come from scripts/install-example-tools.sh (Node and npm ci,
// Debian's python3-grpcio, python3-protobuf, protoc and grpc_python_plugin).
// A missing tool skips the test, or fails it with JETWAY_REQUIRE_TOOLS=1
// (CI).
package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

const (
	// python is Debian's interpreter, where python3-grpcio installs grpc
	// (a python3 earlier in PATH, pyenv's say, may not have it).
	python = "/usr/bin/python3"
	apiKey = "examples-api-key-0123456789abcdef"
	// runTimeout bounds each example's run.
	runTimeout = 90 * time.Second
)

// need skips the test when a tool is missing, or fails it when
// JETWAY_REQUIRE_TOOLS=1.
func need(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s: %v (install with: sudo scripts/install-example-tools.sh)", what, err)
	if os.Getenv("JETWAY_REQUIRE_TOOLS") == "1" {
		t.Fatalf("JETWAY_REQUIRE_TOOLS=1 and %s", msg)
	}
	t.Skip(msg)
}

func needNode(t *testing.T, dir string) {
	t.Helper()
	_, err := exec.LookPath("node")
	need(t, "node", err)
	if dir != "" {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "@grpc", "grpc-js", "package.json"))
		need(t, "npm ci in examples/"+dir, err)
	}
}

func needPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import grpc, google.protobuf").CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	need(t, python+" with python3-grpcio and python3-protobuf", err)
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		_, err := exec.LookPath(tool)
		need(t, tool, err)
	}
	_, err = os.Stat("/usr/include/google/protobuf/duration.proto")
	need(t, "protoc's well-known types (libprotobuf-dev)", err)
}

// mode is how the examples reach the bridge.
type mode struct {
	name string
	// key is the API key the clients send ("" for none); with a key, the
	// bridge requires credentials.
	key string
}

var modes = []mode{{"no auth", ""}, {"API key", apiKey}}

// start runs a bridge for m: without auth, or with one identity that
// authenticates with apiKey and may do everything the examples do.
func start(t *testing.T, m mode) *jetwaytest.Bridge {
	t.Helper()
	if m.key == "" {
		return jetwaytest.Start(t)
	}
	all := &perm.Set{Allow: []string{">"}}
	data, err := json.Marshal(auth.File{Identities: []auth.IdentityConfig{{
		Name: "examples", APIKeyHashes: []string{auth.HashAPIKey(m.key)},
		Grant: auth.Grant{
			Publish: all,
			Consume: &auth.ConsumeGrant{Streams: []string{">"}, CreateDurables: true},
			Admin:   &auth.AdminGrant{Write: true},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = path })
}

// run runs name with args in dir with the bridge's addresses and key in
// the environment (and extra), bounded by runTimeout, and answers its
// stdout and stderr, failing the test when it does not exit 0 unless
// wantFail.
func run(t *testing.T, b *jetwaytest.Bridge, key, dir string, wantFail bool, extra []string, name string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JETWAY_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"JETWAY_GRPC_ADDR="+b.Server.GRPCAddr().String(),
		"JETWAY_HTTP_URL="+b.BaseURL,
	)
	if key != "" {
		env = append(env, "JETWAY_API_KEY="+key)
	}
	cmd.Env = append(env, extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s in %s (%v):\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), dir, time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %s", name, runTimeout)
	}
	if wantFail {
		if err == nil {
			t.Fatalf("%s succeeded, want a failure", name)
		}
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), stderr.String()
}

var receivedRE = regexp.MustCompile(`(?m)^received seq=(\d+) subject=\S+ json=(.*)$`)

// checkClient asserts what the Node and Python clients print: n messages
// received in order, acked, the refusal's ErrorInfo decoded, done.
func checkClient(t *testing.T, out string, n int, from string) {
	t.Helper()
	got := receivedRE.FindAllStringSubmatch(out, -1)
	if len(got) != n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	for i, g := range got {
		if g[1] != fmt.Sprint(i+1) {
			t.Errorf("message %d has seq %s, want %d", i, g[1], i+1)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(g[2]), &body); err != nil || body["n"] != float64(i+1) || body["from"] != from {
			t.Errorf("message %d: json %s (%v), want n=%d from=%s", i, g[2], err, i+1, from)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("\nacked %d\n", n),
		"\nrefused: NOT_FOUND ",
		"\n  ErrorInfo reason=NO_STREAM_FOR_SUBJECT domain=jetway.dev\n",
		"\ndone\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// checkAcked asserts through JetStream that the durable consumer has
// every one of n messages acked and nothing pending.
func checkAcked(t *testing.T, b *jetwaytest.Bridge, stream, consumer string, n uint64) {
	t.Helper()
	ctx := jetwaytest.Context(t, 10*time.Second)
	c, err := b.JS.Consumer(ctx, stream, consumer)
	if err != nil {
		t.Fatalf("consumer %s/%s: %v", stream, consumer, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	if info.AckFloor.Stream != n || info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer %s/%s: ack floor %d, ack pending %d, pending %d, redelivered %d; want %d acked, none pending or redelivered",
			stream, consumer, info.AckFloor.Stream, info.NumAckPending, info.NumPending, info.NumRedelivered, n)
	}
}

// checkRefusedKey runs a client with a wrong API key: it must exit 1
// printing the UNAUTHENTICATED refusal and its ErrorInfo.
func checkRefusedKey(t *testing.T, b *jetwaytest.Bridge, dir string, extra []string, name string, args ...string) {
	t.Helper()
	_, stderr := run(t, b, "wrong-key-0123456789abcdef", dir, true, extra, name, args...)
	for _, want := range []string{"refused: UNAUTHENTICATED ", "ErrorInfo reason=UNAUTHENTICATED domain=jetway.dev"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("wrong key: stderr lacks %q", want)
		}
	}
}

func TestNodeClient(t *testing.T) {
	needNode(t, "node")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			b := start(t, m)
			out, _ := run(t, b, m.key, "node", false, nil, "node", "client.js")
			checkClient(t, out, 5, "node")
			if !strings.Contains(out, "\nsubscribed consumer=worker created=true\n") {
				t.Errorf("output lacks the subscribed event of the durable it created")
			}
			checkAcked(t, b, "EXAMPLE_NODE", "worker", 5)
			if m.key != "" {
				checkRefusedKey(t, b, "node", []string{"JETWAY_STREAM=EXAMPLE_NODE_2"}, "node", "client.js")
			}
		})
	}
}

func TestPythonClient(t *testing.T) {
	needPython(t)
	gen := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "bash", "python/generate.sh", gen).CombinedOutput(); err != nil {
		t.Fatalf("python/generate.sh: %v\n%s", err, out)
	}
	extra := []string{"JETWAY_PY_GEN=" + gen}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			b := start(t, m)
			out, _ := run(t, b, m.key, "python", false, extra, python, "client.py")
			checkClient(t, out, 5, "python")
			checkAcked(t, b, "EXAMPLE_PYTHON", "worker", 5)
			if m.key != "" {
				checkRefusedKey(t, b, "python", append(extra, "JETWAY_STREAM=EXAMPLE_PYTHON_2"), python, "client.py")
			}
		})
	}
}

var processedRE = regexp.MustCompile(`(?m)^processed seq=(\d+) job=\{"job":(\d+)\} delivered=1$`)

// TestServerless runs run-twice.sh (8 jobs, at most 5 per run) and checks
// that the second run took up exactly where the first stopped, then that
// a third invocation finds nothing left: without auth, with an API key,
// and with the handler on an access token narrowed to consuming and
// acking its stream (setup keeps the API key).
func TestServerless(t *testing.T) {
	needNode(t, "")
	for _, c := range []struct {
		name  string
		m     mode
		token bool
	}{{"no auth", modes[0], false}, {"API key", modes[1], false}, {"access token", modes[1], true}} {
		t.Run(c.name, func(t *testing.T) {
			b := start(t, c.m)
			var extra []string
			handlerKey := c.m.key // what the third invocation sends
			if c.token {
				r := b.Do(t, "POST", "/v1/access-tokens",
					`{"operations":["OPERATION_CONSUME","OPERATION_ACK"],"streams":["EXAMPLE_JOBS"],"ttl":"600s"}`,
					"Authorization", "ApiKey "+c.m.key)
				tok, _ := r.JSON(t)["token"].(string)
				if r.Status != 200 || !strings.HasPrefix(tok, "jwy_") {
					t.Fatalf("minting an access token: %d %s", r.Status, r.Body)
				}
				extra = []string{"JETWAY_ACCESS_TOKEN=" + tok}
				handlerKey = ""
			}
			out, _ := run(t, b, c.m.key, "serverless", false, extra, "bash", "run-twice.sh")
			_, run2, ok := strings.Cut(out, "\n== run 2\n")
			_, run1, ok1 := strings.Cut(out, "\n== run 1\n")
			if !ok || !ok1 {
				t.Fatalf("output lacks the two runs")
			}
			run1, _, _ = strings.Cut(run1, "\n== run 2\n")
			for _, r := range []struct {
				out        string
				first, end int
			}{{run1, 1, 5}, {run2, 6, 8}} {
				got := processedRE.FindAllStringSubmatch(r.out, -1)
				if len(got) != r.end-r.first+1 {
					t.Errorf("run processed %d jobs, want %d..%d:\n%s", len(got), r.first, r.end, r.out)
					continue
				}
				for i, g := range got {
					if want := fmt.Sprint(r.first + i); g[1] != want || g[2] != want {
						t.Errorf("run's job %d: seq %s job %s, want %s", i, g[1], g[2], want)
					}
				}
			}
			if !strings.Contains(out, "\nOK: 8 jobs, each processed once across two runs\n") {
				t.Errorf("run-twice.sh did not report OK")
			}
			checkAcked(t, b, "EXAMPLE_JOBS", "jobs", 8)
			if out, _ := run(t, b, handlerKey, "serverless", false, extra, "node", "handler.js"); !strings.Contains(out, "run: processed 0 (nothing to do)") {
				t.Errorf("a third invocation: %q, want nothing to do", out)
			}
			if c.m.key == "" {
				return
			}
			if c.token {
				// The token is narrowed to EXAMPLE_JOBS.
				if _, err := b.JS.CreateStream(jetwaytest.Context(t, 10*time.Second), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
					t.Fatal(err)
				}
				if _, err := b.JS.CreateOrUpdateConsumer(jetwaytest.Context(t, 10*time.Second), "OTHER", jetstream.ConsumerConfig{Durable: "jobs", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
					t.Fatal(err)
				}
				_, stderr := run(t, b, "", "serverless", true, append(extra, "JETWAY_STREAM=OTHER"), "node", "handler.js")
				if !strings.Contains(stderr, "HTTP 403 NOT_PERMITTED") {
					t.Errorf("the token on another stream: stderr lacks the 403 and its reason")
				}
				return
			}
			_, stderr := run(t, b, "wrong-key-0123456789abcdef", "serverless", true, nil, "node", "handler.js")
			if !strings.Contains(stderr, "HTTP 401 UNAUTHENTICATED") {
				t.Errorf("wrong key: stderr lacks the 401 and its reason")
			}
		})
	}
}
