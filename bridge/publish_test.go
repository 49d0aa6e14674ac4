package bridge_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// pubMaxPayload is the embedded nats-server's default max payload.
const pubMaxPayload = 1 << 20

// pubBodyCap is the REST body cap the server derives from it:
// 2 × max payload + 64 KiB.
const pubBodyCap = 2*pubMaxPayload + 64<<10

// pubStart starts a bridge for a parallel test and returns it with a
// context bounding the whole test.
func pubStart(t *testing.T) (*jetwaytest.Bridge, context.Context) {
	t.Helper()
	t.Parallel()
	b := jetwaytest.Start(t)
	return b, jetwaytest.Context(t, 30*time.Second)
}

// pubStream creates a memory stream natively.
func pubStream(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	cfg.Storage = jetstream.MemoryStorage
	s, err := b.JS.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatalf("create stream %s: %v", cfg.Name, err)
	}
	return s
}

// pubMsgCount is the number of messages a stream holds now.
func pubMsgCount(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream string) uint64 {
	t.Helper()
	s, err := b.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

// pubGetMsg reads a stored message natively.
func pubGetMsg(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream string, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := b.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("stream %s: get message %d: %v", stream, seq, err)
	}
	return m
}

// pubCodeReason is the code and ErrorInfo reason of a gRPC error.
func pubCodeReason(t *testing.T, err error) (codes.Code, string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status error: %v", err)
	}
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetDomain() != "jetway.dev" {
				t.Errorf("ErrorInfo domain = %q, want jetway.dev", info.GetDomain())
			}
			reason = info.GetReason()
		}
	}
	return st.Code(), reason
}

// pubWantErr checks that err is a status with code and reason.
func pubWantErr(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %v %s", what, code, reason)
		return
	}
	gotCode, gotReason := pubCodeReason(t, err)
	if gotCode != code || gotReason != reason {
		t.Errorf("%s: got %v %q (%v), want %v %q", what, gotCode, gotReason, err, code, reason)
	}
}

// pubRESTError is the JSON body of a REST error.
type pubRESTError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type   string `json:"@type"`
		Reason string `json:"reason"`
		Domain string `json:"domain"`
	} `json:"details"`
}

// pubWantREST checks a REST error response: HTTP status, and the ErrorInfo
// reason when reason is not empty.
func pubWantREST(t *testing.T, what string, r jetwaytest.Response, httpStatus int, reason string) {
	t.Helper()
	if r.Status != httpStatus {
		t.Errorf("%s: HTTP %d %s, want %d", what, r.Status, r.Body, httpStatus)
		return
	}
	var e pubRESTError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Errorf("%s: error body %q: %v", what, r.Body, err)
		return
	}
	if e.Code == 0 || e.Message == "" {
		t.Errorf("%s: error body %s lacks code or message", what, r.Body)
	}
	if reason == "" {
		return
	}
	for _, d := range e.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			if d.Reason != reason || d.Domain != "jetway.dev" {
				t.Errorf("%s: ErrorInfo %s/%s, want %s/jetway.dev (body %s)", what, d.Reason, d.Domain, reason, r.Body)
			}
			return
		}
	}
	t.Errorf("%s: no ErrorInfo in %s, want reason %s", what, r.Body, reason)
}

// pubPost publishes over REST; subject goes into the path as given (the
// caller escapes what must be escaped).
func pubPost(t *testing.T, b *jetwaytest.Bridge, subject, body string, header ...string) jetwaytest.Response {
	t.Helper()
	return b.Do(t, http.MethodPost, "/v1/subjects/"+subject+":publish", body, header...)
}

// pubPostSlow is pubPost for a request the bridge needs long for, bounded
// by ctx instead of Do's fixed 10s: decoding a JSON body of 200,000
// values takes seconds under -race and can pass 10s on a loaded machine.
func pubPostSlow(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, subject, body string) jetwaytest.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.BaseURL+"/v1/subjects/"+subject+":publish", strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// pubRESTAck decodes a successful REST publish.
func pubRESTAck(t *testing.T, what string, r jetwaytest.Response) *jetwayv1.PublishResponse {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("%s: HTTP %d %s, want 200", what, r.Status, r.Body)
	}
	var a struct {
		Stream    string `json:"stream"`
		Sequence  string `json:"sequence"`
		Duplicate *bool  `json:"duplicate"`
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("%s: decode %s: %v", what, r.Body, err)
	}
	seq, err := strconv.ParseUint(a.Sequence, 10, 64)
	if err != nil {
		t.Fatalf("%s: sequence %q is not an int64 string: %s", what, a.Sequence, r.Body)
	}
	if a.Duplicate == nil {
		t.Errorf("%s: duplicate missing from %s", what, r.Body)
		a.Duplicate = new(bool)
	}
	return &jetwayv1.PublishResponse{Stream: a.Stream, Sequence: seq, Duplicate: *a.Duplicate}
}

// pubPublish publishes over gRPC and fails the test on error.
func pubPublish(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, req *jetwayv1.PublishRequest) *jetwayv1.PublishResponse {
	t.Helper()
	resp, err := b.Messages.Publish(ctx, req)
	if err != nil {
		t.Fatalf("Publish(%v): %v", req, err)
	}
	return resp
}

func TestPublishPayloadKinds(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "KINDS", Subjects: []string{"kinds.>"}})

	jsonVal, err := structpb.NewValue(map[string]any{"a": 1, "b": "<x>", "c": []any{true, nil, "&é", -2.5}})
	if err != nil {
		t.Fatal(err)
	}
	grpcCases := []struct {
		name string
		req  *jetwayv1.PublishRequest
		want []byte
	}{
		{"data", &jetwayv1.PublishRequest{Payload: &jetwayv1.PublishRequest_Data{Data: []byte{0, 1, 0xff, '\r', '\n'}}}, []byte{0, 1, 0xff, '\r', '\n'}},
		{"json", &jetwayv1.PublishRequest{Payload: &jetwayv1.PublishRequest_Json{Json: jsonVal}}, []byte(`{"a":1,"b":"<x>","c":[true,null,"&é",-2.5]}`)},
		{"json string", &jetwayv1.PublishRequest{Payload: &jetwayv1.PublishRequest_Json{Json: structpb.NewStringValue("a<b>&c")}}, []byte(`"a<b>&c"`)},
		{"json null", &jetwayv1.PublishRequest{Payload: &jetwayv1.PublishRequest_Json{Json: structpb.NewNullValue()}}, []byte(`null`)},
		{"text", &jetwayv1.PublishRequest{Payload: &jetwayv1.PublishRequest_Text{Text: "héllo <&>\n"}}, []byte("héllo <&>\n")},
		{"empty", &jetwayv1.PublishRequest{}, nil},
	}
	for i, c := range grpcCases {
		c.req.Subject = "kinds.grpc." + strconv.Itoa(i)
		resp := pubPublish(ctx, t, b, c.req)
		if resp.GetStream() != "KINDS" || resp.GetDuplicate() {
			t.Errorf("gRPC %s: ack %v", c.name, resp)
		}
		m := pubGetMsg(ctx, t, b, "KINDS", resp.GetSequence())
		if m.Subject != c.req.Subject || !bytes.Equal(m.Data, c.want) {
			t.Errorf("gRPC %s: stored %q %q, want %q %q", c.name, m.Subject, m.Data, c.req.Subject, c.want)
		}
	}

	// What is stored for a JSON payload is always valid JSON meaning what
	// the client sent, even where encoding/json escapes (U+2028) or
	// google.protobuf.Value has no JSON number (NaN, ±Inf: structpb turns
	// them into strings) — or the publish is refused as INVALID_ARGUMENT.
	for _, v := range []*structpb.Value{
		structpb.NewStringValue("line\u2028sep\u2029<\x00>"),
		structpb.NewNumberValue(math.NaN()),
		structpb.NewNumberValue(math.Inf(-1)),
		structpb.NewNumberValue(1e300),
		structpb.NewNumberValue(-0.0),
	} {
		resp, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "kinds.odd", Payload: &jetwayv1.PublishRequest_Json{Json: v}})
		if err != nil {
			pubWantErr(t, fmt.Sprintf("gRPC json %v", v), err, codes.InvalidArgument, "INVALID_ARGUMENT")
			continue
		}
		data := pubGetMsg(ctx, t, b, "KINDS", resp.GetSequence()).Data
		var got any
		if err := json.Unmarshal(data, &got); err != nil {
			t.Errorf("gRPC json %v: stored %q is not JSON: %v", v, data, err)
			continue
		}
		if want := v.AsInterface(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("gRPC json %v: stored %q means %v, want %v", v, data, got, want)
		}
	}

	restCases := []struct {
		name, body string
		want       []byte
	}{
		{"data", `{"data":"` + base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff}) + `"}`, []byte{0, 1, 0xff}},
		{"json", `{"json":{"a":1,"b":"<x>"}}`, []byte(`{"a":1,"b":"<x>"}`)},
		{"json spaced", "{\"json\": { \"a\" : [ 1 , 2.5, \"\\u003c/script\\u003e\" ] } }", []byte(`{"a":[1,2.5,"</script>"]}`)},
		{"json null", `{"json":null}`, []byte(`null`)},
		{"text", `{"text":"h\u00e9llo <&>"}`, []byte("héllo <&>")},
		{"empty object", `{}`, nil},
	}
	for i, c := range restCases {
		subject := "kinds.rest." + strconv.Itoa(i)
		ack := pubRESTAck(t, "REST "+c.name, pubPost(t, b, subject, c.body))
		if ack.GetStream() != "KINDS" || ack.GetDuplicate() {
			t.Errorf("REST %s: ack %v", c.name, ack)
		}
		m := pubGetMsg(ctx, t, b, "KINDS", ack.GetSequence())
		if m.Subject != subject || !bytes.Equal(m.Data, c.want) {
			t.Errorf("REST %s: stored %q %q, want %q %q", c.name, m.Subject, m.Data, subject, c.want)
		}
	}
}

func TestPublishHeaders(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "HDR", Subjects: []string{"hdr.>"}})

	resp := pubPublish(ctx, t, b, &jetwayv1.PublishRequest{
		Subject: "hdr.grpc",
		Payload: &jetwayv1.PublishRequest_Text{Text: "x"},
		Headers: map[string]*jetwayv1.HeaderValues{
			"X-A":     {Values: []string{"1", "2"}},
			"X-Empty": {Values: []string{""}},
			"X-Utf8":  {Values: []string{"héllo wörld: ok"}},
		},
	})
	m := pubGetMsg(ctx, t, b, "HDR", resp.GetSequence())
	if got := m.Header.Values("X-A"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("gRPC: stored X-A = %q, want [1 2] (headers %v)", got, m.Header)
	}
	if got := m.Header.Values("X-Utf8"); !slices.Equal(got, []string{"héllo wörld: ok"}) {
		t.Errorf("gRPC: stored X-Utf8 = %q (headers %v)", got, m.Header)
	}
	if got, ok := m.Header["X-Empty"]; !ok || !slices.Equal(got, []string{""}) {
		t.Errorf("gRPC: stored X-Empty = %q, %v (headers %v)", got, ok, m.Header)
	}

	ack := pubRESTAck(t, "REST headers", pubPost(t, b, "hdr.rest",
		`{"text":"y","headers":{"X-A":{"values":["1","2"]},"X-B":{"values":["b"]}}}`))
	m = pubGetMsg(ctx, t, b, "HDR", ack.GetSequence())
	if got := m.Header.Values("X-A"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("REST: stored X-A = %q, want [1 2] (headers %v)", got, m.Header)
	}
	if got := m.Header.Get("X-B"); got != "b" {
		t.Errorf("REST: stored X-B = %q, want b", got)
	}

	bad := []struct {
		name    string
		headers map[string]*jetwayv1.HeaderValues
		json    string
	}{
		{"reserved Nats-Foo", map[string]*jetwayv1.HeaderValues{"Nats-Foo": {Values: []string{"1"}}}, `{"Nats-Foo":{"values":["1"]}}`},
		{"reserved lower-case nats-msg-id", map[string]*jetwayv1.HeaderValues{"nats-msg-id": {Values: []string{"1"}}}, `{"nats-msg-id":{"values":["1"]}}`},
		{"reserved NATS-TTL", map[string]*jetwayv1.HeaderValues{"NATS-TTL": {Values: []string{"1s"}}}, `{"NATS-TTL":{"values":["1s"]}}`},
		{"CRLF in value", map[string]*jetwayv1.HeaderValues{"X-A": {Values: []string{"a\r\nNats-Msg-Id: evil"}}}, `{"X-A":{"values":["a\r\nNats-Msg-Id: evil"]}}`},
		{"LF in value", map[string]*jetwayv1.HeaderValues{"X-A": {Values: []string{"ok", "a\nb"}}}, `{"X-A":{"values":["ok","a\nb"]}}`},
		{"colon in name", map[string]*jetwayv1.HeaderValues{"X:A": {Values: []string{"1"}}}, `{"X:A":{"values":["1"]}}`},
		{"space in name", map[string]*jetwayv1.HeaderValues{"X A": {Values: []string{"1"}}}, `{"X A":{"values":["1"]}}`},
		{"empty name", map[string]*jetwayv1.HeaderValues{"": {Values: []string{"1"}}}, `{"":{"values":["1"]}}`},
		{"no values", map[string]*jetwayv1.HeaderValues{"X-A": {}}, `{"X-A":{"values":[]}}`},
	}
	for _, c := range bad {
		_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "hdr.bad", Headers: c.headers})
		pubWantErr(t, "gRPC "+c.name, err, codes.InvalidArgument, "INVALID_HEADER")
		r := pubPost(t, b, "hdr.bad", `{"text":"z","headers":`+c.json+`}`)
		pubWantREST(t, "REST "+c.name, r, http.StatusBadRequest, "INVALID_HEADER")
	}
	if n := pubMsgCount(ctx, t, b, "HDR"); n != 2 {
		t.Errorf("stream HDR holds %d messages, want 2 (refused ones must not be stored)", n)
	}
}

func TestPublishDedupe(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "DEDUPE", Subjects: []string{"dd.>"}})

	req := &jetwayv1.PublishRequest{Subject: "dd.grpc", MsgId: "id-1", Payload: &jetwayv1.PublishRequest_Text{Text: "first"}}
	first := pubPublish(ctx, t, b, req)
	second := pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "dd.grpc", MsgId: "id-1", Payload: &jetwayv1.PublishRequest_Text{Text: "second"}})
	if first.GetDuplicate() || !second.GetDuplicate() || second.GetSequence() != first.GetSequence() || second.GetStream() != "DEDUPE" {
		t.Errorf("gRPC dedupe: first %v, second %v; want second duplicate with the same sequence", first, second)
	}
	if m := pubGetMsg(ctx, t, b, "DEDUPE", first.GetSequence()); string(m.Data) != "first" || m.Header.Get("Nats-Msg-Id") != "id-1" {
		t.Errorf("stored %q with Nats-Msg-Id %q, want first/id-1", m.Data, m.Header.Get("Nats-Msg-Id"))
	}

	// gRPC clients may send the idempotency-key metadata themselves.
	mdCtx := metadata.AppendToOutgoingContext(ctx, "idempotency-key", "md-1")
	a1 := pubPublish(mdCtx, t, b, &jetwayv1.PublishRequest{Subject: "dd.md"})
	a2 := pubPublish(mdCtx, t, b, &jetwayv1.PublishRequest{Subject: "dd.md"})
	if a1.GetDuplicate() || !a2.GetDuplicate() || a1.GetSequence() != a2.GetSequence() {
		t.Errorf("gRPC idempotency-key metadata: %v then %v, want the second duplicate", a1, a2)
	}

	// REST: the Idempotency-Key header is the msg_id.
	r1 := pubRESTAck(t, "REST key 1", pubPost(t, b, "dd.rest", `{"text":"a"}`, "Idempotency-Key", "key-1"))
	r2 := pubRESTAck(t, "REST key 2", pubPost(t, b, "dd.rest", `{"text":"b"}`, "Idempotency-Key", "key-1"))
	if r1.GetDuplicate() || !r2.GetDuplicate() || r1.GetSequence() != r2.GetSequence() {
		t.Errorf("REST Idempotency-Key: %v then %v, want the second duplicate with the same sequence", r1, r2)
	}
	if m := pubGetMsg(ctx, t, b, "DEDUPE", r1.GetSequence()); m.Header.Get("Nats-Msg-Id") != "key-1" || string(m.Data) != "a" {
		t.Errorf("REST: stored %q with Nats-Msg-Id %q, want a/key-1", m.Data, m.Header.Get("Nats-Msg-Id"))
	}

	// A msg_id in the body wins over the header.
	r3 := pubRESTAck(t, "REST body msg_id", pubPost(t, b, "dd.rest", `{"text":"c","msg_id":"body-1"}`, "Idempotency-Key", "key-1"))
	if r3.GetDuplicate() {
		t.Errorf("body msg_id with a used Idempotency-Key: duplicate, want the body's msg_id to be used")
	} else if m := pubGetMsg(ctx, t, b, "DEDUPE", r3.GetSequence()); m.Header.Get("Nats-Msg-Id") != "body-1" {
		t.Errorf("stored Nats-Msg-Id %q, want body-1", m.Header.Get("Nats-Msg-Id"))
	}

	// Grpc-Metadata-* headers are not forwarded: no dedupe here.
	g1 := pubRESTAck(t, "Grpc-Metadata 1", pubPost(t, b, "dd.gm", `{"text":"g"}`, "Grpc-Metadata-Idempotency-Key", "k1"))
	g2 := pubRESTAck(t, "Grpc-Metadata 2", pubPost(t, b, "dd.gm", `{"text":"g"}`, "Grpc-Metadata-Idempotency-Key", "k1"))
	if g1.GetDuplicate() || g2.GetDuplicate() || g1.GetSequence() == g2.GetSequence() {
		t.Errorf("Grpc-Metadata-Idempotency-Key was forwarded: %v then %v", g1, g2)
	}
	if m := pubGetMsg(ctx, t, b, "DEDUPE", g2.GetSequence()); m.Header.Get("Nats-Msg-Id") != "" {
		t.Errorf("Grpc-Metadata-Idempotency-Key became Nats-Msg-Id %q", m.Header.Get("Nats-Msg-Id"))
	}

	// msg_id limits.
	_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "dd.bad", MsgId: strings.Repeat("m", 256)})
	pubWantErr(t, "gRPC msg_id of 256 bytes", err, codes.InvalidArgument, "INVALID_ARGUMENT")
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "dd.bad", MsgId: "a\r\nb"})
	pubWantErr(t, "gRPC msg_id with CRLF", err, codes.InvalidArgument, "INVALID_ARGUMENT")
	pubWantREST(t, "REST Idempotency-Key of 256 bytes", pubPost(t, b, "dd.bad", `{}`, "Idempotency-Key", strings.Repeat("m", 256)), http.StatusBadRequest, "INVALID_ARGUMENT")
	a := pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "dd.max", MsgId: strings.Repeat("m", 255)})
	if a.GetDuplicate() {
		t.Errorf("msg_id of 255 bytes: duplicate on first use")
	}
}

func TestPublishExpectations(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "EXP", Subjects: []string{"exp.>"}})
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "EXPREST", Subjects: []string{"exprest.>"}})

	pub := func(req *jetwayv1.PublishRequest) (*jetwayv1.PublishResponse, error) {
		if req.Subject == "" {
			req.Subject = "exp.a"
		}
		return b.Messages.Publish(ctx, req)
	}
	wantSeq := func(what string, resp *jetwayv1.PublishResponse, err error, seq uint64) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if resp.GetSequence() != seq || resp.GetStream() != "EXP" {
			t.Errorf("%s: ack %v, want EXP sequence %d", what, resp, seq)
		}
	}

	// expected_last_sequence 0 means "empty" (proto3 optional).
	resp, err := pub(&jetwayv1.PublishRequest{ExpectedLastSequence: proto.Uint64(0), MsgId: "m1"})
	wantSeq("expected_last_sequence 0 on an empty stream", resp, err, 1)
	_, err = pub(&jetwayv1.PublishRequest{ExpectedLastSequence: proto.Uint64(0)})
	pubWantErr(t, "expected_last_sequence 0 on a non-empty stream", err, codes.Aborted, "WRONG_LAST_SEQUENCE")
	_, err = pub(&jetwayv1.PublishRequest{ExpectedLastSequence: proto.Uint64(7)})
	pubWantErr(t, "expected_last_sequence 7", err, codes.Aborted, "WRONG_LAST_SEQUENCE")
	resp, err = pub(&jetwayv1.PublishRequest{ExpectedLastSequence: proto.Uint64(1), MsgId: "m2"})
	wantSeq("expected_last_sequence 1", resp, err, 2)

	resp, err = pub(&jetwayv1.PublishRequest{ExpectedStream: "EXP"})
	wantSeq("expected_stream EXP", resp, err, 3)
	_, err = pub(&jetwayv1.PublishRequest{ExpectedStream: "OTHER"})
	pubWantErr(t, "expected_stream OTHER", err, codes.Aborted, "WRONG_EXPECTED_STREAM")
	_, err = pub(&jetwayv1.PublishRequest{ExpectedStream: "NOPE"})
	pubWantErr(t, "expected_stream NOPE", err, codes.Aborted, "WRONG_EXPECTED_STREAM")
	_, err = pub(&jetwayv1.PublishRequest{ExpectedStream: "a.b"})
	pubWantErr(t, "expected_stream a.b", err, codes.InvalidArgument, "INVALID_NAME")

	resp, err = pub(&jetwayv1.PublishRequest{Subject: "exp.s", ExpectedLastSubjectSequence: proto.Uint64(0)})
	wantSeq("expected_last_subject_sequence 0 on a new subject", resp, err, 4)
	_, err = pub(&jetwayv1.PublishRequest{Subject: "exp.s", ExpectedLastSubjectSequence: proto.Uint64(0)})
	pubWantErr(t, "expected_last_subject_sequence 0 after a message", err, codes.Aborted, "WRONG_LAST_SEQUENCE")
	_, err = pub(&jetwayv1.PublishRequest{Subject: "exp.s", ExpectedLastSubjectSequence: proto.Uint64(3)})
	pubWantErr(t, "expected_last_subject_sequence 3", err, codes.Aborted, "WRONG_LAST_SEQUENCE")
	resp, err = pub(&jetwayv1.PublishRequest{Subject: "exp.s", ExpectedLastSubjectSequence: proto.Uint64(4), MsgId: "m5"})
	wantSeq("expected_last_subject_sequence 4", resp, err, 5)

	resp, err = pub(&jetwayv1.PublishRequest{ExpectedLastMsgId: "m5", MsgId: "m6"})
	wantSeq("expected_last_msg_id m5", resp, err, 6)
	_, err = pub(&jetwayv1.PublishRequest{ExpectedLastMsgId: "m5"})
	pubWantErr(t, "expected_last_msg_id m5 after m6", err, codes.Aborted, "WRONG_LAST_MSG_ID")

	if n := pubMsgCount(ctx, t, b, "EXP"); n != 6 {
		t.Errorf("EXP holds %d messages, want 6", n)
	}

	// The same over REST: 409 with the reasons.
	post := func(body string) jetwaytest.Response { return pubPost(t, b, "exprest.a", body) }
	if a := pubRESTAck(t, "REST expected_last_sequence 0 on an empty stream", post(`{"expected_last_sequence":"0","msg_id":"r1"}`)); a.GetSequence() != 1 {
		t.Errorf("REST first publish: sequence %d, want 1", a.GetSequence())
	}
	pubWantREST(t, "REST expected_last_sequence 0 on a non-empty stream", post(`{"expected_last_sequence":"0"}`), http.StatusConflict, "WRONG_LAST_SEQUENCE")
	pubWantREST(t, "REST expected_last_sequence 9", post(`{"expected_last_sequence":9}`), http.StatusConflict, "WRONG_LAST_SEQUENCE")
	pubWantREST(t, "REST expected_last_subject_sequence 0", post(`{"expected_last_subject_sequence":"0"}`), http.StatusConflict, "WRONG_LAST_SEQUENCE")
	pubWantREST(t, "REST expected_stream", post(`{"expected_stream":"EXP"}`), http.StatusConflict, "WRONG_EXPECTED_STREAM")
	pubWantREST(t, "REST expected_last_msg_id", post(`{"expected_last_msg_id":"zz"}`), http.StatusConflict, "WRONG_LAST_MSG_ID")
	if a := pubRESTAck(t, "REST all expectations right", post(`{"expected_last_sequence":"1","expected_last_subject_sequence":"1","expected_stream":"EXPREST","expected_last_msg_id":"r1"}`)); a.GetSequence() != 2 {
		t.Errorf("REST second publish: sequence %d, want 2", a.GetSequence())
	}
	if n := pubMsgCount(ctx, t, b, "EXPREST"); n != 2 {
		t.Errorf("EXPREST holds %d messages, want 2", n)
	}
}

func TestPublishTTL(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "TTL", Subjects: []string{"ttl.>"}, AllowMsgTTL: true})
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "NOTTL", Subjects: []string{"nottl.>"}})

	// TTLs that outlive the test: the count at the end must not depend on
	// how fast a loaded machine gets there.
	resp := pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "ttl.grpc", Ttl: durationpb.New(30 * time.Second)})
	if m := pubGetMsg(ctx, t, b, "TTL", resp.GetSequence()); m.Header.Get("Nats-TTL") != "30s" {
		t.Errorf("gRPC: stored Nats-TTL %q, want 30s (headers %v)", m.Header.Get("Nats-TTL"), m.Header)
	}
	ack := pubRESTAck(t, "REST ttl 30s", pubPost(t, b, "ttl.rest", `{"ttl":"30s","text":"x"}`))
	if m := pubGetMsg(ctx, t, b, "TTL", ack.GetSequence()); m.Header.Get("Nats-TTL") != "30s" {
		t.Errorf("REST: stored Nats-TTL %q, want 30s (headers %v)", m.Header.Get("Nats-TTL"), m.Header)
	}
	ack = pubRESTAck(t, "REST ttl 1m", pubPost(t, b, "ttl.rest", `{"ttl":"60.000s"}`))
	if m := pubGetMsg(ctx, t, b, "TTL", ack.GetSequence()); m.Header.Get("Nats-TTL") != "1m0s" {
		t.Errorf("REST: stored Nats-TTL %q, want 1m0s", m.Header.Get("Nats-TTL"))
	}

	// A stream without allow_msg_ttl refuses: its configuration forbids it.
	_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "nottl.a", Ttl: durationpb.New(2 * time.Second)})
	pubWantErr(t, "gRPC ttl on a stream without allow_msg_ttl", err, codes.FailedPrecondition, "NOT_ALLOWED")
	pubWantREST(t, "REST ttl on a stream without allow_msg_ttl", pubPost(t, b, "nottl.a", `{"ttl":"2s"}`), http.StatusBadRequest, "NOT_ALLOWED")

	for _, d := range []time.Duration{1500 * time.Millisecond, 500 * time.Millisecond, time.Nanosecond, 0, -time.Second, -2 * time.Second} {
		_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ttl.bad", Ttl: durationpb.New(d)})
		pubWantErr(t, fmt.Sprintf("gRPC ttl %v", d), err, codes.InvalidArgument, "INVALID_ARGUMENT")
	}
	// An out-of-range Duration (seconds and nanos of different signs).
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ttl.bad", Ttl: &durationpb.Duration{Seconds: 2, Nanos: -1}})
	pubWantErr(t, "gRPC ttl {2s, -1ns}", err, codes.InvalidArgument, "INVALID_ARGUMENT")
	for _, ttl := range []string{"1.5s", "0.5s", "0s", "-1s"} {
		pubWantREST(t, "REST ttl "+ttl, pubPost(t, b, "ttl.bad", `{"ttl":"`+ttl+`"}`), http.StatusBadRequest, "INVALID_ARGUMENT")
	}
	pubWantREST(t, "REST ttl not a duration", pubPost(t, b, "ttl.bad", `{"ttl":"2 seconds"}`), http.StatusBadRequest, "")
	if n := pubMsgCount(ctx, t, b, "TTL"); n != 3 {
		t.Errorf("TTL holds %d messages, want 3", n)
	}
	if n := pubMsgCount(ctx, t, b, "NOTTL"); n != 0 {
		t.Errorf("NOTTL holds %d messages, want 0", n)
	}
}

func TestPublishInvalidSubject(t *testing.T) {
	b, ctx := pubStart(t)
	// Stream X could be deleted or purged through $JS.API if Publish let
	// those subjects through; it catches every ordinary subject besides.
	x := pubStream(ctx, t, b, jetstream.StreamConfig{Name: "X", Subjects: []string{"x.>", "foo.>", "a.>", "_INBOX2.>"}})
	if _, err := b.JS.Publish(ctx, "x.keep", []byte("keep")); err != nil {
		t.Fatalf("native publish: %v", err)
	}

	cases := []struct {
		subject string
		path    string // as sent over REST; "" skips REST
	}{
		{"", ""},
		{"a..b", "a..b"},
		{".a", ".a"},
		{"a.", "a."},
		{"foo.*", "foo.*"},
		{"foo.>", "foo.%3E"},
		{"foo.*.bar", "foo.%2A.bar"},
		{"foo.b*r", "foo.b*r"},
		{"foo.>.bar", "foo.%3E.bar"},
		{"$JS.API.STREAM.DELETE.X", "$JS.API.STREAM.DELETE.X"},
		{"$JS.API.STREAM.PURGE.X", "$JS.API.STREAM.PURGE.X"},
		{"$JS.API.CONSUMER.CREATE.X", "$JS.API.CONSUMER.CREATE.X"},
		{"$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING"},
		{"_INBOX.x", "_INBOX.x"},
		// The fleet's session views: a client must not ask other
		// replicas for their sessions, nor forge an answer.
		{"_JETWAY.v1.sessions", "_JETWAY.v1.sessions"},
		{"_JETWAY.v1.bridges", "_JETWAY.v1.bridges"},
		// Nor ask for push's delivery state, nor forge it.
		{"_JETWAY.v1.push.state", "_JETWAY.v1.push.state"},
		{"foo bar", "foo%20bar"},
		{"foo\tbar", "foo%09bar"},
		{"foo\x00bar", "foo%00bar"},
		{"foo\x7fbar", "foo%7Fbar"},
		{"a." + strings.Repeat("b", 1023), ""},
	}
	for _, c := range cases {
		_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: c.subject, Payload: &jetwayv1.PublishRequest_Text{Text: `{"purge":"all"}`}})
		pubWantErr(t, fmt.Sprintf("gRPC subject %q", c.subject), err, codes.InvalidArgument, "INVALID_SUBJECT")
		if c.path != "" {
			pubWantREST(t, fmt.Sprintf("REST subject %q", c.subject), pubPost(t, b, c.path, `{"text":"x"}`), http.StatusBadRequest, "INVALID_SUBJECT")
		}
	}
	// The longest subject allowed.
	long := "a." + strings.Repeat("b", 1022)
	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: long}); err != nil {
		t.Errorf("subject of 1024 bytes: %v", err)
	}
	// REST with an empty path segment: the route does not match or the
	// subject is refused; either way nothing is published.
	if r := pubPost(t, b, "", `{"text":"x"}`); r.Status != http.StatusBadRequest && r.Status != http.StatusNotFound {
		t.Errorf("REST empty subject: HTTP %d %s, want 400 or 404", r.Status, r.Body)
	}

	info, err := x.Info(ctx)
	if err != nil {
		t.Fatalf("stream X after publishing to $JS.API subjects: %v", err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream X holds %d messages, want 2 (the native one and the 1024-byte subject)", info.State.Msgs)
	}
	names := b.JS.StreamNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if names.Err() != nil || !slices.Equal(got, []string{"X"}) {
		t.Errorf("streams = %v (%v), want [X]", got, names.Err())
	}
}

func TestPublishNoStream(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "SOME", Subjects: []string{"some.>"}})
	_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "nobody.listens"})
	pubWantErr(t, "gRPC publish to an uncaptured subject", err, codes.NotFound, "NO_STREAM_FOR_SUBJECT")
	pubWantREST(t, "REST publish to an uncaptured subject", pubPost(t, b, "nobody.listens", `{"text":"x"}`), http.StatusNotFound, "NO_STREAM_FOR_SUBJECT")
	// $KV and $O subjects are ordinary stream subjects, not reserved.
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "$KV.bucket.key"})
	pubWantErr(t, "gRPC publish to $KV without a bucket", err, codes.NotFound, "NO_STREAM_FOR_SUBJECT")
}

func TestPublishTooLarge(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big.>"}})
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"small.>"}, MaxMsgSize: 16})
	if mp := b.JS.Conn().MaxPayload(); mp != pubMaxPayload {
		t.Fatalf("server max payload %d, test assumes %d", mp, pubMaxPayload)
	}

	// Exactly the max payload, no headers: stored.
	resp, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "big.exact", Payload: &jetwayv1.PublishRequest_Data{Data: make([]byte, pubMaxPayload)}})
	if err != nil {
		t.Errorf("payload of exactly the max payload: %v", err)
	} else if m := pubGetMsg(ctx, t, b, "BIG", resp.GetSequence()); len(m.Data) != pubMaxPayload {
		t.Errorf("stored %d bytes, want %d", len(m.Data), pubMaxPayload)
	}
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "big.over", Payload: &jetwayv1.PublishRequest_Data{Data: make([]byte, pubMaxPayload+1)}})
	pubWantErr(t, "gRPC payload of max+1 bytes", err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE")
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "big.over", Payload: &jetwayv1.PublishRequest_Text{Text: strings.Repeat("t", pubMaxPayload+1)}})
	pubWantErr(t, "gRPC text of max+1 bytes", err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE")
	// Payload under the max but over it with the headers on the wire (the
	// NATS/1.0 line, the msg id): still the client's error, not INTERNAL.
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "big.hdr", Payload: &jetwayv1.PublishRequest_Data{Data: make([]byte, pubMaxPayload-10)},
		Headers: map[string]*jetwayv1.HeaderValues{"X": {Values: []string{"y"}}}})
	pubWantErr(t, "gRPC payload + headers just over the max", err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE")
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "big.id", MsgId: "id", Payload: &jetwayv1.PublishRequest_Data{Data: make([]byte, pubMaxPayload)}})
	pubWantErr(t, "gRPC max payload + msg id", err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE")

	// REST: a body under the cap carrying a payload over the max.
	r := pubPost(t, b, "big.rest", `{"text":"`+strings.Repeat("t", pubMaxPayload+1)+`"}`)
	pubWantREST(t, "REST text of max+1 bytes", r, http.StatusBadRequest, "PAYLOAD_TOO_LARGE")
	r = pubPost(t, b, "big.rest", `{"data":"`+base64.StdEncoding.EncodeToString(make([]byte, pubMaxPayload+1))+`"}`)
	pubWantREST(t, "REST data of max+1 bytes", r, http.StatusBadRequest, "PAYLOAD_TOO_LARGE")

	// REST bodies over the cap: 413, with and without a Content-Length.
	body := `{"text":"` + strings.Repeat("t", pubBodyCap) + `"}`
	r = pubPost(t, b, "big.rest", body)
	pubWantREST(t, "REST body over the cap", r, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE")
	r = pubDoChunked(t, b, "/v1/subjects/big.rest:publish", body)
	pubWantREST(t, "REST chunked body over the cap", r, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE")
	// The stream's max_msg_size.
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "small.a", Payload: &jetwayv1.PublishRequest_Text{Text: strings.Repeat("s", 17)}})
	pubWantErr(t, "gRPC over max_msg_size", err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE")
	pubWantREST(t, "REST over max_msg_size", pubPost(t, b, "small.a", `{"text":"`+strings.Repeat("s", 17)+`"}`), http.StatusBadRequest, "PAYLOAD_TOO_LARGE")
	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "small.a", Payload: &jetwayv1.PublishRequest_Text{Text: strings.Repeat("s", 16)}}); err != nil {
		t.Errorf("gRPC at max_msg_size: %v", err)
	}
	if n := pubMsgCount(ctx, t, b, "BIG"); n != 1 {
		t.Errorf("BIG holds %d messages, want 1", n)
	}
	if n := pubMsgCount(ctx, t, b, "SMALL"); n != 1 {
		t.Errorf("SMALL holds %d messages, want 1", n)
	}
}

// pubDoChunked posts body without a Content-Length (chunked), so that the
// gateway has to count while reading.
func pubDoChunked(t *testing.T, b *jetwaytest.Bridge, path, body string) jetwaytest.Response {
	t.Helper()
	ctx := jetwaytest.Context(t, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.BaseURL+path, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s (chunked): %v", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

func TestPublishMalformedBody(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "BODY", Subjects: []string{"body.>"}})
	for _, body := range []string{
		`{`,
		`not json`,
		`{"text":"x"`,
		`{"bogus":1}`,
		`{"text":"x","msgId2":"y"}`,
		`{"data":"!!!not base64"}`,
		`{"data":"AA==","text":"both"}`,
		`{"text":1}`,
		`{"expected_last_sequence":"-1"}`,
		`{"expected_last_sequence":"x"}`,
		`{"headers":{"X-A":"not an object"}}`,
		`{"headers":{"X-A":{"values":"1"}}}`,
		`[]`,
	} {
		pubWantREST(t, fmt.Sprintf("REST body %q", body), pubPost(t, b, "body.a", body), http.StatusBadRequest, "")
	}
	if n := pubMsgCount(ctx, t, b, "BODY"); n != 0 {
		t.Errorf("BODY holds %d messages after malformed bodies, want 0", n)
	}
}

func TestPublishStreamFull(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full.>"}, Discard: jetstream.DiscardNew, MaxMsgs: 1})
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "FULLB", Subjects: []string{"fullb.>"}, Discard: jetstream.DiscardNew, MaxBytes: 200})
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "FULLS", Subjects: []string{"fulls.>"}, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, MaxMsgsPerSubject: 1})

	pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "full.a"})
	_, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "full.b"})
	pubWantErr(t, "gRPC max_msgs reached", err, codes.ResourceExhausted, "STREAM_FULL")
	pubWantREST(t, "REST max_msgs reached", pubPost(t, b, "full.c", `{}`), http.StatusTooManyRequests, "STREAM_FULL")

	pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "fullb.a", Payload: &jetwayv1.PublishRequest_Text{Text: strings.Repeat("b", 100)}})
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "fullb.a", Payload: &jetwayv1.PublishRequest_Text{Text: strings.Repeat("b", 150)}})
	pubWantErr(t, "gRPC max_bytes reached", err, codes.ResourceExhausted, "STREAM_FULL")

	pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "fulls.a"})
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "fulls.a"})
	pubWantErr(t, "gRPC max_msgs_per_subject reached", err, codes.ResourceExhausted, "STREAM_FULL")
	pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "fulls.b"})

	for stream, want := range map[string]uint64{"FULL": 1, "FULLB": 1, "FULLS": 2} {
		if n := pubMsgCount(ctx, t, b, stream); n != want {
			t.Errorf("%s holds %d messages, want %d", stream, n, want)
		}
	}
}

// pubStreamCase is one request of the PublishStream test and what its
// response must be.
type pubStreamCase struct {
	req        *jetwayv1.PublishStreamRequest
	code       codes.Code // OK: acked
	reason     string
	wantStored []byte
}

func TestPublishStream(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "PS", Subjects: []string{"ps.>"}})

	const n = 2000
	cases := make([]pubStreamCase, 0, n)
	for i := range n {
		id := uint64(1_000_000 + i*7) // ids are echoed, not interpreted
		c := pubStreamCase{req: &jetwayv1.PublishStreamRequest{Id: id}}
		p := &jetwayv1.PublishRequest{Subject: fmt.Sprintf("ps.%d", i%10), Payload: &jetwayv1.PublishRequest_Text{Text: "m" + strconv.Itoa(i)}}
		switch {
		case i%97 == 5:
			p.Subject = "ps..bad"
			c.code, c.reason = codes.InvalidArgument, "INVALID_SUBJECT"
		case i == 400 || i == 1500:
			p.Subject = "nostream.here"
			c.code, c.reason = codes.NotFound, "NO_STREAM_FOR_SUBJECT"
		case i%211 == 3:
			p = nil
			c.code, c.reason = codes.InvalidArgument, "INVALID_ARGUMENT"
		case i%307 == 11:
			p.Headers = map[string]*jetwayv1.HeaderValues{"Nats-Expected-Stream": {Values: []string{"PS"}}}
			c.code, c.reason = codes.InvalidArgument, "INVALID_HEADER"
		case i%401 == 13:
			p.ExpectedStream = "ELSEWHERE"
			c.code, c.reason = codes.Aborted, "WRONG_EXPECTED_STREAM"
		default:
			c.wantStored = []byte("m" + strconv.Itoa(i))
		}
		c.req.Publish = p
		cases = append(cases, c)
	}

	// The stream and its sender own a context that ends, and the sender
	// is joined, before the test returns, whichever way it ends.
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	stream, err := b.Messages.PublishStream(sctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})
	defer func() { stopStream(); <-senderDone }()
	go func() {
		defer close(senderDone)
		for _, c := range cases {
			if err := stream.Send(c.req); err != nil {
				sendErr <- fmt.Errorf("send %d: %w", c.req.GetId(), err)
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()

	var stored [][]byte
	var lastSeq uint64
	for i, c := range cases {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv of response %d of %d: %v", i, n, err)
		}
		if resp.GetId() != c.req.GetId() {
			t.Fatalf("response %d has id %d, want %d (responses out of order)", i, resp.GetId(), c.req.GetId())
		}
		switch {
		case c.code == codes.OK:
			ack := resp.GetAck()
			if ack == nil {
				t.Errorf("request %d: %v, want an ack", i, resp.GetError())
				continue
			}
			if ack.GetStream() != "PS" || ack.GetDuplicate() || ack.GetSequence() <= lastSeq {
				t.Errorf("request %d: ack %v after sequence %d, want PS with an increasing sequence", i, ack, lastSeq)
			}
			lastSeq = ack.GetSequence()
			stored = append(stored, c.wantStored)
		default:
			e := resp.GetError()
			if e == nil {
				t.Errorf("request %d (%v): ack %v, want error %v %s", i, c.req.GetPublish(), resp.GetAck(), c.code, c.reason)
				continue
			}
			if codes.Code(e.GetCode()) != c.code || e.GetReason() != c.reason || e.GetMessage() == "" {
				t.Errorf("request %d: error %v, want %v %s with a message", i, e, c.code, c.reason)
			}
		}
	}
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last response: %v, %v; want io.EOF", resp, err)
	}
	if err := <-sendErr; err != nil {
		t.Errorf("sender: %v", err)
	}

	// The stream holds exactly the acked messages, in order.
	if got := pubMsgCount(ctx, t, b, "PS"); got != uint64(len(stored)) || lastSeq != uint64(len(stored)) {
		t.Fatalf("PS holds %d messages, last acked sequence %d, want %d", got, lastSeq, len(stored))
	}
	cons, err := b.JS.OrderedConsumer(ctx, "PS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	var i int
	for i < len(stored) {
		// Ask for no more than remain, so that Fetch returns at once.
		batch, err := cons.Fetch(min(500, len(stored)-i), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if i < len(stored) && !bytes.Equal(m.Data(), stored[i]) {
				t.Fatalf("stored message %d is %q, want %q", i+1, m.Data(), stored[i])
			}
			i++
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			t.Fatalf("fetch: %v", batch.Error())
		}
		if got == 0 {
			t.Fatalf("fetch returned nothing after %d of %d messages", i, len(stored))
		}
	}
}

func TestPublishStreamEmptyAndUnset(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "PSE", Subjects: []string{"pse.>"}})

	// No requests: the stream ends OK at once.
	stream, err := b.Messages.PublishStream(ctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("empty PublishStream: %v, %v; want io.EOF", resp, err)
	}

	// One request with publish unset, one good one, answered one by one
	// (the stream does not wait for CloseSend to answer).
	stream, err = b.Messages.PublishStream(ctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 7}); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if resp.GetId() != 7 || resp.GetError() == nil || codes.Code(resp.GetError().GetCode()) != codes.InvalidArgument || resp.GetError().GetReason() != "INVALID_ARGUMENT" {
		t.Errorf("publish unset: %v, want id 7 with INVALID_ARGUMENT", resp)
	}
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 0, Publish: &jetwayv1.PublishRequest{Subject: "pse.a", MsgId: "x"}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if resp.GetId() != 0 || resp.GetAck().GetSequence() != 1 || resp.GetAck().GetStream() != "PSE" {
		t.Errorf("good publish: %v, want id 0 acked at PSE 1", resp)
	}
	// The same msg id again: a duplicate, not an error.
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 9, Publish: &jetwayv1.PublishRequest{Subject: "pse.a", MsgId: "x"}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if resp, err = stream.Recv(); err != nil || resp.GetId() != 9 || !resp.GetAck().GetDuplicate() || resp.GetAck().GetSequence() != 1 {
		t.Errorf("duplicate publish: %v, %v; want id 9, duplicate of 1", resp, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend: %v, %v; want io.EOF", resp, err)
	}
	if n := pubMsgCount(ctx, t, b, "PSE"); n != 1 {
		t.Errorf("PSE holds %d messages, want 1", n)
	}
}

func TestPublishStreamClientCancel(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "PSC", Subjects: []string{"psc.>"}})
	sctx, cancel := context.WithCancel(ctx)
	stream, err := b.Messages.PublishStream(sctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	if err := stream.Send(&jetwayv1.PublishStreamRequest{Id: 1, Publish: &jetwayv1.PublishRequest{Subject: "psc.a"}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetAck() == nil {
		t.Fatalf("recv: %v, %v", resp, err)
	}
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("after cancel: %v, want Canceled", err)
	}
	// The bridge still serves after an abandoned stream.
	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "psc.b"}); err != nil {
		t.Errorf("Publish after a cancelled stream: %v", err)
	}
}

// The tests below pin down cases where the REST gateway or the gRPC limits
// answer with the wrong status; see each test's comment.

// A REST body within the gateway's cap must be judged by the bridge (400
// PAYLOAD_TOO_LARGE here), not refused by the in-process gRPC client's send
// limit: that limit equals the body cap, but the request's proto also holds
// the subject from the path, so it comes out a few bytes larger and the
// client gets 429 RESOURCE_EXHAUSTED ("trying to send message larger than
// max"), a retryable code for a request that can never succeed.
func TestPublishRESTBodyAtCap(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "CAP", Subjects: []string{"cap.>"}})
	body := `{"text":"` + strings.Repeat("t", pubBodyCap-len(`{"text":""}`)) + `"}`
	if len(body) != pubBodyCap {
		t.Fatalf("body of %d bytes, want %d", len(body), pubBodyCap)
	}
	pubWantREST(t, "REST body of exactly the cap", pubPost(t, b, "cap.rest", body), http.StatusBadRequest, "PAYLOAD_TOO_LARGE")
}

// A JSON payload whose compact encoding is well under the max payload must
// be accepted (message.proto: "At most the server's maximum payload"). Its
// google.protobuf.Value form is much larger than its JSON (a number in a
// list is 11 bytes of proto for 2 bytes of JSON), so 400 KB of JSON array
// becomes a 2.2 MB request that the gRPC size limits (2 × max payload +
// 64 KiB) refuse with RESOURCE_EXHAUSTED / 429.
func TestPublishJSONUnderMaxPayload(t *testing.T) {
	b, _ := pubStart(t)
	// Seconds of work per call under -race (about 5s for the test on an
	// idle machine): a bound with room for a loaded one.
	ctx := jetwaytest.Context(t, 2*time.Minute)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "JSONBIG", Subjects: []string{"jsonbig.>"}})
	const n = 200_000
	want := "[" + strings.Repeat("0,", n-1) + "0]" // 400 KB
	start := time.Now()
	r := pubPostSlow(ctx, t, b, "jsonbig.rest", `{"json":`+want+`}`)
	t.Logf("REST publish of a JSON array of %d values took %v", n, time.Since(start).Round(time.Millisecond))
	if r.Status != http.StatusOK {
		t.Errorf("REST json array of 400 KB: HTTP %d %s, want 200", r.Status, r.Body)
	} else if m := pubGetMsg(ctx, t, b, "JSONBIG", pubRESTAck(t, "REST json array", r).GetSequence()); string(m.Data) != want {
		t.Errorf("REST: stored %d bytes, want the %d-byte array", len(m.Data), len(want))
	}

	list := make([]*structpb.Value, n)
	for i := range list {
		list[i] = structpb.NewNumberValue(0)
	}
	resp, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "jsonbig.grpc", Payload: &jetwayv1.PublishRequest_Json{Json: structpb.NewListValue(&structpb.ListValue{Values: list})}})
	if err != nil {
		t.Fatalf("gRPC json array of 400 KB: %v", err)
	}
	if m := pubGetMsg(ctx, t, b, "JSONBIG", resp.GetSequence()); string(m.Data) != want {
		t.Errorf("gRPC: stored %d bytes, want the %d-byte array", len(m.Data), len(want))
	}
}

// A subject that is not UTF-8 is an invalid subject (400), as the same
// bytes in a JSON body are. In the path, grpc-gateway passes the decoded
// bytes on and the in-process gRPC client fails to marshal the request:
// 500 INTERNAL "grpc: error while marshaling: string field contains
// invalid UTF-8".
func TestPublishRESTInvalidUTF8Subject(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "UTF", Subjects: []string{"utf.>"}})
	pubWantREST(t, "REST subject utf.%FF", pubPost(t, b, "utf.%FF", `{"text":"x"}`), http.StatusBadRequest, "INVALID_SUBJECT")
	if n := pubMsgCount(ctx, t, b, "UTF"); n != 0 {
		t.Errorf("UTF holds %d messages, want 0", n)
	}
}

// An Idempotency-Key the bridge cannot use must not be dropped silently:
// the client believes its retries are deduplicated. grpc-gateway skips a
// header value that is not ASCII ("not valid as gRPC metadata"), so a key
// like "café" (valid as msg_id in the body) is ignored and both POSTs are
// stored. Want: the key honoured (second duplicate) or the request refused.
func TestPublishRESTNonASCIIIdempotencyKey(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "NA", Subjects: []string{"na.>"}})
	r1 := pubPost(t, b, "na.a", `{"text":"1"}`, "Idempotency-Key", "café")
	if r1.Status != http.StatusOK {
		pubWantREST(t, "REST non-ASCII Idempotency-Key", r1, http.StatusBadRequest, "")
		return
	}
	a2 := pubRESTAck(t, "REST non-ASCII Idempotency-Key, again", pubPost(t, b, "na.a", `{"text":"2"}`, "Idempotency-Key", "café"))
	if !a2.GetDuplicate() {
		t.Errorf("Idempotency-Key %q was ignored: the second POST was stored again (%v), want duplicate or 400", "café", a2)
	}
}

// A message with a "Status" header and no payload looks to nats.go like a
// protocol status reply (404 No Messages, 408, 409, 503...). The bridge
// lets clients set that header, and such a stored message then poisons
// every nats.go reader: a pull consumer's Fetch stops at it and never
// delivers it or anything after it, and a direct get (allow_direct) answers
// "message not found" for it. Want: the header refused as INVALID_HEADER,
// or the stored messages readable by a native consumer.
func TestPublishStatusHeaderIsReadable(t *testing.T) {
	b, ctx := pubStart(t)
	s := pubStream(ctx, t, b, jetstream.StreamConfig{Name: "STATUS", Subjects: []string{"status.>"}, AllowDirect: true})
	pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "status.a", Payload: &jetwayv1.PublishRequest_Text{Text: "one"}})
	resp, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "status.a", Headers: map[string]*jetwayv1.HeaderValues{"Status": {Values: []string{"404"}}}})
	if err != nil {
		pubWantErr(t, "Status header", err, codes.InvalidArgument, "INVALID_HEADER")
		return
	}
	pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "status.a", Payload: &jetwayv1.PublishRequest_Text{Text: "three"}})

	if m, err := s.GetMsg(ctx, resp.GetSequence()); err != nil {
		t.Errorf("direct get of the stored message %d: %v", resp.GetSequence(), err)
	} else if m.Header.Get("Status") != "404" {
		t.Errorf("direct get: headers %v", m.Header)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	var got []string
	// Room for a loaded machine: the loop ends as soon as all 3 came.
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		batch, err := cons.Fetch(3-len(got), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for m := range batch.Messages() {
			got = append(got, string(m.Data()))
		}
	}
	if !slices.Equal(got, []string{"one", "", "three"}) {
		t.Errorf("a native consumer read %q, want [one  three]: the Status header made the message look like a status reply", got)
	}
}

// nats.go trims ASCII whitespace around header values, so a msg_id or
// expected_last_msg_id with surrounding whitespace reaches JetStream
// changed: " " becomes an empty Nats-Msg-Id (no deduplication at all), " a "
// becomes "a" (a different id deduplicated against "a"), and an
// expected_last_msg_id of " " becomes an empty header that JetStream
// ignores, so the expectation is silently not checked. Header values lose
// theirs the same way ("  pad\t" is stored as "pad"). Want: each either
// honoured exactly or refused as INVALID_ARGUMENT / INVALID_HEADER.
func TestPublishSurroundingWhitespace(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "WS", Subjects: []string{"ws.>"}})
	refusedOr := func(what string, err error, ok func()) {
		t.Helper()
		if err != nil {
			pubWantErr(t, what, err, codes.InvalidArgument, "INVALID_ARGUMENT")
			return
		}
		ok()
	}

	for _, id := range []string{" ", "\t"} {
		a1, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ws.blank", MsgId: id})
		refusedOr(fmt.Sprintf("msg_id %q", id), err, func() {
			a2, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ws.blank", MsgId: id})
			if err != nil || !a2.GetDuplicate() || a2.GetSequence() != a1.GetSequence() {
				t.Errorf("msg_id %q twice: %v then %v, %v; want the second a duplicate", id, a1, a2, err)
			}
		})
	}

	last := pubPublish(ctx, t, b, &jetwayv1.PublishRequest{Subject: "ws.a", MsgId: "a"})
	a, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ws.a", MsgId: " a "})
	refusedOr(`msg_id " a " after "a"`, err, func() {
		if a.GetDuplicate() {
			t.Errorf(`msg_id " a " after "a": duplicate of %d, want a new message (ids differ)`, a.GetSequence())
		}
		last = a
	})

	// The last message's id is "a" or " a ", never " ".
	_, err = b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ws.a", ExpectedLastMsgId: " "})
	if err == nil {
		t.Errorf(`expected_last_msg_id " " after %v: stored, want ABORTED WRONG_LAST_MSG_ID or INVALID_ARGUMENT`, last)
	} else if code, reason := pubCodeReason(t, err); !(code == codes.Aborted && reason == "WRONG_LAST_MSG_ID") && !(code == codes.InvalidArgument && reason == "INVALID_ARGUMENT") {
		t.Errorf(`expected_last_msg_id " ": %v %s (%v)`, code, reason, err)
	}

	resp, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "ws.h", Headers: map[string]*jetwayv1.HeaderValues{"X-Pad": {Values: []string{"  pad\t"}}}})
	if err != nil {
		pubWantErr(t, "header value with surrounding whitespace", err, codes.InvalidArgument, "INVALID_HEADER")
	} else if m := pubGetMsg(ctx, t, b, "WS", resp.GetSequence()); !slices.Equal(m.Header.Values("X-Pad"), []string{"  pad\t"}) {
		t.Errorf("header X-Pad %q stored as %q", "  pad\t", m.Header.Values("X-Pad"))
	}
}

// TestPublishRefusesValueWithoutKind: a google.protobuf.Value that has no
// kind (an empty message, easy to send from protobufjs or Python) is
// refused as INVALID_ARGUMENT on json, at any depth and on PublishStream
// too, and nothing is stored; JSON null (null_value) still is accepted.
func TestPublishRefusesValueWithoutKind(t *testing.T) {
	b, ctx := pubStart(t)
	pubStream(ctx, t, b, jetstream.StreamConfig{Name: "KINDLESS", Subjects: []string{"kindless.>"}})
	empty := func() *structpb.Value { return &structpb.Value{} }
	for name, v := range map[string]*structpb.Value{
		"top level": empty(),
		"in an object": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"a": structpb.NewStringValue("x"), "b": empty(),
		}}),
		"in a list":        structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), empty()}}),
		"deep":             structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"c": empty()}})}}),
		"nil in the oneof": nil,
	} {
		req := &jetwayv1.PublishRequest{Subject: "kindless.x", Payload: &jetwayv1.PublishRequest_Json{Json: v}}
		_, err := b.Messages.Publish(ctx, req)
		pubWantErr(t, "Publish json "+name, err, codes.InvalidArgument, "INVALID_ARGUMENT")
		if st, _ := status.FromError(err); !strings.Contains(st.Message(), "json") || !strings.Contains(st.Message(), "no kind") {
			t.Errorf("Publish json %s: message %q, want it to name json and the missing kind", name, st.Message())
		}
		ps, err := b.Messages.PublishStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ps.Send(&jetwayv1.PublishStreamRequest{Id: 1, Publish: req}); err != nil {
			t.Fatal(err)
		}
		if err := ps.CloseSend(); err != nil {
			t.Fatal(err)
		}
		r, err := ps.Recv()
		if err != nil {
			t.Fatalf("PublishStream json %s: %v", name, err)
		}
		if e := r.GetError(); e == nil || codes.Code(e.GetCode()) != codes.InvalidArgument || e.GetReason() != "INVALID_ARGUMENT" {
			t.Errorf("PublishStream json %s: %v, want an INVALID_ARGUMENT error", name, r)
		}
	}
	st, err := b.JS.Stream(ctx, "KINDLESS")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("stream holds %d messages, want 0", n)
	}
	if _, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "kindless.ok", Payload: &jetwayv1.PublishRequest_Json{Json: structpb.NewNullValue()}}); err != nil {
		t.Errorf("Publish json null_value: %v", err)
	}
}
