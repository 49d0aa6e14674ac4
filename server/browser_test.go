package server_test

// Cross-site requests and streaming refusals through a whole bridge with
// client authentication on: the browser rules hold whatever the
// credential, and a refused stream answers like a refused unary call.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/gateway"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// browserTSend sends a request with a raw body of type contentType ("" for
// none) and header pairs (an empty value sends none) through client (nil:
// the default client).
func browserTSend(t testing.TB, client *http.Client, method, url, contentType, body string, header ...string) jetwaytest.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	// A stream that is answered is cut by the deadline: read what came.
	data, _ := io.ReadAll(resp.Body)
	return jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

func browserTMsgs(t testing.TB, ctx context.Context, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestAuthCrossOriginRefusedWithCredentials: a browser sends the user's
// Authorization (from a page that stored an API key or token) or client
// certificate along; a cross-origin request that changes state is refused
// with 403 CROSS_ORIGIN_REFUSED all the same, and a text/plain body with
// 415, while the same requests without Origin succeed.
func TestAuthCrossOriginRefusedWithCredentials(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	key := "ApiKey " + e.ordersKey
	bearer := e.bearer(t, e.orders, "")
	for i := range 2 {
		if r := e.restPublish(t, key, "orders.eu.setup"); r.Status != http.StatusOK {
			t.Fatalf("setup publish %d: %d %s", i, r.Status, r.Body)
		}
	}
	base := e.b.BaseURL
	for _, authz := range []string{key, bearer} {
		for _, tt := range []struct {
			name, method, path, contentType, body string
			header                                []string
		}{
			{"purge from evil", http.MethodPost, "/v1/streams/ORDERS:purge", "text/plain", "{}", []string{"Origin", "http://evil.example"}},
			{"JSON publish cross-site", http.MethodPost, "/v1/subjects/orders.eu.x:publish", "application/json", `{"text":"forged"}`, []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}},
			{"delete a consumer same-site", http.MethodDelete, "/v1/streams/ORDERS/consumers/billing", "", "", []string{"Sec-Fetch-Site", "same-site"}},
			{"subscribe to a durable cross-site", http.MethodGet, "/v1/streams/ORDERS/consumers/billing:subscribe", "", "", []string{"Sec-Fetch-Site", "cross-site"}},
		} {
			r := browserTSend(t, nil, tt.method, base+tt.path, tt.contentType, tt.body, append(tt.header, "Authorization", authz)...)
			authTWantREST(t, tt.name+" with "+strings.Fields(authz)[0], r, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
		}
		r := browserTSend(t, nil, http.MethodPost, base+"/v1/subjects/orders.eu.x:publish", "text/plain", `{"text":"forged"}`, "Authorization", authz)
		authTWantREST(t, "text/plain publish with "+strings.Fields(authz)[0], r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	}
	if n := browserTMsgs(t, e.ctx, e.b.JS, "ORDERS"); n != 2 {
		t.Errorf("ORDERS holds %d messages after the refused requests, want 2", n)
	}
	c, err := e.b.JS.Consumer(e.ctx, "ORDERS", "billing")
	if err != nil {
		t.Fatalf("billing after the refused requests: %v", err)
	}
	if d := c.CachedInfo().Delivered.Consumer; d != 0 {
		t.Errorf("billing delivered %d messages to refused subscribes", d)
	}
	if r := browserTSend(t, nil, http.MethodPost, base+"/v1/subjects/orders.eu.x:publish", "application/json", `{"text":"ok"}`, "Authorization", key); r.Status != http.StatusOK {
		t.Errorf("publish without Origin: %d %s", r.Status, r.Body)
	}
}

// TestAuthCrossOriginRefusedWithMTLS: over HTTPS with a client
// certificate, which a browser presents to any page's requests, a
// cross-origin purge is refused (403) and a text/plain one too (415); the
// certificate's own JSON request succeeds.
func TestAuthCrossOriginRefusedWithMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, caKey := authTNewCA(t, "jetway test CA")
	_, srvCert, srvKey := authTIssue(t, ca, caKey, pkix.Name{CommonName: "127.0.0.1"}, true)
	adminCert, _, _ := authTIssue(t, ca, caKey, pkix.Name{CommonName: "admin", Organization: []string{"Jetway"}}, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "certadmin", CertSubjects: []string{"CN=admin,O=Jetway"}, Grant: auth.Grant{Admin: &auth.AdminGrant{Write: true}}},
	}})
	b := jetwaytest.Start(t, func(c *config.Config) {
		c.Auth.ConfigFile = path
		c.Auth.TLSCert, c.Auth.TLSKey = write("srv.pem", srvCert), write("srv.key", srvKey)
		c.Auth.TLSClientCA = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	})
	ctx := jetwaytest.Context(t, 60*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "orders.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &adminCert, nil },
	}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	purge := "https://" + b.Server.HTTPAddr().String() + "/v1/streams/ORDERS:purge"

	r := browserTSend(t, client, http.MethodPost, purge, "text/plain", "{}", "Origin", "http://evil.example")
	authTWantREST(t, "cross-origin purge with the certificate", r, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
	r = browserTSend(t, client, http.MethodPost, purge, "application/json", "{}", "Sec-Fetch-Site", "cross-site")
	authTWantREST(t, "cross-site JSON purge with the certificate", r, http.StatusForbidden, "CROSS_ORIGIN_REFUSED")
	r = browserTSend(t, client, http.MethodPost, purge, "text/plain", "{}")
	authTWantREST(t, "text/plain purge with the certificate", r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	if n := browserTMsgs(t, ctx, b.JS, "ORDERS"); n != 1 {
		t.Errorf("ORDERS holds %d messages after the refused purges, want 1", n)
	}
	if r := browserTSend(t, client, http.MethodPost, purge, "application/json", "{}"); r.Status != http.StatusOK {
		t.Errorf("JSON purge with the certificate: %d %s", r.Status, r.Body)
	}
	if n := browserTMsgs(t, ctx, b.JS, "ORDERS"); n != 0 {
		t.Errorf("ORDERS holds %d messages after the purge, want 0", n)
	}
}

// TestAuthStreamUnauthenticated: Subscribe over REST without a valid
// credential, as NDJSON and as Server-Sent Events, is refused exactly as a
// unary call is: 401, WWW-Authenticate, and the same JSON error body
// (not an {"error": …} stream chunk or an SSE error event).
func TestAuthStreamUnauthenticated(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	unary := e.b.Do(t, http.MethodGet, "/v1/account", "")
	authTRESTUnauthenticated(t, "unary", unary)
	var want map[string]any
	if err := json.Unmarshal(unary.Body, &want); err != nil {
		t.Fatalf("unary 401 body %s: %v", unary.Body, err)
	}
	for _, path := range []string{"/v1/streams/ORDERS:subscribe", "/v1/streams/ORDERS/consumers/billing:subscribe?format=PAYLOAD_FORMAT_TEXT"} {
		for _, accept := range []string{"", "application/x-ndjson", gateway.MIMEEventStream} {
			for _, authz := range []string{"", "ApiKey wrong-key-0123456789abcdef", "Bearer not.a.token"} {
				what := "GET " + path + " Accept " + accept + " Authorization " + authz
				r := browserTSend(t, nil, http.MethodGet, e.b.BaseURL+path, "", "", "Accept", accept, "Authorization", authz)
				if r.Status != http.StatusUnauthorized {
					t.Errorf("%s: %d %s, want 401", what, r.Status, r.Body)
					continue
				}
				if ch := r.Header.Get("WWW-Authenticate"); ch != gateway.Challenge {
					t.Errorf("%s: WWW-Authenticate %q, want %q", what, ch, gateway.Challenge)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s: Content-Type %q, want application/json", what, ct)
				}
				var got map[string]any
				if err := json.Unmarshal(r.Body, &got); err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("%s: body %s, want the unary 401's %s", what, r.Body, unary.Body)
				}
			}
		}
	}
	c, err := e.b.JS.Consumer(e.ctx, "ORDERS", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.CachedInfo().Delivered.Consumer; d != 0 {
		t.Errorf("billing delivered %d messages to unauthenticated subscribes", d)
	}
}
