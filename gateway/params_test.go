package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestParameterErrors: a path or query parameter the gateway cannot parse
// is 400 INVALID_ARGUMENT with a message naming it and what it must be, and
// a google.rpc.BadRequest field violation; never the parser's Go error.
func TestParameterErrors(t *testing.T) {
	t.Parallel()
	b, _ := browserTStart(t)
	tests := []struct {
		method, path, field, desc string
		header                    []string
	}{
		{http.MethodGet, "/v1/streams/ORDERS/messages/99999999999999999999", "sequence", "not a valid unsigned 64-bit integer", nil},
		{http.MethodGet, "/v1/streams/ORDERS/messages/abc", "sequence", "not a valid unsigned 64-bit integer", nil},
		{http.MethodDelete, "/v1/streams/ORDERS/messages/-1", "sequence", "not a valid unsigned 64-bit integer", nil},
		{http.MethodDelete, "/v1/streams/ORDERS/messages/1?secure=maybe", "secure", "not true or false", nil},
		{http.MethodGet, "/v1/streams?page_size=abc", "page_size", "not a valid 32-bit integer", nil},
		{http.MethodGet, "/v1/streams?page_size=99999999999", "page_size", "not a valid 32-bit integer", nil},
		{http.MethodGet, "/v1/streams/ORDERS/consumers?pageSize=x", "pageSize", "not a valid 32-bit integer", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.deliver_policy=NOPE", "config.deliver_policy", "not one of DELIVER_POLICY_UNSPECIFIED, DELIVER_POLICY_ALL,", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.deliverPolicy=NOPE", "config.deliverPolicy", "not one of DELIVER_POLICY_UNSPECIFIED, DELIVER_POLICY_ALL,", nil},
		{http.MethodGet, "/v1/streams/ORDERS/consumers/billing:subscribe?format=NOPE", "format", "not one of PAYLOAD_FORMAT_", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?heartbeat=soon", "heartbeat", "not a duration", []string{"Accept", "text/event-stream"}},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.ack_wait=30", "config.ack_wait", "not a duration", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.opt_start_time=yesterday", "config.opt_start_time", "not an RFC 3339 time", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.headers_only=maybe", "config.headers_only", "not true or false", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?max_bytes_in_flight=1e9", "max_bytes_in_flight", "not a valid 64-bit integer", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.opt_start_sequence=-5", "config.opt_start_sequence", "not a valid unsigned 64-bit integer", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config.backoff=1s&config.backoff=later", "config.backoff", "not a duration", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?config=1", "config", "not a value", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?max_in_flight=1&max_in_flight=2", "max_in_flight", "given more than once", nil},
		{http.MethodGet, "/v1/streams/ORDERS:subscribe?a=%zz", "", "the query string is not valid URL encoding", nil},
	}
	for _, tt := range tests {
		r := b.Do(t, tt.method, tt.path, "", tt.header...)
		what := tt.method + " " + tt.path
		m := browserTWant(t, what, r, http.StatusBadRequest, "INVALID_ARGUMENT")
		if m == nil {
			continue
		}
		for _, internal := range []string{"strconv", "parsing", "type mismatch", "proto:", "syntax", "range", "%!", "invalid URL escape", "error:"} {
			if strings.Contains(string(r.Body), internal) {
				t.Errorf("%s: body %s echoes the parser (%q)", what, r.Body, internal)
			}
		}
		wantMsg := tt.desc
		if tt.field != "" {
			wantMsg = tt.field + ": " + tt.desc
		}
		if msg, _ := m["message"].(string); !strings.HasPrefix(msg, wantMsg) {
			t.Errorf("%s: message %q, want %q…", what, msg, wantMsg)
		}
		found := false
		for _, d := range m["details"].([]any) {
			d := d.(map[string]any)
			if d["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
				continue
			}
			for _, v := range d["field_violations"].([]any) {
				v := v.(map[string]any)
				found = found || v["field"] == tt.field && strings.HasPrefix(v["description"].(string), tt.desc)
			}
		}
		if !found {
			t.Errorf("%s: body %s, want a BadRequest violation of %q", what, r.Body, tt.field)
		}
	}

	// What parses is not touched: the bridge's own refusal keeps its
	// message and reason, an unknown parameter is ignored.
	r := b.Do(t, http.MethodGet, "/v1/streams/bad.name", "")
	if m := browserTWant(t, "GET /v1/streams/bad.name", r, http.StatusBadRequest, "INVALID_NAME"); m != nil {
		if msg, _ := m["message"].(string); !strings.Contains(msg, "bad.name") {
			t.Errorf("GET /v1/streams/bad.name: %s, want the bridge's message naming the stream", r.Body)
		}
	}
	// Subscribe's refusal before its first event is a plain error too.
	r = b.Do(t, http.MethodGet, "/v1/streams/ORDERS:subscribe?heartbeat=0.5s", "")
	if m := browserTWant(t, "heartbeat=0.5s", r, http.StatusBadRequest, "INVALID_ARGUMENT"); m != nil {
		if msg, _ := m["message"].(string); !strings.Contains(msg, "heartbeat") {
			t.Errorf("heartbeat=0.5s: %s, want the bridge's message naming heartbeat", r.Body)
		}
	}
	// An unknown parameter is refused, as an unknown body field is (see
	// TestUnknownQueryParameterRefused).
	browserTWant(t, "unknown parameter", b.Do(t, http.MethodGet, "/v1/streams?nothing=1", ""), http.StatusBadRequest, "INVALID_ARGUMENT")
	browserTWant(t, "path parameter repeated in the query", b.Do(t, http.MethodGet, "/v1/streams/ORDERS/messages:last?subject=orders.new&stream=x", ""), http.StatusOK, "")
	if r := b.Do(t, http.MethodGet, "/v1/streams/NOPE/messages/1", ""); r.Status != http.StatusNotFound {
		t.Errorf("GET a message of a missing stream: %d %s, want 404", r.Status, r.Body)
	}
}
