package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/gateway"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestIngestOverConnection: a gateway without Direct (every call over the
// gRPC connection, through the server's interceptors) ingests a raw body
// with its Content-Type, mapped headers and dedupe id, as the bridge's
// own gateway does in process.
func TestIngestOverConnection(t *testing.T) {
	const key = "hooks-api-key-0123456789abcdef"
	f := auth.File{Identities: []auth.IdentityConfig{{Name: "hooks", APIKeyHashes: []string{auth.HashAPIKey(key)},
		Grant: auth.Grant{Publish: &perm.Set{Allow: []string{"hooks.>"}}}}}}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/auth.json"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "HOOKS", Subjects: []string{"hooks.>"}}); err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h, err := gateway.New(gctx, b.Conn, gateway.Options{
		MaxBodyBytes: 1 << 20, ReadBodyTimeout: 5 * time.Second, Ready: func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	body := []byte{0xff, 0x00, '{', 0x80}
	for i, wantDup := range []bool{false, true} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/subjects/hooks.gh:ingest?header=X-GitHub-Event&dedupe_header=X-GitHub-Delivery", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "ApiKey "+key)
		req.Header.Set("Content-Type", "application/vnd.example+binary")
		req.Header.Set("X-GitHub-Event", "ping")
		req.Header.Set("X-GitHub-Delivery", "d-1")
		r := b.Send(t, req)
		var a struct {
			Sequence  string `json:"sequence"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(r.Body, &a); r.Status != 200 || err != nil || a.Sequence != "1" || a.Duplicate != wantDup {
			t.Fatalf("delivery %d: %d %s", i, r.Status, r.Body)
		}
	}
	s, err := b.JS.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, body) || m.Header.Get("Content-Type") != "application/vnd.example+binary" ||
		m.Header.Get("X-GitHub-Event") != "ping" || m.Header.Get("Nats-Msg-Id") != "d-1" {
		t.Errorf("stored %q with headers %v", m.Data, m.Header)
	}
}
