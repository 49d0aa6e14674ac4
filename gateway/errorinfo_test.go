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
