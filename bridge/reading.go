package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Reading (issue 18): ranges of stored messages and the last messages of
// many subjects, without a consumer, through JetStream's batch direct get
// ($JS.API.DIRECT.GET.<stream> with batch or multi_last, nats-server
// 2.11+).
//
// The request is written here rather than taken from orbit.go's
// jetstreamext.GetBatch / GetLastMsgsFor: those end their iterator
// silently when the deadline passes (a truncated page would look whole),
// fold JetStream's 408/413 statuses into "batch unsupported", and drop the
// end-of-batch message whose Nats-Num-Pending and Nats-UpTo-Sequence a
// message browser and a consistent multi-last read need.

const (
	// statusHeader and descriptionHeader carry a NATS status message's
	// code and text (nats.go keeps its names unexported).
	statusHeader      = "Status"
	descriptionHeader = "Description"

	defaultListMessages = 100
	maxListMessages     = 1000
	// maxMultiLast is nats-server's own cap on a multi-last answer
	// (getDirectMulti's maxAllowedResponses).
	maxMultiLast = 1024
)

// directGetRequest is nats-server's JSApiMsgGetRequest, the fields a batch
// or multi-last direct get uses.
type directGetRequest struct {
	Seq          uint64     `json:"seq,omitempty"`
	NextFor      string     `json:"next_by_subj,omitempty"`
	Batch        int        `json:"batch,omitempty"`
	MaxBytes     int        `json:"max_bytes,omitempty"`
	StartTime    *time.Time `json:"start_time,omitempty"`
	MultiLastFor []string   `json:"multi_last,omitempty"`
	UpToSeq      uint64     `json:"up_to_seq,omitempty"`
	UpToTime     *time.Time `json:"up_to_time,omitempty"`
}

// directBatch is a batch direct get's answer: its messages and what the
// end-of-batch message said.
type directBatch struct {
	msgs []*jetstream.RawStreamMsg
	// pending is the end-of-batch Nats-Num-Pending: matching messages
	// after the batch.
	pending uint64
	// upTo is a multi-last answer's Nats-UpTo-Sequence.
	upTo uint64
}

// Headers JetStream adds to each message of a direct get; they describe
// the message and are not its own, so they are taken off.
var directGetHeaders = []string{
	jetstream.StreamHeader, jetstream.SubjectHeader, jetstream.SequenceHeader,
	jetstream.TimeStampHeaer, "Nats-Num-Pending", "Nats-Last-Sequence", "Nats-UpTo-Sequence",
}

// directGet sends a batch or multi-last direct get and reads its answer to
// the end-of-batch message. maxMsgs bounds what it accepts (JetStream sends
// at most that many and an end-of-batch); a deadline before the end is an
// error, never a short answer.
func directGet(ctx context.Context, js jetstream.JetStream, stream string, req directGetRequest, maxMsgs, maxBytes int) (directBatch, error) {
	var out directBatch
	body, err := json.Marshal(req)
	if err != nil {
		return out, fmt.Errorf("encode direct get: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	nc := js.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return out, fmt.Errorf("direct get: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// One message past maxBytes (JetStream stops after the message that
	// crosses it), each with its headers, and the end-of-batch.
	if err := sub.SetPendingLimits(maxMsgs+2, maxBytes+int(nc.MaxPayload())+64<<10); err != nil {
		return out, fmt.Errorf("direct get: pending limits: %w", err)
	}
	if err := nc.PublishRequest(apiPrefix(js)+"DIRECT.GET."+stream, inbox, body); err != nil {
		return out, fmt.Errorf("direct get: %w", err)
	}
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return out, fmt.Errorf("direct get: %w: JetStream did not finish the answer in time (%d messages so far)", ErrUnavailable, len(out.msgs))
			}
			if errors.Is(err, nats.ErrSlowConsumer) {
				return out, fmt.Errorf("direct get: %w: the answer outgrew its bound", ErrUnavailable)
			}
			return out, fmt.Errorf("direct get: %w", err)
		}
		if status := msg.Header.Get(statusHeader); len(msg.Data) == 0 && status != "" {
			desc := msg.Header.Get(descriptionHeader)
			switch status {
			case "204": // end of batch
				out.pending, _ = strconv.ParseUint(msg.Header.Get("Nats-Num-Pending"), 10, 64)
				out.upTo, _ = strconv.ParseUint(msg.Header.Get("Nats-UpTo-Sequence"), 10, 64)
				return out, nil
			case "404": // nothing matched, or the start is past the end
				return out, nil
			case "413":
				return out, fieldErr("subjects", ErrTooManyResults, "the subjects match more than %d subjects' last messages: narrow them", maxMultiLast)
			case "503":
				return out, fmt.Errorf("direct get: %w: no server answers direct gets for stream %q (between leaders, or restarting); retry", ErrUnavailable, stream)
			default:
				return out, fmt.Errorf("direct get: JetStream answered %s %q", status, desc)
			}
		}
		if len(out.msgs) >= maxMsgs {
			return out, fmt.Errorf("direct get: %w: JetStream sent more than the %d messages asked", ErrUnavailable, maxMsgs)
		}
		m, err := directGetMsg(msg)
		if err != nil {
			return out, err
		}
		out.msgs = append(out.msgs, m)
	}
}

// headerSize is about the bytes of h on the wire.
func headerSize(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// maxReadBytes is the most bytes of messages one read returns.
func (s *adminService) maxReadBytes() int {
	if s.caps.MaxBytes > 0 {
		return s.caps.MaxBytes
	}
	return DefaultCaps.MaxBytes
}

// directGetMsg reads one message of a direct get answer.
func directGetMsg(msg *nats.Msg) (*jetstream.RawStreamMsg, error) {
	h := msg.Header
	seq, err := strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("direct get: a message without a valid %s header", jetstream.SequenceHeader)
	}
	tm, err := time.Parse(time.RFC3339Nano, h.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return nil, fmt.Errorf("direct get: message %d without a valid %s header", seq, jetstream.TimeStampHeaer)
	}
	subj := h.Get(jetstream.SubjectHeader)
	if subj == "" {
		return nil, fmt.Errorf("direct get: message %d without a %s header", seq, jetstream.SubjectHeader)
	}
	for _, k := range directGetHeaders {
		delete(h, k)
	}
	if len(h) == 0 {
		h = nil
	}
	return &jetstream.RawStreamMsg{Subject: subj, Sequence: seq, Header: h, Data: msg.Data, Time: tm}, nil
}

// directStream checks a read of stream's messages (as GetMessage: an admin
// read) and that the stream answers direct gets.
func (s *adminService) directStream(ctx context.Context, stream string) (jetstream.JetStream, error) {
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.stream(ctx, "stream", stream, false)
	if err != nil {
		return nil, err
	}
	if cfg := st.CachedInfo().Config; !cfg.AllowDirect && !cfg.MirrorDirect {
		return nil, fmt.Errorf("%w: stream %q does not allow direct gets (allow_direct), which reading without a consumer needs", ErrNotAllowed, stream)
	}
	return js, nil
}

func (s *adminService) ListMessages(ctx context.Context, req *jetwayv1.ListMessagesRequest) (*jetwayv1.ListMessagesResponse, error) {
	n := int(req.GetMaxMessages())
	switch {
	case n == 0:
		n = defaultListMessages
	case n < 0 || n > maxListMessages:
		return nil, fieldErr("max_messages", ErrInvalidArgument, "must be between 1 and %d", maxListMessages)
	}
	capBytes := s.maxReadBytes()
	maxBytes := int(req.GetMaxBytes())
	switch {
	case maxBytes == 0:
		maxBytes = capBytes
	case maxBytes < 0 || maxBytes > capBytes:
		return nil, fieldErr("max_bytes", ErrInvalidArgument, "must be between 1 and %d", capBytes)
	}
	if req.GetSubject() != "" {
		if err := validateFilterSubject("subject", req.GetSubject()); err != nil {
			return nil, err
		}
	}
	dreq := directGetRequest{Seq: req.GetStartSequence(), NextFor: req.GetSubject(), Batch: n, MaxBytes: maxBytes}
	if t := req.GetStartTime(); t != nil {
		if dreq.Seq != 0 {
			return nil, fieldErr("start_time", ErrInvalidArgument, "give start_sequence or start_time, not both")
		}
		if t.CheckValid() != nil {
			return nil, fieldErr("start_time", ErrInvalidArgument, "not a valid time")
		}
		at := t.AsTime().UTC()
		dreq.StartTime = &at
	} else if dreq.Seq == 0 {
		dreq.Seq = 1
	}
	js, err := s.directStream(ctx, req.GetStream())
	if err != nil {
		return nil, err
	}
	b, err := directGet(ctx, js, req.GetStream(), dreq, n, maxBytes)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("messages of stream %q", req.GetStream()))
	}
	out := &jetwayv1.ListMessagesResponse{NextSequence: req.GetStartSequence(), Pending: b.pending}
	size := 0
	for i, m := range b.msgs {
		// JetStream stops after the message that crosses max_bytes; that
		// one is left for the next page, unless it is the first.
		size += len(m.Subject) + len(m.Data) + headerSize(m.Header)
		if i > 0 && size > maxBytes {
			out.Pending += uint64(len(b.msgs) - i)
			b.msgs = b.msgs[:i]
			break
		}
		out.Messages = append(out.Messages, storedMessageTo(m, req.GetFormat()))
	}
	if k := len(b.msgs); k > 0 {
		out.NextSequence = b.msgs[k-1].Sequence + 1
	}
	return out, nil
}

func (s *adminService) GetLastMessages(ctx context.Context, req *jetwayv1.GetLastMessagesRequest) (*jetwayv1.GetLastMessagesResponse, error) {
	subjects := req.GetSubjects()
	if len(subjects) == 0 || len(subjects) > maxMultiLast {
		return nil, fieldErr("subjects", ErrInvalidArgument, "give 1 to %d subjects", maxMultiLast)
	}
	for i, subj := range subjects {
		if err := validateFilterSubject(fmt.Sprintf("subjects[%d]", i), subj); err != nil {
			return nil, err
		}
	}
	dreq := directGetRequest{MultiLastFor: subjects, UpToSeq: req.GetUpToSequence(), MaxBytes: s.maxReadBytes()}
	if t := req.GetUpToTime(); t != nil {
		if dreq.UpToSeq != 0 {
			return nil, fieldErr("up_to_time", ErrInvalidArgument, "give up_to_sequence or up_to_time, not both")
		}
		if t.CheckValid() != nil {
			return nil, fieldErr("up_to_time", ErrInvalidArgument, "not a valid time")
		}
		at := t.AsTime().UTC()
		dreq.UpToTime = &at
	}
	js, err := s.directStream(ctx, req.GetStream())
	if err != nil {
		return nil, err
	}
	b, err := directGet(ctx, js, req.GetStream(), dreq, maxMultiLast, dreq.MaxBytes)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("last messages of stream %q", req.GetStream()))
	}
	if b.pending > 0 {
		// JetStream stopped at max_bytes: the answer would not be the
		// last message of every subject.
		return nil, fieldErr("subjects", ErrTooManyResults, "the last messages of these subjects exceed %d bytes: narrow them", dreq.MaxBytes)
	}
	out := &jetwayv1.GetLastMessagesResponse{UpToSequence: b.upTo}
	for _, m := range b.msgs {
		out.Messages = append(out.Messages, storedMessageTo(m, req.GetFormat()))
	}
	return out, nil
}
