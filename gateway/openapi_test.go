package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/jetway-dev/jetway/gen/openapi"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestOpenAPIServesEveryPath: the OpenAPI 3 document the bridge serves is
// valid, lists every REST route of the Swagger 2 document the gateway is
// built from, and every operation it lists is served by the running
// bridge: a request to it reaches its handler (no routing 404, no 405).
func TestOpenAPIServesEveryPath(t *testing.T) {
	b := jetwaytest.Start(t)
	r := b.Do(t, http.MethodGet, "/openapi.json", "")
	if r.Status != http.StatusOK || string(r.Body) != string(openapi.V3) {
		t.Fatalf("GET /openapi.json: %d, the embedded document %v", r.Status, string(r.Body) == string(openapi.V3))
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("invalid OpenAPI 3: %v", err)
	}
	if doc.OpenAPI != "3.0.3" || doc.Info.Title != "Jetway API" {
		t.Errorf("openapi %q, title %q", doc.OpenAPI, doc.Info.Title)
	}
	var v2 struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openapi.JSON, &v2); err != nil {
		t.Fatal(err)
	}
	v2ops := 0
	for _, ops := range v2.Paths {
		v2ops += len(ops)
	}
	v3ops, bridgeOps := 0, 0
	vars := regexp.MustCompile(`\{[^}]*\}`)
	values := map[string]string{"{subject}": "orders.new", "{sequence}": "1"}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			v3ops++
			if strings.Contains(strings.Join(op.Tags, ","), "Bridge") {
				bridgeOps++
			}
			url := vars.ReplaceAllStringFunc(path, func(v string) string {
				if s, ok := values[v]; ok {
					return s
				}
				return "X"
			})
			body, ctype := "", ""
			if op.RequestBody != nil {
				body, ctype = "{}", "application/json"
				if op.RequestBody.Value.Content.Get("application/json") == nil {
					body, ctype = "raw", "text/plain"
				}
			}
			req, _ := http.NewRequest(method, b.BaseURL+url, strings.NewReader(body))
			if ctype != "" {
				req.Header.Set("Content-Type", ctype)
			}
			if strings.HasSuffix(path, ":subscribe") {
				// Ends at once: a consumer that does not exist.
				req.Header.Set("Accept", "text/event-stream")
			}
			resp := b.Send(t, req)
			reason := ""
			var e struct {
				Details []struct {
					Reason string `json:"reason"`
				} `json:"details"`
			}
			if json.Unmarshal(resp.Body, &e) == nil && len(e.Details) > 0 {
				reason = e.Details[0].Reason
			}
			if resp.Status == http.StatusMethodNotAllowed || resp.Status == http.StatusNotImplemented ||
				(resp.Status == http.StatusNotFound && (reason == "NOT_FOUND" || reason == "")) {
				t.Errorf("%s %s (%s): %d %s: not served", method, url, op.OperationID, resp.Status, resp.Body)
			}
		}
	}
	if v3ops != v2ops+bridgeOps {
		t.Errorf("%d operations in the OpenAPI 3 document, want the %d REST routes and %d of the bridge's own", v3ops, v2ops, bridgeOps)
	}
	if bridgeOps < 6 {
		t.Errorf("%d bridge operations documented (healthz, readyz, metrics, the documents, the console)", bridgeOps)
	}
	if r := b.Do(t, http.MethodGet, "/openapi.v2.json", ""); r.Status != http.StatusOK || string(r.Body) != string(openapi.JSON) {
		t.Errorf("GET /openapi.v2.json: %d", r.Status)
	}
}

// TestOpenAPIStreamingRoutesHaveEventStreams: each streaming route
// documents its Server-Sent Events form next to NDJSON, with the schema
// that names its events.
func TestOpenAPIStreamingRoutesHaveEventStreams(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.V3)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"MessageService_Subscribe":             "JetwayServerSentEvents",
		"MessageService_Subscribe2":            "JetwayServerSentEvents",
		"KVService_WatchBucket":                "JetwayWatchServerSentEvents",
		"DeadLetterService_RedriveDeadLetters": "JetwayRedriveServerSentEvents",
	}
	got := map[string]string{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			r := op.Responses.Status(http.StatusOK)
			if r == nil || r.Value == nil {
				continue
			}
			if mt := r.Value.Content.Get("text/event-stream"); mt != nil && mt.Schema != nil {
				got[op.OperationID] = strings.TrimPrefix(mt.Schema.Ref, "#/components/schemas/")
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("operations with an event stream: %v, want %v", got, want)
	}
	for id, schema := range want {
		if got[id] != schema {
			t.Errorf("%s: event-stream schema %q, want %q", id, got[id], schema)
		}
		if doc.Components.Schemas[schema] == nil {
			t.Errorf("schema %s missing", schema)
		}
	}
}
