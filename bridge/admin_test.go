package bridge_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// The AdminService tests run every case over both transports: gRPC (the
// generated client) and REST (adminREST, an AdminServiceClient that speaks
// the routes of proto/jetway/v1/http.yaml through the real gateway). Each
// transport subtest starts its own bridge, so counts and listings see only
// what the subtest created.

// adminTimeout bounds every test context.
const adminTimeout = 20 * time.Second

// adminTransport makes an AdminServiceClient of one transport for a test.
type adminTransport struct {
	name   string
	client func(t testing.TB, b *jetwaytest.Bridge) jetwayv1.AdminServiceClient
}

var adminTransports = []adminTransport{
	{"grpc", func(_ testing.TB, b *jetwaytest.Bridge) jetwayv1.AdminServiceClient { return b.Admin }},
	{"rest", func(t testing.TB, b *jetwaytest.Bridge) jetwayv1.AdminServiceClient { return &adminREST{t: t, b: b} }},
}

// adminEachTransport runs f once per transport, each with a new bridge.
func adminEachTransport(t *testing.T, f func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context)) {
	t.Helper()
	for _, tr := range adminTransports {
		t.Run(tr.name, func(t *testing.T) {
			b := jetwaytest.Start(t)
			f(t, tr, b, jetwaytest.Context(t, adminTimeout))
		})
	}
}

// ---------------------------------------------------------------------------
// REST client

// adminREST implements AdminServiceClient over the REST gateway. Request
// messages become paths, query parameters and bodies as http.yaml maps them;
// non-200 answers become an *adminHTTPError carrying the google.rpc.Status
// of the JSON body and the HTTP status.
type adminREST struct {
	t testing.TB
	b *jetwaytest.Bridge
}

var _ jetwayv1.AdminServiceClient = (*adminREST)(nil)

// adminHTTPError is a REST error: the body's status and the HTTP status.
type adminHTTPError struct {
	httpStatus int
	st         *status.Status
}

func (e *adminHTTPError) Error() string {
	return fmt.Sprintf("HTTP %d: %v", e.httpStatus, e.st.Err())
}

// GRPCStatus lets status.FromError read a REST error like a gRPC one.
func (e *adminHTTPError) GRPCStatus() *status.Status { return e.st }

var adminJSONOut = protojson.MarshalOptions{UseProtoNames: true}

func (c *adminREST) call(method, path string, body, out proto.Message) error {
	c.t.Helper()
	js := ""
	if body != nil && body.ProtoReflect().IsValid() {
		data, err := adminJSONOut.Marshal(body)
		if err != nil {
			c.t.Fatalf("marshal %T: %v", body, err)
		}
		js = string(data)
	}
	r := c.b.Do(c.t, method, path, js)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if r.Status != http.StatusOK {
		var sp spb.Status
		if err := protojson.Unmarshal(r.Body, &sp); err != nil {
			c.t.Fatalf("%s %s: HTTP %d with a body that is not a google.rpc.Status: %q: %v", method, path, r.Status, r.Body, err)
		}
		if sp.GetCode() == 0 {
			c.t.Errorf("%s %s: HTTP %d with code 0 in the body: %s", method, path, r.Status, r.Body)
		}
		return &adminHTTPError{httpStatus: r.Status, st: status.FromProto(&sp)}
	}
	if err := protojson.Unmarshal(r.Body, out); err != nil {
		c.t.Fatalf("%s %s: decode %q into %T: %v", method, path, r.Body, out, err)
	}
	return nil
}

func adminSeg(s string) string { return url.PathEscape(s) }

func adminQuery(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func adminItoa[T ~int32 | ~uint64](n T) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

// withoutStreamName is the REST body of UpdateStream: the name comes from
// the path.
func withoutStreamName(c *jetwayv1.StreamConfig) *jetwayv1.StreamConfig {
	if c == nil {
		return nil
	}
	c = proto.Clone(c).(*jetwayv1.StreamConfig)
	c.Name = ""
	return c
}

func (c *adminREST) CreateStream(_ context.Context, in *jetwayv1.CreateStreamRequest, _ ...grpc.CallOption) (*jetwayv1.CreateStreamResponse, error) {
	out := &jetwayv1.CreateStreamResponse{}
	return out, c.call(http.MethodPost, "/v1/streams", in.GetConfig(), out)
}

func (c *adminREST) UpdateStream(_ context.Context, in *jetwayv1.UpdateStreamRequest, _ ...grpc.CallOption) (*jetwayv1.UpdateStreamResponse, error) {
	out := &jetwayv1.UpdateStreamResponse{}
	q := ""
	if paths := in.GetUpdateMask().GetPaths(); len(paths) > 0 {
		q = adminQuery("update_mask", strings.Join(paths, ","))
	}
	return out, c.call(http.MethodPut, "/v1/streams/"+adminSeg(in.GetConfig().GetName())+q, withoutStreamName(in.GetConfig()), out)
}

func (c *adminREST) GetStream(_ context.Context, in *jetwayv1.GetStreamRequest, _ ...grpc.CallOption) (*jetwayv1.GetStreamResponse, error) {
	out := &jetwayv1.GetStreamResponse{}
	return out, c.call(http.MethodGet, "/v1/streams/"+adminSeg(in.GetName()), nil, out)
}

func (c *adminREST) ListStreams(_ context.Context, in *jetwayv1.ListStreamsRequest, _ ...grpc.CallOption) (*jetwayv1.ListStreamsResponse, error) {
	out := &jetwayv1.ListStreamsResponse{}
	q := adminQuery("page_size", adminItoa(in.GetPageSize()), "page_token", in.GetPageToken(), "subject", in.GetSubject())
	return out, c.call(http.MethodGet, "/v1/streams"+q, nil, out)
}

func (c *adminREST) DeleteStream(_ context.Context, in *jetwayv1.DeleteStreamRequest, _ ...grpc.CallOption) (*jetwayv1.DeleteStreamResponse, error) {
	out := &jetwayv1.DeleteStreamResponse{}
	return out, c.call(http.MethodDelete, "/v1/streams/"+adminSeg(in.GetName()), nil, out)
}

func (c *adminREST) PurgeStream(_ context.Context, in *jetwayv1.PurgeStreamRequest, _ ...grpc.CallOption) (*jetwayv1.PurgeStreamResponse, error) {
	out := &jetwayv1.PurgeStreamResponse{}
	body := proto.Clone(in).(*jetwayv1.PurgeStreamRequest)
	body.Name = "" // from the path
	return out, c.call(http.MethodPost, "/v1/streams/"+adminSeg(in.GetName())+":purge", body, out)
}

func (c *adminREST) CreateConsumer(_ context.Context, in *jetwayv1.CreateConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.CreateConsumerResponse, error) {
	out := &jetwayv1.CreateConsumerResponse{}
	return out, c.call(http.MethodPost, "/v1/streams/"+adminSeg(in.GetStream())+"/consumers", in.GetConfig(), out)
}

func (c *adminREST) UpdateConsumer(_ context.Context, in *jetwayv1.UpdateConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.UpdateConsumerResponse, error) {
	out := &jetwayv1.UpdateConsumerResponse{}
	var body *jetwayv1.ConsumerConfig
	if in.GetConfig() != nil {
		body = proto.Clone(in.GetConfig()).(*jetwayv1.ConsumerConfig)
		body.Name = "" // from the path
	}
	path := "/v1/streams/" + adminSeg(in.GetStream()) + "/consumers/" + adminSeg(in.GetConfig().GetName())
	return out, c.call(http.MethodPut, path, body, out)
}

func (c *adminREST) GetConsumer(_ context.Context, in *jetwayv1.GetConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.GetConsumerResponse, error) {
	out := &jetwayv1.GetConsumerResponse{}
	return out, c.call(http.MethodGet, "/v1/streams/"+adminSeg(in.GetStream())+"/consumers/"+adminSeg(in.GetName()), nil, out)
}

func (c *adminREST) ListConsumers(_ context.Context, in *jetwayv1.ListConsumersRequest, _ ...grpc.CallOption) (*jetwayv1.ListConsumersResponse, error) {
	out := &jetwayv1.ListConsumersResponse{}
	q := adminQuery("page_size", adminItoa(in.GetPageSize()), "page_token", in.GetPageToken())
	return out, c.call(http.MethodGet, "/v1/streams/"+adminSeg(in.GetStream())+"/consumers"+q, nil, out)
}

func (c *adminREST) DeleteConsumer(_ context.Context, in *jetwayv1.DeleteConsumerRequest, _ ...grpc.CallOption) (*jetwayv1.DeleteConsumerResponse, error) {
	out := &jetwayv1.DeleteConsumerResponse{}
	return out, c.call(http.MethodDelete, "/v1/streams/"+adminSeg(in.GetStream())+"/consumers/"+adminSeg(in.GetName()), nil, out)
}

func (c *adminREST) GetMessage(_ context.Context, in *jetwayv1.GetMessageRequest, _ ...grpc.CallOption) (*jetwayv1.GetMessageResponse, error) {
	out := &jetwayv1.GetMessageResponse{}
	return out, c.call(http.MethodGet, fmt.Sprintf("/v1/streams/%s/messages/%d%s", adminSeg(in.GetStream()), in.GetSequence(), adminQuery("format", adminFormat(in.GetFormat()))), nil, out)
}

func (c *adminREST) GetLastMessage(_ context.Context, in *jetwayv1.GetLastMessageRequest, _ ...grpc.CallOption) (*jetwayv1.GetLastMessageResponse, error) {
	out := &jetwayv1.GetLastMessageResponse{}
	return out, c.call(http.MethodGet, "/v1/streams/"+adminSeg(in.GetStream())+"/messages:last"+adminQuery("subject", in.GetSubject(), "format", adminFormat(in.GetFormat())), nil, out)
}

// adminFormat is the format query parameter's value, "" when unset.
func adminFormat(f jetwayv1.PayloadFormat) string {
	if f == jetwayv1.PayloadFormat_PAYLOAD_FORMAT_UNSPECIFIED {
		return ""
	}
	return f.String()
}

func (c *adminREST) GetCounter(_ context.Context, in *jetwayv1.GetCounterRequest, _ ...grpc.CallOption) (*jetwayv1.GetCounterResponse, error) {
	out := &jetwayv1.GetCounterResponse{}
	return out, c.call(http.MethodGet, "/v1/streams/"+adminSeg(in.GetStream())+"/counters/"+adminSeg(in.GetSubject()), nil, out)
}

func (c *adminREST) DeleteMessage(_ context.Context, in *jetwayv1.DeleteMessageRequest, _ ...grpc.CallOption) (*jetwayv1.DeleteMessageResponse, error) {
	out := &jetwayv1.DeleteMessageResponse{}
	q := ""
	if in.GetSecure() {
		q = "?secure=true"
	}
	return out, c.call(http.MethodDelete, fmt.Sprintf("/v1/streams/%s/messages/%d%s", adminSeg(in.GetStream()), in.GetSequence(), q), nil, out)
}

func (c *adminREST) ListSessions(_ context.Context, in *jetwayv1.ListSessionsRequest, _ ...grpc.CallOption) (*jetwayv1.ListSessionsResponse, error) {
	out := &jetwayv1.ListSessionsResponse{}
	q := adminQuery("stream", in.GetStream(), "consumer", in.GetConsumer(), "identity", in.GetIdentity())
	return out, c.call(http.MethodGet, "/v1/sessions"+q, nil, out)
}

func (c *adminREST) GetBridgeInfo(_ context.Context, in *jetwayv1.GetBridgeInfoRequest, _ ...grpc.CallOption) (*jetwayv1.GetBridgeInfoResponse, error) {
	out := &jetwayv1.GetBridgeInfoResponse{}
	q := ""
	if in.GetFleet() {
		q = "?fleet=true"
	}
	return out, c.call(http.MethodGet, "/v1/bridge"+q, nil, out)
}

func (c *adminREST) GetAccountInfo(_ context.Context, _ *jetwayv1.GetAccountInfoRequest, _ ...grpc.CallOption) (*jetwayv1.GetAccountInfoResponse, error) {
	out := &jetwayv1.GetAccountInfoResponse{}
	return out, c.call(http.MethodGet, "/v1/account", nil, out)
}

// ---------------------------------------------------------------------------
// Assertion helpers

// adminHTTPStatus is the HTTP status the REST API must answer for each code
// (grpc-gateway's mapping, written out so that a change shows).
var adminHTTPStatus = map[codes.Code]int{
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.FailedPrecondition: http.StatusBadRequest,
	codes.OutOfRange:         http.StatusBadRequest,
	codes.NotFound:           http.StatusNotFound,
	codes.AlreadyExists:      http.StatusConflict,
	codes.Aborted:            http.StatusConflict,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.Unavailable:        http.StatusServiceUnavailable,
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	codes.Internal:           http.StatusInternalServerError,
	codes.Unimplemented:      http.StatusNotImplemented,
}

// adminWantCode checks that err carries code and an ErrorInfo with reason
// in the jetway.dev domain (and, over REST, the matching HTTP status). It
// returns the status for further checks.
func adminWantCode(t testing.TB, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %v %s", code, reason)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("err %v (%T) is not a status", err, err)
	}
	if st.Code() != code {
		t.Errorf("code = %v, want %v (%v)", st.Code(), code, err)
	}
	var he *adminHTTPError
	if errors.As(err, &he) {
		if want, ok := adminHTTPStatus[code]; ok && he.httpStatus != want {
			t.Errorf("HTTP status = %d, want %d (%v)", he.httpStatus, want, err)
		}
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	switch {
	case info == nil:
		t.Errorf("no ErrorInfo in %v (%v)", st.Details(), err)
	case info.GetReason() != reason || info.GetDomain() != "jetway.dev":
		t.Errorf("ErrorInfo = %s/%s, want %s/jetway.dev (%v)", info.GetReason(), info.GetDomain(), reason, err)
	}
	return st
}

// adminWantField checks that st has a BadRequest violation of field.
func adminWantField(t testing.TB, st *status.Status, field string) {
	t.Helper()
	var got []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
				got = append(got, v.GetField())
			}
		}
	}
	t.Errorf("no BadRequest violation of %q (got %q) in %v", field, got, st.Err())
}

// adminWantErr checks code, reason and (when field is set) the violated
// field.
func adminWantErr(t testing.TB, err error, code codes.Code, reason, field string) {
	t.Helper()
	st := adminWantCode(t, err, code, reason)
	if field != "" {
		adminWantField(t, st, field)
	}
}

func adminOK(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func adminWantEqual(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\ngot  %s\nwant %s", what, prototext.Format(got), prototext.Format(want))
	}
}

// adminUserMetadata drops the _nats.* keys the server adds to metadata.
func adminUserMetadata(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !strings.HasPrefix(k, "_nats") {
			out[k] = v
		}
	}
	return out
}

func adminUserStream(c *jetwayv1.StreamConfig) *jetwayv1.StreamConfig {
	c = proto.Clone(c).(*jetwayv1.StreamConfig)
	c.Metadata = adminUserMetadata(c.GetMetadata())
	return c
}

func adminUserConsumer(c *jetwayv1.ConsumerConfig) *jetwayv1.ConsumerConfig {
	c = proto.Clone(c).(*jetwayv1.ConsumerConfig)
	c.Metadata = adminUserMetadata(c.GetMetadata())
	return c
}

func adminDur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// adminStream creates a stream through the native client (the setup of
// tests about something else).
func adminStream(t testing.TB, ctx context.Context, b *jetwaytest.Bridge, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	st, err := b.JS.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatalf("native create stream %q: %v", cfg.Name, err)
	}
	return st
}

// adminPub publishes through the native client and returns the sequence.
func adminPub(t testing.TB, ctx context.Context, b *jetwaytest.Bridge, subject string, data []byte, hdr nats.Header) uint64 {
	t.Helper()
	ack, err := b.JS.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr})
	if err != nil {
		t.Fatalf("native publish to %s: %v", subject, err)
	}
	return ack.Sequence
}

// adminSeqs reports which of sequences 1..n are still stored in a stream.
func adminSeqs(t testing.TB, ctx context.Context, b *jetwaytest.Bridge, stream string, n uint64) []uint64 {
	t.Helper()
	st, err := b.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("native stream %q: %v", stream, err)
	}
	var out []uint64
	for seq := uint64(1); seq <= n; seq++ {
		_, err := st.GetMsg(ctx, seq)
		switch {
		case err == nil:
			out = append(out, seq)
		case errors.Is(err, jetstream.ErrMsgNotFound):
		default:
			t.Fatalf("native get %d: %v", seq, err)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Streams

// adminFullStream sets every stream field a create accepts (memory
// storage).
func adminFullStream(name, subj string) *jetwayv1.StreamConfig {
	return &jetwayv1.StreamConfig{
		Name:                 name,
		Description:          "every field set",
		Subjects:             []string{subj + ".>", subj + "x"},
		Retention:            jetwayv1.RetentionPolicy_RETENTION_POLICY_INTEREST,
		Storage:              jetwayv1.StorageType_STORAGE_TYPE_MEMORY,
		Replicas:             1,
		MaxMsgs:              1000,
		MaxBytes:             1 << 20,
		MaxAge:               adminDur(time.Hour),
		MaxMsgSize:           4096,
		MaxMsgsPerSubject:    10,
		MaxConsumers:         7,
		Discard:              jetwayv1.DiscardPolicy_DISCARD_POLICY_NEW,
		DiscardNewPerSubject: true,
		DuplicateWindow:      adminDur(30 * time.Second),
		DenyDelete:           true,
		DenyPurge:            true, // (roll-ups need the purge permission)
		AllowDirect:          true,
		AllowMsgTtl:          true,
		Compression:          jetwayv1.Compression_COMPRESSION_NONE,
		PersistMode:          jetwayv1.PersistMode_PERSIST_MODE_DEFAULT,
		Metadata:             map[string]string{"team": "payments", "tier": "gold"},
	}
}

func TestAdminCreateStreamRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(name, subj string) *jetwayv1.StreamConfig
		// want is what the server reports; nil means cfg itself.
		want   func(name, subj string) *jetwayv1.StreamConfig
		native func(t *testing.T, c jetstream.StreamConfig)
	}{
		{
			name: "every_field_memory",
			cfg:  adminFullStream,
			native: func(t *testing.T, c jetstream.StreamConfig) {
				if c.Storage != jetstream.MemoryStorage || c.Retention != jetstream.InterestPolicy || c.Discard != jetstream.DiscardNew {
					t.Errorf("native storage/retention/discard = %v/%v/%v", c.Storage, c.Retention, c.Discard)
				}
				if c.MaxMsgs != 1000 || c.MaxBytes != 1<<20 || c.MaxMsgSize != 4096 || c.MaxMsgsPerSubject != 10 || c.MaxConsumers != 7 {
					t.Errorf("native limits = %d/%d/%d/%d/%d", c.MaxMsgs, c.MaxBytes, c.MaxMsgSize, c.MaxMsgsPerSubject, c.MaxConsumers)
				}
				if c.MaxAge != time.Hour || c.Duplicates != 30*time.Second {
					t.Errorf("native durations = %v/%v", c.MaxAge, c.Duplicates)
				}
				if !c.DenyDelete || !c.DenyPurge || c.AllowRollup || !c.AllowDirect || !c.AllowMsgTTL || !c.DiscardNewPerSubject {
					t.Errorf("native flags = %+v", c)
				}
				if c.Metadata["team"] != "payments" || c.Description != "changed" {
					t.Errorf("native metadata/description = %v/%q", c.Metadata, c.Description)
				}
			},
		},
		{
			name: "file_s2_work_queue",
			cfg: func(name, subj string) *jetwayv1.StreamConfig {
				return &jetwayv1.StreamConfig{
					Name:            name,
					Subjects:        []string{subj + ".*"},
					Retention:       jetwayv1.RetentionPolicy_RETENTION_POLICY_WORK_QUEUE,
					Storage:         jetwayv1.StorageType_STORAGE_TYPE_FILE,
					Replicas:        1,
					MaxAge:          adminDur(24 * time.Hour),
					Discard:         jetwayv1.DiscardPolicy_DISCARD_POLICY_OLD,
					DuplicateWindow: adminDur(time.Minute),
					Compression:     jetwayv1.Compression_COMPRESSION_S2,
					PersistMode:     jetwayv1.PersistMode_PERSIST_MODE_DEFAULT,
					Description:     "compressed",
					AllowRollup:     true,
					AllowMsgTtl:     true,
					// Needs allow_msg_ttl and allow_rollup.
					SubjectDeleteMarkerTtl: adminDur(5 * time.Minute),
				}
			},
			native: func(t *testing.T, c jetstream.StreamConfig) {
				if c.Compression != jetstream.S2Compression || c.Storage != jetstream.FileStorage || c.Retention != jetstream.WorkQueuePolicy {
					t.Errorf("native compression/storage/retention = %v/%v/%v", c.Compression, c.Storage, c.Retention)
				}
				if !c.AllowRollup || !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL != 5*time.Minute {
					t.Errorf("native rollup/msg ttl/marker ttl = %v/%v/%v", c.AllowRollup, c.AllowMsgTTL, c.SubjectDeleteMarkerTTL)
				}
			},
		},
		{
			// JetStream (not in pedantic mode) turns on what a subject
			// delete marker TTL needs rather than refusing it.
			name: "marker_ttl_turns_on_msg_ttl_and_rollup",
			cfg: func(name, subj string) *jetwayv1.StreamConfig {
				return &jetwayv1.StreamConfig{Name: name, Subjects: []string{subj}, SubjectDeleteMarkerTtl: adminDur(time.Minute)}
			},
			want: func(name, subj string) *jetwayv1.StreamConfig {
				return &jetwayv1.StreamConfig{
					Name: name, Subjects: []string{subj}, SubjectDeleteMarkerTtl: adminDur(time.Minute),
					AllowMsgTtl: true, AllowRollup: true,
					Retention: jetwayv1.RetentionPolicy_RETENTION_POLICY_LIMITS, Storage: jetwayv1.StorageType_STORAGE_TYPE_FILE,
					Replicas: 1, Discard: jetwayv1.DiscardPolicy_DISCARD_POLICY_OLD, DuplicateWindow: adminDur(2 * time.Minute),
					Compression: jetwayv1.Compression_COMPRESSION_NONE,
					PersistMode: jetwayv1.PersistMode_PERSIST_MODE_DEFAULT,
				}
			},
			native: func(t *testing.T, c jetstream.StreamConfig) {
				if !c.AllowMsgTTL || !c.AllowRollup {
					t.Errorf("native allow_msg_ttl/allow_rollup = %v/%v", c.AllowMsgTTL, c.AllowRollup)
				}
			},
		},
		{
			name: "defaults_zero_is_unlimited",
			cfg: func(name, _ string) *jetwayv1.StreamConfig {
				return &jetwayv1.StreamConfig{Name: name}
			},
			want: func(name, _ string) *jetwayv1.StreamConfig {
				return &jetwayv1.StreamConfig{
					Name:            name,
					Subjects:        []string{name},
					Retention:       jetwayv1.RetentionPolicy_RETENTION_POLICY_LIMITS,
					Storage:         jetwayv1.StorageType_STORAGE_TYPE_FILE,
					Replicas:        1,
					Discard:         jetwayv1.DiscardPolicy_DISCARD_POLICY_OLD,
					DuplicateWindow: adminDur(2 * time.Minute),
					Compression:     jetwayv1.Compression_COMPRESSION_NONE,
					PersistMode:     jetwayv1.PersistMode_PERSIST_MODE_DEFAULT,
				}
			},
			native: func(t *testing.T, c jetstream.StreamConfig) {
				if c.MaxMsgs != -1 || c.MaxBytes != -1 || c.MaxMsgSize != -1 || c.MaxMsgsPerSubject != -1 || c.MaxConsumers != -1 || c.MaxAge != 0 {
					t.Errorf("native limits = msgs %d bytes %d size %d per-subject %d consumers %d age %v, want -1 (unlimited) and 0",
						c.MaxMsgs, c.MaxBytes, c.MaxMsgSize, c.MaxMsgsPerSubject, c.MaxConsumers, c.MaxAge)
				}
			},
		},
	}
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := tr.client(t, b)
				name, subj := "RT_"+strings.ToUpper(tc.name), fmt.Sprintf("rt%d", i)
				cfg := tc.cfg(name, subj)
				want := cfg
				if tc.want != nil {
					want = tc.want(name, subj)
				}
				resp, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: cfg})
				adminOK(t, "CreateStream", err)
				adminWantEqual(t, "created config", adminUserStream(resp.GetStream().GetConfig()), want)
				if resp.GetStream().GetCreated() == nil {
					t.Errorf("created time missing")
				}
				if st := resp.GetStream().GetState(); st.GetMessages() != 0 || st.GetLastSequence() != 0 {
					t.Errorf("new stream state = %v", st)
				}

				got, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: name})
				adminOK(t, "GetStream", err)
				adminWantEqual(t, "GetStream config", adminUserStream(got.GetStream().GetConfig()), want)

				// Creating the same configuration again succeeds and
				// changes nothing.
				again, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: cfg})
				adminOK(t, "CreateStream again", err)
				adminWantEqual(t, "re-created config", adminUserStream(again.GetStream().GetConfig()), want)
				if !again.GetStream().GetCreated().AsTime().Equal(resp.GetStream().GetCreated().AsTime()) {
					t.Errorf("re-create changed the created time: %v, then %v", resp.GetStream().GetCreated().AsTime(), again.GetStream().GetCreated().AsTime())
				}

				// A read-modify-write of the reported configuration (with
				// the server's own metadata) is accepted.
				rmw := proto.Clone(got.GetStream().GetConfig()).(*jetwayv1.StreamConfig)
				rmw.Description = "changed"
				upd, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: rmw})
				adminOK(t, "UpdateStream with the reported config", err)
				if d := upd.GetStream().GetConfig().GetDescription(); d != "changed" {
					t.Errorf("description after update = %q", d)
				}

				native, err := b.JS.Stream(ctx, name)
				adminOK(t, "native stream", err)
				tc.native(t, native.CachedInfo().Config)
			})
		}
	})
}

func TestAdminCreateStreamConflicts(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		base := &jetwayv1.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, MaxMsgs: 100}
		_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: base})
		adminOK(t, "CreateStream", err)

		tests := []struct {
			name   string
			cfg    *jetwayv1.StreamConfig
			code   codes.Code
			reason string
		}{
			{"same_config", base, codes.OK, ""},
			{"different_limit", &jetwayv1.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, MaxMsgs: 101}, codes.AlreadyExists, "STREAM_EXISTS"},
			{"different_subjects", &jetwayv1.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.new.>"}, MaxMsgs: 100}, codes.AlreadyExists, "STREAM_EXISTS"},
			{"overlapping_subjects", &jetwayv1.StreamConfig{Name: "OTHER", Subjects: []string{"orders.eu.*"}}, codes.FailedPrecondition, "SUBJECTS_OVERLAP"},
			{"same_subjects", &jetwayv1.StreamConfig{Name: "OTHER", Subjects: []string{"orders.>"}}, codes.FailedPrecondition, "SUBJECTS_OVERLAP"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: tc.cfg})
				if tc.code == codes.OK {
					adminOK(t, "CreateStream", err)
					return
				}
				adminWantCode(t, err, tc.code, tc.reason)
			})
		}
		// The conflicting creates changed nothing.
		got, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "ORDERS"})
		adminOK(t, "GetStream", err)
		if cfg := got.GetStream().GetConfig(); cfg.GetMaxMsgs() != 100 || !slices.Equal(cfg.GetSubjects(), []string{"orders.>"}) {
			t.Errorf("ORDERS after conflicting creates: max_msgs %d subjects %q", cfg.GetMaxMsgs(), cfg.GetSubjects())
		}
		if _, err := b.JS.Stream(ctx, "OTHER"); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("native OTHER = %v, want not found", err)
		}
	})
}

func TestAdminCreateStreamInvalid(t *testing.T) {
	tests := []struct {
		name   string
		cfg    *jetwayv1.StreamConfig
		code   codes.Code
		reason string
		field  string
	}{
		{"nil_config", nil, codes.InvalidArgument, "INVALID_ARGUMENT", "config"},
		{"empty_name", &jetwayv1.StreamConfig{Subjects: []string{"x"}}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"dot_in_name", &jetwayv1.StreamConfig{Name: "a.b"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"space_in_name", &jetwayv1.StreamConfig{Name: "has space"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"star_in_name", &jetwayv1.StreamConfig{Name: "a*"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"gt_in_name", &jetwayv1.StreamConfig{Name: "a>"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"slash_in_name", &jetwayv1.StreamConfig{Name: "a/b"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"backslash_in_name", &jetwayv1.StreamConfig{Name: `a\b`}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"tab_in_name", &jetwayv1.StreamConfig{Name: "a\tb"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"name_too_long", &jetwayv1.StreamConfig{Name: strings.Repeat("n", 256)}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
		{"empty_subject_token", &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"a..b"}}, codes.InvalidArgument, "INVALID_SUBJECT", "config.subjects"},
		{"partial_wildcard", &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"a.b*"}}, codes.InvalidArgument, "INVALID_SUBJECT", "config.subjects"},
		{"gt_not_last", &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"a.>.b"}}, codes.InvalidArgument, "INVALID_SUBJECT", "config.subjects"},
		{"replicas_6", &jetwayv1.StreamConfig{Name: "S", Replicas: 6}, codes.InvalidArgument, "INVALID_CONFIG", "config.replicas"},
		{"negative_max_msg_size", &jetwayv1.StreamConfig{Name: "S", MaxMsgSize: -1}, codes.InvalidArgument, "INVALID_CONFIG", "config.max_msg_size"},
		{"negative_max_age", &jetwayv1.StreamConfig{Name: "S", MaxAge: adminDur(-time.Second)}, codes.InvalidArgument, "INVALID_CONFIG", "config.max_age"},
		{"negative_duplicate_window", &jetwayv1.StreamConfig{Name: "S", DuplicateWindow: adminDur(-time.Second)}, codes.InvalidArgument, "INVALID_CONFIG", "config.duplicate_window"},
		{"sealed_on_create", &jetwayv1.StreamConfig{Name: "S", Sealed: true}, codes.InvalidArgument, "INVALID_CONFIG", "config.sealed"},
		{"unknown_retention", &jetwayv1.StreamConfig{Name: "S", Retention: 99}, codes.InvalidArgument, "INVALID_CONFIG", "config.retention"},
		{"unknown_storage", &jetwayv1.StreamConfig{Name: "S", Storage: 99}, codes.InvalidArgument, "INVALID_CONFIG", "config.storage"},
		{"unknown_discard", &jetwayv1.StreamConfig{Name: "S", Discard: 99}, codes.InvalidArgument, "INVALID_CONFIG", "config.discard"},
		{"unknown_compression", &jetwayv1.StreamConfig{Name: "S", Compression: 99}, codes.InvalidArgument, "INVALID_CONFIG", "config.compression"},
		// Refused by JetStream itself (API error code 400).
		{"discard_new_per_subject_without_discard_new", &jetwayv1.StreamConfig{Name: "S", MaxMsgsPerSubject: 1, DiscardNewPerSubject: true}, codes.InvalidArgument, "INVALID_CONFIG", ""},
		// Refused by JetStream with its "invalid stream configuration"
		// error (10052), which carries HTTP-like status 500.
		{"duplicate_window_above_max_age", &jetwayv1.StreamConfig{Name: "S", MaxAge: adminDur(time.Minute), DuplicateWindow: adminDur(time.Hour)}, codes.InvalidArgument, "INVALID_CONFIG", ""},
		{"marker_ttl_below_1s", &jetwayv1.StreamConfig{Name: "S", AllowMsgTtl: true, AllowRollup: true, SubjectDeleteMarkerTtl: adminDur(time.Millisecond)}, codes.InvalidArgument, "INVALID_CONFIG", ""},
		{"rollup_with_deny_purge", &jetwayv1.StreamConfig{Name: "S", AllowRollup: true, DenyPurge: true}, codes.InvalidArgument, "INVALID_CONFIG", ""},
	}
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: tc.cfg})
				if tc.cfg == nil && tr.name == "rest" {
					// REST has no "absent body": the gateway decodes an
					// empty body into an empty config.
					adminWantErr(t, err, codes.InvalidArgument, "INVALID_NAME", "config.name")
					return
				}
				adminWantErr(t, err, tc.code, tc.reason, tc.field)
			})
		}
		n := 0
		for range b.JS.StreamNames(ctx).Name() {
			n++
		}
		if n != 0 {
			t.Errorf("%d streams exist after refused creates", n)
		}
	})
}

func TestAdminUpdateStream(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		cfg := &jetwayv1.StreamConfig{
			Name: "UPD", Subjects: []string{"upd.>"}, MaxMsgs: 10, Description: "before",
			Metadata: map[string]string{"owner": "a"},
		}
		_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: cfg})
		adminOK(t, "CreateStream", err)
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "NEIGHBOUR", Subjects: []string{"nb.>"}})

		t.Run("change_limits_and_description", func(t *testing.T) {
			c := tr.client(t, b)
			next := &jetwayv1.StreamConfig{
				Name: "UPD", Subjects: []string{"upd.>", "upd2.*"}, MaxMsgs: 20, Description: "after",
				Metadata: map[string]string{"owner": "b"},
			}
			resp, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: next})
			adminOK(t, "UpdateStream", err)
			got := resp.GetStream().GetConfig()
			if got.GetMaxMsgs() != 20 || got.GetDescription() != "after" || !slices.Equal(got.GetSubjects(), next.GetSubjects()) ||
				adminUserMetadata(got.GetMetadata())["owner"] != "b" {
				t.Errorf("updated config = %v", got)
			}
			info, err := b.JS.Stream(ctx, "UPD")
			adminOK(t, "native stream", err)
			if n := info.CachedInfo().Config; n.MaxMsgs != 20 || n.Description != "after" {
				t.Errorf("native after update: max_msgs %d description %q", n.MaxMsgs, n.Description)
			}
		})

		t.Run("omitted_fields_take_defaults", func(t *testing.T) {
			c := tr.client(t, b)
			resp, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "UPD", Subjects: []string{"upd.>"}}})
			adminOK(t, "UpdateStream", err)
			got := resp.GetStream().GetConfig()
			if got.GetMaxMsgs() != 0 || got.GetDescription() != "" || len(adminUserMetadata(got.GetMetadata())) != 0 {
				t.Errorf("after an update without limits: max_msgs %d description %q metadata %v", got.GetMaxMsgs(), got.GetDescription(), got.GetMetadata())
			}
			info, err := b.JS.Stream(ctx, "UPD")
			adminOK(t, "native stream", err)
			if n := info.CachedInfo().Config.MaxMsgs; n != -1 {
				t.Errorf("native max_msgs = %d, want -1 (unlimited)", n)
			}
		})

		tests := []struct {
			name   string
			cfg    *jetwayv1.StreamConfig
			code   codes.Code
			reason string
			field  string
		}{
			{"unknown_stream", &jetwayv1.StreamConfig{Name: "NOPE", Subjects: []string{"nope.>"}}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"invalid_name", &jetwayv1.StreamConfig{Name: "a.b"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
			{"invalid_subject", &jetwayv1.StreamConfig{Name: "UPD", Subjects: []string{"upd.*x"}}, codes.InvalidArgument, "INVALID_SUBJECT", "config.subjects"},
			{"subjects_overlap", &jetwayv1.StreamConfig{Name: "UPD", Subjects: []string{"upd.>", "nb.x"}}, codes.FailedPrecondition, "SUBJECTS_OVERLAP", ""},
			// JetStream refuses these with "stream configuration update
			// can not change ..." (10052 JSStreamInvalidConfigF).
			{"change_storage", &jetwayv1.StreamConfig{Name: "UPD", Subjects: []string{"upd.>"}, Storage: jetwayv1.StorageType_STORAGE_TYPE_MEMORY}, codes.InvalidArgument, "INVALID_CONFIG", ""},
			{"change_retention_to_work_queue", &jetwayv1.StreamConfig{Name: "UPD", Subjects: []string{"upd.>"}, Retention: jetwayv1.RetentionPolicy_RETENTION_POLICY_WORK_QUEUE}, codes.InvalidArgument, "INVALID_CONFIG", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: tc.cfg})
				adminWantErr(t, err, tc.code, tc.reason, tc.field)
			})
		}
		info, err := b.JS.Stream(ctx, "UPD")
		adminOK(t, "native stream", err)
		if n := info.CachedInfo().Config; n.Storage != jetstream.FileStorage || n.Retention != jetstream.LimitsPolicy || !slices.Equal(n.Subjects, []string{"upd.>"}) {
			t.Errorf("refused updates changed UPD: storage %v retention %v subjects %q", n.Storage, n.Retention, n.Subjects)
		}

		t.Run("seal", func(t *testing.T) {
			c := tr.client(t, b)
			adminPub(t, ctx, b, "upd.a", []byte("x"), nil)
			resp, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "UPD", Subjects: []string{"upd.>"}, Sealed: true}})
			adminOK(t, "UpdateStream sealed", err)
			if !resp.GetStream().GetConfig().GetSealed() {
				t.Errorf("sealed = false after sealing")
			}
			_, err = c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "UPD", Sequence: 1})
			adminWantCode(t, err, codes.FailedPrecondition, "NOT_ALLOWED")
			_, err = c.PurgeStream(ctx, &jetwayv1.PurgeStreamRequest{Name: "UPD"})
			adminWantCode(t, err, codes.FailedPrecondition, "NOT_ALLOWED")
		})
	})
}

func TestAdminGetStream(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "STATE", Subjects: []string{"state.*"}}})
		adminOK(t, "CreateStream", err)
		before := time.Now().Add(-time.Second)
		for i, subj := range []string{"state.a", "state.b", "state.a", "state.c"} {
			resp, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: subj, Payload: &jetwayv1.PublishRequest_Data{Data: []byte("payload-" + strconv.Itoa(i))}})
			adminOK(t, "Publish", err)
			if resp.GetSequence() != uint64(i+1) {
				t.Fatalf("publish %d got sequence %d", i, resp.GetSequence())
			}
		}
		_, err = b.JS.CreateOrUpdateConsumer(ctx, "STATE", jetstream.ConsumerConfig{Durable: "C1"})
		adminOK(t, "native consumer", err)
		st, err := b.JS.Stream(ctx, "STATE")
		adminOK(t, "native stream", err)
		adminOK(t, "native DeleteMsg", st.DeleteMsg(ctx, 2))
		native, err := st.Info(ctx)
		adminOK(t, "native info", err)

		resp, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "STATE"})
		adminOK(t, "GetStream", err)
		s := resp.GetStream().GetState()
		want := &jetwayv1.StreamState{
			Messages: 3, Bytes: native.State.Bytes, FirstSequence: 1, LastSequence: 4,
			ConsumerCount: 1, NumSubjects: 2, NumDeleted: 1,
			FirstTime: s.GetFirstTime(), LastTime: s.GetLastTime(),
		}
		adminWantEqual(t, "state", s, want)
		if s.GetBytes() == 0 {
			t.Errorf("bytes = 0 with 3 messages stored")
		}
		for name, ts := range map[string]*timestamppb.Timestamp{"first_time": s.GetFirstTime(), "last_time": s.GetLastTime(), "created": resp.GetStream().GetCreated()} {
			if ts == nil || ts.AsTime().Before(before) || ts.AsTime().After(time.Now().Add(time.Second)) {
				t.Errorf("%s = %v, want about now", name, ts)
			}
		}
		if s.GetFirstTime().AsTime().After(s.GetLastTime().AsTime()) {
			t.Errorf("first_time %v after last_time %v", s.GetFirstTime().AsTime(), s.GetLastTime().AsTime())
		}
		if cl := resp.GetStream().GetCluster(); cl != nil && len(cl.GetReplicas()) != 0 {
			t.Errorf("single server reports replicas %v", cl.GetReplicas())
		}

		tests := []struct {
			name   string
			stream string
			code   codes.Code
			reason string
			field  string
		}{
			{"unknown", "NOPE", codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"dot_in_name", "a.b", codes.InvalidArgument, "INVALID_NAME", "name"},
			{"space_in_name", "has space", codes.InvalidArgument, "INVALID_NAME", "name"},
			{"star_in_name", "a*", codes.InvalidArgument, "INVALID_NAME", "name"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).GetStream(ctx, &jetwayv1.GetStreamRequest{Name: tc.stream})
				adminWantErr(t, err, tc.code, tc.reason, tc.field)
			})
		}
		if tr.name == "grpc" {
			_, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{})
			adminWantErr(t, err, codes.InvalidArgument, "INVALID_NAME", "name")
		}
	})
}

func TestAdminListStreams(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		// Created out of order: the listing sorts by name.
		for _, x := range []string{"c", "a", "e", "b", "d"} {
			_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
				Name: "ls-" + x, Subjects: []string{"ls." + x + ".>"}, Storage: jetwayv1.StorageType_STORAGE_TYPE_MEMORY,
			}})
			adminOK(t, "CreateStream", err)
		}
		adminPub(t, ctx, b, "ls.b.one", []byte("1"), nil)

		names := func(r *jetwayv1.ListStreamsResponse) []string {
			var out []string
			for _, s := range r.GetStreams() {
				out = append(out, s.GetConfig().GetName())
			}
			return out
		}

		t.Run("pages_of_two", func(t *testing.T) {
			c := tr.client(t, b)
			var pages [][]string
			token := ""
			for range 10 {
				resp, err := c.ListStreams(ctx, &jetwayv1.ListStreamsRequest{PageSize: 2, PageToken: token})
				adminOK(t, "ListStreams", err)
				pages = append(pages, names(resp))
				for _, s := range resp.GetStreams() {
					if s.GetConfig().GetName() == "ls-b" && s.GetState().GetMessages() != 1 {
						t.Errorf("ls-b listed with %d messages, want 1", s.GetState().GetMessages())
					}
				}
				token = resp.GetNextPageToken()
				if token == "" {
					break
				}
			}
			want := [][]string{{"ls-a", "ls-b"}, {"ls-c", "ls-d"}, {"ls-e"}}
			if fmt.Sprint(pages) != fmt.Sprint(want) {
				t.Errorf("pages = %v, want %v", pages, want)
			}
		})

		tests := []struct {
			name      string
			req       *jetwayv1.ListStreamsRequest
			want      []string
			wantToken bool
		}{
			{"default_page_size", &jetwayv1.ListStreamsRequest{}, []string{"ls-a", "ls-b", "ls-c", "ls-d", "ls-e"}, false},
			{"exact_page", &jetwayv1.ListStreamsRequest{PageSize: 5}, []string{"ls-a", "ls-b", "ls-c", "ls-d", "ls-e"}, false},
			{"max_page_size", &jetwayv1.ListStreamsRequest{PageSize: 1000}, []string{"ls-a", "ls-b", "ls-c", "ls-d", "ls-e"}, false},
			{"page_of_one", &jetwayv1.ListStreamsRequest{PageSize: 1}, []string{"ls-a"}, true},
			{"subject_wildcard_one_stream", &jetwayv1.ListStreamsRequest{Subject: "ls.c.*"}, []string{"ls-c"}, false},
			{"subject_literal", &jetwayv1.ListStreamsRequest{Subject: "ls.d.x.y"}, []string{"ls-d"}, false},
			{"subject_all", &jetwayv1.ListStreamsRequest{Subject: "ls.>", PageSize: 3}, []string{"ls-a", "ls-b", "ls-c"}, true},
			{"subject_none", &jetwayv1.ListStreamsRequest{Subject: "other.>"}, nil, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := tr.client(t, b).ListStreams(ctx, tc.req)
				adminOK(t, "ListStreams", err)
				if got := names(resp); !slices.Equal(got, tc.want) {
					t.Errorf("streams = %q, want %q", got, tc.want)
				}
				if (resp.GetNextPageToken() != "") != tc.wantToken {
					t.Errorf("next_page_token = %q, want a token: %v", resp.GetNextPageToken(), tc.wantToken)
				}
			})
		}

		t.Run("subject_filter_pages", func(t *testing.T) {
			c := tr.client(t, b)
			first, err := c.ListStreams(ctx, &jetwayv1.ListStreamsRequest{Subject: "ls.>", PageSize: 3})
			adminOK(t, "ListStreams", err)
			second, err := c.ListStreams(ctx, &jetwayv1.ListStreamsRequest{Subject: "ls.>", PageSize: 3, PageToken: first.GetNextPageToken()})
			adminOK(t, "ListStreams page 2", err)
			if got := names(second); !slices.Equal(got, []string{"ls-d", "ls-e"}) || second.GetNextPageToken() != "" {
				t.Errorf("second page = %q token %q, want [ls-d ls-e] and no token", got, second.GetNextPageToken())
			}
		})

		bad := []struct {
			name   string
			req    *jetwayv1.ListStreamsRequest
			reason string
			field  string
		}{
			{"garbage_token", &jetwayv1.ListStreamsRequest{PageToken: "garbage"}, "INVALID_ARGUMENT", "page_token"},
			{"negative_offset_token", &jetwayv1.ListStreamsRequest{PageToken: "o-1"}, "INVALID_ARGUMENT", "page_token"},
			{"padded_token", &jetwayv1.ListStreamsRequest{PageToken: "o02"}, "INVALID_ARGUMENT", "page_token"},
			{"page_size_5000", &jetwayv1.ListStreamsRequest{PageSize: 5000}, "INVALID_ARGUMENT", "page_size"},
			{"page_size_1001", &jetwayv1.ListStreamsRequest{PageSize: 1001}, "INVALID_ARGUMENT", "page_size"},
			{"negative_page_size", &jetwayv1.ListStreamsRequest{PageSize: -1}, "INVALID_ARGUMENT", "page_size"},
			{"invalid_subject", &jetwayv1.ListStreamsRequest{Subject: "ls..x"}, "INVALID_SUBJECT", "subject"},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).ListStreams(ctx, tc.req)
				adminWantErr(t, err, codes.InvalidArgument, tc.reason, tc.field)
			})
		}
	})
}

func TestAdminListStreamsREST(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, adminTimeout)
	for _, n := range []string{"R3", "R1", "R2"} {
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: n, Storage: jetstream.MemoryStorage})
	}
	r := b.Do(t, http.MethodGet, "/v1/streams?page_size=2", "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/streams?page_size=2 = %d %s", r.Status, r.Body)
	}
	var page struct {
		Streams []struct {
			Config map[string]any `json:"config"`
			State  map[string]any `json:"state"`
		} `json:"streams"`
		NextPageToken *string `json:"next_page_token"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	if len(page.Streams) != 2 || page.Streams[0].Config["name"] != "R1" || page.Streams[1].Config["name"] != "R2" {
		t.Fatalf("first page = %s", r.Body)
	}
	if page.NextPageToken == nil || *page.NextPageToken == "" {
		t.Fatalf("first page has no next_page_token: %s", r.Body)
	}
	r = b.Do(t, http.MethodGet, "/v1/streams?page_size=2&page_token="+url.QueryEscape(*page.NextPageToken), "")
	if r.Status != http.StatusOK {
		t.Fatalf("second page = %d %s", r.Status, r.Body)
	}
	page.NextPageToken = nil
	page.Streams = nil
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	// EmitDefaultValues: the empty token of the last page is present.
	if len(page.Streams) != 1 || page.Streams[0].Config["name"] != "R3" || page.NextPageToken == nil || *page.NextPageToken != "" {
		t.Errorf("last page = %s, want R3 and next_page_token \"\"", r.Body)
	}
	for _, q := range []string{"page_size=5000", "page_size=abc", "page_token=zzz", "page_size=-3"} {
		r := b.Do(t, http.MethodGet, "/v1/streams?"+q, "")
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"code":3`) {
			t.Errorf("GET /v1/streams?%s = %d %s, want 400 with code 3", q, r.Status, r.Body)
		}
	}
}

func TestAdminDeleteStream(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "GONE", Subjects: []string{"gone.>"}}})
		adminOK(t, "CreateStream", err)
		adminPub(t, ctx, b, "gone.x", []byte("x"), nil)
		_, err = b.JS.CreateOrUpdateConsumer(ctx, "GONE", jetstream.ConsumerConfig{Durable: "C"})
		adminOK(t, "native consumer", err)

		_, err = c.DeleteStream(ctx, &jetwayv1.DeleteStreamRequest{Name: "GONE"})
		adminOK(t, "DeleteStream", err)
		_, err = c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "GONE"})
		adminWantCode(t, err, codes.NotFound, "STREAM_NOT_FOUND")
		if _, err := b.JS.Stream(ctx, "GONE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("native stream after delete: %v", err)
		}
		_, err = c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "GONE", Name: "C"})
		adminWantCode(t, err, codes.NotFound, "STREAM_NOT_FOUND")
		// The subjects are free again.
		_, err = c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "AGAIN", Subjects: []string{"gone.>"}}})
		adminOK(t, "CreateStream on the freed subjects", err)

		_, err = c.DeleteStream(ctx, &jetwayv1.DeleteStreamRequest{Name: "GONE"})
		adminWantCode(t, err, codes.NotFound, "STREAM_NOT_FOUND")
		_, err = c.DeleteStream(ctx, &jetwayv1.DeleteStreamRequest{Name: "a.b"})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_NAME", "name")
	})
}

func TestAdminPurgeStream(t *testing.T) {
	// Every case starts from six messages: odd sequences on p.a, even ones
	// on p.b.
	tests := []struct {
		name string
		req  *jetwayv1.PurgeStreamRequest
		left []uint64
	}{
		{"all", &jetwayv1.PurgeStreamRequest{}, nil},
		{"subject", &jetwayv1.PurgeStreamRequest{Subject: "p.a"}, []uint64{2, 4, 6}},
		{"wildcard_subject", &jetwayv1.PurgeStreamRequest{Subject: "p.*"}, nil},
		{"keep", &jetwayv1.PurgeStreamRequest{Keep: 2}, []uint64{5, 6}},
		{"keep_more_than_stored", &jetwayv1.PurgeStreamRequest{Keep: 10}, []uint64{1, 2, 3, 4, 5, 6}},
		{"sequence", &jetwayv1.PurgeStreamRequest{Sequence: 4}, []uint64{4, 5, 6}},
		{"subject_and_keep", &jetwayv1.PurgeStreamRequest{Subject: "p.a", Keep: 1}, []uint64{2, 4, 5, 6}},
		{"subject_and_sequence", &jetwayv1.PurgeStreamRequest{Subject: "p.b", Sequence: 5}, []uint64{1, 3, 5, 6}},
		// JetStream keeps the newest `keep` messages matching the filter as
		// a whole, not per subject of a wildcard filter (admin.proto says
		// "per subject when subject is set").
		{"wildcard_subject_and_keep", &jetwayv1.PurgeStreamRequest{Subject: "p.*", Keep: 1}, []uint64{6}},
	}
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := tr.client(t, b)
				name := fmt.Sprintf("PURGE%d", i)
				_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
					Name: name, Subjects: []string{"p.*"}, Storage: jetwayv1.StorageType_STORAGE_TYPE_MEMORY,
				}})
				adminOK(t, "CreateStream", err)
				for seq := 1; seq <= 6; seq++ {
					subj := "p.a"
					if seq%2 == 0 {
						subj = "p.b"
					}
					adminPub(t, ctx, b, subj, []byte{byte(seq)}, nil)
				}
				req := proto.Clone(tc.req).(*jetwayv1.PurgeStreamRequest)
				req.Name = name
				_, err = c.PurgeStream(ctx, req)
				adminOK(t, "PurgeStream", err)
				if got := adminSeqs(t, ctx, b, name, 6); !slices.Equal(got, tc.left) {
					t.Errorf("sequences left = %v, want %v", got, tc.left)
				}
				resp, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: name})
				adminOK(t, "GetStream", err)
				if got := resp.GetStream().GetState().GetMessages(); got != uint64(len(tc.left)) {
					t.Errorf("state.messages = %d, want %d", got, len(tc.left))
				}
				if got := resp.GetStream().GetState().GetLastSequence(); got != 6 {
					t.Errorf("state.last_sequence = %d, want 6 (a purge keeps the sequence)", got)
				}
				_, err = c.DeleteStream(ctx, &jetwayv1.DeleteStreamRequest{Name: name})
				adminOK(t, "DeleteStream", err)
			})
		}

		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "KEEPME", Subjects: []string{"keep.>"}, Storage: jetstream.MemoryStorage})
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "NOPURGE", Subjects: []string{"np.>"}, Storage: jetstream.MemoryStorage, DenyPurge: true})
		adminPub(t, ctx, b, "keep.x", []byte("x"), nil)
		adminPub(t, ctx, b, "np.x", []byte("x"), nil)
		bad := []struct {
			name   string
			req    *jetwayv1.PurgeStreamRequest
			code   codes.Code
			reason string
			field  string
		}{
			{"keep_and_sequence", &jetwayv1.PurgeStreamRequest{Name: "KEEPME", Keep: 1, Sequence: 2}, codes.InvalidArgument, "INVALID_ARGUMENT", "keep"},
			{"invalid_subject", &jetwayv1.PurgeStreamRequest{Name: "KEEPME", Subject: "keep..x"}, codes.InvalidArgument, "INVALID_SUBJECT", "subject"},
			{"unknown_stream", &jetwayv1.PurgeStreamRequest{Name: "NOPE"}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"invalid_stream_name", &jetwayv1.PurgeStreamRequest{Name: "has space"}, codes.InvalidArgument, "INVALID_NAME", "name"},
			{"deny_purge", &jetwayv1.PurgeStreamRequest{Name: "NOPURGE"}, codes.FailedPrecondition, "NOT_ALLOWED", ""},
			{"deny_purge_subject", &jetwayv1.PurgeStreamRequest{Name: "NOPURGE", Subject: "np.x"}, codes.FailedPrecondition, "NOT_ALLOWED", ""},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).PurgeStream(ctx, tc.req)
				adminWantErr(t, err, tc.code, tc.reason, tc.field)
			})
		}
		if got := adminSeqs(t, ctx, b, "KEEPME", 1); !slices.Equal(got, []uint64{1}) {
			t.Errorf("KEEPME after refused purges: %v", got)
		}
		if got := adminSeqs(t, ctx, b, "NOPURGE", 1); !slices.Equal(got, []uint64{1}) {
			t.Errorf("NOPURGE after refused purges: %v", got)
		}
	})
}

// ---------------------------------------------------------------------------
// Consumers

// adminConsumerStream creates stream CS on cs.* with five messages:
// cs.a cs.b cs.c cs.a cs.b (sequences 1 to 5).
func adminConsumerStream(t testing.TB, ctx context.Context, b *jetwaytest.Bridge) {
	t.Helper()
	adminStream(t, ctx, b, jetstream.StreamConfig{Name: "CS", Subjects: []string{"cs.*"}, Storage: jetstream.MemoryStorage})
	for _, s := range []string{"cs.a", "cs.b", "cs.c", "cs.a", "cs.b"} {
		adminPub(t, ctx, b, s, []byte(s), nil)
	}
}

// adminConsumerDefaults fills in what the server reports for fields left
// unset: explicit acks from the first message, ack wait 30s, max ack
// pending 1000, max waiting 512.
func adminConsumerDefaults(c *jetwayv1.ConsumerConfig) *jetwayv1.ConsumerConfig {
	c = proto.Clone(c).(*jetwayv1.ConsumerConfig)
	if c.DeliverPolicy == jetwayv1.DeliverPolicy_DELIVER_POLICY_UNSPECIFIED {
		c.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_ALL
	}
	if c.AckPolicy == jetwayv1.AckPolicy_ACK_POLICY_UNSPECIFIED {
		c.AckPolicy = jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT
	}
	if c.AckWait == nil {
		c.AckWait = adminDur(30 * time.Second)
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 512
	}
	return c
}

func TestAdminCreateConsumer(t *testing.T) {
	startTime := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	tests := []struct {
		name string
		cfg  *jetwayv1.ConsumerConfig
		// want is what the server reports; nil means
		// adminConsumerDefaults(cfg).
		want    *jetwayv1.ConsumerConfig
		pending uint64
	}{
		{"defaults", &jetwayv1.ConsumerConfig{Name: "dflt"}, nil, 5},
		{"one_filter", &jetwayv1.ConsumerConfig{Name: "one", FilterSubjects: []string{"cs.a"}}, nil, 2},
		{"two_filters", &jetwayv1.ConsumerConfig{Name: "two", FilterSubjects: []string{"cs.a", "cs.c"}}, nil, 3},
		{"wildcard_filter", &jetwayv1.ConsumerConfig{Name: "wild", FilterSubjects: []string{"cs.*"}}, nil, 5},
		{"deliver_last", &jetwayv1.ConsumerConfig{Name: "last", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST}, nil, 1},
		{"deliver_new", &jetwayv1.ConsumerConfig{Name: "new", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_NEW}, nil, 0},
		{"deliver_last_per_subject", &jetwayv1.ConsumerConfig{Name: "lps", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT, FilterSubjects: []string{"cs.*"}}, nil, 3},
		{"deliver_last_per_subject_two_filters", &jetwayv1.ConsumerConfig{Name: "lps2", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT, FilterSubjects: []string{"cs.a", "cs.b"}}, nil, 2},
		{"by_start_sequence", &jetwayv1.ConsumerConfig{Name: "byseq", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_SEQUENCE, OptStartSequence: 3}, nil, 3},
		{"by_start_time", &jetwayv1.ConsumerConfig{Name: "bytime", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_TIME, OptStartTime: timestamppb.New(startTime)}, nil, 5},
		{"ack_all", &jetwayv1.ConsumerConfig{Name: "ackall", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_ALL, AckWait: adminDur(5 * time.Second), MaxDeliver: 5, MaxAckPending: 20}, nil, 5},
		{"ack_none", &jetwayv1.ConsumerConfig{Name: "acknone", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_NONE}, &jetwayv1.ConsumerConfig{
			// No ack wait and no max ack pending without acks.
			Name: "acknone", AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_NONE, DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_ALL,
			MaxWaiting: 512,
		}, 5},
		{"backoff", &jetwayv1.ConsumerConfig{
			Name: "backoff", MaxDeliver: 4, Backoff: []*durationpb.Duration{adminDur(time.Second), adminDur(2 * time.Second), adminDur(5 * time.Second)},
		}, adminConsumerDefaults(&jetwayv1.ConsumerConfig{
			// JetStream sets ack_wait to the first backoff.
			Name: "backoff", MaxDeliver: 4, Backoff: []*durationpb.Duration{adminDur(time.Second), adminDur(2 * time.Second), adminDur(5 * time.Second)},
			AckWait: adminDur(time.Second),
		}), 5},
		{"every_other_field", &jetwayv1.ConsumerConfig{
			Name: "full", Description: "every other field", FilterSubjects: []string{"cs.b"},
			InactiveThreshold: adminDur(time.Hour), MaxWaiting: 16, MaxBatch: 10, MaxBytes: 1024, MaxExpires: adminDur(30 * time.Second),
			HeadersOnly: true, MemoryStorage: true, MaxAckPending: 50, Metadata: map[string]string{"app": "billing", "v": "2"},
		}, nil, 2},
	}
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		adminConsumerStream(t, ctx, b)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := tr.client(t, b)
				want := tc.want
				if want == nil {
					want = adminConsumerDefaults(tc.cfg)
				}
				resp, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "CS", Config: tc.cfg})
				adminOK(t, "CreateConsumer", err)
				ci := resp.GetConsumer()
				if ci.GetStream() != "CS" || ci.GetName() != tc.cfg.GetName() {
					t.Errorf("stream/name = %q/%q", ci.GetStream(), ci.GetName())
				}
				adminWantEqual(t, "created config", adminUserConsumer(ci.GetConfig()), want)
				if ci.GetNumPending() != tc.pending {
					t.Errorf("num_pending = %d, want %d", ci.GetNumPending(), tc.pending)
				}
				if ci.GetCreated() == nil {
					t.Errorf("created time missing")
				}

				got, err := c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "CS", Name: tc.cfg.GetName()})
				adminOK(t, "GetConsumer", err)
				adminWantEqual(t, "GetConsumer config", adminUserConsumer(got.GetConsumer().GetConfig()), want)

				// The same configuration again is accepted.
				again, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "CS", Config: tc.cfg})
				adminOK(t, "CreateConsumer again", err)
				if !again.GetConsumer().GetCreated().AsTime().Equal(ci.GetCreated().AsTime()) {
					t.Errorf("re-create changed the created time")
				}
				// A read-modify-write of the reported configuration is
				// accepted.
				rmw := proto.Clone(got.GetConsumer().GetConfig()).(*jetwayv1.ConsumerConfig)
				rmw.Description = "changed"
				upd, err := c.UpdateConsumer(ctx, &jetwayv1.UpdateConsumerRequest{Stream: "CS", Config: rmw})
				adminOK(t, "UpdateConsumer with the reported config", err)
				if upd.GetConsumer().GetConfig().GetDescription() != "changed" {
					t.Errorf("description after update = %q", upd.GetConsumer().GetConfig().GetDescription())
				}

				native, err := b.JS.Consumer(ctx, "CS", tc.cfg.GetName())
				adminOK(t, "native consumer", err)
				if n := native.CachedInfo().Config; n.Durable != tc.cfg.GetName() || n.Description != "changed" {
					t.Errorf("native durable/description = %q/%q", n.Durable, n.Description)
				}
			})
		}
	})
}

func TestAdminCreateConsumerErrors(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		adminConsumerStream(t, ctx, b)
		c := tr.client(t, b)
		base := &jetwayv1.ConsumerConfig{Name: "worker", FilterSubjects: []string{"cs.a"}, MaxDeliver: 3}
		_, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "CS", Config: base})
		adminOK(t, "CreateConsumer", err)

		tests := []struct {
			name   string
			stream string
			cfg    *jetwayv1.ConsumerConfig
			code   codes.Code
			reason string
			field  string
		}{
			{"different_config", "CS", &jetwayv1.ConsumerConfig{Name: "worker", FilterSubjects: []string{"cs.a"}, MaxDeliver: 4}, codes.AlreadyExists, "CONSUMER_EXISTS", ""},
			{"different_filter", "CS", &jetwayv1.ConsumerConfig{Name: "worker", FilterSubjects: []string{"cs.b"}, MaxDeliver: 3}, codes.AlreadyExists, "CONSUMER_EXISTS", ""},
			{"unknown_stream", "NOPE", &jetwayv1.ConsumerConfig{Name: "c"}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"invalid_stream_name", "a.b", &jetwayv1.ConsumerConfig{Name: "c"}, codes.InvalidArgument, "INVALID_NAME", "stream"},
			{"nil_config", "CS", nil, codes.InvalidArgument, "INVALID_ARGUMENT", "config"},
			{"empty_name", "CS", &jetwayv1.ConsumerConfig{}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
			{"dot_in_name", "CS", &jetwayv1.ConsumerConfig{Name: "a.b"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
			{"space_in_name", "CS", &jetwayv1.ConsumerConfig{Name: "has space"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
			{"invalid_filter", "CS", &jetwayv1.ConsumerConfig{Name: "f", FilterSubjects: []string{"cs..a"}}, codes.InvalidArgument, "INVALID_SUBJECT", "config.filter_subjects"},
			{"by_start_sequence_without_sequence", "CS", &jetwayv1.ConsumerConfig{Name: "s", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_SEQUENCE}, codes.InvalidArgument, "INVALID_CONFIG", "config.opt_start_sequence"},
			{"by_start_time_without_time", "CS", &jetwayv1.ConsumerConfig{Name: "s", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_TIME}, codes.InvalidArgument, "INVALID_CONFIG", "config.opt_start_time"},
			{"negative_max_deliver", "CS", &jetwayv1.ConsumerConfig{Name: "s", MaxDeliver: -1}, codes.InvalidArgument, "INVALID_CONFIG", "config.max_deliver"},
			{"negative_max_ack_pending", "CS", &jetwayv1.ConsumerConfig{Name: "s", MaxAckPending: -1}, codes.InvalidArgument, "INVALID_CONFIG", "config.max_ack_pending"},
			{"zero_backoff", "CS", &jetwayv1.ConsumerConfig{Name: "s", Backoff: []*durationpb.Duration{adminDur(0)}}, codes.InvalidArgument, "INVALID_CONFIG", "config.backoff"},
			{"unknown_deliver_policy", "CS", &jetwayv1.ConsumerConfig{Name: "s", DeliverPolicy: 42}, codes.InvalidArgument, "INVALID_CONFIG", "config.deliver_policy"},
			{"unknown_ack_policy", "CS", &jetwayv1.ConsumerConfig{Name: "s", AckPolicy: 42}, codes.InvalidArgument, "INVALID_CONFIG", "config.ack_policy"},
			// Refused by JetStream (API errors with status 400).
			{"last_per_subject_without_filter", "CS", &jetwayv1.ConsumerConfig{Name: "s", DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT}, codes.InvalidArgument, "INVALID_CONFIG", ""},
			{"more_backoffs_than_deliveries", "CS", &jetwayv1.ConsumerConfig{Name: "s", MaxDeliver: 2, Backoff: []*durationpb.Duration{adminDur(time.Second), adminDur(2 * time.Second), adminDur(3 * time.Second)}}, codes.InvalidArgument, "INVALID_CONFIG", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: tc.stream, Config: tc.cfg})
				if tc.cfg == nil && tr.name == "rest" {
					// The gateway decodes an empty body into an empty
					// config.
					adminWantErr(t, err, codes.InvalidArgument, "INVALID_NAME", "config.name")
					return
				}
				adminWantErr(t, err, tc.code, tc.reason, tc.field)
			})
		}
		got, err := c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "CS", Name: "worker"})
		adminOK(t, "GetConsumer", err)
		if cfg := got.GetConsumer().GetConfig(); cfg.GetMaxDeliver() != 3 || !slices.Equal(cfg.GetFilterSubjects(), []string{"cs.a"}) {
			t.Errorf("worker after refused creates: %v", cfg)
		}
		resp, err := c.ListConsumers(ctx, &jetwayv1.ListConsumersRequest{Stream: "CS"})
		adminOK(t, "ListConsumers", err)
		if n := len(resp.GetConsumers()); n != 1 {
			t.Errorf("%d consumers after refused creates, want 1", n)
		}
	})
}

func TestAdminUpdateConsumer(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		adminConsumerStream(t, ctx, b)
		c := tr.client(t, b)
		_, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "CS", Config: &jetwayv1.ConsumerConfig{
			Name: "upd", Description: "before", MaxAckPending: 10, FilterSubjects: []string{"cs.a"},
		}})
		adminOK(t, "CreateConsumer", err)

		resp, err := c.UpdateConsumer(ctx, &jetwayv1.UpdateConsumerRequest{Stream: "CS", Config: &jetwayv1.ConsumerConfig{
			Name: "upd", Description: "after", MaxAckPending: 25, FilterSubjects: []string{"cs.a", "cs.b"},
			Metadata: map[string]string{"rev": "2"},
		}})
		adminOK(t, "UpdateConsumer", err)
		cfg := resp.GetConsumer().GetConfig()
		if cfg.GetDescription() != "after" || cfg.GetMaxAckPending() != 25 || !slices.Equal(cfg.GetFilterSubjects(), []string{"cs.a", "cs.b"}) ||
			adminUserMetadata(cfg.GetMetadata())["rev"] != "2" {
			t.Errorf("updated config = %v", cfg)
		}
		if got := resp.GetConsumer().GetNumPending(); got != 4 {
			t.Errorf("num_pending after widening the filter = %d, want 4", got)
		}
		native, err := b.JS.Consumer(ctx, "CS", "upd")
		adminOK(t, "native consumer", err)
		if n := native.CachedInfo().Config; n.MaxAckPending != 25 || n.Description != "after" {
			t.Errorf("native after update: max_ack_pending %d description %q", n.MaxAckPending, n.Description)
		}

		tests := []struct {
			name   string
			stream string
			cfg    *jetwayv1.ConsumerConfig
			code   codes.Code
			reason string
			field  string
		}{
			{"unknown_consumer", "CS", &jetwayv1.ConsumerConfig{Name: "nope"}, codes.NotFound, "CONSUMER_NOT_FOUND", ""},
			{"unknown_stream", "NOPE", &jetwayv1.ConsumerConfig{Name: "upd"}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"invalid_name", "CS", &jetwayv1.ConsumerConfig{Name: "a.b"}, codes.InvalidArgument, "INVALID_NAME", "config.name"},
			{"invalid_stream_name", "has space", &jetwayv1.ConsumerConfig{Name: "upd"}, codes.InvalidArgument, "INVALID_NAME", "stream"},
			// deliver_policy cannot change after creation.
			{"change_deliver_policy", "CS", &jetwayv1.ConsumerConfig{Name: "upd", MaxAckPending: 25, FilterSubjects: []string{"cs.a", "cs.b"}, DeliverPolicy: jetwayv1.DeliverPolicy_DELIVER_POLICY_NEW}, codes.InvalidArgument, "INVALID_CONFIG", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tr.client(t, b).UpdateConsumer(ctx, &jetwayv1.UpdateConsumerRequest{Stream: tc.stream, Config: tc.cfg})
				adminWantErr(t, err, tc.code, tc.reason, tc.field)
			})
		}
		if _, err := b.JS.Consumer(ctx, "CS", "nope"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("an update of an unknown consumer created it: %v", err)
		}
	})
}

func TestAdminGetConsumerState(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		adminConsumerStream(t, ctx, b)
		c := tr.client(t, b)
		_, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "CS", Config: &jetwayv1.ConsumerConfig{Name: "st", FilterSubjects: []string{"cs.a", "cs.b"}}})
		adminOK(t, "CreateConsumer", err)
		get := func() *jetwayv1.ConsumerInfo {
			t.Helper()
			resp, err := c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "CS", Name: "st"})
			adminOK(t, "GetConsumer", err)
			return resp.GetConsumer()
		}
		if got := get().GetNumPending(); got != 4 {
			t.Errorf("num_pending = %d, want 4", got)
		}
		adminPub(t, ctx, b, "cs.a", []byte("6"), nil)
		adminPub(t, ctx, b, "cs.c", []byte("7"), nil) // not matched
		jetwaytest.Eventually(t, 5*time.Second, "the filtered consumer's num_pending", func() error {
			if got := get().GetNumPending(); got != 5 {
				return fmt.Errorf("num_pending = %d, want 5", got)
			}
			return nil
		})

		// Take two messages without acknowledging them.
		cons, err := b.JS.Consumer(ctx, "CS", "st")
		adminOK(t, "native consumer", err)
		batch, err := cons.FetchNoWait(2)
		adminOK(t, "native fetch", err)
		var fetched []uint64
		for m := range batch.Messages() {
			md, err := m.Metadata()
			adminOK(t, "metadata", err)
			fetched = append(fetched, md.Sequence.Stream)
		}
		adminOK(t, "fetch", batch.Error())
		if !slices.Equal(fetched, []uint64{1, 2}) {
			t.Fatalf("fetched stream sequences %v, want [1 2]", fetched)
		}
		ci := get()
		if ci.GetNumPending() != 3 || ci.GetNumAckPending() != 2 || ci.GetDelivered().GetStreamSequence() != 2 ||
			ci.GetDelivered().GetConsumerSequence() != 2 || ci.GetAckFloor().GetStreamSequence() != 0 {
			t.Errorf("after fetching 2: pending %d ack_pending %d delivered %v ack_floor %v",
				ci.GetNumPending(), ci.GetNumAckPending(), ci.GetDelivered(), ci.GetAckFloor())
		}
		if ci.GetDelivered().GetLastActive() == nil {
			t.Errorf("delivered.last_active missing after a delivery")
		}

		t.Run("errors", func(t *testing.T) {
			for _, tc := range []struct {
				name, stream, consumer string
				code                   codes.Code
				reason, field          string
			}{
				{"unknown_consumer", "CS", "nope", codes.NotFound, "CONSUMER_NOT_FOUND", ""},
				{"unknown_stream", "NOPE", "st", codes.NotFound, "STREAM_NOT_FOUND", ""},
				{"invalid_consumer_name", "CS", "a.b", codes.InvalidArgument, "INVALID_NAME", "name"},
				{"invalid_stream_name", "a*", "st", codes.InvalidArgument, "INVALID_NAME", "stream"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := tr.client(t, b).GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: tc.stream, Name: tc.consumer})
					adminWantErr(t, err, tc.code, tc.reason, tc.field)
				})
			}
		})
	})
}

func TestAdminListAndDeleteConsumers(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		adminConsumerStream(t, ctx, b)
		c := tr.client(t, b)
		for _, n := range []string{"k3", "k5", "k1", "k4", "k2"} {
			_, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "CS", Config: &jetwayv1.ConsumerConfig{Name: n}})
			adminOK(t, "CreateConsumer", err)
		}
		list := func(t *testing.T, size int32) [][]string {
			t.Helper()
			c := tr.client(t, b)
			var pages [][]string
			token := ""
			for range 10 {
				resp, err := c.ListConsumers(ctx, &jetwayv1.ListConsumersRequest{Stream: "CS", PageSize: size, PageToken: token})
				adminOK(t, "ListConsumers", err)
				var names []string
				for _, ci := range resp.GetConsumers() {
					names = append(names, ci.GetName())
					if ci.GetStream() != "CS" || ci.GetConfig().GetName() != ci.GetName() || ci.GetNumPending() != 5 {
						t.Errorf("listed consumer %q: stream %q config name %q pending %d", ci.GetName(), ci.GetStream(), ci.GetConfig().GetName(), ci.GetNumPending())
					}
				}
				pages = append(pages, names)
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			return pages
		}
		t.Run("pages_of_two", func(t *testing.T) {
			if got, want := fmt.Sprint(list(t, 2)), "[[k1 k2] [k3 k4] [k5]]"; got != want {
				t.Errorf("pages = %s, want %s", got, want)
			}
		})
		t.Run("default_page_size", func(t *testing.T) {
			if got, want := fmt.Sprint(list(t, 0)), "[[k1 k2 k3 k4 k5]]"; got != want {
				t.Errorf("pages = %s, want %s", got, want)
			}
		})
		t.Run("list_errors", func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				req    *jetwayv1.ListConsumersRequest
				code   codes.Code
				reason string
				field  string
			}{
				{"bad_token", &jetwayv1.ListConsumersRequest{Stream: "CS", PageToken: "nope"}, codes.InvalidArgument, "INVALID_ARGUMENT", "page_token"},
				{"page_size_5000", &jetwayv1.ListConsumersRequest{Stream: "CS", PageSize: 5000}, codes.InvalidArgument, "INVALID_ARGUMENT", "page_size"},
				{"unknown_stream", &jetwayv1.ListConsumersRequest{Stream: "NOPE"}, codes.NotFound, "STREAM_NOT_FOUND", ""},
				{"invalid_stream", &jetwayv1.ListConsumersRequest{Stream: "a.b"}, codes.InvalidArgument, "INVALID_NAME", "stream"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := tr.client(t, b).ListConsumers(ctx, tc.req)
					adminWantErr(t, err, tc.code, tc.reason, tc.field)
				})
			}
		})
		t.Run("delete", func(t *testing.T) {
			c := tr.client(t, b)
			_, err := c.DeleteConsumer(ctx, &jetwayv1.DeleteConsumerRequest{Stream: "CS", Name: "k3"})
			adminOK(t, "DeleteConsumer", err)
			_, err = c.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: "CS", Name: "k3"})
			adminWantCode(t, err, codes.NotFound, "CONSUMER_NOT_FOUND")
			if _, err := b.JS.Consumer(ctx, "CS", "k3"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Errorf("native consumer after delete: %v", err)
			}
			if got, want := fmt.Sprint(list(t, 2)), "[[k1 k2] [k4 k5]]"; got != want {
				t.Errorf("pages after delete = %s, want %s", got, want)
			}
			st, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "CS"})
			adminOK(t, "GetStream", err)
			if n := st.GetStream().GetState().GetConsumerCount(); n != 4 {
				t.Errorf("consumer_count = %d, want 4", n)
			}
			for _, tc := range []struct {
				name, stream, consumer string
				code                   codes.Code
				reason, field          string
			}{
				{"again", "CS", "k3", codes.NotFound, "CONSUMER_NOT_FOUND", ""},
				{"unknown_stream", "NOPE", "k1", codes.NotFound, "STREAM_NOT_FOUND", ""},
				{"invalid_name", "CS", "has space", codes.InvalidArgument, "INVALID_NAME", "name"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := tr.client(t, b).DeleteConsumer(ctx, &jetwayv1.DeleteConsumerRequest{Stream: tc.stream, Name: tc.consumer})
					adminWantErr(t, err, tc.code, tc.reason, tc.field)
				})
			}
		})
	})
}

// ---------------------------------------------------------------------------
// Messages

func TestAdminMessages(t *testing.T) {
	binary := []byte{0, 1, 2, 0xfe, 0xff, '\n', '"'}
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "MSG", Subjects: []string{"msg.>"}})
		adminStream(t, ctx, b, jetstream.StreamConfig{Name: "NODEL", Subjects: []string{"nodel.>"}, DenyDelete: true})
		before := time.Now().Add(-time.Second)
		hdr := nats.Header{"X-Tenant": {"acme"}, "X-Multi": {"one", "two"}, "Nats-Msg-Id": {"m-1"}}
		adminPub(t, ctx, b, "msg.a", binary, hdr)                    // 1
		adminPub(t, ctx, b, "msg.b", []byte("second"), nil)          // 2
		adminPub(t, ctx, b, "msg.a.deep", []byte("third"), nil)      // 3
		adminPub(t, ctx, b, "msg.a", []byte("fourth"), nil)          // 4
		adminPub(t, ctx, b, "msg.c", nil, nats.Header{"K": {"v"}})   // 5: empty payload
		adminPub(t, ctx, b, "nodel.x", []byte("protected"), nil)     // NODEL 1
		adminPub(t, ctx, b, "msg.secure", []byte("secret"), nil)     // 6
		adminPub(t, ctx, b, "msg.keep", []byte("stays stored"), nil) // 7

		t.Run("get_by_sequence", func(t *testing.T) {
			resp, err := tr.client(t, b).GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "MSG", Sequence: 1})
			adminOK(t, "GetMessage", err)
			m := resp.GetMessage()
			want := &jetwayv1.StoredMessage{
				Subject: "msg.a", Sequence: 1, Data: binary, Time: m.GetTime(),
				Headers: map[string]*jetwayv1.HeaderValues{
					"X-Tenant": {Values: []string{"acme"}}, "X-Multi": {Values: []string{"one", "two"}}, "Nats-Msg-Id": {Values: []string{"m-1"}},
				},
			}
			adminWantEqual(t, "message 1", m, want)
			if ts := m.GetTime(); ts == nil || ts.AsTime().Before(before) || ts.AsTime().After(time.Now().Add(time.Second)) {
				t.Errorf("time = %v, want about now", ts)
			}
			resp, err = tr.client(t, b).GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "MSG", Sequence: 5})
			adminOK(t, "GetMessage 5", err)
			if m := resp.GetMessage(); m.GetSubject() != "msg.c" || len(m.GetData()) != 0 || m.GetHeaders()["K"].GetValues()[0] != "v" {
				t.Errorf("message 5 = %v", m)
			}
		})

		t.Run("get_last", func(t *testing.T) {
			for _, tc := range []struct {
				subject string
				seq     uint64
				data    string
			}{
				{"msg.a", 4, "fourth"},
				{"msg.b", 2, "second"},
				{"msg.a.deep", 3, "third"},
				{"msg.*", 7, "stays stored"},
				{"msg.a.>", 3, "third"},
			} {
				resp, err := tr.client(t, b).GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "MSG", Subject: tc.subject})
				if err != nil {
					t.Errorf("GetLastMessage(%q): %v", tc.subject, err)
					continue
				}
				if m := resp.GetMessage(); m.GetSequence() != tc.seq || string(m.GetData()) != tc.data {
					t.Errorf("GetLastMessage(%q) = seq %d %q, want %d %q", tc.subject, m.GetSequence(), m.GetData(), tc.seq, tc.data)
				}
			}
		})

		t.Run("delete", func(t *testing.T) {
			c := tr.client(t, b)
			_, err := c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "MSG", Sequence: 2})
			adminOK(t, "DeleteMessage", err)
			_, err = c.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "MSG", Sequence: 2})
			adminWantCode(t, err, codes.NotFound, "MESSAGE_NOT_FOUND")
			_, err = c.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "MSG", Subject: "msg.b"})
			adminWantCode(t, err, codes.NotFound, "MESSAGE_NOT_FOUND")

			_, err = c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "MSG", Sequence: 6, Secure: true})
			adminOK(t, "DeleteMessage secure", err)
			if got := adminSeqs(t, ctx, b, "MSG", 7); !slices.Equal(got, []uint64{1, 3, 4, 5, 7}) {
				t.Errorf("sequences after deletes = %v", got)
			}
			st, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "MSG"})
			adminOK(t, "GetStream", err)
			if s := st.GetStream().GetState(); s.GetMessages() != 5 || s.GetNumDeleted() != 2 {
				t.Errorf("state after deletes: messages %d num_deleted %d, want 5 and 2", s.GetMessages(), s.GetNumDeleted())
			}
		})

		tests := []struct {
			name   string
			call   func(c jetwayv1.AdminServiceClient) error
			code   codes.Code
			reason string
			field  string
		}{
			{"get_unknown_sequence", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "MSG", Sequence: 99})
				return err
			}, codes.NotFound, "MESSAGE_NOT_FOUND", ""},
			{"get_sequence_0", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "MSG", Sequence: 0})
				return err
			}, codes.InvalidArgument, "INVALID_ARGUMENT", "sequence"},
			{"get_unknown_stream", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "NOPE", Sequence: 1})
				return err
			}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"get_invalid_stream", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetMessage(ctx, &jetwayv1.GetMessageRequest{Stream: "a.b", Sequence: 1})
				return err
			}, codes.InvalidArgument, "INVALID_NAME", "stream"},
			{"last_unknown_subject", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "MSG", Subject: "msg.none"})
				return err
			}, codes.NotFound, "MESSAGE_NOT_FOUND", ""},
			{"last_missing_subject", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "MSG"})
				return err
			}, codes.InvalidArgument, "INVALID_SUBJECT", "subject"},
			{"last_invalid_subject", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "MSG", Subject: "msg..a"})
				return err
			}, codes.InvalidArgument, "INVALID_SUBJECT", "subject"},
			{"last_unknown_stream", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.GetLastMessage(ctx, &jetwayv1.GetLastMessageRequest{Stream: "NOPE", Subject: "msg.a"})
				return err
			}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"delete_sequence_0", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "MSG", Sequence: 0})
				return err
			}, codes.InvalidArgument, "INVALID_ARGUMENT", "sequence"},
			{"delete_unknown_stream", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "NOPE", Sequence: 1})
				return err
			}, codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"delete_deny_delete", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "NODEL", Sequence: 1})
				return err
			}, codes.FailedPrecondition, "NOT_ALLOWED", ""},
			{"delete_deny_delete_secure", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "NODEL", Sequence: 1, Secure: true})
				return err
			}, codes.FailedPrecondition, "NOT_ALLOWED", ""},
			{"delete_unknown_sequence", func(c jetwayv1.AdminServiceClient) error {
				_, err := c.DeleteMessage(ctx, &jetwayv1.DeleteMessageRequest{Stream: "MSG", Sequence: 99})
				return err
			}, codes.NotFound, "MESSAGE_NOT_FOUND", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				adminWantErr(t, tc.call(tr.client(t, b)), tc.code, tc.reason, tc.field)
			})
		}
		if got := adminSeqs(t, ctx, b, "NODEL", 1); !slices.Equal(got, []uint64{1}) {
			t.Errorf("NODEL lost its message: %v", got)
		}
	})
}

// TestAdminRESTJSONShape checks the REST encoding: proto field names,
// defaults emitted, 64-bit integers as strings, enums as names, bytes as
// base64, headers as objects of values, and strict request decoding.
func TestAdminRESTJSONShape(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, adminTimeout)

	r := b.Do(t, http.MethodPost, "/v1/streams", `{"name":"SHAPE","subjects":["shape.>"],"max_msgs":"50","max_age":"60s","storage":"STORAGE_TYPE_MEMORY","metadata":{"k":"v"}}`)
	if r.Status != http.StatusOK {
		t.Fatalf("POST /v1/streams = %d %s", r.Status, r.Body)
	}
	var created struct {
		Stream struct {
			Config map[string]any `json:"config"`
			State  map[string]any `json:"state"`
		} `json:"stream"`
	}
	if err := json.Unmarshal(r.Body, &created); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	cfg := created.Stream.Config
	for key, want := range map[string]any{
		"name":                 "SHAPE",
		"max_msgs":             "50",
		"max_bytes":            "0", // default emitted, int64 as a string
		"max_msg_size":         float64(0),
		"max_age":              "60s",
		"retention":            "RETENTION_POLICY_LIMITS",
		"storage":              "STORAGE_TYPE_MEMORY",
		"discard":              "DISCARD_POLICY_OLD",
		"compression":          "COMPRESSION_NONE",
		"deny_delete":          false,
		"max_msgs_per_subject": "0",
		"duplicate_window":     "60s", // capped at max_age
		"description":          "",
	} {
		if got, ok := cfg[key]; !ok || fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
			t.Errorf("config.%s = %#v (present %v), want %#v", key, got, ok, want)
		}
	}
	if _, ok := cfg["maxMsgs"]; ok {
		t.Errorf("JSON uses lowerCamelCase names: %s", r.Body)
	}
	if created.Stream.State["messages"] != "0" {
		t.Errorf("state.messages = %#v, want \"0\"", created.Stream.State["messages"])
	}

	data := []byte{0xff, 0x00, 'h', 'i'}
	adminPub(t, ctx, b, "shape.x", data, nats.Header{"X-A": {"1", "2"}})
	r = b.Do(t, http.MethodGet, "/v1/streams/SHAPE/messages/1", "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET message = %d %s", r.Status, r.Body)
	}
	var msg struct {
		Message map[string]any `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &msg); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	if got := msg.Message["data"]; got != base64.StdEncoding.EncodeToString(data) {
		t.Errorf("data = %#v, want %q", got, base64.StdEncoding.EncodeToString(data))
	}
	if got := msg.Message["sequence"]; got != "1" {
		t.Errorf("sequence = %#v, want \"1\"", got)
	}
	if got := fmt.Sprint(msg.Message["headers"]); got != "map[X-A:map[values:[1 2]]]" {
		t.Errorf("headers = %s", got)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(msg.Message["time"])); err != nil {
		t.Errorf("time = %#v: %v", msg.Message["time"], err)
	}

	r = b.Do(t, http.MethodGet, "/v1/streams/SHAPE/messages:last?subject="+url.QueryEscape("shape.>"), "")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"subject":"shape.x"`) {
		t.Errorf("GET messages:last = %d %s", r.Status, r.Body)
	}

	r = b.Do(t, http.MethodGet, "/v1/account", "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/account = %d %s", r.Status, r.Body)
	}
	var acct map[string]any
	if err := json.Unmarshal(r.Body, &acct); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	if acct["streams"] != "1" || acct["consumers"] != "0" {
		t.Errorf("account streams/consumers = %#v/%#v, want \"1\"/\"0\"", acct["streams"], acct["consumers"])
	}
	if _, ok := acct["limits"].(map[string]any)["max_bytes_required"]; !ok {
		t.Errorf("limits.max_bytes_required missing: %s", r.Body)
	}

	// The error body of a REST call.
	r = b.Do(t, http.MethodGet, "/v1/streams/NOPE", "")
	var e struct {
		Code    int              `json:"code"`
		Message string           `json:"message"`
		Details []map[string]any `json:"details"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("decode error body %s: %v", r.Body, err)
	}
	if r.Status != http.StatusNotFound || e.Code != int(codes.NotFound) || e.Message == "" || len(e.Details) == 0 ||
		e.Details[0]["@type"] != "type.googleapis.com/google.rpc.ErrorInfo" || e.Details[0]["reason"] != "STREAM_NOT_FOUND" || e.Details[0]["domain"] != "jetway.dev" {
		t.Errorf("GET unknown stream = %d %s", r.Status, r.Body)
	}

	for _, tc := range []struct {
		name, method, path, body string
	}{
		{"unknown_field", http.MethodPost, "/v1/streams", `{"name":"X","max_msg":5}`},
		{"malformed_json", http.MethodPost, "/v1/streams", `{"name":`},
		{"wrong_type", http.MethodPost, "/v1/streams", `{"name":"X","max_msgs":"many"}`},
		{"unknown_enum_name", http.MethodPost, "/v1/streams", `{"name":"X","storage":"STORAGE_TYPE_TAPE"}`},
		{"consumer_unknown_field", http.MethodPost, "/v1/streams/SHAPE/consumers", `{"name":"c","durable":"c"}`},
		{"sequence_not_a_number", http.MethodGet, "/v1/streams/SHAPE/messages/abc", ""},
		{"purge_unknown_field", http.MethodPost, "/v1/streams/SHAPE:purge", `{"keep_last":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.Do(t, tc.method, tc.path, tc.body)
			if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"code":3`) {
				t.Errorf("%s %s %s = %d %s, want 400 with code 3", tc.method, tc.path, tc.body, r.Status, r.Body)
			}
		})
	}
	if _, err := b.JS.Stream(ctx, "X"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a refused REST create made stream X: %v", err)
	}

	// UpdateStream takes its name from the path; a different name in the
	// body does not redirect the update to another stream.
	adminStream(t, ctx, b, jetstream.StreamConfig{Name: "VICTIM", Subjects: []string{"victim.>"}, Storage: jetstream.MemoryStorage})
	r = b.Do(t, http.MethodPut, "/v1/streams/SHAPE", `{"name":"VICTIM","subjects":["victim.>"],"storage":"STORAGE_TYPE_MEMORY","description":"hijacked"}`)
	v, err := b.JS.Stream(ctx, "VICTIM")
	adminOK(t, "native VICTIM", err)
	if v.CachedInfo().Config.Description == "hijacked" {
		t.Errorf("PUT /v1/streams/SHAPE with body name VICTIM updated VICTIM (%d %s)", r.Status, r.Body)
	}
}

// ---------------------------------------------------------------------------
// Account

func TestAdminGetAccountInfo(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		empty, err := c.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{})
		adminOK(t, "GetAccountInfo", err)
		if empty.GetStreams() != 0 || empty.GetConsumers() != 0 || empty.GetMemory() != 0 || empty.GetStorage() != 0 {
			t.Errorf("fresh account = %v", empty)
		}

		for _, s := range []*jetwayv1.StreamConfig{
			{Name: "MEM", Subjects: []string{"mem.>"}, Storage: jetwayv1.StorageType_STORAGE_TYPE_MEMORY},
			{Name: "FILE", Subjects: []string{"file.>"}},
		} {
			_, err := c.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: s})
			adminOK(t, "CreateStream", err)
		}
		for _, cc := range []struct{ stream, name string }{{"MEM", "a"}, {"MEM", "b"}, {"FILE", "c"}} {
			_, err := c.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: cc.stream, Config: &jetwayv1.ConsumerConfig{Name: cc.name}})
			adminOK(t, "CreateConsumer", err)
		}
		adminPub(t, ctx, b, "mem.x", make([]byte, 512), nil)
		adminPub(t, ctx, b, "file.x", make([]byte, 512), nil)

		var info *jetwayv1.GetAccountInfoResponse
		jetwaytest.Eventually(t, 5*time.Second, "the account's file storage", func() error {
			info, err = c.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{})
			if err != nil {
				return err
			}
			if info.GetStreams() != 2 || info.GetConsumers() != 3 || info.GetMemory() < 512 || info.GetStorage() < 512 {
				return fmt.Errorf("account = streams %d consumers %d memory %d storage %d, want 2, 3, >=512, >=512",
					info.GetStreams(), info.GetConsumers(), info.GetMemory(), info.GetStorage())
			}
			return nil
		})
		native, err := b.JS.AccountInfo(ctx)
		adminOK(t, "native AccountInfo", err)
		l := native.Limits
		wantLimits := &jetwayv1.AccountLimits{
			MaxMemory: l.MaxMemory, MaxStorage: l.MaxStore, MaxStreams: int64(l.MaxStreams), MaxConsumers: int64(l.MaxConsumers),
			MaxAckPending: int64(l.MaxAckPending), MemoryMaxStreamBytes: l.MemoryMaxStreamBytes, StorageMaxStreamBytes: l.StoreMaxStreamBytes,
			MaxBytesRequired: l.MaxBytesRequired,
		}
		adminWantEqual(t, "limits", info.GetLimits(), wantLimits)
		if info.GetMemory() != native.Memory || info.GetStorage() != native.Store || info.GetDomain() != native.Domain {
			t.Errorf("memory/storage/domain = %d/%d/%q, native %d/%d/%q", info.GetMemory(), info.GetStorage(), info.GetDomain(), native.Memory, native.Store, native.Domain)
		}
		if info.GetApiTotal() == 0 || info.GetApiTotal() > native.API.Total {
			t.Errorf("api_total = %d, native (read later) %d", info.GetApiTotal(), native.API.Total)
		}

		// A refused call counts as an API error.
		_, err = b.JS.Stream(ctx, "NOPE")
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("native NOPE: %v", err)
		}
		after, err := c.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{})
		adminOK(t, "GetAccountInfo", err)
		if after.GetApiErrors() <= info.GetApiErrors() {
			t.Errorf("api_errors = %d after a failed call, was %d", after.GetApiErrors(), info.GetApiErrors())
		}

		_, err = c.DeleteStream(ctx, &jetwayv1.DeleteStreamRequest{Name: "MEM"})
		adminOK(t, "DeleteStream", err)
		after, err = c.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{})
		adminOK(t, "GetAccountInfo", err)
		if after.GetStreams() != 1 || after.GetConsumers() != 1 {
			t.Errorf("after deleting MEM: streams %d consumers %d, want 1 and 1", after.GetStreams(), after.GetConsumers())
		}
	})
}

// TestUpdateStreamKeepsWhatTheAPIDoesNotModel: a stream set up natively
// with sources, republish, atomic batches, counters and consumer limits
// keeps them all through GetStream → edit → UpdateStream, over gRPC and
// REST, while the edit itself applies.
func TestUpdateStreamKeepsWhatTheAPIDoesNotModel(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		c := tr.client(t, b)
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ORIGIN", Subjects: []string{"origin.>"}}); err != nil {
			t.Fatal(err)
		}
		native := jetstream.StreamConfig{
			Name:               "RICH",
			Subjects:           []string{"rich.>"},
			Sources:            []*jetstream.StreamSource{{Name: "ORIGIN", FilterSubject: "origin.eu.>"}},
			RePublish:          &jetstream.RePublish{Source: "rich.>", Destination: "copies.>"},
			AllowAtomicPublish: true,
			ConsumerLimits:     jetstream.StreamConsumerLimits{InactiveThreshold: time.Hour, MaxAckPending: 500},
		}
		if _, err := b.JS.CreateStream(ctx, native); err != nil {
			t.Fatal(err)
		}
		got, err := c.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "RICH"})
		if err != nil {
			t.Fatal(err)
		}
		edited := got.GetStream().GetConfig()
		edited.Description = "edited through the bridge"
		edited.MaxMsgs = 1000
		if _, err := c.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: edited}); err != nil {
			t.Fatalf("UpdateStream: %v", err)
		}
		st, err := b.JS.Stream(ctx, "RICH")
		if err != nil {
			t.Fatal(err)
		}
		after := st.CachedInfo().Config
		if after.Description != "edited through the bridge" || after.MaxMsgs != 1000 {
			t.Errorf("the edit did not apply: description %q, max_msgs %d", after.Description, after.MaxMsgs)
		}
		if len(after.Sources) != 1 || after.Sources[0].Name != "ORIGIN" || after.Sources[0].FilterSubject != "origin.eu.>" {
			t.Errorf("sources after the update: %+v, want ORIGIN filtered on origin.eu.>", after.Sources)
		}
		if after.RePublish == nil || after.RePublish.Destination != "copies.>" {
			t.Errorf("republish after the update: %+v, want to copies.>", after.RePublish)
		}
		if !after.AllowAtomicPublish {
			t.Error("allow_atomic dropped by the update")
		}
		if after.ConsumerLimits.InactiveThreshold != time.Hour || after.ConsumerLimits.MaxAckPending != 500 {
			t.Errorf("consumer limits after the update: %+v", after.ConsumerLimits)
		}
	})
}
