package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/gateway"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

func TestIncomingHeader(t *testing.T) {
	tests := []struct {
		header string
		want   string
		pass   bool
	}{
		{"Authorization", "authorization", true},
		{"authorization", "authorization", true},
		{"Idempotency-Key", "idempotency-key", true},
		{"Grpc-Metadata-Authorization", "", false},
		{"Grpc-Metadata-Idempotency-Key", "", false},
		{"Grpc-Metadata-X-Jetway-Identity", "", false},
		{"X-Forwarded-For", "", false},
		{"X-Jetway-Identity", "", false},
		{"Host", "", false},
		{"Grpc-Timeout", "", false},
	}
	for _, tt := range tests {
		got, ok := gateway.IncomingHeader(tt.header)
		if ok != tt.pass || got != tt.want {
			t.Errorf("IncomingHeader(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.pass)
		}
	}
}

func TestOpenAPIDocument(t *testing.T) {
	b := jetwaytest.Start(t)
	r := b.Do(t, http.MethodGet, "/openapi.v2.json", "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /openapi.v2.json = %d", r.Status)
	}
	var doc struct {
		Swagger string `json:"swagger"`
		Info    struct {
			Title, Version string
		} `json:"info"`
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if doc.Swagger != "2.0" {
		t.Errorf("swagger = %q", doc.Swagger)
	}
	// The API's name, not the name of one of its proto files.
	if doc.Info.Title != "Jetway API" || doc.Info.Version != "v1" {
		t.Errorf("info = %+v, want Jetway API v1", doc.Info)
	}
	for path, method := range map[string]string{
		"/v1/subjects/{subject}:publish":                  "post",
		"/v1/streams":                                     "get",
		"/v1/streams/{config.name}":                       "put",
		"/v1/streams/{stream}/consumers/{name}":           "delete",
		"/v1/streams/{stream}/messages:last":              "get",
		"/v1/streams/{stream}/consumers/{consumer}:fetch": "post",
		"/v1/acks":    "post",
		"/v1/account": "get",
		"/v1/streams/{stream}/consumers/{consumer}:subscribe": "get",
	} {
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("OpenAPI has no %s %s", strings.ToUpper(method), path)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	b := jetwaytest.Start(t)
	// The default cap is 2 × 1 MiB + 64 KiB.
	big := `{"text":"` + strings.Repeat("x", 3<<20) + `"}`
	r := b.Do(t, http.MethodPost, "/v1/subjects/a.b:publish", big)
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d %s, want 413", r.Status, r.Body)
	}
	if !strings.Contains(string(r.Body), "BODY_TOO_LARGE") {
		t.Errorf("body %s lacks the reason", r.Body)
	}
}

// TestRoutingErrors: a method a path does not take is 405 METHOD_NOT_ALLOWED
// with Allow listing the methods it takes (grpc-gateway said 501); a POST
// with a form body is not taken for the path's GET; an unknown path is 404.
func TestRoutingErrors(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, path, contentType, body, allow string
	}{
		{http.MethodPatch, "/v1/streams", "application/json", "{}", "GET, POST"},
		{http.MethodDelete, "/v1/streams", "", "", "GET, POST"},
		{http.MethodGet, "/v1/acks", "", "", "POST"},
		{http.MethodPut, "/v1/subjects/a.b:publish", "application/json", "{}", "POST"},
		{http.MethodPost, "/v1/streams/S/messages/1", "", "", "DELETE, GET"},
		{http.MethodPatch, "/v1/streams/S/consumers/C", "application/json", "{}", "DELETE, GET, PUT"},
		{http.MethodOptions, "/v1/account", "", "", "GET"},
		// grpc-gateway's "path length fallback" would serve this as the
		// GET (Subscribe), and X-HTTP-Method-Override as a DELETE.
		{http.MethodPost, "/v1/streams/S/consumers/C:subscribe", "application/x-www-form-urlencoded", "", "DELETE, GET, PUT"},
		{http.MethodPost, "/v1/streams/S", "application/x-www-form-urlencoded", "", "DELETE, GET, PATCH, PUT"},
	} {
		req, err := http.NewRequest(tt.method, b.BaseURL+tt.path, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		req.Header.Set("X-HTTP-Method-Override", http.MethodDelete)
		r := b.Send(t, req)
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %q", tt.method, tt.path, r.Status, r.Header.Get("Allow"), r.Body, tt.allow)
			continue
		}
		m := r.JSON(t)
		if !strings.Contains(string(r.Body), `"reason":"METHOD_NOT_ALLOWED"`) || !strings.Contains(m["message"].(string), tt.allow) {
			t.Errorf("%s %s: body %s, want reason METHOD_NOT_ALLOWED and a message naming %s", tt.method, tt.path, r.Body, tt.allow)
		}
	}
	for _, path := range []string{"/v1/nothing-here", "/v1/streams/S/consumers/C/x", "/v2/streams", "/v1/subjects/a.b"} {
		if r := b.Do(t, http.MethodGet, path, ""); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, r.Status, r.Body)
		}
		if r := b.Do(t, http.MethodPatch, path, "{}"); r.Status != http.StatusNotFound {
			t.Errorf("PATCH %s: %d %s, want 404", path, r.Status, r.Body)
		}
	}
	if _, err := b.JS.Stream(ctx, "S"); err != nil {
		t.Errorf("stream S after the refused requests: %v", err)
	}
}
