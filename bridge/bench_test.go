package bridge

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/jetway-dev/jetway/bridge/acktoken"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

func benchService(b testing.TB) *messageService {
	b.Helper()
	signer, err := acktoken.New(make([]byte, acktoken.MinKeyLen))
	if err != nil {
		b.Fatal(err)
	}
	return &messageService{signer: signer, authz: allowAll{}, maxPayload: func() int64 { return 1 << 20 }, obs: noObserver{}}
}

// BenchmarkToMessage is the per-message cost of delivering: parsing the
// ack subject, converting to protobuf and signing the ack token.
func BenchmarkToMessage(b *testing.B) {
	s := benchService(b)
	data := make([]byte, 128)
	header := nats.Header{"X-Trace": {"abc"}}
	reply := "$JS.ACK.ORDERS.worker.1.12345.12345.1700000000000000000.42"
	meta := consumerMeta{ackWait: 30 * time.Second}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.toMessage("orders.new", reply, header, data, meta, jetwayv1.PayloadFormat_PAYLOAD_FORMAT_BYTES, "", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildMsg is the per-message cost of a publish request's
// validation and conversion.
func BenchmarkBuildMsg(b *testing.B) {
	s := benchService(b)
	last := uint64(7)
	req := &jetwayv1.PublishRequest{
		Subject: "orders.eu.new", Payload: &jetwayv1.PublishRequest_Data{Data: make([]byte, 128)},
		Headers: map[string]*jetwayv1.HeaderValues{"X-Trace": {Values: []string{"abc"}}},
		MsgId:   "order-1", ExpectedLastSubjectSequence: &last,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.buildMsg("", req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPubAckParse is the per-message cost of reading a publish's ack
// in PublishStream, against encoding/json (what nats.go's async publish
// does).
func BenchmarkPubAckParse(b *testing.B) {
	ack := []byte(`{"stream":"ORDERS","seq":123456789}`)
	b.Run("quick", func(b *testing.B) {
		var a pubAcks
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.parse(ack); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r struct {
				Stream string `json:"stream"`
				Seq    uint64 `json:"seq"`
			}
			if err := json.Unmarshal(ack, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fetchAnswer is a Fetch answer of 100 messages of 128 B, as the bridge
// builds it (tokens signed).
func fetchAnswer(b *testing.B) *jetwayv1.FetchResponse {
	b.Helper()
	s := benchService(b)
	data := make([]byte, 128)
	meta := consumerMeta{ackWait: 30 * time.Second}
	resp := &jetwayv1.FetchResponse{}
	for i := range 100 {
		reply := "$JS.ACK.ORDERS.worker.1." + strconv.Itoa(12345+i) + "." + strconv.Itoa(12345+i) + ".1700000000000000000.42"
		m, err := s.toMessage("orders.new", reply, nil, data, meta, jetwayv1.PayloadFormat_PAYLOAD_FORMAT_BYTES, "", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		resp.Messages = append(resp.Messages, m)
	}
	return resp
}

// BenchmarkFetchAnswerMarshal and BenchmarkFetchAnswerUnmarshal are the
// protobuf halves of a Fetch of 100 messages: the bridge's marshalling and
// a Go client's decoding.
func BenchmarkFetchAnswerMarshal(b *testing.B) {
	resp := fetchAnswer(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetchAnswerUnmarshal(b *testing.B) {
	raw, err := proto.Marshal(fetchAnswer(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var resp jetwayv1.FetchResponse
		if err := proto.Unmarshal(raw, &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(raw)), "answer-bytes")
}
