package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
	r := b.Do(t, http.MethodGet, "/openapi.json", "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /openapi.json = %d", r.Status)
	}
	var doc struct {
		Swagger string                    `json:"swagger"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if doc.Swagger != "2.0" {
		t.Errorf("swagger = %q", doc.Swagger)
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

func TestRoutingErrors(t *testing.T) {
	b := jetwaytest.Start(t)
	if r := b.Do(t, http.MethodGet, "/v1/nothing-here", ""); r.Status != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", r.Status)
	}
	if r := b.Do(t, http.MethodPatch, "/v1/streams", "{}"); r.Status != http.StatusMethodNotAllowed && r.Status != http.StatusNotImplemented {
		t.Errorf("wrong method: %d, want 405 or 501", r.Status)
	}
}
