package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// hostRequest sends a request with the given Host header (and, as a
// browser on a rebound name would, a same-origin Origin and Sec-Fetch-Site).
func hostRequest(t *testing.T, method, url, host, body string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Origin", "http://"+host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestDNSRebindingRefused: with client authentication off (loopback), a
// page whose name was rebound to 127.0.0.1 sends same-origin requests
// that the cross-origin check cannot tell apart: the bridge refuses any
// Host that is not a loopback name (421), on the API and the profiling
// listener, and serves loopback names. With authentication on, Host is
// not restricted (the bridge is reached by name, and credentials decide).
func TestDNSRebindingRefused(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.PprofListen = "127.0.0.1:0" })
	pprof := "http://" + b.Server.PprofAddr().String() + "/debug/pprof/cmdline"
	for _, host := range []string{"rebind.evil.example", "rebind.evil.example:8080", "10.0.0.1", "localhost.evil.example", "127.0.0.1.nip.io"} {
		if st := hostRequest(t, http.MethodPost, b.BaseURL+"/v1/streams", host, `{"name":"EVIL","subjects":["evil.>"]}`); st != http.StatusMisdirectedRequest {
			t.Errorf("POST /v1/streams with Host %s: %d, want 421", host, st)
		}
		if st := hostRequest(t, http.MethodGet, b.BaseURL+"/v1/streams", host, ""); st != http.StatusMisdirectedRequest {
			t.Errorf("GET /v1/streams with Host %s: %d, want 421", host, st)
		}
		if st := hostRequest(t, http.MethodGet, pprof, host, ""); st != http.StatusMisdirectedRequest {
			t.Errorf("pprof cmdline with Host %s: %d, want 421", host, st)
		}
	}
	for _, host := range []string{"localhost", "localhost:8080", "127.0.0.1", "127.0.0.2:9", "[::1]:8080", "app.localhost"} {
		if st := hostRequest(t, http.MethodGet, b.BaseURL+"/v1/streams", host, ""); st != http.StatusOK {
			t.Errorf("GET /v1/streams with Host %s: %d, want 200", host, st)
		}
	}
	if _, err := b.JS.Stream(jetwaytest.Context(t, 5*time.Second), "EVIL"); err == nil {
		t.Error("stream EVIL was created through a rebound name")
	}
	e := authTStart(t)
	if st := hostRequest(t, http.MethodGet, e.b.BaseURL+"/v1/streams", "jetway.example.com", ""); st != http.StatusUnauthorized {
		t.Errorf("auth on, Host jetway.example.com, no credentials: %d, want 401", st)
	}
}
