package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestMain runs the bridge itself, main and all, when a test re-executes
// this binary with JETWAY_TEST_MAIN=1: its arguments are those after "--".
func TestMain(m *testing.M) {
	if os.Getenv("JETWAY_TEST_MAIN") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"bridge"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is the bridge running as a process of its own.
type child struct {
	cmd    *exec.Cmd
	logs   *jetwaytest.LogBuffer
	exited chan struct{} // closed once the process has exited; then err is set
	err    error
	// Clients of its gRPC server, and its REST root (http://host:port).
	msgs  jetwayv1.MessageServiceClient
	admin jetwayv1.AdminServiceClient
	http  string
}

// startChild runs the bridge (this binary re-executed into main) with a
// 30 s shutdown timeout and waits until it serves. Whichever way the test
// ends, the process is gone before the test is.
func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--shutdown-timeout", "30s")
	cmd.Env = append(os.Environ(), "JETWAY_TEST_MAIN=1", "JETWAY_LOG_FORMAT=json", "JETWAY_DATA_DIR="+t.TempDir())
	c := &child{cmd: cmd, logs: &jetwaytest.LogBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("bridge log:\n%s", c.logs.String())
		}
	})
	deadline := time.After(15 * time.Second)
	for !strings.Contains(c.logs.String(), `"msg":"serving"`) {
		select {
		case <-c.exited:
			t.Fatalf("bridge exited early: %v\n%s", c.err, c.logs.String())
		case <-deadline:
			t.Fatalf("not serving after 15s:\n%s", c.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	conn, err := grpc.NewClient(firstLogged(t, c.logs, "serving", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c.msgs, c.admin = jetwayv1.NewMessageServiceClient(conn), jetwayv1.NewAdminServiceClient(conn)
	c.http = "http://" + firstLogged(t, c.logs, "serving", "http")
	return c
}

// signal sends sig to the bridge.
func (c *child) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits up to d for the bridge to exit and returns its exit code.
func (c *child) waitExit(t *testing.T, d time.Duration, what string) int {
	t.Helper()
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("bridge still running %v after %s", d, what)
		return 0
	}
}

// awaitLog waits up to 10 s for a log line with msg.
func (c *child) awaitLog(t *testing.T, msg string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(c.logs.String(), `"msg":"`+msg+`"`) {
		select {
		case <-c.exited:
			t.Fatalf("bridge exited before logging %q: %v", msg, c.err)
		case <-deadline:
			t.Fatalf("no %q log after 10s", msg)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestSignalEndsLongPollAndExits sends SIGINT to a bridge holding a REST
// Fetch in its long poll (wait 25 s): the Fetch answers 503 at once and
// the bridge exits 0 long before its 30 s shutdown timeout.
func TestSignalEndsLongPollAndExits(t *testing.T) {
	c := startChild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"s.>"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{Name: "C"}}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		body   string
		err    error
		at     time.Time
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.http+"/v1/streams/S/consumers/C:fetch", strings.NewReader(`{"batch":1,"wait":"25s"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err, at: time.Now()}
			return
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- answer{status: resp.StatusCode, body: string(body), err: err, at: time.Now()}
	}()
	for {
		r, err := c.admin.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "S", Name: "C"})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetConsumer().GetNumWaiting() > 0 {
			break // the Fetch is in its long poll
		}
		select {
		case <-ctx.Done():
			t.Fatal("the Fetch never waited at JetStream")
		case <-time.After(10 * time.Millisecond):
		}
	}

	start := time.Now()
	c.signal(t, syscall.SIGINT)
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("REST Fetch at SIGINT: %v", a.err)
		}
		if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, `"reason":"UNAVAILABLE"`) {
			t.Errorf("REST Fetch at SIGINT: %d %s, want 503 with reason UNAVAILABLE", a.status, a.body)
		}
		if d := a.at.Sub(start); d > time.Second {
			t.Errorf("the long poll answered %v after SIGINT", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll got no answer 5s after SIGINT")
	}
	if code := c.waitExit(t, 10*time.Second, "SIGINT (shutdown timeout 30s)"); code != 0 {
		t.Errorf("exit code %d after a graceful shutdown, want 0", code)
	}
}

// TestSecondSignalForcesExit holds a bridge in its shutdown with an open
// PublishStream (its client never half-closes; the 30 s shutdown timeout
// would end it) and sends a second SIGINT: the process exits at once with
// 130, saying why.
func TestSecondSignalForcesExit(t *testing.T) {
	c := startChild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"s.>"}}}); err != nil {
		t.Fatal(err)
	}
	stream, err := c.msgs.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{Subject: "s.x", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first ack: %v", err)
	}

	c.signal(t, syscall.SIGINT)
	c.awaitLog(t, "shutting down")
	select {
	case <-c.exited:
		t.Fatalf("bridge exited (%v) with a PublishStream open: nothing held the shutdown", c.err)
	default:
	}
	start := time.Now()
	c.signal(t, syscall.SIGINT)
	// The exit is immediate; the bound leaves room for a loaded machine.
	code := c.waitExit(t, 2*time.Second, "a second SIGINT")
	t.Logf("exited %v after the second SIGINT", time.Since(start).Round(time.Millisecond))
	if code != 130 {
		t.Errorf("exit code %d after a second SIGINT, want 130", code)
	}
	if !strings.Contains(c.logs.String(), `"msg":"second signal during shutdown: exiting at once, in-flight calls cut off"`) {
		t.Errorf("the forced exit is not logged:\n%s", c.logs.String())
	}
}
