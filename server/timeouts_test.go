package server_test

// Slow and idle clients, from the outside: raw TCP for what a well-behaved
// client library would never do (dribbling a request, never sending the
// HTTP/2 preface), against a bridge configured with short bounds.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// toDial opens a raw TCP connection to addr, closed at the end of the test.
func toDial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// toDribble writes prefix, then one byte of rest every 500 ms until rest is
// spent or the connection fails (the server closed it). It stops when the
// test ends.
func toDribble(t *testing.T, c net.Conn, prefix, rest string) {
	t.Helper()
	if _, err := io.WriteString(c, prefix); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(rest); i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte{rest[i]}); err != nil {
				return
			}
		}
	}()
}

// toReadUntilClosed reads c until the server closes it, or fails the test
// after within. It returns what arrived and how long the close took.
func toReadUntilClosed(t *testing.T, c net.Conn, within time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	data, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %s (got %q)", within, data)
	}
	// A reset is a close too (the server closed with unread bytes).
	return string(data), time.Since(start)
}

// TestHTTPSlowRequestsAreClosed: with --http-read-header-timeout and
// --http-read-body-timeout of 1s, a client dribbling one byte every
// 500 ms has its connection closed within a few seconds: dribbled
// headers, a dribbled API body (408), and a dribbled body on a route
// that never reads it (net/http drains it after the handler).
func TestHTTPSlowRequestsAreClosed(t *testing.T) {
	t.Parallel()
	logs, log := rfLogger(slog.LevelInfo)
	b := jetwaytest.StartWithLogger(t, log, func(c *config.Config) {
		c.Server.HTTPReadHeaderTimeout = time.Second
		c.Server.HTTPReadBodyTimeout = time.Second
	})
	body := `{"text":"` + strings.Repeat("x", 200) + `"}`
	with := func(method, path string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, len(body))
	}
	tests := []struct {
		name, prefix, rest string
		wantStatus         string // "" for none: closed without a response
		wantReason         string
	}{
		{"headers", "POST /v1/subjects/orders.x:publish HTTP/1.1\r\n", "Host: localhost\r\nX-Slow: " + strings.Repeat("y", 100), "", ""},
		{"API body", with("POST", "/v1/subjects/orders.x:publish"), body, "HTTP/1.1 408 ", "BODY_TIMEOUT"},
		{"chunked API body", "POST /v1/streams HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n", "100\r\n" + body, "HTTP/1.1 408 ", "BODY_TIMEOUT"},
		// Answered at once; net/http then drains the body to keep the
		// connection, within the same bound.
		{"body of a route that does not read it", with("GET", "/healthz"), body, "HTTP/1.1 200 ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := toDial(t, b.Server.HTTPAddr())
			toDribble(t, c, tt.prefix, tt.rest)
			got, took := toReadUntilClosed(t, c, 6*time.Second)
			t.Logf("closed after %s with %q", took.Round(time.Millisecond), firstLine(got))
			if !strings.HasPrefix(got, tt.wantStatus) {
				t.Errorf("response %q, want %q", firstLine(got), tt.wantStatus)
			}
			if !strings.Contains(got, tt.wantReason) {
				t.Errorf("response %q without the reason %s", got, tt.wantReason)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		out := logs.String()
		if n := strings.Count(out, "request body not read in time"); n != 2 {
			t.Errorf("%d lines of a body not read in time, want 2 (the API bodies):\n%s", n, out)
		}
		if strings.Contains(out, "xxxx") || strings.Contains(out, "orders.x") {
			t.Errorf("the log holds what the client sent:\n%s", out)
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// TestHTTPStreamingOutlivesBodyTimeout: the body timeout bounds bodies,
// not responses: a Subscribe stream (SSE and NDJSON, with and without a
// request body) still delivers a message published after twice the
// timeout: the deadline set for a body is gone once the body is read.
func TestHTTPStreamingOutlivesBodyTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.HTTPReadBodyTimeout = timeout })
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "LONG", Subjects: []string{"long.>"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, accept, body string
	}{
		{"SSE", "text/event-stream", ""},
		{"NDJSON", "", ""},
		{"SSE with a request body", "text/event-stream", "{}"},
	}
	type stream struct {
		name  string
		lines chan string
	}
	var streams []stream
	for i, tt := range tests {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		path := fmt.Sprintf("/v1/streams/LONG:subscribe?config.filter_subjects=long.%d&format=PAYLOAD_FORMAT_TEXT", i)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.BaseURL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		if tt.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", tt.name, resp.StatusCode)
		}
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
		streams = append(streams, stream{tt.name, lines})
	}
	time.Sleep(2 * timeout) // the time the body timeout must not end the streams in
	for i := range streams {
		if _, err := b.JS.Publish(ctx, fmt.Sprintf("long.%d", i), []byte(fmt.Sprintf("late-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range streams {
		want := fmt.Sprintf("late-%d", i)
		deadline := time.After(10 * time.Second)
	read:
		for {
			select {
			case line, ok := <-s.lines:
				if !ok {
					t.Errorf("%s: stream ended before the late message", s.name)
					break read
				}
				if strings.Contains(line, want) {
					break read
				}
			case <-deadline:
				t.Errorf("%s: no late message within 10s", s.name)
				break read
			}
		}
	}
}

// TestGRPCHandshakeTimeout: with --grpc-connection-timeout 1s, TCP
// connections to the gRPC port that never send the HTTP/2 preface (or
// only part of it) are closed within a few seconds; a real client still
// works.
func TestGRPCHandshakeTimeout(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.GRPCConnectionTimeout = time.Second })
	const silent = 20
	conns := make([]net.Conn, 0, silent+1)
	for range silent {
		conns = append(conns, toDial(t, b.Server.GRPCAddr()))
	}
	partial := toDial(t, b.Server.GRPCAddr())
	if _, err := io.WriteString(partial, "PRI * HTTP/2.0\r\n"); err != nil {
		t.Fatal(err)
	}
	conns = append(conns, partial)
	for i, c := range conns {
		_, took := toReadUntilClosed(t, c, 6*time.Second)
		if i == 0 {
			t.Logf("first silent connection closed after %s", took.Round(time.Millisecond))
		}
	}
	ctx := jetwaytest.Context(t, 10*time.Second)
	if _, err := healthpb.NewHealthClient(b.Conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check after the silent connections: %v", err)
	}
}

// TestConnectionCap: with --max-connections 2, a third connection to
// either listener is not served while two are open, and is served once
// one of them closes.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.MaxConnections = 2 })
	// held is how long the third connection must go unserved: the cap,
	// not a slow machine, is why nothing comes.
	const held = 500 * time.Millisecond

	t.Run("HTTP", func(t *testing.T) {
		t.Parallel()
		get := "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
		served := func(c net.Conn, within time.Duration) error {
			if _, err := io.WriteString(c, get); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(within))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			return nil
		}
		first, second := toDial(t, b.Server.HTTPAddr()), toDial(t, b.Server.HTTPAddr())
		for _, c := range []net.Conn{first, second} {
			if err := served(c, 5*time.Second); err != nil {
				t.Fatalf("one of the first two connections: %v", err)
			}
		}
		third := toDial(t, b.Server.HTTPAddr())
		if _, err := io.WriteString(third, get); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(third)
		_ = third.SetReadDeadline(time.Now().Add(held))
		if resp, err := http.ReadResponse(br, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
			if err == nil {
				_ = resp.Body.Close()
			}
			t.Fatalf("third connection served while two are open: %v, %v", resp, err)
		}
		_ = first.Close()
		_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("third connection after one closed: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("third connection after one closed: HTTP %d", resp.StatusCode)
		}
	})

	t.Run("gRPC", func(t *testing.T) {
		t.Parallel()
		ctx := jetwaytest.Context(t, 30*time.Second)
		client := func() (*grpc.ClientConn, healthpb.HealthClient) {
			conn, err := grpc.NewClient(b.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			return conn, healthpb.NewHealthClient(conn)
		}
		check := func(h healthpb.HealthClient, within time.Duration) error {
			cctx, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			_, err := h.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
			return err
		}
		first, h1 := client()
		_, h2 := client()
		for _, h := range []healthpb.HealthClient{h1, h2} {
			if err := check(h, 5*time.Second); err != nil {
				t.Fatalf("one of the first two connections: %v", err)
			}
		}
		_, h3 := client()
		if err := check(h3, held); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("third connection while two are open: %v, want DEADLINE_EXCEEDED (not served)", err)
		}
		_ = first.Close()
		if err := check(h3, 5*time.Second); err != nil {
			t.Errorf("third connection after one closed: %v", err)
		}
	})
}
