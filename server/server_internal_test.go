package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jetway-dev/jetway/auth"
)

// TestHTTPErrorLogIsBounded: the HTTP server's own error lines (failed
// TLS handshakes and the like, as many as clients care to cause) are
// clipped and rate-limited like refused credentials.
func TestHTTPErrorLogIsBounded(t *testing.T) {
	var buf bytes.Buffer
	l := httpErrorLog(slog.New(slog.NewTextHandler(&buf, nil)))
	big := strings.Repeat("g", 64<<10)
	start := time.Now()
	for range 100 {
		l.Printf("http: TLS handshake error from 127.0.0.1:1: %s", big)
	}
	elapsed := time.Since(start)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if most := auth.RefusalLineBurst + int(elapsed.Seconds()*auth.RefusalLinesPerSecond) + 1; len(lines) > most {
		t.Errorf("%d lines for 100 errors in %s, want at most %d", len(lines), elapsed, most)
	}
	for _, line := range lines {
		if len(line) > 512 || !strings.Contains(line, "TLS handshake error") {
			t.Errorf("line of %d bytes: %.200s", len(line), line)
		}
	}
}

// TestBootGate: connected is not serving until the bootstrap is done,
// and readiness says why; a loss after it is not serving again.
func TestBootGate(t *testing.T) {
	var serving []bool
	g := newBootGate(false)
	g.onServing = func(s bool) { serving = append(serving, s) }
	g.connected(true)
	if err := g.err(); err == nil {
		t.Error("ready before the bootstrap")
	}
	g.done()
	if err := g.err(); err != nil {
		t.Errorf("not ready after the bootstrap: %v", err)
	}
	g.connected(false)
	g.connected(true)
	if want := []bool{false, true, false, true}; fmt.Sprint(serving) != fmt.Sprint(want) {
		t.Errorf("serving %v, want %v", serving, want)
	}
	if err := newBootGate(true).err(); err != nil {
		t.Errorf("without a bootstrap: %v", err)
	}
}
