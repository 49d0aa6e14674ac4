package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// ingestEnv is a bridge with client authentication by API key: "hooks"
// may publish to hooks.> and nostream.> (which no stream captures),
// "other" to other.> only. Stream HOOKS captures hooks.>, OTHER other.>.
type ingestEnv struct {
	b                  *jetwaytest.Bridge
	ctx                context.Context
	hooksKey, otherKey string
}

// ingestMaxBody is the bridge's --http-max-body in these tests.
const ingestMaxBody = 64 << 10

func ingestStart(t *testing.T) *ingestEnv {
	t.Helper()
	e := &ingestEnv{hooksKey: "hooks-api-key-0123456789abcdef", otherKey: "other-api-key-0123456789abcdef"}
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "hooks", APIKeyHashes: []string{auth.HashAPIKey(e.hooksKey)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"hooks.>", "nostream.>"}},
		}},
		{Name: "other", APIKeyHashes: []string{auth.HashAPIKey(e.otherKey)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"other.>"}},
		}},
	}})
	e.b = jetwaytest.Start(t, func(c *config.Config) {
		c.Auth.ConfigFile = path
		c.Server.MaxBodyBytes = ingestMaxBody
	})
	e.ctx = jetwaytest.Context(t, 60*time.Second)
	for name, subj := range map[string]string{"HOOKS": "hooks.>", "OTHER": "other.>"} {
		if _, err := e.b.JS.CreateStream(e.ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatalf("create stream %s: %v", name, err)
		}
	}
	return e
}

// post sends body with contentType ("" for none) and the header pairs.
func (e *ingestEnv) post(t *testing.T, path, contentType string, body []byte, header ...string) jetwaytest.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.b.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return e.b.Send(t, req)
}

// wantRefusal checks an error response's status, gRPC code and reason.
func wantRefusal(t *testing.T, what string, r jetwaytest.Response, httpStatus int, code codes.Code, reason string) {
	t.Helper()
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %d %q: %v", what, r.Status, r.Body, err)
	}
	got := ""
	if len(body.Details) > 0 {
		got = body.Details[0].Reason
	}
	if r.Status != httpStatus || body.Code != int(code) || got != reason {
		t.Errorf("%s: %d code %d reason %q (%s), want %d code %d reason %q", what, r.Status, body.Code, got, body.Message, httpStatus, code, reason)
	}
}

// ack decodes a publish answer.
func ack(t *testing.T, what string, r jetwaytest.Response) (stream string, seq uint64, dup bool) {
	t.Helper()
	var a struct {
		Stream    string `json:"stream"`
		Sequence  uint64 `json:"sequence,string"`
		Duplicate bool   `json:"duplicate"`
	}
	if r.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", what, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("%s: %q: %v", what, r.Body, err)
	}
	return a.Stream, a.Sequence, a.Duplicate
}

func (e *ingestEnv) count(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := e.b.JS.Stream(e.ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestIngestWebhook: a GitHub-like delivery sent twice is stored once,
// with its body byte for byte, its Content-Type and the headers the query
// names, as a native nats.go reader sees it; a binary body is kept exactly.
func TestIngestWebhook(t *testing.T) {
	e := ingestStart(t)
	key := []string{"Authorization", "ApiKey " + e.hooksKey}
	body := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}` + "\n")
	path := "/v1/subjects/hooks.github:ingest?header=X-GitHub-Event&header=X-Hub-Signature-256&header=X-Absent&dedupe_header=X-GitHub-Delivery"
	delivery := append(key, "X-GitHub-Event", "push", "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"X-Hub-Signature-256", "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c", "X-Other", "not copied")

	st, seq, dup := ack(t, "first delivery", e.post(t, path, "application/json", body, delivery...))
	if st != "HOOKS" || seq != 1 || dup {
		t.Fatalf("first delivery: %s %d %v", st, seq, dup)
	}
	st, seq, dup = ack(t, "redelivery", e.post(t, path, "application/json", body, delivery...))
	if st != "HOOKS" || seq != 1 || !dup {
		t.Fatalf("redelivery: %s %d duplicate %v, want HOOKS 1 true", st, seq, dup)
	}
	if n := e.count(t, "HOOKS"); n != 1 {
		t.Fatalf("HOOKS holds %d messages, want 1", n)
	}

	// What a native consumer reads.
	cons, err := e.b.JS.OrderedConsumer(e.ctx, "HOOKS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Headers()
	if !bytes.Equal(msg.Data(), body) || msg.Subject() != "hooks.github" {
		t.Errorf("stored %q on %s, want %q on hooks.github", msg.Data(), msg.Subject(), body)
	}
	for name, want := range map[string]string{
		"Content-Type":        "application/json",
		"X-GitHub-Event":      "push",
		"X-Hub-Signature-256": "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
		"Nats-Msg-Id":         "72d3162e-cc78-11e3-81ab-4c9367dc0958",
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"X-Other", "X-Absent", "Authorization", "X-GitHub-Delivery"} {
		if v := h.Get(name); v != "" {
			t.Errorf("header %s = %q, want none", name, v)
		}
	}

	// Every byte value, and a Content-Type with a charset JSON routes refuse.
	bin := make([]byte, 4096)
	for i := range bin {
		bin[i] = byte(i*7 + i/256)
	}
	_, seq, _ = ack(t, "binary", e.post(t, "/v1/subjects/hooks.device:ingest", "application/octet-stream", bin, key...))
	got, err := e.b.JS.Stream(e.ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := got.GetMsg(e.ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw.Data, bin) || raw.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("binary body stored as %d bytes (equal %v), Content-Type %q", len(raw.Data), bytes.Equal(raw.Data, bin), raw.Header.Get("Content-Type"))
	}
	form := []byte("token=x&text=caf\xe9")
	_, seq, _ = ack(t, "form", e.post(t, "/v1/subjects/hooks.slack:ingest?msg_id=slack-1", "application/x-www-form-urlencoded; charset=ISO-8859-1", form, key...))
	if raw, err = got.GetMsg(e.ctx, seq); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw.Data, form) || raw.Header.Get("Content-Type") != "application/x-www-form-urlencoded; charset=ISO-8859-1" || raw.Header.Get("Nats-Msg-Id") != "slack-1" {
		t.Errorf("form body stored as %q with headers %v", raw.Data, raw.Header)
	}
	// No body, no Content-Type: an empty message.
	_, seq, _ = ack(t, "empty", e.post(t, "/v1/subjects/hooks.ping:ingest", "", nil, append(key, "Idempotency-Key", "ping-1")...))
	if raw, err = got.GetMsg(e.ctx, seq); err != nil {
		t.Fatal(err)
	}
	if len(raw.Data) != 0 || raw.Header.Get("Content-Type") != "" || raw.Header.Get("Nats-Msg-Id") != "ping-1" {
		t.Errorf("empty ingest stored %q with headers %v", raw.Data, raw.Header)
	}

	// gRPC: the same call with the headers given directly.
	gctx := metadata.AppendToOutgoingContext(e.ctx, "authorization", "ApiKey "+e.hooksKey)
	resp, err := e.b.Messages.Ingest(gctx, &jetwayv1.IngestRequest{
		Subject: "hooks.grpc", Data: []byte{0, 1, 2},
		Headers: map[string]*jetwayv1.HeaderValues{"Content-Type": {Values: []string{"application/cbor"}}},
		MsgId:   "grpc-1",
	})
	if err != nil || resp.GetStream() != "HOOKS" || resp.GetDuplicate() {
		t.Fatalf("gRPC Ingest: %v, %v", resp, err)
	}
	if raw, err = got.GetMsg(e.ctx, resp.GetSequence()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw.Data, []byte{0, 1, 2}) || raw.Header.Get("Content-Type") != "application/cbor" {
		t.Errorf("gRPC ingest stored %q with headers %v", raw.Data, raw.Header)
	}
}

// TestIngestRefusals: each refusal of the ingest route has its status and
// reason, and stores nothing.
func TestIngestRefusals(t *testing.T) {
	e := ingestStart(t)
	key := []string{"Authorization", "ApiKey " + e.hooksKey}
	many := strings.Repeat("header=X-A&", 17)
	for _, c := range []struct {
		name, path, contentType string
		body                    []byte
		header                  []string
		status                  int
		code                    codes.Code
		reason                  string
	}{
		{"no credential", "/v1/subjects/hooks.a:ingest", "text/plain", []byte("x"), nil, 401, codes.Unauthenticated, "UNAUTHENTICATED"},
		{"other identity's subject", "/v1/subjects/hooks.a:ingest", "text/plain", []byte("x"),
			[]string{"Authorization", "ApiKey " + e.otherKey}, 403, codes.PermissionDenied, "NOT_PERMITTED"},
		{"cross-site text/plain POST", "/v1/subjects/hooks.a:ingest", "text/plain", []byte("x"),
			append(key, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"), 403, codes.PermissionDenied, "CROSS_ORIGIN_REFUSED"},
		{"cross-origin form POST without Sec-Fetch-Site", "/v1/subjects/hooks.a:ingest", "application/x-www-form-urlencoded", []byte("a=b"),
			append(key, "Origin", "https://evil.example"), 403, codes.PermissionDenied, "CROSS_ORIGIN_REFUSED"},
		{"too large", "/v1/subjects/hooks.a:ingest", "application/octet-stream", make([]byte, ingestMaxBody+1), key, 413, codes.InvalidArgument, "BODY_TOO_LARGE"},
		{"Nats- header", "/v1/subjects/hooks.a:ingest?header=Nats-Expected-Stream", "text/plain", []byte("x"),
			append(key, "Nats-Expected-Stream", "OTHER"), 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"credential header", "/v1/subjects/hooks.a:ingest?header=authorization", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"hop-by-hop header", "/v1/subjects/hooks.a:ingest?header=Connection", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"credential as dedupe header", "/v1/subjects/hooks.a:ingest?dedupe_header=Authorization", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"not a header name", "/v1/subjects/hooks.a:ingest?header=X%20A", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"too many headers", "/v1/subjects/hooks.a:ingest?" + many, "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"dedupe header missing", "/v1/subjects/hooks.a:ingest?dedupe_header=X-GitHub-Delivery", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_HEADER"},
		{"two message ids", "/v1/subjects/hooks.a:ingest?dedupe_header=X-Id", "text/plain", []byte("x"),
			append(key, "X-Id", "a", "Idempotency-Key", "b"), 400, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"unknown parameter", "/v1/subjects/hooks.a:ingest?heder=X-A", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"headers map in the query", "/v1/subjects/hooks.a:ingest?headers%5BX%5D=y", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"reserved subject", "/v1/subjects/$JS.API.STREAM.DELETE.HOOKS:ingest", "text/plain", []byte("x"), key, 400, codes.InvalidArgument, "INVALID_SUBJECT"},
		{"an API key in the URL", "/v1/subjects/hooks.a:ingest?access_token=" + e.hooksKey, "text/plain", []byte("x"), nil, 400, codes.InvalidArgument, "ACCESS_TOKEN_IN_QUERY"},
	} {
		wantRefusal(t, c.name, e.post(t, c.path, c.contentType, c.body, c.header...), c.status, c.code, c.reason)
	}
	if n := e.count(t, "HOOKS"); n != 0 {
		t.Errorf("HOOKS holds %d messages after refusals, want 0", n)
	}
	// A same-origin browser request passes the cross-origin check.
	ack(t, "same-origin", e.post(t, "/v1/subjects/hooks.a:ingest", "text/plain", []byte("x"), append(key, "Sec-Fetch-Site", "same-origin")...))
}

// TestIngestNeedsAuthentication: without client authentication Ingest is
// refused on both transports, and nothing is stored.
func TestIngestNeedsAuthentication(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "HOOKS", Subjects: []string{"hooks.>"}}); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, b.BaseURL+"/v1/subjects/hooks.a:ingest", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	wantRefusal(t, "REST ingest, auth off", b.Send(t, req), 403, codes.PermissionDenied, "AUTH_REQUIRED")
	_, err = b.Messages.Ingest(ctx, &jetwayv1.IngestRequest{Subject: "hooks.a", Data: []byte("x")})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || reasonOf(err) != "AUTH_REQUIRED" {
		t.Errorf("gRPC ingest, auth off: %v", err)
	}
	// Publish stays open, as before.
	if r := b.Do(t, http.MethodPost, "/v1/subjects/hooks.a:publish", `{"text":"x"}`); r.Status != 200 {
		t.Errorf("publish, auth off: %d %s", r.Status, r.Body)
	}
	s, err := b.JS.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("HOOKS: %v, %v; want the publish only", info, err)
	}
}

// TestPublishBatchREST: a batch mixing good, forbidden and invalid
// messages answers a result per message in order, and stores exactly the
// good ones; an empty batch and one over the cap are refused whole.
func TestPublishBatchREST(t *testing.T) {
	e := ingestStart(t)
	key := []string{"Authorization", "ApiKey " + e.hooksKey}
	body := `{"messages":[
		{"subject":"hooks.a","json":{"n":1},"msg_id":"m-1"},
		{"subject":"other.x","text":"forbidden to hooks"},
		{"subject":"bad subject","text":"x"},
		{"subject":"hooks.b","data":"AAEC","headers":{"X-Kind":{"values":["raw"]}}},
		{"subject":"hooks.c","text":"x","headers":{"Nats-Msg-Id":{"values":["sneaky"]}}},
		{"subject":"nostream.x","text":"no stream captures it"},
		{"subject":"hooks.a","json":{"n":1},"msg_id":"m-1"},
		{"subject":"hooks.a","text":"x","expected_last_subject_sequence":"0"}
	]}`
	r := e.b.Do(t, http.MethodPost, "/v1/messages:publish", body, key...)
	if r.Status != 200 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	var resp struct {
		Results []struct {
			Ack *struct {
				Stream    string `json:"stream"`
				Sequence  uint64 `json:"sequence,string"`
				Duplicate bool   `json:"duplicate"`
			} `json:"ack"`
			Error *struct {
				Code   int    `json:"code"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &resp); err != nil {
		t.Fatal(err)
	}
	want := []string{"ack HOOKS 1", "error 7 NOT_PERMITTED", "error 3 INVALID_SUBJECT", "ack HOOKS 2", "error 3 INVALID_HEADER",
		"error 5 NO_STREAM_FOR_SUBJECT", "ack HOOKS 1 duplicate", "error 10 WRONG_LAST_SEQUENCE"}
	if len(resp.Results) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(resp.Results), len(want), r.Body)
	}
	for i, res := range resp.Results {
		var got string
		switch {
		case res.Ack != nil && res.Error == nil:
			got = fmt.Sprintf("ack %s %d", res.Ack.Stream, res.Ack.Sequence)
			if res.Ack.Duplicate {
				got += " duplicate"
			}
		case res.Error != nil && res.Ack == nil:
			got = fmt.Sprintf("error %d %s", res.Error.Code, res.Error.Reason)
		}
		if got != want[i] {
			t.Errorf("result %d: %q, want %q", i, got, want[i])
		}
	}
	if n := e.count(t, "HOOKS"); n != 2 {
		t.Errorf("HOOKS holds %d messages, want 2", n)
	}
	if n := e.count(t, "OTHER"); n != 0 {
		t.Errorf("OTHER holds %d messages, want 0", n)
	}

	var over strings.Builder
	over.WriteString(`{"messages":[`)
	for i := range 1001 {
		if i > 0 {
			over.WriteByte(',')
		}
		over.WriteString(`{"subject":"hooks.a","text":"x"}`)
	}
	over.WriteString(`]}`)
	wantRefusal(t, "1001 messages", e.b.Do(t, http.MethodPost, "/v1/messages:publish", over.String(), key...), 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantRefusal(t, "no messages", e.b.Do(t, http.MethodPost, "/v1/messages:publish", `{"messages":[]}`, key...), 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantRefusal(t, "not JSON", e.post(t, "/v1/messages:publish", "text/plain", []byte("x"), key...), 415, codes.InvalidArgument, "UNSUPPORTED_MEDIA_TYPE")
	if n := e.count(t, "HOOKS"); n != 2 {
		t.Errorf("HOOKS holds %d messages after the refused batches, want 2", n)
	}

	// gRPC, the same semantics.
	gctx := metadata.AppendToOutgoingContext(e.ctx, "authorization", "ApiKey "+e.otherKey)
	g, err := e.b.Messages.PublishBatch(gctx, &jetwayv1.PublishBatchRequest{Messages: []*jetwayv1.PublishRequest{
		{Subject: "other.a", Payload: &jetwayv1.PublishRequest_Text{Text: "1"}},
		{Subject: "hooks.a", Payload: &jetwayv1.PublishRequest_Text{Text: "forbidden to other"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := g.GetResults(); len(rs) != 2 || rs[0].GetAck().GetStream() != "OTHER" || rs[1].GetError().GetReason() != "NOT_PERMITTED" {
		t.Errorf("gRPC batch: %v", g)
	}
	_, err = e.b.Messages.PublishBatch(gctx, &jetwayv1.PublishBatchRequest{})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument {
		t.Errorf("empty gRPC batch: %v", err)
	}
}

// TestIngestAccessToken: an access token minted for publishing to one
// subject, given in the ingest URL (a webhook sender is given only a
// URL), publishes there and nowhere else.
func TestIngestAccessToken(t *testing.T) {
	e := ingestStart(t)
	r := e.b.Do(t, http.MethodPost, "/v1/access-tokens",
		`{"operations":["OPERATION_PUBLISH"],"subjects":["hooks.github"],"ttl":"600s"}`, "Authorization", "ApiKey "+e.hooksKey)
	if r.Status != 200 {
		t.Fatalf("mint: %d %s", r.Status, r.Body)
	}
	tok, _ := r.JSON(t)["token"].(string)
	if !strings.HasPrefix(tok, auth.AccessTokenPrefix) {
		t.Fatalf("token %q", tok)
	}
	path := "/v1/subjects/hooks.github:ingest?dedupe_header=X-GitHub-Delivery&access_token=" + tok
	if st, seq, dup := ack(t, "token ingest", e.post(t, path, "application/json", []byte(`{}`), "X-GitHub-Delivery", "d-1")); st != "HOOKS" || seq != 1 || dup {
		t.Errorf("token ingest: %s %d %v", st, seq, dup)
	}
	wantRefusal(t, "token on another subject", e.post(t, "/v1/subjects/hooks.stripe:ingest?access_token="+tok, "application/json", []byte(`{}`)),
		403, codes.PermissionDenied, "NOT_PERMITTED")
	wantRefusal(t, "token on publish's URL", e.post(t, "/v1/subjects/hooks.github:publish?access_token="+tok, "application/json", []byte(`{"text":"x"}`)),
		400, codes.InvalidArgument, "ACCESS_TOKEN_IN_QUERY")
	if n := e.count(t, "HOOKS"); n != 1 {
		t.Errorf("HOOKS holds %d messages, want 1", n)
	}
}
