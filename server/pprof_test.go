package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// get reads url within 5 s.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestPprofOwnListenerOnly: the API listener never serves /debug/pprof/
// (404), with profiling off or on; --pprof-listen serves it on its own
// port, and stops with the server.
func TestPprofOwnListenerOnly(t *testing.T) {
	t.Parallel()
	off := jetwaytest.Start(t)
	if off.Server.PprofAddr() != nil {
		t.Errorf("a pprof listener by default: %v", off.Server.PprofAddr())
	}
	on := jetwaytest.Start(t, func(c *config.Config) { c.Server.PprofListen = "127.0.0.1:0" })
	for _, b := range []*jetwaytest.Bridge{off, on} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2"} {
			if r := b.Do(t, http.MethodGet, path, ""); r.Status != http.StatusNotFound {
				t.Errorf("API listener GET %s = %d, want 404", path, r.Status)
			}
		}
	}
	base := "http://" + on.Server.PprofAddr().String()
	if st, body := get(t, base+"/debug/pprof/"); st != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof listener GET /debug/pprof/ = %d, want 200 with the index", st)
	}
	if st, _ := get(t, base+"/debug/pprof/cmdline"); st != http.StatusOK {
		t.Errorf("pprof listener GET /debug/pprof/cmdline = %d, want 200", st)
	}
	if err := on.Stop(); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(base + "/debug/pprof/"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("pprof listener still serving after shutdown: %d", resp.StatusCode)
	}
}

// TestPprofNonLoopbackRefused: a profiling address beyond loopback stops
// the start, before anything listens.
func TestPprofNonLoopbackRefused(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:6060", "example.com:6060"} {
		_, _, err := startLogged(t, "--data-dir", t.TempDir(), "--pprof-listen", addr)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--pprof-listen %s: %v, want refused as not loopback", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		srv, _, err := startLogged(t, "--data-dir", t.TempDir(), "--pprof-listen", addr)
		if err != nil {
			t.Errorf("--pprof-listen %s: %v", addr, err)
			continue
		}
		if st, _ := get(t, "http://"+srv.PprofAddr().String()+"/debug/pprof/"); st != http.StatusOK {
			t.Errorf("--pprof-listen %s: GET /debug/pprof/ = %d", addr, st)
		}
	}
}
