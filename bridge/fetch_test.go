package bridge_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/jetway-dev/jetway/bridge/acktoken"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// ---------------------------------------------------------------------------
// Transports: every Fetch/Ack test runs over gRPC and over the REST gateway.

// fetchClient is the part of MessageService these tests call.
type fetchClient interface {
	Fetch(ctx context.Context, req *jetwayv1.FetchRequest) (*jetwayv1.FetchResponse, error)
	Ack(ctx context.Context, req *jetwayv1.AckRequest) (*jetwayv1.AckResponse, error)
}

type fetchGRPC struct{ b *jetwaytest.Bridge }

func (c fetchGRPC) Fetch(ctx context.Context, req *jetwayv1.FetchRequest) (*jetwayv1.FetchResponse, error) {
	return c.b.Messages.Fetch(ctx, req)
}

func (c fetchGRPC) Ack(ctx context.Context, req *jetwayv1.AckRequest) (*jetwayv1.AckResponse, error) {
	return c.b.Messages.Ack(ctx, req)
}

// fetchREST calls Fetch and Ack through the REST gateway as http.yaml maps
// them: POST /v1/streams/{stream}/consumers/{consumer}:fetch and POST
// /v1/acks, body "*". Non-200 answers become a *fetchHTTPError.
type fetchREST struct {
	t testing.TB
	b *jetwaytest.Bridge
}

// fetchHTTPError is a REST error: the body's google.rpc.Status and the
// HTTP status.
type fetchHTTPError struct {
	httpStatus int
	st         *status.Status
}

func (e *fetchHTTPError) Error() string {
	return fmt.Sprintf("HTTP %d: %v", e.httpStatus, e.st.Err())
}

// GRPCStatus lets status.FromError read a REST error like a gRPC one.
func (e *fetchHTTPError) GRPCStatus() *status.Status { return e.st }

var fetchJSONOut = protojson.MarshalOptions{UseProtoNames: true}

func (c fetchREST) post(path string, body, out proto.Message) error {
	c.t.Helper()
	data, err := fetchJSONOut.Marshal(body)
	if err != nil {
		c.t.Fatalf("marshal %T: %v", body, err)
	}
	r := c.b.Do(c.t, http.MethodPost, path, string(data))
	if r.Status != http.StatusOK {
		var sp spb.Status
		if err := protojson.Unmarshal(r.Body, &sp); err != nil {
			c.t.Fatalf("POST %s: HTTP %d with a body that is not a google.rpc.Status: %q: %v", path, r.Status, r.Body, err)
		}
		return &fetchHTTPError{httpStatus: r.Status, st: status.FromProto(&sp)}
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Errorf("POST %s: Content-Type %q", path, ct)
	}
	if err := protojson.Unmarshal(r.Body, out); err != nil {
		c.t.Fatalf("POST %s: decode %q: %v", path, r.Body, err)
	}
	return nil
}

func (c fetchREST) Fetch(_ context.Context, req *jetwayv1.FetchRequest) (*jetwayv1.FetchResponse, error) {
	c.t.Helper()
	body := proto.Clone(req).(*jetwayv1.FetchRequest)
	body.Stream, body.Consumer = "", ""
	out := &jetwayv1.FetchResponse{}
	path := "/v1/streams/" + url.PathEscape(req.GetStream()) + "/consumers/" + url.PathEscape(req.GetConsumer()) + ":fetch"
	if err := c.post(path, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c fetchREST) Ack(_ context.Context, req *jetwayv1.AckRequest) (*jetwayv1.AckResponse, error) {
	c.t.Helper()
	out := &jetwayv1.AckResponse{}
	if err := c.post("/v1/acks", req, out); err != nil {
		return nil, err
	}
	return out, nil
}

// fetchEach runs f over gRPC and over REST, each on a bridge of its own,
// in parallel. The context bounds the whole subtest.
func fetchEach(t *testing.T, opts []jetwaytest.Option, f func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context)) {
	t.Helper()
	t.Parallel()
	for _, name := range []string{"grpc", "rest"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := jetwaytest.Start(t, opts...)
			ctx := jetwaytest.Context(t, 20*time.Second)
			var c fetchClient = fetchGRPC{b}
			if name == "rest" {
				c = fetchREST{t, b}
			}
			f(t, c, b, ctx)
		})
	}
}

// fetchStart starts one bridge for a parallel gRPC-only test.
func fetchStart(t *testing.T, opts ...jetwaytest.Option) (*jetwaytest.Bridge, context.Context) {
	t.Helper()
	t.Parallel()
	b := jetwaytest.Start(t, opts...)
	return b, jetwaytest.Context(t, 20*time.Second)
}

// ---------------------------------------------------------------------------
// Setup and checks

// fetchSetup creates a memory stream capturing "<subj>.>" and a durable
// explicit-ack pull consumer "C" with ackWait.
func fetchSetup(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream, subj string, ackWait time.Duration) {
	t.Helper()
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subj + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("create stream %s: %v", stream, err)
	}
	fetchConsumer(ctx, t, b, stream, jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
}

func fetchConsumer(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream string, cfg jetstream.ConsumerConfig) {
	t.Helper()
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
		t.Fatalf("create consumer %s on %s: %v", cfg.Durable, stream, err)
	}
}

// fetchPub publishes natively and returns the stream sequence.
func fetchPub(ctx context.Context, t testing.TB, b *jetwaytest.Bridge, subject string, data []byte, hdr nats.Header) uint64 {
	t.Helper()
	ack, err := b.JS.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr})
	if err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
	return ack.Sequence
}

// fetchInfo reads the consumer's state natively.
func fetchInfo(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream, consumer string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := b.JS.Consumer(ctx, stream, consumer)
	if err != nil {
		t.Fatalf("consumer %s/%s: %v", stream, consumer, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s/%s info: %v", stream, consumer, err)
	}
	return info
}

// fetchWantState checks the consumer's ack floor (stream sequence) and
// number of messages awaiting an ack, now.
func fetchWantState(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream, consumer string, ackFloor uint64, ackPending int) {
	t.Helper()
	info := fetchInfo(ctx, t, b, stream, consumer)
	if info.AckFloor.Stream != ackFloor || info.NumAckPending != ackPending {
		t.Errorf("consumer %s/%s: ack floor %d, ack pending %d; want %d, %d", stream, consumer, info.AckFloor.Stream, info.NumAckPending, ackFloor, ackPending)
	}
}

// fetchWaitState polls until the consumer has ackFloor and ackPending (an
// asynchronous ack is applied after the call that sent it returned).
func fetchWaitState(ctx context.Context, t *testing.T, b *jetwaytest.Bridge, stream, consumer string, ackFloor uint64, ackPending int) {
	t.Helper()
	jetwaytest.Eventually(t, 3*time.Second, "the consumer's ack state", func() error {
		info := fetchInfo(ctx, t, b, stream, consumer)
		if info.AckFloor.Stream != ackFloor || info.NumAckPending != ackPending {
			return fmt.Errorf("ack floor %d, ack pending %d; want %d, %d", info.AckFloor.Stream, info.NumAckPending, ackFloor, ackPending)
		}
		return nil
	})
}

// fetchDo fetches and fails the test on error; it returns the messages and
// how long the call took.
func fetchDo(ctx context.Context, t *testing.T, c fetchClient, req *jetwayv1.FetchRequest) ([]*jetwayv1.Message, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := c.Fetch(ctx, req)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Fetch(%v): %v", req, err)
	}
	return resp.GetMessages(), elapsed
}

// fetchOne fetches exactly one message.
func fetchOne(ctx context.Context, t *testing.T, c fetchClient, req *jetwayv1.FetchRequest) (*jetwayv1.Message, time.Duration) {
	t.Helper()
	msgs, d := fetchDo(ctx, t, c, req)
	// A consumer learns of a new message asynchronously, just after the
	// publish was acknowledged: a no_wait pull right after it may find
	// nothing yet (JetStream's semantics, not the bridge's). Retry for a
	// bounded while; no_wait must still return what is there.
	for deadline := time.Now().Add(2 * time.Second); req.GetNoWait() && len(msgs) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		msgs, d = fetchDo(ctx, t, c, req)
	}
	if len(msgs) != 1 {
		t.Fatalf("Fetch(%v) after %v: %d messages, want 1", req, d, len(msgs))
	}
	return msgs[0], d
}

// fetchReq is a Fetch of stream/consumer C.
func fetchReq(stream string, batch int32, wait time.Duration) *jetwayv1.FetchRequest {
	return &jetwayv1.FetchRequest{Stream: stream, Consumer: "C", Batch: batch, Wait: durationpb.New(wait)}
}

// fetchNoWait is a no_wait Fetch of stream/consumer C.
func fetchNoWait(stream string, batch int32) *jetwayv1.FetchRequest {
	return &jetwayv1.FetchRequest{Stream: stream, Consumer: "C", Batch: batch, NoWait: true}
}

// fetchAck sends an Ack and checks there is one result per operation, in
// order (each echoing its token).
func fetchAck(ctx context.Context, t *testing.T, c fetchClient, sync bool, ops ...*jetwayv1.AckOperation) []*jetwayv1.AckResult {
	t.Helper()
	resp, err := c.Ack(ctx, &jetwayv1.AckRequest{Operations: ops, Sync: sync})
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	res := resp.GetResults()
	if len(res) != len(ops) {
		t.Fatalf("Ack of %d operations: %d results", len(ops), len(res))
	}
	for i, r := range res {
		if r.GetToken() != ops[i].GetToken() {
			t.Errorf("result %d names token %.20q…, want %.20q… (results out of order?)", i, r.GetToken(), ops[i].GetToken())
		}
	}
	return res
}

// fetchAckOK sends operations that must all succeed.
func fetchAckOK(ctx context.Context, t *testing.T, c fetchClient, sync bool, ops ...*jetwayv1.AckOperation) []*jetwayv1.AckResult {
	t.Helper()
	res := fetchAck(ctx, t, c, sync, ops...)
	for i, r := range res {
		if r.GetError() != nil {
			t.Fatalf("operation %d (%v): error %v", i, ops[i].GetKind(), r.GetError())
		}
	}
	return res
}

func fetchOp(token string, kind jetwayv1.AckKind) *jetwayv1.AckOperation {
	return &jetwayv1.AckOperation{Token: token, Kind: kind}
}

// fetchWantOpErr checks a per-operation error.
func fetchWantOpErr(t *testing.T, what string, r *jetwayv1.AckResult, code codes.Code, reason, inMessage string) {
	t.Helper()
	e := r.GetError()
	switch {
	case e == nil:
		t.Errorf("%s: succeeded, want %v %s", what, code, reason)
	case e.GetCode() != int32(code) || e.GetReason() != reason:
		t.Errorf("%s: error %d %s (%q), want %d %s", what, e.GetCode(), e.GetReason(), e.GetMessage(), code, reason)
	case !strings.Contains(e.GetMessage(), inMessage):
		t.Errorf("%s: message %q does not mention %q", what, e.GetMessage(), inMessage)
	}
	if r.GetNewToken() != "" || r.GetAckDeadline() != nil {
		t.Errorf("%s: refused operation returned a new token or deadline", what)
	}
}

var fetchHTTPStatus = map[codes.Code]int{
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.FailedPrecondition: http.StatusBadRequest,
	codes.NotFound:           http.StatusNotFound,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
}

// fetchWantErr checks that err is a status with code, an ErrorInfo reason
// in the jetway.dev domain and, when field is set, a BadRequest violation
// of field also named in the message; over REST also the HTTP status.
func fetchWantErr(t *testing.T, what string, err error, code codes.Code, reason, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %v %s", what, code, reason)
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Errorf("%s: %v (%T) is not a status", what, err, err)
		return
	}
	if st.Code() != code {
		t.Errorf("%s: code %v, want %v (%v)", what, st.Code(), code, err)
	}
	var he *fetchHTTPError
	if errors.As(err, &he) && he.httpStatus != fetchHTTPStatus[code] {
		t.Errorf("%s: HTTP %d, want %d", what, he.httpStatus, fetchHTTPStatus[code])
	}
	gotReason, fields := "", []string{}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() != "jetway.dev" {
				t.Errorf("%s: ErrorInfo domain %q", what, d.GetDomain())
			}
			gotReason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if gotReason != reason {
		t.Errorf("%s: reason %q, want %q (%v)", what, gotReason, reason, err)
	}
	if field != "" {
		if len(fields) != 1 || fields[0] != field {
			t.Errorf("%s: field violations %q, want [%s]", what, fields, field)
		}
		if !strings.Contains(st.Message(), field) {
			t.Errorf("%s: message %q does not name %q", what, st.Message(), field)
		}
	}
}

// fetchTokenReply decodes the reply subject a token binds (its layout:
// version, expiry, ack wait, identity and reply with 16-bit lengths, MAC).
func fetchTokenReply(t *testing.T, tok string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 1+8+4+2+2+32 {
		t.Fatalf("token %q is not a v1 ack token: %v", tok, err)
	}
	p := raw[1+8+4:]
	n := int(binary.BigEndian.Uint16(p))
	p = p[2+n:]
	n = int(binary.BigEndian.Uint16(p))
	return string(p[2 : 2+n])
}

// fetchForge builds a token-shaped string binding reply, with expiry an hour
// ahead, MACed with key (nil: 32 random bytes instead of a MAC).
func fetchForge(reply string, key []byte) string {
	b := []byte{1}
	b = binary.BigEndian.AppendUint64(b, uint64(time.Now().Add(time.Hour).UnixMilli()))
	b = binary.BigEndian.AppendUint32(b, 30000)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reply)))
	b = append(b, reply...)
	if key == nil {
		mac := make([]byte, 32)
		_, _ = rand.Read(mac)
		return base64.RawURLEncoding.EncodeToString(append(b, mac...))
	}
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return base64.RawURLEncoding.EncodeToString(h.Sum(b))
}

// fetchKey is a fresh base64 ack key.
func fetchKey(t *testing.T) string {
	t.Helper()
	k, err := acktoken.RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// fetchMargin is how much earlier than now+ackWait the bridge sets an ack
// deadline at most (its own margin is min(ackWait/20, 1s)), plus slack for a
// slow machine.
func fetchMargin(ackWait time.Duration) time.Duration {
	return min(ackWait/20, time.Second) + 500*time.Millisecond
}

// fetchWantDeadline checks that a delivery's ack deadline lies between
// from+ackWait-margin and to+ackWait: about the consumer's ack wait after
// delivery, and never later than JetStream's own redelivery.
func fetchWantDeadline(t *testing.T, what string, m *jetwayv1.Message, from, to time.Time, ackWait time.Duration) {
	t.Helper()
	if m.GetAckDeadline() == nil {
		t.Errorf("%s: no ack_deadline", what)
		return
	}
	d := m.GetAckDeadline().AsTime()
	if d.Before(from.Add(ackWait-fetchMargin(ackWait))) || !d.Before(to.Add(ackWait)) {
		t.Errorf("%s: ack_deadline %v after a delivery in the %v before it, want about %v and never past it",
			what, d.Sub(from).Round(time.Millisecond), to.Sub(from).Round(time.Millisecond), ackWait)
	}
}

// ---------------------------------------------------------------------------
// Fetch

func TestFetchBatch(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		const ackWait = 30 * time.Second
		fetchSetup(ctx, t, b, "FB", "fb", ackWait)
		before := time.Now()
		for i := 1; i <= 10; i++ {
			fetchPub(ctx, t, b, "fb."+strconv.Itoa(i), []byte("payload "+strconv.Itoa(i)),
				nats.Header{"X-Seq": {strconv.Itoa(i)}, "X-Multi": {"a", "b"}})
		}
		after := time.Now()
		// The consumer counts new messages asynchronously, after the
		// publish acks: num_pending is checked once it has seen all ten.
		jetwaytest.Eventually(t, 5*time.Second, "num_pending of all ten", func() error {
			if n := fetchInfo(ctx, t, b, "FB", "C").NumPending; n != 10 {
				return fmt.Errorf("consumer num_pending %d, want 10", n)
			}
			return nil
		})

		tokens := map[string]bool{}
		seq := uint64(1)
		for _, want := range []int{4, 4, 2} {
			start := time.Now()
			msgs, elapsed := fetchDo(ctx, t, c, fetchReq("FB", 4, 2*time.Second))
			end := time.Now()
			if len(msgs) != want {
				t.Fatalf("Fetch batch 4 at sequence %d: %d messages, want %d", seq, len(msgs), want)
			}
			// Even the short last batch comes back at once: messages were
			// there, so the 2s wait is only for the first.
			if elapsed > time.Second {
				t.Errorf("Fetch of %d ready messages took %v", want, elapsed)
			}
			for _, m := range msgs {
				what := "message " + strconv.FormatUint(seq, 10)
				if m.GetSubject() != "fb."+strconv.FormatUint(seq, 10) {
					t.Errorf("%s: subject %q", what, m.GetSubject())
				}
				if d, ok := m.GetPayload().(*jetwayv1.Message_Data); !ok || string(d.Data) != "payload "+strconv.FormatUint(seq, 10) {
					t.Errorf("%s: payload %v", what, m.GetPayload())
				}
				if got := m.GetHeaders()["X-Seq"].GetValues(); len(got) != 1 || got[0] != strconv.FormatUint(seq, 10) {
					t.Errorf("%s: header X-Seq %q", what, got)
				}
				if got := m.GetHeaders()["X-Multi"].GetValues(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
					t.Errorf("%s: header X-Multi %q", what, got)
				}
				if len(m.GetHeaders()) != 2 {
					t.Errorf("%s: headers %v, want exactly X-Seq and X-Multi", what, m.GetHeaders())
				}
				if m.GetStream() != "FB" || m.GetConsumer() != "C" {
					t.Errorf("%s: stream/consumer %q/%q", what, m.GetStream(), m.GetConsumer())
				}
				if m.GetStreamSequence() != seq || m.GetConsumerSequence() != seq {
					t.Errorf("%s: stream/consumer sequence %d/%d, want %d/%d", what, m.GetStreamSequence(), m.GetConsumerSequence(), seq, seq)
				}
				if m.GetNumDelivered() != 1 {
					t.Errorf("%s: num_delivered %d, want 1", what, m.GetNumDelivered())
				}
				if m.GetNumPending() != 10-seq {
					t.Errorf("%s: num_pending %d, want %d", what, m.GetNumPending(), 10-seq)
				}
				if ts := m.GetTimestamp().AsTime(); ts.Before(before.Add(-50*time.Millisecond)) || ts.After(after.Add(50*time.Millisecond)) {
					t.Errorf("%s: timestamp %v outside the publishes [%v, %v]", what, ts, before, after)
				}
				if m.GetAckToken() == "" || tokens[m.GetAckToken()] {
					t.Errorf("%s: ack token %q empty or repeated", what, m.GetAckToken())
				}
				tokens[m.GetAckToken()] = true
				fetchWantDeadline(t, what, m, start, end, ackWait)
				seq++
			}
		}
		if msgs, _ := fetchDo(ctx, t, c, fetchNoWait("FB", 10)); len(msgs) != 0 {
			t.Errorf("Fetch after all 10: %d messages", len(msgs))
		}
		fetchWantState(ctx, t, b, "FB", "C", 0, 10)
	})
}

// TestFetchReturnsWhenReady: with messages waiting, a Fetch with a long
// wait returns what is there at once rather than waiting for a full batch.
func TestFetchReturnsWhenReady(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "FR", "fr", 30*time.Second)
		for i := range 3 {
			fetchPub(ctx, t, b, "fr."+strconv.Itoa(i), []byte("x"), nil)
		}
		msgs, elapsed := fetchDo(ctx, t, c, fetchReq("FR", 10, 5*time.Second))
		if len(msgs) != 3 {
			t.Fatalf("%d messages, want 3", len(msgs))
		}
		if elapsed >= 2*time.Second {
			t.Errorf("Fetch of 3 ready messages (batch 10, wait 5s) took %v", elapsed)
		}
		t.Logf("Fetch latency with 3 messages ready: %v", elapsed)
	})
}

// TestFetchLongPoll: a Fetch on an empty consumer returns the first
// message published while it waits, not at the end of the wait.
func TestFetchLongPoll(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		const ackWait = 10 * time.Second
		const wait = 5 * time.Second
		fetchSetup(ctx, t, b, "FL", "fl", ackWait)
		// The publisher owns its context and reports on a channel; it has
		// ended before the test returns, even when the Fetch fails it.
		type pubResult struct {
			at  time.Time
			err error
		}
		pubDone := make(chan pubResult, 1)
		pctx, stopPub := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() { stopPub(); wg.Wait() }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(300 * time.Millisecond): // the stimulus, not a wait for state
			case <-pctx.Done():
				pubDone <- pubResult{err: pctx.Err()}
				return
			}
			at := time.Now()
			_, err := b.JS.Publish(pctx, "fl.late", []byte("late"))
			pubDone <- pubResult{at, err}
		}()
		start := time.Now()
		m, elapsed := fetchOne(ctx, t, c, fetchReq("FL", 10, wait))
		end := time.Now()
		pub := <-pubDone
		if pub.err != nil {
			t.Fatalf("publish: %v", pub.err)
		}
		published := pub.at
		if m.GetSubject() != "fl.late" {
			t.Errorf("subject %q", m.GetSubject())
		}
		if elapsed < 250*time.Millisecond {
			t.Errorf("returned after %v, before the publish", elapsed)
		}
		// At once, not at the end of the 5s wait; room for a loaded machine.
		if end.Sub(published) > 2*time.Second || elapsed >= wait {
			t.Errorf("returned %v after the publish (%v in all), want at once", end.Sub(published), elapsed)
		}
		fetchWantDeadline(t, "long-polled message", m, start.Add(250*time.Millisecond), end, ackWait)
		t.Logf("long poll: message published after %v, Fetch returned %v later", published.Sub(start), end.Sub(published))
	})
}

func TestFetchEmpty(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "FE", "fe", 30*time.Second)
		msgs, elapsed := fetchDo(ctx, t, c, fetchReq("FE", 10, 500*time.Millisecond))
		if len(msgs) != 0 {
			t.Errorf("wait 500ms: %d messages from an empty consumer", len(msgs))
		}
		// Not before the wait; after it, well before the 5s default wait
		// (headroom for a loaded machine).
		if elapsed < 400*time.Millisecond || elapsed > 3*time.Second {
			t.Errorf("wait 500ms on an empty consumer returned after %v", elapsed)
		}
		t.Logf("empty Fetch with wait 500ms returned after %v", elapsed)

		// "At once": well under the 5s default wait, with room for a
		// loaded machine; the figures are logged.
		const atOnce = 2 * time.Second
		msgs, elapsed = fetchDo(ctx, t, c, fetchNoWait("FE", 10))
		if len(msgs) != 0 || elapsed >= atOnce {
			t.Errorf("no_wait on an empty consumer: %d messages after %v, want none at once", len(msgs), elapsed)
		}
		t.Logf("empty no_wait Fetch returned after %v", elapsed)
		msgs, elapsed = fetchDo(ctx, t, c, fetchReq("FE", 10, 0))
		if len(msgs) != 0 || elapsed >= atOnce {
			t.Errorf("wait 0 on an empty consumer: %d messages after %v, want none at once", len(msgs), elapsed)
		}
		t.Logf("empty wait-0 Fetch returned after %v", elapsed)
		// no_wait wins over wait.
		req := fetchReq("FE", 10, 5*time.Second)
		req.NoWait = true
		msgs, elapsed = fetchDo(ctx, t, c, req)
		if len(msgs) != 0 || elapsed >= atOnce {
			t.Errorf("no_wait with wait 5s: %d messages after %v, want none at once", len(msgs), elapsed)
		}
		t.Logf("empty no_wait Fetch with wait 5s returned after %v", elapsed)
		// no_wait still returns what is there; batch 0 is 1.
		fetchPub(ctx, t, b, "fe.1", []byte("1"), nil)
		fetchPub(ctx, t, b, "fe.2", []byte("2"), nil)
		m, _ := fetchOne(ctx, t, c, fetchNoWait("FE", 0))
		if m.GetStreamSequence() != 1 {
			t.Errorf("no_wait batch 0: sequence %d, want 1", m.GetStreamSequence())
		}
	})
}

// TestFetchWaitClampedToDeadline: a gRPC deadline shorter than the wait
// ends the wait early with an empty answer, not DEADLINE_EXCEEDED.
func TestFetchWaitClampedToDeadline(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FD", "fd", 30*time.Second)
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	resp, err := b.Messages.Fetch(cctx, &jetwayv1.FetchRequest{Stream: "FD", Consumer: "C", Batch: 5}) // default wait 5s
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Fetch with a 1s deadline and the default wait: %v after %v", err, elapsed)
	}
	// A success already came before the 1s deadline; the upper bound only
	// rules out the 5s default wait (measured after the call returned, it
	// may pass 1s on a loaded machine).
	if len(resp.GetMessages()) != 0 || elapsed < 700*time.Millisecond || elapsed >= 2*time.Second {
		t.Errorf("%d messages after %v, want none in [700ms, 1s)", len(resp.GetMessages()), elapsed)
	}
	t.Logf("Fetch with a 1s deadline returned empty after %v", elapsed)
}

func TestFetchMaxBytes(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "FM", "fm", 30*time.Second)
		payload := bytes.Repeat([]byte("x"), 1000)
		for i := range 5 {
			fetchPub(ctx, t, b, "fm."+strconv.Itoa(i), payload, nil)
		}
		req := fetchReq("FM", 10, time.Second)
		req.MaxBytes = 2500
		msgs, _ := fetchDo(ctx, t, c, req)
		if len(msgs) < 1 || len(msgs) > 2 {
			t.Fatalf("max_bytes 2500 with 1000-byte messages: %d messages, want 1 or 2", len(msgs))
		}
		// The rest is still there, in order.
		rest, _ := fetchDo(ctx, t, c, fetchReq("FM", 10, time.Second))
		if len(msgs)+len(rest) != 5 {
			t.Fatalf("max_bytes fetch got %d, the next %d, want 5 in all", len(msgs), len(rest))
		}
		for i, m := range append(msgs, rest...) {
			if m.GetStreamSequence() != uint64(i+1) {
				t.Errorf("message %d: sequence %d", i, m.GetStreamSequence())
			}
		}
	})
}

// TestFetchMaxBytesSmallerThanMessage: JetStream refuses a pull whose
// max_bytes is below the next message's size (409 "Message Size Exceeds
// MaxBytes"). The Fetch must not answer that with an empty success at once:
// a client would poll in a tight loop forever without learning why.
func TestFetchMaxBytesSmallerThanMessage(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FS", "fs", 30*time.Second)
	fetchPub(ctx, t, b, "fs.1", bytes.Repeat([]byte("x"), 1000), nil)
	req := fetchReq("FS", 10, time.Second)
	req.MaxBytes = 100
	start := time.Now()
	resp, err := b.Messages.Fetch(ctx, req)
	if err == nil && len(resp.GetMessages()) == 0 {
		t.Errorf("max_bytes 100 with a 1000-byte message waiting: empty success after %v (wait 1s), want an error naming max_bytes", time.Since(start))
	}
}

// TestFetchConsumerRequestLimits: a consumer may limit pull requests
// (max_batch, max_expires, max_bytes). JetStream refuses a pull over them
// with a 409 status; the bridge must not turn that into an empty success.
// In particular Fetch's defaults (wait 5s, max_bytes = the server cap)
// must work on such a consumer.
func TestFetchConsumerRequestLimits(t *testing.T) {
	b, ctx := fetchStart(t)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "FQ", Subjects: []string{"fq.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	fetchPub(ctx, t, b, "fq.1", []byte("x"), nil)
	for i, tt := range []struct {
		name string
		cfg  jetstream.ConsumerConfig
		req  *jetwayv1.FetchRequest
	}{
		{"default max_bytes, consumer max_bytes 1MiB", jetstream.ConsumerConfig{MaxRequestMaxBytes: 1 << 20},
			&jetwayv1.FetchRequest{Batch: 1, Wait: durationpb.New(time.Second)}},
		{"default wait, consumer max_expires 2s", jetstream.ConsumerConfig{MaxRequestExpires: 2 * time.Second},
			&jetwayv1.FetchRequest{Batch: 1}},
		{"batch 5, consumer max_batch 2", jetstream.ConsumerConfig{MaxRequestBatch: 2},
			&jetwayv1.FetchRequest{Batch: 5, Wait: durationpb.New(time.Second)}},
	} {
		name := "L" + strconv.Itoa(i)
		tt.cfg.Durable, tt.cfg.AckPolicy = name, jetstream.AckExplicitPolicy
		fetchConsumer(ctx, t, b, "FQ", tt.cfg)
		tt.req.Stream, tt.req.Consumer = "FQ", name
		start := time.Now()
		resp, err := b.Messages.Fetch(ctx, tt.req)
		if err == nil && len(resp.GetMessages()) == 0 {
			t.Errorf("%s: empty success after %v with a message waiting, want the message (or an error for an explicit value over the limit)", tt.name, time.Since(start))
		}
	}
}

func TestFetchCaps(t *testing.T) {
	caps := []jetwaytest.Option{func(c *config.Config) {
		c.Consume.MaxFetchBatch, c.Consume.MaxFetchWait, c.Consume.MaxFetchBytes = 5, 2*time.Second, 10000
	}}
	fetchEach(t, caps, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "FC", "fc", 30*time.Second)
		_, rest := c.(fetchREST)
		req := func(f func(r *jetwayv1.FetchRequest)) *jetwayv1.FetchRequest {
			r := &jetwayv1.FetchRequest{Stream: "FC", Consumer: "C", Batch: 1, NoWait: true}
			f(r)
			return r
		}
		for _, tt := range []struct {
			name   string
			req    *jetwayv1.FetchRequest
			code   codes.Code
			reason string
			field  string
		}{
			{"batch over the cap", req(func(r *jetwayv1.FetchRequest) { r.Batch = 6 }), codes.InvalidArgument, "INVALID_ARGUMENT", "batch"},
			{"batch negative", req(func(r *jetwayv1.FetchRequest) { r.Batch = -1 }), codes.InvalidArgument, "INVALID_ARGUMENT", "batch"},
			{"wait over the cap", req(func(r *jetwayv1.FetchRequest) { r.NoWait, r.Wait = false, durationpb.New(3*time.Second) }), codes.InvalidArgument, "INVALID_ARGUMENT", "wait"},
			{"wait over the cap with no_wait", req(func(r *jetwayv1.FetchRequest) { r.Wait = durationpb.New(3 * time.Second) }), codes.InvalidArgument, "INVALID_ARGUMENT", "wait"},
			{"wait negative", req(func(r *jetwayv1.FetchRequest) { r.Wait = durationpb.New(-time.Second) }), codes.InvalidArgument, "INVALID_ARGUMENT", "wait"},
			{"max_bytes over the cap", req(func(r *jetwayv1.FetchRequest) { r.MaxBytes = 10001 }), codes.InvalidArgument, "INVALID_ARGUMENT", "max_bytes"},
			{"max_bytes negative", req(func(r *jetwayv1.FetchRequest) { r.MaxBytes = -1 }), codes.InvalidArgument, "INVALID_ARGUMENT", "max_bytes"},
			{"max_bytes past int32", req(func(r *jetwayv1.FetchRequest) { r.MaxBytes = 1 << 40 }), codes.InvalidArgument, "INVALID_ARGUMENT", "max_bytes"},
			{"unknown stream", req(func(r *jetwayv1.FetchRequest) { r.Stream = "NOPE" }), codes.NotFound, "STREAM_NOT_FOUND", ""},
			{"unknown consumer", req(func(r *jetwayv1.FetchRequest) { r.Consumer = "NOPE" }), codes.NotFound, "CONSUMER_NOT_FOUND", ""},
			{"stream with a dot", req(func(r *jetwayv1.FetchRequest) { r.Stream = "F.C" }), codes.InvalidArgument, "INVALID_NAME", "stream"},
			{"stream with a space", req(func(r *jetwayv1.FetchRequest) { r.Stream = "F C" }), codes.InvalidArgument, "INVALID_NAME", "stream"},
			{"consumer wildcard", req(func(r *jetwayv1.FetchRequest) { r.Consumer = "*" }), codes.InvalidArgument, "INVALID_NAME", "consumer"},
			{"consumer full wildcard", req(func(r *jetwayv1.FetchRequest) { r.Consumer = "C>" }), codes.InvalidArgument, "INVALID_NAME", "consumer"},
		} {
			_, err := c.Fetch(ctx, tt.req)
			fetchWantErr(t, tt.name, err, tt.code, tt.reason, tt.field)
		}
		if !rest {
			// Empty names and durations out of the protobuf range cannot
			// be spelled in a REST path or JSON duration.
			for _, tt := range []struct {
				name  string
				req   *jetwayv1.FetchRequest
				field string
			}{
				{"empty stream", req(func(r *jetwayv1.FetchRequest) { r.Stream = "" }), "stream"},
				{"empty consumer", req(func(r *jetwayv1.FetchRequest) { r.Consumer = "" }), "consumer"},
				{"stream with a slash", req(func(r *jetwayv1.FetchRequest) { r.Stream = "F/C" }), "stream"},
			} {
				_, err := c.Fetch(ctx, tt.req)
				fetchWantErr(t, tt.name, err, codes.InvalidArgument, "INVALID_NAME", tt.field)
			}
			_, err := c.Fetch(ctx, req(func(r *jetwayv1.FetchRequest) { r.Wait = &durationpb.Duration{Seconds: 1 << 62} }))
			fetchWantErr(t, "wait out of range", err, codes.InvalidArgument, "INVALID_ARGUMENT", "wait")
			_, err = c.Fetch(ctx, req(func(r *jetwayv1.FetchRequest) { r.Wait = &durationpb.Duration{Seconds: 1, Nanos: -1} }))
			fetchWantErr(t, "wait with mixed signs", err, codes.InvalidArgument, "INVALID_ARGUMENT", "wait")
		}
		// At the caps is allowed.
		for _, r := range []*jetwayv1.FetchRequest{
			req(func(r *jetwayv1.FetchRequest) { r.Batch = 5 }),
			req(func(r *jetwayv1.FetchRequest) { r.Wait = durationpb.New(2 * time.Second) }),
			req(func(r *jetwayv1.FetchRequest) { r.MaxBytes = 10000 }),
		} {
			if _, err := c.Fetch(ctx, r); err != nil {
				t.Errorf("Fetch(%v) at the cap: %v", r, err)
			}
		}
	})
}

// TestFetchRESTJSON checks the REST wire shape: proto field names, int64 as
// strings, RFC 3339 timestamps, durations as "1.5s".
func TestFetchRESTJSON(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FJ", "fj", 30*time.Second)
	fetchPub(ctx, t, b, "fj.1", []byte("hi"), nil)
	r := b.Do(t, http.MethodPost, "/v1/streams/FJ/consumers/C:fetch", `{"batch": 5, "wait": "1.5s", "max_bytes": "5000", "format": "PAYLOAD_FORMAT_TEXT"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("HTTP %d %s", r.Status, r.Body)
	}
	var body struct {
		Messages []map[string]any `json:"messages"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	if len(body.Messages) != 1 {
		t.Fatalf("messages %s", r.Body)
	}
	m := body.Messages[0]
	for k, want := range map[string]any{
		"subject": "fj.1", "text": "hi", "stream": "FJ", "consumer": "C",
		"stream_sequence": "1", "consumer_sequence": "1", "num_delivered": "1", "num_pending": "0",
	} {
		if m[k] != want {
			t.Errorf("%s = %#v, want %#v (body %s)", k, m[k], want, r.Body)
		}
	}
	for _, k := range []string{"timestamp", "ack_deadline"} {
		s, _ := m[k].(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			t.Errorf("%s = %#v, want an RFC 3339 time", k, m[k])
		}
	}
	if s, _ := m["ack_token"].(string); s == "" {
		t.Errorf("ack_token missing: %s", r.Body)
	}
	if _, ok := m["data"]; ok {
		t.Errorf("both text and data set: %s", r.Body)
	}

	// An empty batch is an empty list, not a missing field.
	r = b.Do(t, http.MethodPost, "/v1/streams/FJ/consumers/C:fetch", `{"no_wait": true}`)
	if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"messages":[]`)) && !bytes.Contains(r.Body, []byte(`"messages": []`)) {
		t.Errorf("empty fetch: HTTP %d %s, want messages: []", r.Status, r.Body)
	}
	// Unknown fields and malformed durations are 400 from the gateway.
	for _, bad := range []string{`{"batch": 1, "bogus": 1}`, `{"wait": "soon"}`, `{"batch": "x"}`} {
		if r := b.Do(t, http.MethodPost, "/v1/streams/FJ/consumers/C:fetch", bad); r.Status != http.StatusBadRequest {
			t.Errorf("body %s: HTTP %d %s, want 400", bad, r.Status, r.Body)
		}
	}
	// Delivered once, to the first Fetch, and awaiting its ack.
	fetchWantState(ctx, t, b, "FJ", "C", 0, 1)
}

func TestFetchPayloadFormats(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "FF", Subjects: []string{"ff.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		payloads := [][]byte{
			[]byte(`{"a":1,"b":[true,null,"x"],"c":{"d":-2.5}}`),
			[]byte(`not json {`),
			[]byte("héllo ✓"),
			{0xff, 0xfe, 'a'},
			[]byte(`"just a string"`),
			{},
			[]byte(" [1, 2] "),
		}
		for i, p := range payloads {
			fetchPub(ctx, t, b, "ff."+strconv.Itoa(i), p, nil)
		}
		jsonOf := func(s string) *jetwayv1.Message {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				t.Fatal(err)
			}
			pv, err := structpb.NewValue(v)
			if err != nil {
				t.Fatal(err)
			}
			return &jetwayv1.Message{Payload: &jetwayv1.Message_Json{Json: pv}}
		}
		data := func(p []byte) *jetwayv1.Message {
			return &jetwayv1.Message{Payload: &jetwayv1.Message_Data{Data: p}}
		}
		text := func(s string) *jetwayv1.Message {
			return &jetwayv1.Message{Payload: &jetwayv1.Message_Text{Text: s}}
		}
		allData := make([]*jetwayv1.Message, len(payloads))
		for i, p := range payloads {
			allData[i] = data(p)
		}
		for _, tt := range []struct {
			format jetwayv1.PayloadFormat
			want   []*jetwayv1.Message
		}{
			{jetwayv1.PayloadFormat_PAYLOAD_FORMAT_UNSPECIFIED, allData},
			{jetwayv1.PayloadFormat_PAYLOAD_FORMAT_BYTES, allData},
			{jetwayv1.PayloadFormat_PAYLOAD_FORMAT_JSON, []*jetwayv1.Message{
				jsonOf(string(payloads[0])), data(payloads[1]), data(payloads[2]), data(payloads[3]),
				jsonOf(`"just a string"`), data(nil), jsonOf("[1,2]"),
			}},
			{jetwayv1.PayloadFormat_PAYLOAD_FORMAT_TEXT, []*jetwayv1.Message{
				text(string(payloads[0])), text(string(payloads[1])), text("héllo ✓"), data(payloads[3]),
				text(`"just a string"`), text(""), text(" [1, 2] "),
			}},
		} {
			name := "F" + strconv.Itoa(int(tt.format))
			fetchConsumer(ctx, t, b, "FF", jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy})
			msgs, _ := fetchDo(ctx, t, c, &jetwayv1.FetchRequest{Stream: "FF", Consumer: name, Batch: 10, Wait: durationpb.New(time.Second), Format: tt.format})
			if len(msgs) != len(payloads) {
				t.Fatalf("%v: %d messages, want %d", tt.format, len(msgs), len(payloads))
			}
			for i, m := range msgs {
				got := &jetwayv1.Message{Payload: m.GetPayload()}
				// An empty payload may come back as empty or nil bytes.
				if d, ok := got.GetPayload().(*jetwayv1.Message_Data); ok && len(d.Data) == 0 {
					got.Payload = &jetwayv1.Message_Data{Data: nil}
				}
				if !proto.Equal(got, tt.want[i]) {
					t.Errorf("%v, payload %q: got %v, want %v", tt.format, payloads[i], got, tt.want[i])
				}
				if m.GetPayload() == nil {
					t.Errorf("%v, payload %q: no payload set", tt.format, payloads[i])
				}
			}
		}
	})
}

// TestFetchAckNoneConsumer: a consumer that needs no acks gets no tokens.
func TestFetchAckNoneConsumer(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "FN", Subjects: []string{"fn.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		fetchConsumer(ctx, t, b, "FN", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckNonePolicy})
		fetchPub(ctx, t, b, "fn.1", []byte("x"), nil)
		m, _ := fetchOne(ctx, t, c, fetchReq("FN", 5, time.Second))
		if m.GetAckToken() != "" || m.GetAckDeadline() != nil {
			t.Errorf("ack-none consumer: token %q, deadline %v; want none", m.GetAckToken(), m.GetAckDeadline())
		}
		if m.GetStreamSequence() != 1 || m.GetNumDelivered() != 1 {
			t.Errorf("message %v", m)
		}
	})
}

// TestFetchPushConsumer: Fetch on a push consumer is the caller's mistake,
// not an internal error.
func TestFetchPushConsumer(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FP", "fp", 30*time.Second)
	fetchConsumer(ctx, t, b, "FP", jetstream.ConsumerConfig{Durable: "PUSH", AckPolicy: jetstream.AckExplicitPolicy, DeliverSubject: "fp-deliver"})
	_, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "FP", Consumer: "PUSH", NoWait: true})
	if c := status.Code(err); c != codes.FailedPrecondition && c != codes.InvalidArgument {
		t.Errorf("Fetch on a push consumer: %v, want FAILED_PRECONDITION or INVALID_ARGUMENT", err)
	}
}

// TestFetchMaxWaiting: past the consumer's max_waiting pull requests, a
// Fetch fails with RESOURCE_EXHAUSTED; the waiting one still gets its
// message.
func TestFetchMaxWaiting(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FW", "fw", 30*time.Second)
	fetchConsumer(ctx, t, b, "FW", jetstream.ConsumerConfig{Durable: "ONE", AckPolicy: jetstream.AckExplicitPolicy, MaxWaiting: 1})
	type result struct {
		resp *jetwayv1.FetchResponse
		err  error
	}
	first := make(chan result, 1)
	// The waiting Fetch runs under a context of its own, ended (and the
	// goroutine joined) before the test returns, whichever way it ends.
	fctx, stopFirst := context.WithCancel(ctx)
	firstDone := make(chan struct{})
	defer func() { stopFirst(); <-firstDone }()
	go func() {
		defer close(firstDone)
		r, err := b.Messages.Fetch(fctx, &jetwayv1.FetchRequest{Stream: "FW", Consumer: "ONE", Batch: 1, Wait: durationpb.New(5 * time.Second)})
		first <- result{r, err}
	}()
	jetwaytest.Eventually(t, 3*time.Second, "the first Fetch waiting", func() error {
		if n := fetchInfo(ctx, t, b, "FW", "ONE").NumWaiting; n != 1 {
			return fmt.Errorf("%d waiting pull requests", n)
		}
		return nil
	})
	_, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "FW", Consumer: "ONE", Batch: 1, Wait: durationpb.New(time.Second)})
	fetchWantErr(t, "second waiting Fetch", err, codes.ResourceExhausted, "LIMIT_EXCEEDED", "")
	fetchPub(ctx, t, b, "fw.1", []byte("x"), nil)
	select {
	case r := <-first:
		if r.err != nil || len(r.resp.GetMessages()) != 1 {
			t.Errorf("waiting Fetch: %v, %v", r.resp, r.err)
		}
	case <-ctx.Done():
		t.Fatal("waiting Fetch did not return")
	}
}

// TestFetchConsumerDeletedWhileWaiting: deleting the consumer ends a
// waiting Fetch with NOT_FOUND at once, and later Fetches too.
func TestFetchConsumerDeletedWhileWaiting(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FX", "fx", 30*time.Second)
	deleted := make(chan struct{})
	watch, stopWatch := context.WithCancel(ctx)
	defer func() { stopWatch(); <-deleted }() // the goroutine ends before the test does
	go func() {
		defer close(deleted)
		for watch.Err() == nil {
			c, err := b.JS.Consumer(watch, "FX", "C")
			if err != nil {
				return
			}
			if info, err := c.Info(watch); err == nil && info.NumWaiting == 1 {
				// Its own context: the Fetch may end (consumer gone) before
				// the delete's answer arrives.
				dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := b.JS.DeleteConsumer(dctx, "FX", "C"); err != nil {
					t.Errorf("delete consumer: %v", err)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := b.Messages.Fetch(ctx, fetchReq("FX", 1, 5*time.Second))
	fetchWantErr(t, "Fetch on a consumer deleted while waiting", err, codes.NotFound, "CONSUMER_NOT_FOUND", "")
	if d := time.Since(start); d >= 3*time.Second {
		t.Errorf("waiting Fetch ended %v after start", d)
	}
	_, err = b.Messages.Fetch(ctx, fetchNoWait("FX", 1))
	fetchWantErr(t, "Fetch after the delete", err, codes.NotFound, "CONSUMER_NOT_FOUND", "")
}

// TestFetchAckDeadlineFollowsConsumerUpdate: after the consumer's ack wait
// is lowered (by another client, or another replica), tokens must not
// outlive JetStream's new deadline. A token that does can acknowledge the
// redelivery another client is working on.
func TestFetchAckDeadlineFollowsConsumerUpdate(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FU", "fu", 30*time.Second)
	fetchPub(ctx, t, b, "fu.1", []byte("1"), nil)
	m, _ := fetchOne(ctx, t, fetchGRPC{b}, fetchNoWait("FU", 1))
	fetchAckOK(ctx, t, fetchGRPC{b}, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))

	fetchConsumer(ctx, t, b, "FU", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second})
	fetchPub(ctx, t, b, "fu.2", []byte("2"), nil)
	start := time.Now()
	m, _ = fetchOne(ctx, t, fetchGRPC{b}, fetchNoWait("FU", 1))
	if d := m.GetAckDeadline().AsTime(); d.After(time.Now().Add(time.Second)) {
		t.Errorf("ack wait lowered to 1s: ack_deadline %v after delivery, past JetStream's redelivery at 1s", d.Sub(start).Round(time.Millisecond))
	}
	// JetStream redelivers after 1s; the first token must not ack that.
	again, _ := fetchOne(ctx, t, fetchGRPC{b}, fetchReq("FU", 1, 5*time.Second))
	if again.GetNumDelivered() != 2 {
		t.Fatalf("redelivery has num_delivered %d", again.GetNumDelivered())
	}
	res := fetchAck(ctx, t, fetchGRPC{b}, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
	fetchWantOpErr(t, "first delivery's token after the redelivery", res[0], codes.FailedPrecondition, "ACK_TOKEN_EXPIRED", "")
	fetchWantState(ctx, t, b, "FU", "C", 1, 1)
}

// TestFetchAckNoneAfterRecreate: a Fetch signs tokens as the messages
// arrive with the settings the previous Fetch read; when the consumer was
// recreated meanwhile as one that takes no acks, its messages come without
// tokens, and the next Fetch of the recreated consumer's old form signs
// again.
func TestFetchAckNoneAfterRecreate(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FR", "fr", 30*time.Second)
	recreate := func(cfg jetstream.ConsumerConfig) {
		t.Helper()
		if err := b.JS.DeleteConsumer(ctx, "FR", "C"); err != nil {
			t.Fatal(err)
		}
		fetchConsumer(ctx, t, b, "FR", cfg)
	}
	fetchPub(ctx, t, b, "fr.1", []byte("1"), nil)
	m, _ := fetchOne(ctx, t, fetchGRPC{b}, fetchNoWait("FR", 1))
	if m.GetAckToken() == "" {
		t.Fatal("explicit-ack consumer: no token")
	}
	recreate(jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckNonePolicy})
	m, _ = fetchOne(ctx, t, fetchGRPC{b}, fetchNoWait("FR", 1))
	if m.GetAckToken() != "" || m.GetAckDeadline() != nil {
		t.Errorf("recreated as ack-none: token %q, deadline %v; want none", m.GetAckToken(), m.GetAckDeadline())
	}
	recreate(jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second})
	m, _ = fetchOne(ctx, t, fetchGRPC{b}, fetchNoWait("FR", 1))
	if m.GetAckToken() == "" {
		t.Fatal("recreated as explicit-ack: no token")
	}
	fetchAckOK(ctx, t, fetchGRPC{b}, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
}

// ---------------------------------------------------------------------------
// Ack

func TestAckAck(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		const ackWait = time.Second
		fetchSetup(ctx, t, b, "AA", "aa", ackWait)
		fetchPub(ctx, t, b, "aa.1", []byte("1"), nil)
		fetchPub(ctx, t, b, "aa.2", []byte("2"), nil)
		msgs, _ := fetchDo(ctx, t, c, fetchReq("AA", 2, time.Second))
		if len(msgs) != 2 {
			t.Fatalf("%d messages", len(msgs))
		}
		fetchWantState(ctx, t, b, "AA", "C", 0, 2)
		res := fetchAckOK(ctx, t, c, false, &jetwayv1.AckOperation{Token: msgs[0].GetAckToken()}) // kind unset: ACK
		if res[0].GetNewToken() != "" || res[0].GetAckDeadline() != nil {
			t.Errorf("ACK result carries a new token or deadline: %v", res[0])
		}
		fetchWaitState(ctx, t, b, "AA", "C", 1, 1)

		// After the ack wait only the unacked message comes back.
		again, elapsed := fetchOne(ctx, t, c, fetchReq("AA", 10, 3*time.Second))
		if again.GetStreamSequence() != 2 || again.GetNumDelivered() != 2 {
			t.Errorf("redelivered sequence %d (delivery %d) after %v, want 2 (delivery 2)", again.GetStreamSequence(), again.GetNumDelivered(), elapsed)
		}
		fetchAckOK(ctx, t, c, true, fetchOp(again.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
		fetchWantState(ctx, t, b, "AA", "C", 2, 0)
		if msgs, _ := fetchDo(ctx, t, c, fetchReq("AA", 10, 1200*time.Millisecond)); len(msgs) != 0 {
			t.Errorf("acked messages redelivered: %v", msgs)
		}
	})
}

func TestAckNak(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "AN", "an", 30*time.Second)
		fetchPub(ctx, t, b, "an.1", []byte("1"), nil)
		fetchPub(ctx, t, b, "an.2", []byte("2"), nil)
		msgs, _ := fetchDo(ctx, t, c, fetchReq("AN", 2, time.Second))
		if len(msgs) != 2 {
			t.Fatalf("%d messages", len(msgs))
		}

		// NAK: redelivered at once.
		nak := time.Now()
		fetchAckOK(ctx, t, c, false, fetchOp(msgs[0].GetAckToken(), jetwayv1.AckKind_ACK_KIND_NAK))
		m, _ := fetchOne(ctx, t, c, fetchReq("AN", 1, 3*time.Second))
		latency := time.Since(nak)
		if m.GetStreamSequence() != 1 || m.GetNumDelivered() != 2 || m.GetConsumerSequence() != 3 {
			t.Errorf("after NAK: sequence %d, delivery %d, consumer sequence %d; want 1, 2, 3", m.GetStreamSequence(), m.GetNumDelivered(), m.GetConsumerSequence())
		}
		// At once: well under the 30s ack wait (and the 3s Fetch wait),
		// with room for a loaded machine; the figure is logged below.
		if latency >= 2*time.Second {
			t.Errorf("NAKed message redelivered after %v, want at once", latency)
		}
		t.Logf("redelivery after NAK (Ack call + Fetch): %v", latency)
		fetchAckOK(ctx, t, c, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))

		// NAK with a delay: not before it.
		op := fetchOp(msgs[1].GetAckToken(), jetwayv1.AckKind_ACK_KIND_NAK)
		op.Delay = durationpb.New(time.Second)
		nak = time.Now()
		fetchAckOK(ctx, t, c, true, op)
		if early, _ := fetchDo(ctx, t, c, fetchNoWait("AN", 1)); len(early) != 0 {
			t.Errorf("message NAKed with delay 1s redelivered at once")
		}
		m, _ = fetchOne(ctx, t, c, fetchReq("AN", 1, 3*time.Second))
		latency = time.Since(nak)
		if m.GetStreamSequence() != 2 || m.GetNumDelivered() != 2 {
			t.Errorf("after NAK with delay: sequence %d, delivery %d; want 2, 2", m.GetStreamSequence(), m.GetNumDelivered())
		}
		if latency < 950*time.Millisecond || latency > 2500*time.Millisecond {
			t.Errorf("message NAKed with delay 1s redelivered after %v", latency)
		}
		t.Logf("redelivery after NAK with delay 1s: %v", latency)
		fetchAckOK(ctx, t, c, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
		fetchWantState(ctx, t, b, "AN", "C", 2, 0)
	})
}

// TestAckInProgress: IN_PROGRESS every 700ms keeps a message with ack wait
// 2s from being redelivered for 3s; each result carries a fresh token with
// a later deadline, and the last one acks the message.
func TestAckInProgress(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		const ackWait = 2 * time.Second
		fetchSetup(ctx, t, b, "AP", "ap", ackWait)
		fetchPub(ctx, t, b, "ap.1", []byte("1"), nil)
		start := time.Now()
		m, _ := fetchOne(ctx, t, c, fetchReq("AP", 1, time.Second))
		first, tok, deadline := m.GetAckToken(), m.GetAckToken(), m.GetAckDeadline().AsTime()

		tick := time.NewTicker(700 * time.Millisecond)
		defer tick.Stop()
		for n := 0; time.Since(start) < 3*time.Second; n++ {
			<-tick.C
			sent := time.Now()
			r := fetchAckOK(ctx, t, c, n%2 == 0, fetchOp(tok, jetwayv1.AckKind_ACK_KIND_IN_PROGRESS))[0]
			if r.GetNewToken() == "" || r.GetNewToken() == tok || r.GetAckDeadline() == nil {
				t.Fatalf("IN_PROGRESS %d: new token %q, deadline %v", n, r.GetNewToken(), r.GetAckDeadline())
			}
			nd := r.GetAckDeadline().AsTime()
			if !nd.After(deadline) {
				t.Errorf("IN_PROGRESS %d: deadline %v not later than %v", n, nd, deadline)
			}
			if nd.Before(sent.Add(ackWait-fetchMargin(ackWait))) || nd.After(time.Now().Add(ackWait)) {
				t.Errorf("IN_PROGRESS %d: deadline %v after the call, want about %v", n, nd.Sub(sent), ackWait)
			}
			tok, deadline = r.GetNewToken(), nd
			if msgs, _ := fetchDo(ctx, t, c, fetchNoWait("AP", 1)); len(msgs) != 0 {
				t.Fatalf("redelivered %v after the start despite IN_PROGRESS", time.Since(start))
			}
		}
		if info := fetchInfo(ctx, t, b, "AP", "C"); info.NumRedelivered != 0 || info.Delivered.Consumer != 1 || info.NumAckPending != 1 {
			t.Errorf("after %v of IN_PROGRESS: redelivered %d, delivered %d, ack pending %d", time.Since(start), info.NumRedelivered, info.Delivered.Consumer, info.NumAckPending)
		}
		// The first token expired at its own deadline.
		r := fetchAck(ctx, t, c, true, fetchOp(first, jetwayv1.AckKind_ACK_KIND_ACK))[0]
		fetchWantOpErr(t, "first token after 3s", r, codes.FailedPrecondition, "ACK_TOKEN_EXPIRED", "deadline")
		fetchWantState(ctx, t, b, "AP", "C", 0, 1)
		// The latest token acks.
		fetchAckOK(ctx, t, c, true, fetchOp(tok, jetwayv1.AckKind_ACK_KIND_ACK))
		fetchWantState(ctx, t, b, "AP", "C", 1, 0)
	})
}

func TestAckTerm(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "AT", "at", time.Second)
		adv, err := b.JS.Conn().SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.AT.C")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = adv.Unsubscribe() }()
		if err := b.JS.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		fetchPub(ctx, t, b, "at.1", []byte("1"), nil)
		m, _ := fetchOne(ctx, t, c, fetchReq("AT", 1, time.Second))
		op := fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_TERM)
		op.Reason = "bad payload: won't fix (ünïcode)"
		fetchAckOK(ctx, t, c, false, op)
		msg, err := adv.NextMsg(3 * time.Second)
		if err != nil {
			t.Fatalf("no terminated advisory: %v", err)
		}
		var a struct {
			StreamSeq uint64 `json:"stream_seq"`
			Reason    string `json:"reason"`
		}
		if err := json.Unmarshal(msg.Data, &a); err != nil || a.StreamSeq != 1 || a.Reason != op.Reason {
			t.Errorf("advisory %s (%v): want stream_seq 1 and reason %q", msg.Data, err, op.Reason)
		}
		fetchWaitState(ctx, t, b, "AT", "C", 1, 0)
		if msgs, _ := fetchDo(ctx, t, c, fetchReq("AT", 1, 1500*time.Millisecond)); len(msgs) != 0 {
			t.Errorf("terminated message redelivered: %v", msgs)
		}
	})
}

// TestAckRedeliveryAfterAckWait: unacked, a message comes back after the
// ack wait; the first delivery's token then no longer acks anything.
func TestAckRedeliveryAfterAckWait(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		const ackWait = time.Second
		fetchSetup(ctx, t, b, "AR", "ar", ackWait)
		fetchPub(ctx, t, b, "ar.1", []byte("1"), nil)
		// JetStream's ack wait runs from its delivery, which happens after
		// the first Fetch was sent but possibly well before its answer
		// reaches the test on a loaded machine: measure from the send.
		sent := time.Now()
		first, _ := fetchOne(ctx, t, c, fetchReq("AR", 1, time.Second))
		m, _ := fetchOne(ctx, t, c, fetchReq("AR", 1, 3*time.Second))
		latency := time.Since(sent)
		if m.GetStreamSequence() != 1 || m.GetNumDelivered() != 2 || m.GetAckToken() == first.GetAckToken() {
			t.Errorf("redelivery: sequence %d, delivery %d", m.GetStreamSequence(), m.GetNumDelivered())
		}
		if latency < 900*time.Millisecond {
			t.Errorf("redelivered %v after the first Fetch was sent, before the 1s ack wait", latency)
		}
		t.Logf("redelivery after ack wait 1s: %v after the first Fetch was sent", latency)
		r := fetchAck(ctx, t, c, true, fetchOp(first.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))[0]
		fetchWantOpErr(t, "first delivery's token", r, codes.FailedPrecondition, "ACK_TOKEN_EXPIRED", "")
		fetchWantState(ctx, t, b, "AR", "C", 0, 1)
		fetchAckOK(ctx, t, c, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
		fetchWantState(ctx, t, b, "AR", "C", 1, 0)
	})
}

// TestAckSync: with sync the ack is applied when Ack returns; acking twice
// is fine; NAK and TERM confirm too.
func TestAckSync(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "AS", "as", 30*time.Second)
		for i := 1; i <= 3; i++ {
			fetchPub(ctx, t, b, "as."+strconv.Itoa(i), []byte("x"), nil)
		}
		msgs, _ := fetchDo(ctx, t, c, fetchReq("AS", 3, time.Second))
		if len(msgs) != 3 {
			t.Fatalf("%d messages", len(msgs))
		}
		fetchAckOK(ctx, t, c, true, fetchOp(msgs[0].GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
		fetchWantState(ctx, t, b, "AS", "C", 1, 2) // at once, no polling
		start := time.Now()
		fetchAckOK(ctx, t, c, true, fetchOp(msgs[0].GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
		if d := time.Since(start); d > time.Second {
			t.Errorf("second sync ACK of the same message took %v", d)
		}
		fetchWantState(ctx, t, b, "AS", "C", 1, 2)
		term := fetchOp(msgs[2].GetAckToken(), jetwayv1.AckKind_ACK_KIND_TERM)
		term.Reason = "done"
		fetchAckOK(ctx, t, c, true, fetchOp(msgs[1].GetAckToken(), jetwayv1.AckKind_ACK_KIND_IN_PROGRESS), term)
		fetchWantState(ctx, t, b, "AS", "C", 1, 1)
		fetchAckOK(ctx, t, c, true, fetchOp(msgs[1].GetAckToken(), jetwayv1.AckKind_ACK_KIND_NAK))
		if info := fetchInfo(ctx, t, b, "AS", "C"); info.NumAckPending != 1 || info.NumPending != 0 {
			t.Errorf("after sync NAK: ack pending %d", info.NumAckPending)
		}
		m, _ := fetchOne(ctx, t, c, fetchNoWait("AS", 5))
		if m.GetStreamSequence() != 2 || m.GetNumDelivered() != 2 {
			t.Errorf("after sync NAK: sequence %d, delivery %d", m.GetStreamSequence(), m.GetNumDelivered())
		}
	})
}

// TestAckForgedTokens: forged, tampered and foreign tokens are refused per
// operation with ACK_TOKEN_INVALID and have no effect.
func TestAckForgedTokens(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "AF", "af", 30*time.Second)
		fetchPub(ctx, t, b, "af.1", []byte("1"), nil)
		m, _ := fetchOne(ctx, t, c, fetchReq("AF", 1, time.Second))
		tok := m.GetAckToken()
		reply := fetchTokenReply(t, tok)
		if !strings.HasPrefix(reply, "$JS.ACK.AF.C.") {
			t.Fatalf("token binds %q", reply)
		}

		// Change one character in the middle (the MAC), to another one.
		i := len(tok) - 20
		swapped := byte('A')
		if tok[i] == 'A' {
			swapped = 'B'
		}
		tampered := tok[:i] + string(swapped) + tok[i+1:]
		// Change the reply inside: sequence 1 → 9, same MAC.
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		raw = bytes.Replace(raw, []byte(".AF.C.1.1.1."), []byte(".AF.C.1.9.1."), 1)
		otherReply := base64.RawURLEncoding.EncodeToString(raw)
		if otherReply == tok {
			t.Fatalf("reply %q does not have the expected sequences", reply)
		}
		other, err := acktoken.New(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := other.Sign(acktoken.Claims{Reply: reply, Expires: time.Now().Add(time.Minute), AckWait: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		random := make([]byte, 120)
		_, _ = rand.Read(random)
		forged := []string{
			"not-a-token",
			base64.RawURLEncoding.EncodeToString(random),
			tampered,
			otherReply,
			foreign,
			fetchForge(reply, nil),
			tok[:len(tok)-4],
			tok + "AAAA",
			"",
		}
		for _, kind := range []jetwayv1.AckKind{jetwayv1.AckKind_ACK_KIND_ACK, jetwayv1.AckKind_ACK_KIND_TERM, jetwayv1.AckKind_ACK_KIND_IN_PROGRESS, jetwayv1.AckKind_ACK_KIND_NAK} {
			for _, sync := range []bool{true, false} {
				var ops []*jetwayv1.AckOperation
				for _, f := range forged {
					ops = append(ops, fetchOp(f, kind))
				}
				for j, r := range fetchAck(ctx, t, c, sync, ops...) {
					fetchWantOpErr(t, fmt.Sprintf("%v forged token %d", kind, j), r, codes.InvalidArgument, "ACK_TOKEN_INVALID", "")
				}
			}
		}
		// Nothing happened: still one message awaiting its ack, not
		// redelivered, nothing terminated.
		fetchWantState(ctx, t, b, "AF", "C", 0, 1)
		if info := fetchInfo(ctx, t, b, "AF", "C"); info.NumRedelivered != 0 || info.Delivered.Consumer != 1 {
			t.Errorf("after forged ops: redelivered %d, delivered %d", info.NumRedelivered, info.Delivered.Consumer)
		}
		if msgs, _ := fetchDo(ctx, t, c, fetchNoWait("AF", 1)); len(msgs) != 0 {
			t.Errorf("forged NAK redelivered the message")
		}
		// The real token still works.
		fetchAckOK(ctx, t, c, true, fetchOp(tok, jetwayv1.AckKind_ACK_KIND_ACK))
		fetchWantState(ctx, t, b, "AF", "C", 1, 0)
	})
}

// TestAckExpiredToken: after the ack deadline a token is refused with
// ACK_TOKEN_EXPIRED (FAILED_PRECONDITION, code 9), has no effect, and the
// message is redelivered.
func TestAckExpiredToken(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "AE", "ae", time.Second)
		fetchPub(ctx, t, b, "ae.1", []byte("1"), nil)
		m, _ := fetchOne(ctx, t, c, fetchReq("AE", 1, time.Second))
		// Wait until the deadline the bridge announced has passed (a known
		// instant, not a guess).
		time.Sleep(time.Until(m.GetAckDeadline().AsTime()) + 20*time.Millisecond)
		for _, kind := range []jetwayv1.AckKind{jetwayv1.AckKind_ACK_KIND_ACK, jetwayv1.AckKind_ACK_KIND_TERM, jetwayv1.AckKind_ACK_KIND_IN_PROGRESS} {
			r := fetchAck(ctx, t, c, true, fetchOp(m.GetAckToken(), kind))[0]
			fetchWantOpErr(t, kind.String()+" with an expired token", r, codes.FailedPrecondition, "ACK_TOKEN_EXPIRED", "deadline")
			if r.GetError().GetCode() != 9 {
				t.Errorf("expired token: code %d, want 9", r.GetError().GetCode())
			}
		}
		again, _ := fetchOne(ctx, t, c, fetchReq("AE", 1, 3*time.Second))
		if again.GetStreamSequence() != 1 || again.GetNumDelivered() != 2 {
			t.Errorf("after the expired ack: sequence %d, delivery %d; want 1, 2", again.GetStreamSequence(), again.GetNumDelivered())
		}
		fetchWantState(ctx, t, b, "AE", "C", 0, 1)
	})
}

// TestAckArbitrarySubject: a token-shaped string naming any subject other
// than a delivery's ack subject, with a wrong or no MAC, publishes nothing.
func TestAckArbitrarySubject(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "X", Subjects: []string{"x.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		fetchPub(ctx, t, b, "x.1", []byte("keep me"), nil)
		nc := b.JS.Conn()
		evil, err := nc.SubscribeSync("evil.>")
		if err != nil {
			t.Fatal(err)
		}
		del, err := nc.SubscribeSync("$JS.API.STREAM.>")
		if err != nil {
			t.Fatal(err)
		}
		all, err := nc.SubscribeSync(">")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		wrongKey := bytes.Repeat([]byte{0x42}, 32)
		var ops []*jetwayv1.AckOperation
		for _, subject := range []string{"evil.subject", "$JS.API.STREAM.DELETE.X", "$JS.API.STREAM.PURGE.X", "$JS.ACK.X.C.1.1.1.1.0"} {
			for _, key := range [][]byte{wrongKey, nil} {
				ops = append(ops, fetchOp(fetchForge(subject, key), jetwayv1.AckKind_ACK_KIND_ACK))
				ops = append(ops, fetchOp(fetchForge(subject, key), jetwayv1.AckKind_ACK_KIND_TERM))
			}
			ops = append(ops, fetchOp(base64.RawURLEncoding.EncodeToString([]byte(subject)), jetwayv1.AckKind_ACK_KIND_ACK))
			ops = append(ops, fetchOp(subject, jetwayv1.AckKind_ACK_KIND_ACK))
		}
		for _, sync := range []bool{false, true} {
			for i, r := range fetchAck(ctx, t, c, sync, ops...) {
				fetchWantOpErr(t, fmt.Sprintf("crafted op %d", i), r, codes.InvalidArgument, "ACK_TOKEN_INVALID", "")
			}
		}
		if m, err := evil.NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
			t.Errorf("evil.> received %v (%v)", m, err)
		}
		if m, err := del.NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
			t.Errorf("$JS.API.STREAM.> received %s %q (%v)", m.Subject, m.Data, err)
		}
		for {
			m, err := all.NextMsg(100 * time.Millisecond)
			if errors.Is(err, nats.ErrTimeout) {
				break
			}
			if err != nil {
				t.Fatalf("> subscription: %v", err)
			}
			if strings.Contains(m.Subject, "evil") || strings.HasPrefix(m.Subject, "$JS.API.STREAM.") || strings.HasPrefix(m.Subject, "$JS.ACK.") {
				t.Errorf("published to %s: %q", m.Subject, m.Data)
			}
		}
		st, err := b.JS.Stream(ctx, "X")
		if err != nil {
			t.Fatalf("stream X after crafted tokens: %v", err)
		}
		if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
			t.Errorf("stream X: %v, %v; want 1 message", info, err)
		}
	})
}

// TestAckAcrossBridges: replicas sharing --ack-keys take each other's
// tokens (fetch on one, ack on another); a replica with another key does
// not; a replica mid-rotation (new key first, old key second) does.
func TestAckAcrossBridges(t *testing.T) {
	t.Parallel()
	key, otherKey, newKey := fetchKey(t), fetchKey(t), fetchKey(t)
	a := jetwaytest.Start(t, func(c *config.Config) { c.Consume.AckKeys = key })
	shared := func(keys string) jetwaytest.Option {
		return func(c *config.Config) {
			c.Consume.AckKeys, c.NATS.URLs, c.NATS.Credentials = keys, a.Server.NATSURL(), a.Server.NATSCredentials()
		}
	}
	bb := jetwaytest.Start(t, shared(key))
	other := jetwaytest.Start(t, shared(otherKey))
	rotated := jetwaytest.Start(t, shared(newKey+","+key))
	ctx := jetwaytest.Context(t, 20*time.Second)

	fetchSetup(ctx, t, a, "AB", "ab", 30*time.Second)
	for i := 1; i <= 4; i++ {
		fetchPub(ctx, t, a, "ab."+strconv.Itoa(i), []byte("x"), nil)
	}
	msgs, _ := fetchDo(ctx, t, fetchGRPC{a}, fetchReq("AB", 3, time.Second))
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	// Bridge B, same key: over gRPC and REST.
	fetchAckOK(ctx, t, fetchGRPC{bb}, true, fetchOp(msgs[0].GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
	fetchWantState(ctx, t, a, "AB", "C", 1, 2)
	// The other key: refused, no effect.
	r := fetchAck(ctx, t, fetchGRPC{other}, true, fetchOp(msgs[1].GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))[0]
	fetchWantOpErr(t, "token of A on a bridge with another key", r, codes.InvalidArgument, "ACK_TOKEN_INVALID", "")
	r = fetchAck(ctx, t, fetchREST{t, other}, true, fetchOp(msgs[1].GetAckToken(), jetwayv1.AckKind_ACK_KIND_TERM))[0]
	fetchWantOpErr(t, "token of A on a bridge with another key (REST)", r, codes.InvalidArgument, "ACK_TOKEN_INVALID", "")
	fetchWantState(ctx, t, a, "AB", "C", 1, 2)
	// Mid-rotation: the old key still verifies; IN_PROGRESS there signs
	// with the new key, which A (old key only) refuses and B's peers with
	// the new key accept.
	res := fetchAckOK(ctx, t, fetchREST{t, rotated}, false, fetchOp(msgs[1].GetAckToken(), jetwayv1.AckKind_ACK_KIND_IN_PROGRESS))
	newTok := res[0].GetNewToken()
	r = fetchAck(ctx, t, fetchGRPC{a}, true, fetchOp(newTok, jetwayv1.AckKind_ACK_KIND_ACK))[0]
	fetchWantOpErr(t, "new-key token on the old-key bridge", r, codes.InvalidArgument, "ACK_TOKEN_INVALID", "")
	fetchAckOK(ctx, t, fetchGRPC{rotated}, true, fetchOp(newTok, jetwayv1.AckKind_ACK_KIND_ACK))
	fetchWantState(ctx, t, a, "AB", "C", 2, 1)
	fetchAckOK(ctx, t, fetchREST{t, bb}, true, fetchOp(msgs[2].GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
	fetchWantState(ctx, t, a, "AB", "C", 3, 0)
	// And the other way round: fetch on B, ack on A.
	m, _ := fetchOne(ctx, t, fetchREST{t, bb}, fetchReq("AB", 5, time.Second))
	if m.GetStreamSequence() != 4 {
		t.Errorf("fetch on B: sequence %d, want 4", m.GetStreamSequence())
	}
	fetchAckOK(ctx, t, fetchGRPC{a}, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
	fetchWantState(ctx, t, a, "AB", "C", 4, 0)
}

func TestAckRequestValidation(t *testing.T) {
	opts := []jetwaytest.Option{func(c *config.Config) { c.Consume.MaxAckBatch = 3 }}
	fetchEach(t, opts, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		fetchSetup(ctx, t, b, "AV", "av", 30*time.Second)
		for i := 1; i <= 3; i++ {
			fetchPub(ctx, t, b, "av."+strconv.Itoa(i), []byte("x"), nil)
		}
		msgs, _ := fetchDo(ctx, t, c, fetchReq("AV", 3, time.Second))
		if len(msgs) != 3 {
			t.Fatalf("%d messages", len(msgs))
		}
		t1, t2, t3 := msgs[0].GetAckToken(), msgs[1].GetAckToken(), msgs[2].GetAckToken()

		_, err := c.Ack(ctx, &jetwayv1.AckRequest{})
		fetchWantErr(t, "no operations", err, codes.InvalidArgument, "INVALID_ARGUMENT", "operations")
		four := []*jetwayv1.AckOperation{fetchOp(t1, 0), fetchOp(t1, 0), fetchOp(t1, 0), fetchOp(t1, 0)}
		_, err = c.Ack(ctx, &jetwayv1.AckRequest{Operations: four, Sync: true})
		fetchWantErr(t, "4 operations over a cap of 3", err, codes.InvalidArgument, "INVALID_ARGUMENT", "operations")
		fetchWantState(ctx, t, b, "AV", "C", 0, 3) // refused as a whole: nothing acked

		badTerm := fetchOp(t3, jetwayv1.AckKind_ACK_KIND_TERM)
		badTerm.Reason = "line\nbreak"
		res := fetchAck(ctx, t, c, true, fetchOp(t1, jetwayv1.AckKind_ACK_KIND_ACK), fetchOp(t2, jetwayv1.AckKind(99)), badTerm)
		if res[0].GetError() != nil {
			t.Errorf("valid ACK between bad ops: %v", res[0].GetError())
		}
		fetchWantOpErr(t, "unknown kind 99", res[1], codes.InvalidArgument, "INVALID_ARGUMENT", "kind")
		fetchWantOpErr(t, "TERM reason with LF", res[2], codes.InvalidArgument, "INVALID_ARGUMENT", "reason")
		fetchWantState(ctx, t, b, "AV", "C", 1, 2)

		negDelay := fetchOp(t2, jetwayv1.AckKind_ACK_KIND_NAK)
		negDelay.Delay = durationpb.New(-time.Second)
		longTerm := fetchOp(t3, jetwayv1.AckKind_ACK_KIND_TERM)
		longTerm.Reason = strings.Repeat("r", 257)
		crTerm := fetchOp(t3, jetwayv1.AckKind_ACK_KIND_TERM)
		crTerm.Reason = "carriage\rreturn"
		res = fetchAck(ctx, t, c, true, negDelay, longTerm, crTerm)
		fetchWantOpErr(t, "NAK with negative delay", res[0], codes.InvalidArgument, "INVALID_ARGUMENT", "delay")
		fetchWantOpErr(t, "TERM reason of 257 bytes", res[1], codes.InvalidArgument, "INVALID_ARGUMENT", "reason")
		fetchWantOpErr(t, "TERM reason with CR", res[2], codes.InvalidArgument, "INVALID_ARGUMENT", "reason")
		fetchWantState(ctx, t, b, "AV", "C", 1, 2)
		if msgs, _ := fetchDo(ctx, t, c, fetchNoWait("AV", 3)); len(msgs) != 0 {
			t.Errorf("refused NAK redelivered: %v", msgs)
		}

		// Mixed results come back in order, one per operation.
		okTerm := fetchOp(t3, jetwayv1.AckKind_ACK_KIND_TERM)
		okTerm.Reason = strings.Repeat("r", 256)
		res = fetchAck(ctx, t, c, true, fetchOp("forged", jetwayv1.AckKind_ACK_KIND_ACK), fetchOp(t2, jetwayv1.AckKind_ACK_KIND_ACK), okTerm)
		fetchWantOpErr(t, "forged first", res[0], codes.InvalidArgument, "ACK_TOKEN_INVALID", "")
		if res[1].GetError() != nil || res[2].GetError() != nil {
			t.Errorf("valid ops after a forged one: %v, %v", res[1].GetError(), res[2].GetError())
		}
		fetchWantState(ctx, t, b, "AV", "C", 3, 0)
	})
}

// TestFetchConcurrent: concurrent Fetches on one consumer share its
// messages: each message goes to exactly one of them.
func TestFetchConcurrent(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "FK", "fk", 30*time.Second)
	const n, workers = 40, 4
	for i := range n {
		fetchPub(ctx, t, b, "fk."+strconv.Itoa(i), []byte("x"), nil)
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				resp, err := b.Messages.Fetch(ctx, fetchReq("FK", 3, 300*time.Millisecond))
				if err != nil {
					t.Errorf("Fetch: %v", err)
					return
				}
				if len(resp.GetMessages()) == 0 {
					return
				}
				mu.Lock()
				for _, m := range resp.GetMessages() {
					seen[m.GetStreamSequence()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d distinct messages fetched, want %d", len(seen), n)
	}
	for seq, k := range seen {
		if k != 1 {
			t.Errorf("sequence %d fetched %d times", seq, k)
		}
	}
}

// TestFetchBackoffDeadlines: with a backoff the ack deadline of the n-th
// delivery follows the n-th backoff entry, not the ack wait.
func TestFetchBackoffDeadlines(t *testing.T) {
	b, ctx := fetchStart(t)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "FO", Subjects: []string{"fo.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	backoff := []time.Duration{time.Second, 3 * time.Second}
	fetchConsumer(ctx, t, b, "FO", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, BackOff: backoff, MaxDeliver: 5})
	fetchPub(ctx, t, b, "fo.1", []byte("x"), nil)
	c := fetchGRPC{b}
	// The first backoff runs from JetStream's delivery, which happens
	// after the first Fetch was sent but possibly well before its answer
	// reaches the test on a loaded machine: measure from the send.
	firstSent := time.Now()
	m, _ := fetchOne(ctx, t, c, fetchReq("FO", 1, time.Second))
	fetchWantDeadline(t, "delivery 1", m, firstSent, time.Now(), backoff[0])
	start := time.Now()
	m, _ = fetchOne(ctx, t, c, fetchReq("FO", 1, 3*time.Second))
	if m.GetNumDelivered() != 2 {
		t.Fatalf("num_delivered %d, want 2", m.GetNumDelivered())
	}
	if d := time.Since(firstSent); d < 900*time.Millisecond {
		t.Errorf("redelivered %v after the first Fetch was sent, before the first backoff of 1s", d)
	}
	fetchWantDeadline(t, "delivery 2", m, start, time.Now(), backoff[1])
	// IN_PROGRESS extends by the current delivery's backoff.
	sent := time.Now()
	r := fetchAckOK(ctx, t, c, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_IN_PROGRESS))[0]
	if d := r.GetAckDeadline().AsTime(); d.Before(sent.Add(backoff[1]-fetchMargin(backoff[1]))) || d.After(time.Now().Add(backoff[1])) {
		t.Errorf("IN_PROGRESS on delivery 2: deadline %v after the call, want about %v", d.Sub(sent), backoff[1])
	}
	fetchAckOK(ctx, t, c, true, fetchOp(r.GetNewToken(), jetwayv1.AckKind_ACK_KIND_ACK))
	fetchWantState(ctx, t, b, "FO", "C", 1, 0)
}

// TestAckSyncAfterConsumerDeleted: a synchronous ack for a consumer that
// no longer exists reports an error in its result (nothing confirms it);
// an asynchronous one cannot know.
func TestAckSyncAfterConsumerDeleted(t *testing.T) {
	b, ctx := fetchStart(t)
	fetchSetup(ctx, t, b, "AD", "ad", 30*time.Second)
	fetchPub(ctx, t, b, "ad.1", []byte("x"), nil)
	m, _ := fetchOne(ctx, t, fetchGRPC{b}, fetchNoWait("AD", 1))
	if err := b.JS.DeleteConsumer(ctx, "AD", "C"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := fetchAck(ctx, t, fetchGRPC{b}, true, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))[0]
	if r.GetError() == nil {
		t.Errorf("sync ACK for a deleted consumer succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("sync ACK for a deleted consumer took %v", d)
	}
	t.Logf("sync ACK for a deleted consumer: %v", r.GetError())
	fetchAckOK(ctx, t, fetchGRPC{b}, false, fetchOp(m.GetAckToken(), jetwayv1.AckKind_ACK_KIND_ACK))
}

// TestRefusedPullIsAnError: a consumer that refuses the bridge's pulls (a
// priority-group consumer created natively wants a group in every pull:
// nats-server answers 400) gives Fetch an error with a reason, over gRPC
// and REST, and ends a Subscribe with one, instead of an empty success or
// silence.
func TestRefusedPullIsAnError(t *testing.T) {
	fetchEach(t, nil, func(t *testing.T, c fetchClient, b *jetwaytest.Bridge, ctx context.Context) {
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "PG", Subjects: []string{"pg.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		fetchConsumer(ctx, t, b, "PG", jetstream.ConsumerConfig{
			Durable: "grouped", AckPolicy: jetstream.AckExplicitPolicy,
			PriorityPolicy: jetstream.PriorityPolicyOverflow, PriorityGroups: []string{"jobs"},
		})
		fetchPub(ctx, t, b, "pg.1", []byte("x"), nil)
		for _, req := range []*jetwayv1.FetchRequest{fetchNoWait("PG", 1), fetchReq("PG", 1, time.Second)} {
			req.Consumer = "grouped"
			_, err := c.Fetch(ctx, req)
			fetchWantErr(t, "Fetch from a priority-group consumer", err, codes.FailedPrecondition, "PULL_REFUSED", "")
		}
		st, err := b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "PG", Consumer: "grouped"})
		if err != nil {
			t.Fatal(err)
		}
		for {
			ev, err := st.Recv()
			if err != nil {
				if code, reason := subReason(err); code != codes.FailedPrecondition || reason != "PULL_REFUSED" {
					t.Errorf("Subscribe ended with %v, want FAILED_PRECONDITION PULL_REFUSED", err)
				}
				break
			}
			if ev.GetMessage() != nil {
				t.Fatalf("Subscribe delivered %v from a consumer that refuses its pulls", ev)
			}
		}
	})
}
