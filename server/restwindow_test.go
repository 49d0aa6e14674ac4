package server_test

// A REST Subscribe holds at most its window ahead of what its client has
// read, plus the gateway's stated byte bound (gateway.StreamBufferBound):
// measured from the outside, with a raw TCP client that reads slowly and
// JetStream's own count of the consumer's unacked messages.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/gateway"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

const (
	windowMessages    = 3000
	windowPayloadSize = 1024
)

// windowBridge is a bridge with a stream of windowMessages text messages
// of windowPayloadSize bytes and one durable consumer per name, whose
// max_ack_pending is far above any window so that only the bridge bounds
// what is delivered and unacked.
func windowBridge(t *testing.T, ctx context.Context, consumers ...string) *jetwaytest.Bridge {
	t.Helper()
	b := jetwaytest.Start(t)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "WIN", Subjects: []string{"win.>"}}); err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("x", windowPayloadSize))
	acks := make([]jetstream.PubAckFuture, 0, windowMessages)
	for range windowMessages {
		f, err := b.JS.PublishAsync("win.m", payload)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("publish acks not in time")
		}
	}
	for _, name := range consumers {
		if _, err := b.JS.CreateConsumer(ctx, "WIN", jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: 5 * time.Minute, MaxAckPending: 100_000,
		}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// slowReader is a raw HTTP/1.1 Subscribe client with a small socket
// receive buffer, counting the messages it has read.
type slowReader struct {
	t     *testing.T
	conn  *net.TCPConn
	body  *bufio.Reader
	sse   bool
	read  int
	lines int
}

func openSlowReader(t *testing.T, b *jetwaytest.Bridge, consumer string, window int, sse bool) *slowReader {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Server.HTTPAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.TCPConn)
	t.Cleanup(func() { _ = conn.Close() })
	// Before the request: what the client's kernel may hold is small.
	if err := conn.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	accept := "application/json"
	if sse {
		accept = gateway.MIMEEventStream
	}
	path := fmt.Sprintf("/v1/streams/WIN/consumers/%s:subscribe?max_in_flight=%d&format=PAYLOAD_FORMAT_TEXT", consumer, window)
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: %s\r\n\r\n", path, accept); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	return &slowReader{t: t, conn: conn, body: bufio.NewReaderSize(resp.Body, 4096), sse: sse}
}

// next reads up to the next message (an NDJSON line or SSE event of a
// message), within 10 s.
func (r *slowReader) next() {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := r.body.ReadString('\n')
		if err != nil {
			r.t.Fatalf("after %d messages: %v", r.read, err)
		}
		r.lines++
		if r.sse && line == "event: message\n" || !r.sse && strings.HasPrefix(line, `{"result":{"message"`) {
			r.read++
			return
		}
	}
}

// pending is the consumer's ack-pending count. Each ask has 2 s and is
// retried for up to 20 s: once, in CI, both subtests' consumer info got no
// answer within 10 s (JetStream busy delivering), and a poll that fails on
// one lost answer measured nothing about the window.
func pending(t *testing.T, ctx context.Context, b *jetwaytest.Bridge, consumer string) int {
	t.Helper()
	var last error
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && ctx.Err() == nil; {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := func() (*jetstream.ConsumerInfo, error) {
			c, err := b.JS.Consumer(actx, "WIN", consumer)
			if err != nil {
				return nil, err
			}
			return c.Info(actx)
		}()
		cancel()
		if err == nil {
			return info.NumAckPending
		}
		last = err
		t.Logf("consumer info of %s: %v; asking again", consumer, err)
	}
	if last == nil {
		last = ctx.Err()
	}
	t.Fatalf("consumer info of %s: %v", consumer, last)
	return 0
}

// windowBound is the most a stream may hold ahead of its client: its
// window, the gateway's byte bound in messages of this size (counted at
// their payload, less than each message is with its JSON or protobuf
// around it), what the client's own socket buffer (4 KiB, doubled by
// Linux) and 4 KiB bufio readers hold, and a few messages in hand
// between the buffers.
func windowBound(window int) int {
	const perMessage = windowPayloadSize
	return window + gateway.StreamBufferBound/perMessage + (2*4096+2*4096)/perMessage + 4
}

// TestRESTSubscribeRespectsWindow: a client reading 5 messages a second
// over HTTP/1.1 never has more than windowBound(max_in_flight) messages
// delivered and unacked ahead of what it has read, NDJSON and SSE, window
// 64 and 256.
func TestRESTSubscribeRespectsWindow(t *testing.T) {
	t.Parallel()
	ctx := jetwaytest.Context(t, 60*time.Second)
	type tc struct {
		name   string
		window int
		sse    bool
	}
	cases := []tc{{"NDJSON64", 64, false}, {"NDJSON256", 256, false}, {"SSE64", 64, true}, {"SSE256", 256, true}}
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	b := windowBridge(t, ctx, names...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// Its own time: a parallel subtest may wait long for its
			// turn after the parent's setup (a loaded CI machine).
			ctx := jetwaytest.Context(t, 60*time.Second)
			r := openSlowReader(t, b, c.name, c.window, c.sse)
			bound := windowBound(c.window)
			worst := 0
			tick := time.NewTicker(200 * time.Millisecond) // 5 messages a second
			defer tick.Stop()
			for range 30 {
				<-tick.C
				r.next()
				ahead := pending(t, ctx, b, c.name) - r.read
				if ahead > bound && worst <= bound {
					t.Errorf("after %d messages read: %d delivered and unacked ahead of the client, bound %d", r.read, ahead, bound)
				}
				worst = max(worst, ahead)
			}
			t.Logf("%s: at most %d messages ahead of the client (bound %d)", c.name, worst, bound)
		})
	}
}

// TestRESTSubscribeStalledClient: a client that stops reading holds no
// more than windowBound(max_in_flight): once what is delivered stops
// growing, it is within the bound.
func TestRESTSubscribeStalledClient(t *testing.T) {
	t.Parallel()
	ctx := jetwaytest.Context(t, 60*time.Second)
	cases := []struct {
		name string
		sse  bool
	}{{"NDJSON", false}, {"SSE", true}}
	b := windowBridge(t, ctx, "NDJSON", "SSE")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := jetwaytest.Context(t, 60*time.Second) // its own time, as above
			const window = 64
			r := openSlowReader(t, b, c.name, window, c.sse)
			r.next()
			// Steady once the count has not changed for a second.
			last, since := -1, time.Now()
			deadline := time.Now().Add(20 * time.Second)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				<-tick.C
				n := pending(t, ctx, b, c.name)
				if n != last {
					last, since = n, time.Now()
				} else if time.Since(since) >= time.Second {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("delivered still moving after 20s: %d", n)
				}
			}
			if ahead, bound := last-r.read, windowBound(window); ahead > bound {
				t.Errorf("stalled client: %d delivered and unacked ahead of it, bound %d", ahead, bound)
			} else {
				t.Logf("%s stalled client: %d delivered and unacked ahead of it (bound %d)", c.name, ahead, bound)
			}
		})
	}
}
