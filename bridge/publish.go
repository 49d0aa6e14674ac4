package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/jetway-dev/jetway/bridge/acktoken"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/refusal"
)

// IdempotencyKeyMetadata is the metadata key the gateway fills from the
// HTTP Idempotency-Key header; Publish uses it as msg_id when none is set.
const IdempotencyKeyMetadata = "idempotency-key"

type messageService struct {
	jetwayv1.UnimplementedMessageServiceServer

	conns      ConnProvider
	conn       *connWatch
	maxPayload func() int64
	window     int
	log        *slog.Logger
	signer     *acktoken.Signer
	caps       Caps
	authz      Authorizer
	grid       *gridClock // wakes Subscribe and Consume streams
	obs        Observer
	tracer     Tracer
	sessions   *registry // open Subscribe, Consume and waiting Fetch
	fleet      *fleet
	terminator Terminator // nil: TERM only
}

// Publish stores one message and returns JetStream's ack.
func (s *messageService) Publish(ctx context.Context, req *jetwayv1.PublishRequest) (*jetwayv1.PublishResponse, error) {
	resp, err := s.publish(ctx, req)
	if err != nil {
		s.obs.PublishFailed(reasonOf(err))
		return nil, err
	}
	s.obs.Published(resp.GetStream())
	return resp, nil
}

func (s *messageService) publish(ctx context.Context, req *jetwayv1.PublishRequest) (*jetwayv1.PublishResponse, error) {
	if req.GetMsgId() == "" {
		// (ValueFromIncomingContext copies one value, not the whole
		// metadata.)
		if v := metadata.ValueFromIncomingContext(ctx, IdempotencyKeyMetadata); len(v) > 0 && v[0] != "" {
			req.MsgId = v[0]
		}
	}
	msg, err := s.buildMsg("", req)
	if err != nil {
		return nil, err
	}
	if err := s.authorizePublish(ctx, req, msg); err != nil {
		return nil, err
	}
	end := s.tracer.Publish(ctx, msg)
	resp, err := s.send(ctx, req, msg)
	end(resp, err)
	return resp, err
}

// send publishes msg for the unary Publish and waits for its ack.
func (s *messageService) send(ctx context.Context, req *jetwayv1.PublishRequest, msg *nats.Msg) (*jetwayv1.PublishResponse, error) {
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("publish to %q", req.GetSubject())
	// nats-server refuses a publish its NATS user may not make without a
	// reply: the refusal comes to the connection's error handler, and ends
	// this wait rather than its deadline. So does the loss of the
	// connection, after which no answer can come.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := refusal.Subject(js.Conn(), msg.Subject, cancel)
	if !js.Conn().IsConnected() {
		// nats.go would buffer the publish until it reconnects: the
		// outcome would be unknown. (The watch is made first: a loss
		// after this check ends it.)
		w.Stop()
		return nil, fmt.Errorf("%s: %w: the bridge is reconnecting to NATS; nothing was published, retry", what, ErrUnavailable)
	}
	ack, err := js.PublishMsg(pctx, msg)
	w.Stop()
	if err != nil {
		if cause := context.Cause(pctx); ctx.Err() != nil {
			err = ctx.Err() // the caller's deadline or cancellation
		} else if errors.Is(cause, nats.ErrPermissionViolation) {
			err = cause
		} else if errors.Is(cause, refusal.ErrConnectionLost) {
			return nil, fmt.Errorf("%s: %w: %w; the message may have been stored: retry with the same msg_id", what, ErrUnavailable, cause)
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return nil, noStreamAnswer(ctx, js, req.GetSubject(), err, what)
		}
		return nil, translate(err, what)
	}
	return pubAckTo(ack), nil
}

func pubAckTo(ack *jetstream.PubAck) *jetwayv1.PublishResponse {
	return &jetwayv1.PublishResponse{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate, Value: ack.Value}
}

// pendingPublish is one PublishStream request on its way: a published
// message awaiting its JetStream ack, or an error found before publishing.
type pendingPublish struct {
	id      uint64
	subject string
	n       uint64 // the publish's number in its stream's pubAcks
	err     error
	// A message of a batch: its index and the batch's size (0 for a
	// single publish).
	index, batch int
	// end hears the outcome (the Tracer's); nil when none was published.
	end func(*jetwayv1.PublishResponse, error)
}

// maxPublishBatch bounds the messages of one PublishStream batch.
const maxPublishBatch = 1000

// batchPrefixes are the field paths "batch[i]." of a batch's messages,
// built once rather than formatted for every message.
var batchPrefixes = sync.OnceValue(func() []string {
	p := make([]string, maxPublishBatch)
	for i := range p {
		p[i] = "batch[" + strconv.Itoa(i) + "]."
	}
	return p
})

func batchPrefix(i int) string { return batchPrefixes()[i] }

// PublishStream pipelines publishes: one goroutine reads requests and
// publishes them asynchronously, the handler sends each ack in request
// order. The channel between them holds the window, so at most window + 2
// publishes await acks (one more being read, one being answered), and a
// client that publishes faster than JetStream acks is slowed by HTTP/2 flow
// control rather than buffered.
//
// The handler returns when the reader is done (the client half-closed, or
// Recv failed) and every ack is sent, or when the stream's context ends
// (the client went away, or the server ends the call at shutdown). In the
// second case the reader may still be blocked in Recv: it ends when the
// RPC does, which is when this handler returns (as Consume's reader does),
// and publishes nothing more once the context has ended.
func (s *messageService) PublishStream(stream jetwayv1.MessageService_PublishStreamServer) error {
	js, release, err := s.conns.Acquire(stream.Context())
	if err != nil {
		return err
	}
	defer release()
	acks, err := newPubAcks(js.Conn(), js.Options().DefaultTimeout)
	if err != nil {
		return translate(err, "publish stream")
	}
	defer acks.close()
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	pending := make(chan pendingPublish, s.window)
	go func() {
		defer close(pending)
		if err := s.readPublishes(ctx, stream, acks, pending); err != nil {
			cancel(err)
		}
	}()
	return s.answerPublishes(ctx, stream, js, acks, pending)
}

// readPublishes reads a PublishStream's requests and publishes them,
// queueing each on pending for its answer, until the client half-closes
// (nil) or Recv or the context fails.
func (s *messageService) readPublishes(ctx context.Context, stream jetwayv1.MessageService_PublishStreamServer, acks *pubAcks, pending chan<- pendingPublish) error {
	enqueue := func(p pendingPublish) error {
		select {
		case pending <- p:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			// The handler is gone: a publish now would have no answer.
			return context.Cause(ctx)
		}
		id := req.GetId()
		switch batch := req.GetBatch(); {
		case len(batch) == 0 && req.GetPublish() == nil:
			err = enqueue(pendingPublish{id: id, err: fieldErr("publish", ErrInvalidArgument, "required")})
		case len(batch) == 0:
			p := s.publishAsync(ctx, acks, "publish.", req.GetPublish())
			p.id = id
			err = enqueue(p)
		case req.GetPublish() != nil:
			err = enqueue(pendingPublish{id: id, err: fieldErr("batch", ErrInvalidArgument, "set publish or batch, not both")})
		case len(batch) > maxPublishBatch:
			err = enqueue(pendingPublish{id: id, err: fieldErr("batch", ErrInvalidArgument, "at most %d messages", maxPublishBatch)})
		default:
			for i, pr := range batch {
				p := s.publishAsync(ctx, acks, batchPrefix(i), pr)
				p.id, p.index, p.batch = id, i, len(batch)
				if err = enqueue(p); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// answerPublishes sends each queued publish's outcome in request order,
// until the reader closes pending (then the reader's error, nil at the
// client's half-close) or the context ends (its cause).
func (s *messageService) answerPublishes(ctx context.Context, stream jetwayv1.MessageService_PublishStreamServer, js jetstream.JetStream, acks *pubAcks, pending <-chan pendingPublish) error {
	var batchResp *jetwayv1.PublishStreamResponse
	var verdicts noStreamVerdicts
	for {
		var p pendingPublish
		var ok bool
		select {
		case p, ok = <-pending:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if !ok {
			if ctx.Err() != nil {
				return context.Cause(ctx) // the reader's error
			}
			return nil
		}
		var ack *jetwayv1.PublishResponse
		err := p.err
		if err == nil {
			if ack, err = acks.wait(ctx, p.n); ctx.Err() != nil {
				return context.Cause(ctx)
			}
		}
		if p.end != nil {
			p.end(ack, err)
		}
		var e *jetwayv1.Error
		if err != nil {
			e = s.publishError(ctx, js, &verdicts, "publish stream", p, err)
		}
		if p.batch > 0 {
			// One response answers the whole batch, once its last
			// message has its outcome.
			if p.index == 0 {
				batchResp = &jetwayv1.PublishStreamResponse{Id: p.id, Results: make([]*jetwayv1.PublishResult, 0, p.batch)}
			}
			if e == nil {
				s.obs.Published(ack.GetStream())
			}
			r := &jetwayv1.PublishResult{Result: &jetwayv1.PublishResult_Ack{Ack: ack}}
			if e != nil {
				r.Result = &jetwayv1.PublishResult_Error{Error: e}
			}
			batchResp.Results = append(batchResp.Results, r)
			if p.index < p.batch-1 {
				continue
			}
			if err := stream.Send(batchResp); err != nil {
				return err
			}
			batchResp = nil
			continue
		}
		resp := &jetwayv1.PublishStreamResponse{Id: p.id, Result: &jetwayv1.PublishStreamResponse_Ack{Ack: ack}}
		if e == nil {
			s.obs.Published(ack.GetStream())
		}
		if e != nil {
			resp.Result = &jetwayv1.PublishStreamResponse_Error{Error: e}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// publishError is the per-message Error of a pipelined publish (of a
// PublishStream or a PublishBatch) that failed with err, counted and, when
// unexpected, logged under call.
func (s *messageService) publishError(ctx context.Context, js jetstream.JetStream, verdicts *noStreamVerdicts, call string, p pendingPublish, err error) *jetwayv1.Error {
	what := fmt.Sprintf("publish to %q", p.subject)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		err = verdicts.answer(ctx, js, p.subject, err, what)
	} else {
		err = translate(err, what)
	}
	e, internal := ErrorProto(err)
	s.obs.PublishFailed(e.GetReason())
	if internal {
		s.log.ErrorContext(ctx, call+": unexpected error", slog.Uint64("id", p.id), slog.Int("index", p.index), slog.Any("error", err))
	}
	return e
}

// messagesPrefixes are the field paths "messages[i]." of a PublishBatch's
// messages.
var messagesPrefixes = sync.OnceValue(func() []string {
	p := make([]string, maxPublishBatch)
	for i := range p {
		p[i] = "messages[" + strconv.Itoa(i) + "]."
	}
	return p
})

// PublishBatch publishes a batch as a PublishStream batch is published
// (publishAsync: each message validated and authorized on its own, all
// pipelined on one inbox) and answers every message's outcome in order.
// Only an empty or oversized batch, or no connection to publish on, fails
// the call. Every message published has its outcome before it returns,
// unless the caller's context ends first (then the call fails with it).
func (s *messageService) PublishBatch(ctx context.Context, req *jetwayv1.PublishBatchRequest) (*jetwayv1.PublishBatchResponse, error) {
	msgs := req.GetMessages()
	switch {
	case len(msgs) == 0:
		return nil, fieldErr("messages", ErrInvalidArgument, "at least one message is required")
	case len(msgs) > maxPublishBatch:
		return nil, fieldErr("messages", ErrInvalidArgument, "at most %d messages, got %d", maxPublishBatch, len(msgs))
	}
	if req.GetAtomic() {
		return s.publishAtomic(ctx, msgs)
	}
	js, release, err := s.conns.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	acks, err := newPubAcks(js.Conn(), js.Options().DefaultTimeout)
	if err != nil {
		return nil, translate(err, "publish batch")
	}
	defer acks.close()
	pending := make([]pendingPublish, len(msgs))
	for i, m := range msgs {
		pending[i] = s.publishAsync(ctx, acks, messagesPrefixes()[i], m)
		pending[i].index, pending[i].batch = i, len(msgs)
	}
	resp := &jetwayv1.PublishBatchResponse{Results: make([]*jetwayv1.PublishResult, 0, len(msgs))}
	var verdicts noStreamVerdicts
	for i, p := range pending {
		var ack *jetwayv1.PublishResponse
		err := p.err
		if err == nil {
			ack, err = acks.wait(ctx, p.n)
		}
		if ctx.Err() != nil {
			// The caller is gone or out of time: the outcomes still
			// due are unknown.
			for _, q := range pending[i:] {
				if q.end != nil {
					q.end(nil, ctx.Err())
				}
			}
			return nil, ctx.Err()
		}
		if p.end != nil {
			p.end(ack, err)
		}
		if err != nil {
			e := s.publishError(ctx, js, &verdicts, "publish batch", p, err)
			resp.Results = append(resp.Results, &jetwayv1.PublishResult{Result: &jetwayv1.PublishResult_Error{Error: e}})
			continue
		}
		s.obs.Published(ack.GetStream())
		resp.Results = append(resp.Results, &jetwayv1.PublishResult{Result: &jetwayv1.PublishResult_Ack{Ack: ack}})
	}
	return resp, nil
}

// publishAtomic publishes an atomic batch with orbit.go's
// jetstreamext.PublishMsgBatch (Nats-Batch-Id, -Sequence, -Commit): every
// message is validated and authorized before the first is sent, and
// JetStream stores all of them or none.
func (s *messageService) publishAtomic(ctx context.Context, reqs []*jetwayv1.PublishRequest) (*jetwayv1.PublishBatchResponse, error) {
	msgs := make([]*nats.Msg, len(reqs))
	for i, r := range reqs {
		prefix := messagesPrefixes()[i]
		if i > 0 && (r.ExpectedLastSequence != nil || r.ExpectedLastSubjectSequence != nil) {
			return nil, fieldErr(prefix+"expected_last_sequence", ErrInvalidArgument, "an atomic batch takes expected last sequences on its first message only")
		}
		if r.GetExpectedLastMsgId() != "" {
			return nil, fieldErr(prefix+"expected_last_msg_id", ErrInvalidArgument, "not allowed in an atomic batch")
		}
		m, err := s.buildMsg(prefix, r)
		if err != nil {
			return nil, err
		}
		if err := s.authorizePublish(ctx, r, m); err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("atomic batch of %d messages", len(msgs))
	if !js.Conn().IsConnected() {
		return nil, fmt.Errorf("%s: %w: the bridge is reconnecting to NATS; nothing was published, retry", what, ErrUnavailable)
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, js, msgs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return nil, noStreamAnswer(ctx, js, msgs[0].Subject, err, what)
		}
		return nil, translate(err, what)
	}
	s.obs.Published(ack.Stream)
	return &jetwayv1.PublishBatchResponse{Batch: &jetwayv1.BatchAck{
		Stream: ack.Stream, LastSequence: ack.Sequence, Count: ack.BatchSize, BatchId: ack.BatchID,
	}}, nil
}

// Ingest publishes a raw payload as Publish does. It is served only with
// client authentication: its REST route takes bodies of any media type,
// which any web page can make a browser send cross-site without a
// preflight (the cross-origin check refuses those that say where they
// come from; authentication is what refuses the rest).
func (s *messageService) Ingest(ctx context.Context, req *jetwayv1.IngestRequest) (*jetwayv1.IngestResponse, error) {
	if s.authz.Identity(ctx) == "" {
		return nil, fmt.Errorf("%w: Ingest (POST …:ingest) is served only with client authentication (--auth-config), since any web page can send a raw body to it", ErrAuthRequired)
	}
	resp, err := s.Publish(ctx, &jetwayv1.PublishRequest{
		Subject: req.GetSubject(),
		Payload: &jetwayv1.PublishRequest_Data{Data: req.GetData()},
		Headers: req.GetHeaders(),
		MsgId:   req.GetMsgId(),
	})
	if err != nil {
		return nil, err
	}
	return &jetwayv1.IngestResponse{Stream: resp.GetStream(), Sequence: resp.GetSequence(), Duplicate: resp.GetDuplicate()}, nil
}

// publishAsync validates and publishes one message of a PublishStream;
// the result is the published message awaiting its ack, or the error that
// kept it from being published.
func (s *messageService) publishAsync(ctx context.Context, acks *pubAcks, prefix string, req *jetwayv1.PublishRequest) pendingPublish {
	p := pendingPublish{subject: req.GetSubject()}
	msg, err := s.buildMsg(prefix, req)
	if err == nil {
		err = s.authorizePublish(ctx, req, msg)
	}
	if err == nil {
		p.end = s.tracer.Publish(ctx, msg)
		if p.n, err = acks.publish(msg, s.conn.lostCh()); err != nil {
			p.end(nil, err)
			p.end = nil
		}
	}
	p.err = err
	return p
}

// buildMsg validates a publish request and builds the NATS message, with
// JetStream's headers for the request's expectations. prefix is the
// request's field path in its envelope.
func (s *messageService) buildMsg(prefix string, req *jetwayv1.PublishRequest) (*nats.Msg, error) {
	if err := validatePublishSubject(prefix+"subject", req.GetSubject()); err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: req.GetSubject()}
	switch p := req.GetPayload().(type) {
	case *jetwayv1.PublishRequest_Data:
		msg.Data = p.Data
	case *jetwayv1.PublishRequest_Text:
		msg.Data = []byte(p.Text)
	case *jetwayv1.PublishRequest_Json:
		data, err := compactJSON(p.Json)
		if err != nil {
			return nil, fieldErr(prefix+"json", ErrInvalidArgument, "%v", err)
		}
		msg.Data = data
	}
	size := len(msg.Data)
	if len(req.GetHeaders()) > 0 {
		msg.Header = make(nats.Header, len(req.GetHeaders()))
		for name, hv := range req.GetHeaders() {
			if err := validateHeader(prefix+"headers", name, hv.GetValues()); err != nil {
				return nil, err
			}
			msg.Header[name] = hv.GetValues()
			for _, v := range hv.GetValues() {
				size += len(name) + len(v) + 4
			}
		}
	}
	if max := s.maxPayload(); max > 0 && int64(size) > max {
		return nil, fieldErr(prefix+"data", ErrPayloadTooLarge, "message of %d bytes exceeds the maximum payload of %d bytes", size, max)
	}
	// The headers nats.go's publish options would set, set here so that
	// the unary and the pipelined publish send the same message.
	set := func(name, value string) {
		if msg.Header == nil {
			msg.Header = make(nats.Header, 1)
		}
		msg.Header.Set(name, value)
	}
	if id := req.GetMsgId(); id != "" {
		if err := validateMsgID(prefix+"msg_id", id); err != nil {
			return nil, err
		}
		set(jetstream.MsgIDHeader, id)
	}
	if st := req.GetExpectedStream(); st != "" {
		if err := validateName(prefix+"expected_stream", st); err != nil {
			return nil, err
		}
		set(jetstream.ExpectedStreamHeader, st)
	}
	if req.ExpectedLastSequence != nil {
		set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(req.GetExpectedLastSequence(), 10))
	}
	if req.ExpectedLastSubjectSequence != nil {
		set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(req.GetExpectedLastSubjectSequence(), 10))
	}
	if id := req.GetExpectedLastMsgId(); id != "" {
		if err := validateMsgID(prefix+"expected_last_msg_id", id); err != nil {
			return nil, err
		}
		set(jetstream.ExpectedLastMsgIDHeader, id)
	}
	if ttl := req.GetTtl(); ttl != nil {
		d := ttl.AsDuration()
		if err := ttl.CheckValid(); err != nil || d < time.Second || d%time.Second != 0 {
			return nil, fieldErr(prefix+"ttl", ErrInvalidArgument, "must be a whole number of seconds, at least 1s")
		}
		set(jetstream.MsgTTLHeader, d.String())
	}
	switch req.GetRollup() {
	case jetwayv1.Rollup_ROLLUP_UNSPECIFIED:
	case jetwayv1.Rollup_ROLLUP_SUBJECT:
		set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	case jetwayv1.Rollup_ROLLUP_ALL:
		set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	default:
		return nil, fieldErr(prefix+"rollup", ErrInvalidArgument, "ROLLUP_SUBJECT or ROLLUP_ALL")
	}
	if subj := req.GetExpectedLastSubjectSequenceSubject(); subj != "" {
		if req.ExpectedLastSubjectSequence == nil {
			return nil, fieldErr(prefix+"expected_last_subject_sequence_subject", ErrInvalidArgument, "needs expected_last_subject_sequence")
		}
		if err := validateFilterSubject(prefix+"expected_last_subject_sequence_subject", subj); err != nil {
			return nil, err
		}
		set(jetstream.ExpectedLastSubjSeqSubjHeader, subj)
	}
	if incr := req.GetIncrement(); incr != "" {
		if _, ok := new(big.Int).SetString(incr, 10); !ok || len(incr) > maxIncrement || strings.HasPrefix(incr, "+") {
			return nil, fieldErr(prefix+"increment", ErrInvalidArgument, "a decimal integer, optionally negative, of at most %d characters", maxIncrement)
		}
		if len(msg.Data) > 0 {
			return nil, fieldErr(prefix+"data", ErrInvalidArgument, "a counter increment carries no payload")
		}
		set(headerIncr, incr)
	}
	if sc := req.GetSchedule(); sc != nil {
		if err := scheduleHeaders(prefix+"schedule.", req.GetSubject(), sc, set); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// The counter increment header (nats-server's server/stream.go; nats.go
// has no constant for it).
const headerIncr = "Nats-Incr"

// maxIncrement bounds a counter increment's digits.
const maxIncrement = 128

// scheduleHeaders sets the headers of a message schedule, checking what
// the bridge can (JetStream checks the pattern and the stream).
func scheduleHeaders(prefix, subject string, sc *jetwayv1.MessageSchedule, set func(name, value string)) error {
	switch w := sc.GetWhen().(type) {
	case *jetwayv1.MessageSchedule_At:
		if err := w.At.CheckValid(); err != nil {
			return fieldErr(prefix+"at", ErrInvalidArgument, "not a valid time")
		}
		set(jetstream.ScheduleHeader, "@at "+w.At.AsTime().UTC().Format(time.RFC3339))
	case *jetwayv1.MessageSchedule_Pattern:
		p := strings.TrimSpace(w.Pattern)
		if p == "" || len(p) > 256 || strings.ContainsAny(p, "\r\n") {
			return fieldErr(prefix+"pattern", ErrInvalidArgument, "a schedule pattern (@every 5m, a cron expression) of at most 256 characters")
		}
		set(jetstream.ScheduleHeader, p)
	default:
		return fieldErr(prefix+"at", ErrInvalidArgument, "a schedule needs at or pattern")
	}
	if err := validatePublishSubject(prefix+"target", sc.GetTarget()); err != nil {
		return err
	}
	if sc.GetTarget() == subject {
		return fieldErr(prefix+"target", ErrInvalidSubject, "the target must differ from the schedule's own subject")
	}
	set(jetstream.ScheduleTargetHeader, sc.GetTarget())
	if ttl := sc.GetTtl(); ttl != nil {
		d := ttl.AsDuration()
		if err := ttl.CheckValid(); err != nil || d < time.Second || d%time.Second != 0 {
			return fieldErr(prefix+"ttl", ErrInvalidArgument, "must be a whole number of seconds, at least 1s")
		}
		set(jetstream.ScheduleTTLHeader, d.String())
	}
	if tz := sc.GetTimeZone(); tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || len(tz) > 64 {
			return fieldErr(prefix+"time_zone", ErrInvalidArgument, "an IANA time zone (Europe/Paris)")
		}
		set(jetstream.ScheduleTimeZoneHeader, tz)
	}
	return nil
}

// authorizePublish checks every subject a publish writes: its own and a
// schedule's target (where JetStream publishes it later).
func (s *messageService) authorizePublish(ctx context.Context, req *jetwayv1.PublishRequest, msg *nats.Msg) error {
	if err := s.authz.CanPublish(ctx, msg.Subject); err != nil {
		return err
	}
	if t := req.GetSchedule().GetTarget(); t != "" {
		return s.authz.CanPublish(ctx, t)
	}
	return nil
}

// checkKinds refuses a google.protobuf.Value without a kind, at any depth:
// protobufjs and Python's protobuf make one easily (an empty Value
// message), and AsInterface would store it as null, which the client never
// wrote (JSON null is the null_value kind). at is its path, for the error
// ("json", "json.a[2]").
func checkKinds(v *structpb.Value, at string) error {
	switch k := v.GetKind().(type) {
	case nil:
		return fmt.Errorf("the value at %s has no kind (an empty google.protobuf.Value; JSON null is null_value)", at)
	case *structpb.Value_StructValue:
		for name, f := range k.StructValue.GetFields() {
			if err := checkKinds(f, at+"."+name); err != nil {
				return err
			}
		}
	case *structpb.Value_ListValue:
		for i, e := range k.ListValue.GetValues() {
			if err := checkKinds(e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// compactJSON encodes a JSON value compactly and without HTML escaping, so
// that what is stored is exactly the JSON the client meant.
func compactJSON(v *structpb.Value) ([]byte, error) {
	if err := checkKinds(v, "json"); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v.AsInterface()); err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
