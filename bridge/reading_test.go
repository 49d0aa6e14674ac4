package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

func (c *adminREST) ListMessages(_ context.Context, in *jetwayv1.ListMessagesRequest, _ ...grpc.CallOption) (*jetwayv1.ListMessagesResponse, error) {
	out := &jetwayv1.ListMessagesResponse{}
	q := adminQuery("start_sequence", adminItoa(in.GetStartSequence()), "subject", in.GetSubject(),
		"max_messages", adminItoa(in.GetMaxMessages()), "max_bytes", adminItoa(in.GetMaxBytes()),
		"format", adminFormat(in.GetFormat()))
	if t := in.GetStartTime(); t != nil {
		sep := "?"
		if q != "" {
			sep = "&"
		}
		q += sep + "start_time=" + url.QueryEscape(t.AsTime().Format(time.RFC3339Nano))
	}
	return out, c.call(http.MethodGet, "/v1/streams/"+adminSeg(in.GetStream())+"/messages"+q, nil, out)
}

// GetLastMessages uses the GET route (subjects as repeated query
// parameters) unless the request has up_to_time, which goes to the POST
// route with a body: both bindings are exercised.
func (c *adminREST) GetLastMessages(_ context.Context, in *jetwayv1.GetLastMessagesRequest, _ ...grpc.CallOption) (*jetwayv1.GetLastMessagesResponse, error) {
	out := &jetwayv1.GetLastMessagesResponse{}
	path := "/v1/streams/" + adminSeg(in.GetStream()) + "/messages:multiLast"
	if in.GetUpToTime() != nil {
		body := &jetwayv1.GetLastMessagesRequest{Subjects: in.GetSubjects(), UpToTime: in.GetUpToTime(), Format: in.GetFormat()}
		return out, c.call(http.MethodPost, path, body, out)
	}
	q := url.Values{}
	for _, s := range in.GetSubjects() {
		q.Add("subjects", s)
	}
	if n := in.GetUpToSequence(); n != 0 {
		q.Set("up_to_sequence", fmt.Sprint(n))
	}
	if f := adminFormat(in.GetFormat()); f != "" {
		q.Set("format", f)
	}
	return out, c.call(http.MethodGet, path+"?"+q.Encode(), nil, out)
}

// readingSameAsNative checks that the bridge's stored message is the one
// nats.go reads natively at its sequence.
func readingSameAsNative(t *testing.T, ctx context.Context, st jetstream.Stream, got *jetwayv1.StoredMessage) {
	t.Helper()
	want, err := st.GetMsg(ctx, got.GetSequence())
	if err != nil {
		t.Fatalf("native GetMsg(%d): %v", got.GetSequence(), err)
	}
	if got.GetSubject() != want.Subject || string(got.GetData()) != string(want.Data) || !got.GetTime().AsTime().Equal(want.Time) {
		t.Errorf("message %d = %s %q %v, native %s %q %v", got.GetSequence(), got.GetSubject(), got.GetData(), got.GetTime().AsTime(), want.Subject, want.Data, want.Time)
	}
	// nats.go reads a stream with allow_direct by direct get, whose
	// answer adds headers describing the message; the bridge takes them
	// off (they are its subject, sequence and time).
	for _, k := range []string{"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp"} {
		want.Header.Del(k)
	}
	if len(got.GetHeaders()) != len(want.Header) {
		t.Errorf("message %d headers = %v, native %v", got.GetSequence(), got.GetHeaders(), want.Header)
	}
	for k, v := range want.Header {
		if g := got.GetHeaders()[k].GetValues(); strings.Join(g, ",") != strings.Join(v, ",") {
			t.Errorf("message %d header %s = %q, native %q", got.GetSequence(), k, g, v)
		}
	}
}

// TestListMessages pages through a stream without a consumer, by sequence,
// by time, by subject and by bytes, and agrees with nats.go's GetMsg.
func TestListMessages(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		a := tr.client(t, b)
		st, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "BR", Subjects: []string{"br.>"}, AllowDirect: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 25; i++ {
			m := nats.NewMsg("br.a")
			if i%2 == 0 {
				m.Subject = "br.b"
				m.Header.Set("X-N", fmt.Sprint(i))
			}
			m.Data = []byte(fmt.Sprintf("%03d:%s", i, strings.Repeat("x", 96)))
			if _, err := b.JS.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}

		page, err := a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", MaxMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(page.GetMessages()); n != 10 || page.GetNextSequence() != 11 || page.GetPending() != 15 {
			t.Fatalf("first page: %d messages, next %d, pending %d; want 10, 11, 15", n, page.GetNextSequence(), page.GetPending())
		}
		for i, m := range page.GetMessages() {
			if m.GetSequence() != uint64(i+1) {
				t.Errorf("message %d has sequence %d", i, m.GetSequence())
			}
			readingSameAsNative(t, ctx, st, m)
		}

		// Every br.b message, page by page: the pages meet the native count.
		var seen []uint64
		next := uint64(0)
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("paging br.b did not end")
			}
			p, err := a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", Subject: "br.b", StartSequence: next, MaxMessages: 5})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range p.GetMessages() {
				if m.GetSubject() != "br.b" {
					t.Errorf("subject filter br.b returned %s", m.GetSubject())
				}
				readingSameAsNative(t, ctx, st, m)
				seen = append(seen, m.GetSequence())
			}
			next = p.GetNextSequence()
			if p.GetPending() == 0 {
				break
			}
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("br.b"))
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(seen)) != info.State.Subjects["br.b"] || len(seen) != 12 {
			t.Errorf("paged %d br.b messages (%v), natively %d", len(seen), seen, info.State.Subjects["br.b"])
		}

		// As text: the payload in text, data empty.
		p0, err := a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", MaxMessages: 3, Format: jetwayv1.PayloadFormat_PAYLOAD_FORMAT_TEXT})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range p0.GetMessages() {
			native, err := st.GetMsg(ctx, m.GetSequence())
			if err != nil {
				t.Fatal(err)
			}
			if m.GetText() != string(native.Data) || len(m.GetData()) != 0 {
				t.Errorf("message %d as text = %q (data %q), native %q", m.GetSequence(), m.GetText(), m.GetData(), native.Data)
			}
		}

		// By time: from message 7's time, message 7 comes first.
		m7, err := st.GetMsg(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", StartTime: timestamppb.New(m7.Time), MaxMessages: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.GetMessages()) != 2 || p.GetMessages()[0].GetSequence() != 7 {
			t.Errorf("from message 7's time: %v", p.GetMessages())
		}

		// By bytes: each message is about 104 bytes; at 250 two fit, and
		// the third (which JetStream sent past the limit) starts the next
		// page.
		p, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", StartSequence: 1, Subject: "br.a", MaxBytes: 250})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.GetMessages()) != 2 || p.GetNextSequence() != 4 || p.GetPending() != 11 {
			t.Errorf("max_bytes 250: %d messages, next %d, pending %d; want 2, 4, 11", len(p.GetMessages()), p.GetNextSequence(), p.GetPending())
		}

		// Past the end: an empty page, nothing pending.
		p, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", StartSequence: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.GetMessages()) != 0 || p.GetNextSequence() != 1000 || p.GetPending() != 0 {
			t.Errorf("past the end: %v", p)
		}

		// Refusals.
		if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "NODIRECT", Subjects: []string{"nd.>"}}); err != nil {
			t.Fatal(err)
		}
		_, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "NODIRECT"})
		adminWantErr(t, err, codes.FailedPrecondition, "NOT_ALLOWED", "")
		_, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "MISSING"})
		adminWantErr(t, err, codes.NotFound, "STREAM_NOT_FOUND", "")
		_, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", MaxMessages: 1001})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "max_messages")
		_, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", MaxBytes: 4 << 20})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "max_bytes")
		_, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", StartSequence: 3, StartTime: timestamppb.Now()})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "start_time")
		_, err = a.ListMessages(ctx, &jetwayv1.ListMessagesRequest{Stream: "BR", Subject: "br..a"})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_SUBJECT", "subject")
	})
}

// TestGetLastMessages reads the last message of many subjects at once, as
// of now, a sequence or a time, and agrees with nats.go's
// GetLastMsgForSubject.
func TestGetLastMessages(t *testing.T) {
	adminEachTransport(t, func(t *testing.T, tr adminTransport, b *jetwaytest.Bridge, ctx context.Context) {
		a := tr.client(t, b)
		st, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ML", Subjects: []string{"ml.>"}, AllowDirect: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range [][2]string{{"ml.a", "a1"}, {"ml.b", "b1"}, {"ml.a", "a2"}, {"ml.c.x", "c1"}, {"ml.b", "b2"}} {
			if _, err := b.JS.Publish(ctx, p[0], []byte(p[1])); err != nil {
				t.Fatal(err)
			}
		}
		body := func(r *jetwayv1.GetLastMessagesResponse) string {
			var out []string
			for _, m := range r.GetMessages() {
				out = append(out, fmt.Sprintf("%d:%s=%s", m.GetSequence(), m.GetSubject(), m.GetData()))
			}
			return strings.Join(out, " ")
		}

		r, err := a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.a", "ml.b"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := body(r); got != "3:ml.a=a2 5:ml.b=b2" || r.GetUpToSequence() != 5 {
			t.Errorf("last of ml.a, ml.b = %q up to %d; want 3:ml.a=a2 5:ml.b=b2 up to 5", got, r.GetUpToSequence())
		}
		for _, m := range r.GetMessages() {
			native, err := st.GetLastMsgForSubject(ctx, m.GetSubject())
			if err != nil {
				t.Fatal(err)
			}
			if native.Sequence != m.GetSequence() {
				t.Errorf("last of %s: bridge %d, native %d", m.GetSubject(), m.GetSequence(), native.Sequence)
			}
			readingSameAsNative(t, ctx, st, m)
		}

		r, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.>"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := body(r); got != "3:ml.a=a2 4:ml.c.x=c1 5:ml.b=b2" {
			t.Errorf("last of ml.> = %q", got)
		}

		r, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.a", "ml.b"}, UpToSequence: 3})
		if err != nil {
			t.Fatal(err)
		}
		if got := body(r); got != "2:ml.b=b1 3:ml.a=a2" || r.GetUpToSequence() != 3 {
			t.Errorf("as of 3 = %q up to %d", got, r.GetUpToSequence())
		}

		m3, err := st.GetMsg(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		r, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.a", "ml.b"}, UpToTime: timestamppb.New(m3.Time)})
		if err != nil {
			t.Fatal(err)
		}
		if got := body(r); got != "1:ml.a=a1 2:ml.b=b1" {
			t.Errorf("before message 3's time = %q", got)
		}

		if _, err := b.JS.Publish(ctx, "ml.j", []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
		r, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.j", "ml.a"}, Format: jetwayv1.PayloadFormat_PAYLOAD_FORMAT_JSON})
		if err != nil {
			t.Fatal(err)
		}
		if ms := r.GetMessages(); len(ms) != 2 || string(ms[0].GetData()) != "a2" || ms[1].GetJson().GetStructValue().GetFields()["n"].GetNumberValue() != 1 {
			t.Errorf("as JSON (ml.a is not JSON: bytes) = %v", ms)
		}

		r, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.none"}})
		if err != nil || len(r.GetMessages()) != 0 {
			t.Errorf("no match: %v, %v", r, err)
		}

		_, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML"})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "subjects")
		_, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.a", "ml..b"}})
		adminWantErr(t, err, codes.InvalidArgument, "INVALID_SUBJECT", "subjects[1]")

		// More than JetStream's 1024 results is refused, not cut short.
		futures := make([]jetstream.PubAckFuture, 0, 1030)
		for i := range 1030 {
			f, err := b.JS.PublishAsync(fmt.Sprintf("ml.many.%d", i), []byte("v"))
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		select {
		case <-b.JS.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("async publishes did not complete")
		}
		for _, f := range futures {
			select {
			case err := <-f.Err():
				t.Fatal(err)
			default:
			}
		}
		_, err = a.GetLastMessages(ctx, &jetwayv1.GetLastMessagesRequest{Stream: "ML", Subjects: []string{"ml.many.*"}})
		adminWantErr(t, err, codes.InvalidArgument, "TOO_MANY_RESULTS", "subjects")
	})
}
