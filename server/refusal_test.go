package server_test

// Refused credentials, from the outside: refused before a REST body is
// read, never logged, and logged at a bounded rate.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// rfLog is a log the test reads while the bridge writes it.
type rfLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *rfLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *rfLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// refusals counts the authentication refusals (audit records).
func (l *rfLog) refusals() int { return strings.Count(l.String(), `event=authentication.refused`) }

func rfLogger(level slog.Level) (*rfLog, *slog.Logger) {
	l := &rfLog{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: level}))
}

// rfRaw sends a request's head over raw TCP (no body follows) and reads
// the response, within 3 seconds.
func rfRaw(t *testing.T, addr net.Addr, head string) (jetwaytest.Response, *http.Response) {
	t.Helper()
	c := toDial(t, addr)
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response within 3s: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("response body: %v", err)
	}
	return jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, resp
}

// TestAuthRefusedBeforeBody: a REST request whose credentials are
// missing or wrong gets its 401 (challenge, generic message,
// UNAUTHENTICATED) at once, without a byte of its declared body sent, and
// its connection closes; a right credential waits for the body (and, with
// none coming, gets 408 at the body timeout).
func TestAuthRefusedBeforeBody(t *testing.T) {
	t.Parallel()
	e := authTStartWith(t, nil, func(c *config.Config) { c.Server.HTTPReadBodyTimeout = time.Second })
	head := func(authz, length string) string {
		h := "POST /v1/subjects/orders.eu.1:publish HTTP/1.1\r\nHost: jetway\r\nContent-Type: application/json\r\n"
		if authz != "" {
			h += "Authorization: " + authz + "\r\n"
		}
		if length == "chunked" {
			return h + "Transfer-Encoding: chunked\r\n\r\n"
		}
		return h + "Content-Length: " + length + "\r\n\r\n"
	}
	tests := []struct{ name, authz, length string }{
		{"no credentials, a body of 1 TiB", "", strconv.Itoa(1 << 40)},
		{"no credentials, a body within the cap", "", "100000"},
		{"wrong API key", "ApiKey " + e.ordersKey + "x", "100000"},
		{"bare key, chunked", e.ordersKey, "chunked"},
		{"unknown scheme", "Basic b3JkZXJzOnB3", "100000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r, resp := rfRaw(t, e.b.Server.HTTPAddr(), head(tt.authz, tt.length))
			authTRESTUnauthenticated(t, "refused before the body", r)
			if d := time.Since(start); d >= time.Second {
				t.Errorf("401 after %s: not before the 1s body timeout", d)
			}
			if !resp.Close {
				t.Error("connection kept open with the body unread")
			}
		})
	}
	t.Run("right API key waits for the body", func(t *testing.T) {
		r, _ := rfRaw(t, e.b.Server.HTTPAddr(), head("ApiKey "+e.ordersKey, "100000"))
		authTWantREST(t, "a right key without its body", r, http.StatusRequestTimeout, "BODY_TIMEOUT")
	})
}

// TestAuthCredentialsNeverLogged: every credential form, right or wrong,
// over gRPC and REST, with the bridge logging at debug: no secret, and no
// 1 KiB of a 64 KiB header, reaches the log, which grows by little; each
// refusal is logged with a reason.
func TestAuthCredentialsNeverLogged(t *testing.T) {
	t.Parallel()
	logs, log := rfLogger(slog.LevelDebug)
	e := authTStartWith(t, log)
	raw := make([]byte, 32<<10)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	big := hex.EncodeToString(raw) // 64 KiB, no 512 bytes alike
	token := strings.TrimPrefix(e.bearer(t, e.orders, ""), "Bearer ")
	stranger := strings.TrimPrefix(e.bearer(t, e.stranger, ""), "Bearer ")
	jwtToken := strings.TrimPrefix(e.bearer(t, e.alice, e.aliceJWT), "Bearer ")
	basic := base64.StdEncoding.EncodeToString([]byte("orders:hunter2-" + e.ordersKey))
	tests := []struct {
		name, authz string
		refused     bool
		secrets     []string
	}{
		{"API key", "ApiKey " + e.ordersKey, false, []string{e.ordersKey}},
		{"wrong API key", "ApiKey " + e.otherKey + "x", true, []string{e.otherKey}},
		{"bare key", "mysecretkey123", true, []string{"mysecretkey123"}},
		{"bare right key", e.ordersKey, true, []string{e.ordersKey}},
		{"API key after a tab", "ApiKey\t" + e.ordersKey, true, []string{e.ordersKey}},
		{"token", "Bearer " + token, false, []string{token}},
		{"token after a tab", "Bearer\t" + token, true, []string{token}},
		{"wrong token", "Bearer " + stranger, true, []string{stranger}},
		{"tampered token", "Bearer " + token[:len(token)-4] + "AAAA", true, []string{token[:len(token)-4]}},
		{"user JWT token", "Bearer " + jwtToken, false, []string{jwtToken, e.aliceJWT}},
		{"user JWT without its proof", "Bearer " + e.aliceJWT, true, []string{e.aliceJWT}},
		{"basic", "Basic " + basic, true, []string{basic, "hunter2"}},
		{"opaque secret as a bearer token", "Bearer mysecretkey123", true, []string{"mysecretkey123"}},
		{"unknown first word", "mysecretkey123 more", true, []string{"mysecretkey123"}},
		{"64 KiB bare", big, true, nil},
		{"64 KiB API key", "ApiKey " + big, true, nil},
		{"64 KiB token", "Bearer " + big, true, nil},
	}
	before := len(logs.String())
	for _, tt := range tests {
		for _, transport := range []string{"gRPC", "REST"} {
			// Sent until its refusal is in the log: the refusal lines are
			// rate-limited, and a test that its line holds no secret needs
			// the line.
			send := func() {
				if transport == "gRPC" {
					_ = e.publish(tt.authz, "orders.eu.1")
				} else {
					_ = e.restPublish(t, tt.authz, "orders.eu.1")
				}
			}
			if !tt.refused || (transport == "gRPC" && strings.ContainsRune(tt.authz, '\t')) {
				send() // (gRPC clients refuse to send a tab in metadata)
				continue
			}
			deadline := time.Now().Add(5 * time.Second)
			for n := logs.refusals(); logs.refusals() == n; {
				if time.Now().After(deadline) {
					t.Fatalf("%s over %s: no refusal logged in 5s", tt.name, transport)
				}
				send()
				if logs.refusals() == n {
					time.Sleep(50 * time.Millisecond) // the limiter refills
				}
			}
		}
	}
	out := logs.String()
	grew := len(out) - before
	t.Logf("the log grew by %d bytes", grew)
	for _, tt := range tests {
		for _, s := range tt.secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s: the log holds %q", tt.name, s)
			}
		}
	}
	// Any 1 KiB of big holds one of its 512-byte blocks.
	for off := 0; off+512 <= len(big); off += 512 {
		if strings.Contains(out, big[off:off+512]) {
			t.Errorf("the log holds bytes %d-%d of the 64 KiB header", off, off+512)
			break
		}
	}
	// ~30 refusals and ~40 calls at debug: a few hundred bytes each.
	if grew > 48<<10 {
		t.Errorf("the log grew by %d bytes", grew)
	}
	for _, want := range []string{"without a scheme", "unsupported authorization scheme Basic", "scheme ApiKey followed by", "unknown API key"} {
		if !strings.Contains(out, want) {
			t.Errorf("no refusal logged with %q", want)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", rfTail(out, 8<<10))
	}
}

func rfTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// TestAuthRefusalLogRateLimited: a flood of refused credentials over gRPC
// and REST writes at most auth.RefusalLineBurst lines and then
// auth.RefusalLinesPerSecond a second; the first line after dropped ones
// counts them, so that every refusal is a line or counted.
func TestAuthRefusalLogRateLimited(t *testing.T) {
	t.Parallel()
	logs, log := rfLogger(slog.LevelInfo)
	e := authTStartWith(t, log)
	const flood = 200
	sent := 0
	refuse := func() {
		if sent%2 == 0 {
			_, _ = e.b.Admin.GetAccountInfo(authTWith(e.ctx, "ApiKey wrong"), &jetwayv1.GetAccountInfoRequest{})
		} else {
			_ = e.b.Do(t, http.MethodGet, "/v1/account", "", "Authorization", "ApiKey wrong")
		}
		sent++
	}
	start := time.Now()
	for range flood {
		refuse()
	}
	elapsed := time.Since(start)
	lines := logs.refusals()
	if most := auth.RefusalLineBurst + int(elapsed.Seconds()*auth.RefusalLinesPerSecond) + 1; lines > most {
		t.Errorf("%d refusals in %s logged %d lines, want at most %d", flood, elapsed, lines, most)
	}
	// The next line after the flood counts what the flood's tail dropped.
	deadline := time.Now().Add(5 * time.Second)
	for logs.refusals() == lines {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged within 5s after the flood")
		}
		time.Sleep(20 * time.Millisecond)
		refuse()
	}
	// Each call is logged (or counted) before its response: once a line
	// follows the flood, lines and counts add up to the calls.
	total := 0
	counted := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, `event=authentication.refused`) {
			continue
		}
		total++
		if _, n, ok := strings.Cut(line, "suppressed="); ok {
			k, err := strconv.Atoi(strings.Fields(n)[0])
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			counted += k
		}
	}
	if total+counted != sent {
		t.Errorf("%d refusals: %d lines and %d counted", sent, total, counted)
	}
	if counted < flood/2 {
		t.Errorf("only %d of %d refusals suppressed", counted, flood)
	}
}
