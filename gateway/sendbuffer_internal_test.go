//go:build linux

package gateway

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// wrapped is a listener's connection wrapper that hides the TCP
// connection but unwraps to it.
type wrapped struct{ net.Conn }

func (w wrapped) Unwrap() net.Conn { return w.Conn }

func sendBuffer(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := raw.Control(func(fd uintptr) { n, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}

// TestCapSendBuffer: a streaming HTTP/1.x request's socket, under TLS and
// a listener's wrapper, gets StreamSendBuffer (Linux reports it doubled);
// an HTTP/2 one's is left alone.
func TestCapSendBuffer(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	accept := func() *net.TCPConn {
		t.Helper()
		c, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		select {
		case s := <-accepted:
			t.Cleanup(func() { _ = s.Close() })
			return s.(*net.TCPConn)
		case <-time.After(5 * time.Second):
			t.Fatal("not accepted in 5s")
		}
		return nil
	}
	request := func(c net.Conn, major int) *http.Request {
		r, err := http.NewRequestWithContext(ConnContext(context.Background(), c), http.MethodGet, "/v1/streams/S:subscribe", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.ProtoMajor = major
		return r
	}
	log := slog.New(slog.DiscardHandler)

	h1 := accept()
	before := sendBuffer(t, h1)
	capSendBuffer(request(tls.Server(wrapped{h1}, &tls.Config{}), 1), log)
	if got := sendBuffer(t, h1); got != 2*StreamSendBuffer {
		t.Errorf("HTTP/1.1 over TLS: SO_SNDBUF %d (was %d), want %d", got, before, 2*StreamSendBuffer)
	}

	h2 := accept()
	before = sendBuffer(t, h2)
	capSendBuffer(request(tls.Server(wrapped{h2}, &tls.Config{}), 2), log)
	if got := sendBuffer(t, h2); got != before {
		t.Errorf("HTTP/2: SO_SNDBUF %d, want it left at %d", got, before)
	}
}
