package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestGatewayErrorsCarryErrorInfo: errors grpc-gateway makes itself (a
// body that is not JSON, an unknown field, an unknown route, a wrong
// method) carry an ErrorInfo with a reason like every other error, and a
// body error says so without its library's "proto:" prefix.
func TestGatewayErrorsCarryErrorInfo(t *testing.T) {
	b := jetwaytest.Start(t)
	if r := b.Do(t, http.MethodPost, "/v1/streams", `{"name":"S","subjects":["s.>"]}`); r.Status != http.StatusOK {
		t.Fatalf("create stream: %d %s", r.Status, r.Body)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		reason                   string
	}{
		{"malformed JSON", http.MethodPost, "/v1/subjects/s.1:publish", `{"text":`, http.StatusBadRequest, "INVALID_ARGUMENT"},
		// (each body error names the body: see the message check below)
		{"not an object", http.MethodPost, "/v1/subjects/s.1:publish", `[1,2]`, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"unknown field", http.MethodPost, "/v1/subjects/s.1:publish", `{"txet":"x"}`, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"unknown route", http.MethodGet, "/v1/nothing/here", "", http.StatusNotFound, "NOT_FOUND"},
		{"wrong method", http.MethodPatch, "/v1/streams", `{}`, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.Do(t, tc.method, tc.path, tc.body)
			if r.Status != tc.status {
				t.Fatalf("HTTP %d %s, want %d", r.Status, r.Body, tc.status)
			}
			var e struct {
				Message string `json:"message"`
				Details []struct {
					Type   string `json:"@type"`
					Reason string `json:"reason"`
					Domain string `json:"domain"`
				} `json:"details"`
			}
			if err := json.Unmarshal(r.Body, &e); err != nil {
				t.Fatalf("body %q: %v", r.Body, err)
			}
			got := ""
			for _, d := range e.Details {
				if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" && d.Domain == "jetway.dev" {
					got = d.Reason
				}
			}
			if got != tc.reason {
				t.Errorf("ErrorInfo reason %q, want %q (body %s)", got, tc.reason, r.Body)
			}
			if strings.Contains(e.Message, "proto:") {
				t.Errorf("message %q shows the decoder's library prefix", e.Message)
			}
			if tc.body != "" && tc.status == http.StatusBadRequest && !strings.HasPrefix(e.Message, "request body: ") {
				t.Errorf("message %q does not say the body is at fault", e.Message)
			}
		})
	}
}

// TestUnknownQueryParameterRefused: a query parameter that names no field
// of the request is refused (400, a BadRequest naming it), as an unknown
// body field is, on unary and streaming routes; known ones still work.
func TestUnknownQueryParameterRefused(t *testing.T) {
	b := jetwaytest.Start(t)
	if r := b.Do(t, http.MethodPost, "/v1/streams", `{"name":"Q","subjects":["q.>"]}`); r.Status != http.StatusOK {
		t.Fatalf("create stream: %d %s", r.Status, r.Body)
	}
	for _, path := range []string{"/v1/streams?page_sise=5", "/v1/streams/Q:subscribe?max_in_fligth=5", "/v1/streams/Q:subscribe?config.filter_subject=q.x", "/v1/streams/Q/messages:last?subjct=q.x"} {
		r := b.Do(t, http.MethodGet, path, "")
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "field_violations") {
			t.Errorf("GET %s: %d %s, want 400 with a field violation", path, r.Status, r.Body)
		}
	}
	if r := b.Do(t, http.MethodGet, "/v1/streams?page_size=5&subject=q.x", ""); r.Status != http.StatusOK {
		t.Errorf("known parameters: %d %s", r.Status, r.Body)
	}
}
