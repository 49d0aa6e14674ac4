package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Limits of the service.
const (
	defaultListMessages = 100
	maxListMessages     = 1000
	// maxScan is the most DLQ messages one ListDeadLetters reads looking
	// for matches.
	maxScan = 10000
	// batchSize is the messages read per direct get.
	batchSize = 256

	defaultRate = 100
	maxRate     = 10000
)

// Service is the jetway.v1 DeadLetterService.
type Service struct {
	jetwayv1.UnimplementedDeadLetterServiceServer

	conns    bridge.ConnProvider
	authz    bridge.Authorizer
	log      *slog.Logger
	maxBytes int

	drainOnce sync.Once
	drained   chan struct{}
}

var _ jetwayv1.DeadLetterServiceServer = (*Service)(nil)

// ServiceOptions configure NewService.
type ServiceOptions struct {
	// Authorizer answers permission questions; nil allows everything (the
	// bridge without client authentication).
	Authorizer bridge.Authorizer
	// Logger; nil discards.
	Logger *slog.Logger
	// MaxBytes bounds the bytes of one direct get (default 3 MiB, the
	// bridge's Fetch byte cap).
	MaxBytes int
}

// NewService returns the service over conns (each call's JetStream).
func NewService(conns bridge.ConnProvider, o ServiceOptions) (*Service, error) {
	if conns == nil {
		return nil, fmt.Errorf("%w: nil connection provider", ErrInvalidOption)
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("%w: negative MaxBytes", ErrInvalidOption)
	}
	s := &Service{conns: conns, authz: o.Authorizer, log: o.Logger, maxBytes: o.MaxBytes, drained: make(chan struct{})}
	if s.authz == nil {
		s.authz = bridge.AllowAll
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBytes == 0 {
		s.maxBytes = bridge.DefaultCaps.MaxBytes
	}
	return s, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { jetwayv1.RegisterDeadLetterServiceServer(r, s) }

// Drain ends every redrive in progress with UNAVAILABLE (what it did so
// far is reported; run it again to continue: the message ids make that
// safe). Safe to call more than once.
func (s *Service) Drain() { s.drainOnce.Do(func() { close(s.drained) }) }

// dlqStream checks a DLQ stream read and that it answers direct gets.
func (s *Service) dlqStream(ctx context.Context, stream string, write bool) (jetstream.JetStream, jetstream.Stream, error) {
	if err := bridge.ValidateName("stream", stream); err != nil {
		return nil, nil, err
	}
	if err := s.authz.CanAdmin(ctx, stream, write); err != nil {
		return nil, nil, err
	}
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, nil, bridge.JetStreamError(err, fmt.Sprintf("stream %q", stream))
	}
	if cfg := st.CachedInfo().Config; !cfg.AllowDirect && !cfg.MirrorDirect {
		return nil, nil, fmt.Errorf("%w: stream %q does not allow direct gets (allow_direct), which reading dead letters needs", bridge.ErrNotAllowed, stream)
	}
	return js, st, nil
}

// filter is a compiled DeadLetterFilter.
type filter struct {
	f       *jetwayv1.DeadLetterFilter
	subject *perm.Matcher
}

func compileFilter(field string, f *jetwayv1.DeadLetterFilter) (filter, error) {
	out := filter{f: f}
	if f == nil {
		return out, nil
	}
	if f.GetStream() != "" {
		if err := bridge.ValidateName(field+".stream", f.GetStream()); err != nil {
			return out, err
		}
	}
	if f.GetConsumer() != "" {
		if err := bridge.ValidateName(field+".consumer", f.GetConsumer()); err != nil {
			return out, err
		}
	}
	if _, ok := jetwayv1.DeadLetterReason_name[int32(f.GetReason())]; !ok {
		return out, &bridge.FieldError{Field: field + ".reason", Err: fmt.Errorf("%w: unknown value %d", bridge.ErrInvalidArgument, f.GetReason())}
	}
	if p := f.GetSubject(); p != "" {
		if err := bridge.ValidateSubject(field+".subject", p, true); err != nil {
			return out, err
		}
		m, err := perm.Compile(perm.Set{Allow: []string{p}})
		if err != nil {
			return out, &bridge.FieldError{Field: field + ".subject", Err: fmt.Errorf("%w: %w", bridge.ErrInvalidSubject, err)}
		}
		out.subject = m
	}
	return out, nil
}

func (f filter) matches(d *jetwayv1.DeadLetter) bool {
	if f.f == nil {
		return true
	}
	switch {
	case f.f.GetStream() != "" && d.GetOriginStream() != f.f.GetStream():
		return false
	case f.f.GetConsumer() != "" && d.GetOriginConsumer() != f.f.GetConsumer():
		return false
	case f.f.GetReason() != jetwayv1.DeadLetterReason_DEAD_LETTER_REASON_UNSPECIFIED && d.GetReason() != f.f.GetReason():
		return false
	case f.subject != nil && (d.GetOriginSubject() == "" || !f.subject.Allows(d.GetOriginSubject())):
		return false
	}
	return true
}

// parse reads a DLQ stream message as a dead letter; ok is false for a
// message without the origin headers.
func parse(m *jetstream.RawStreamMsg) (d *jetwayv1.DeadLetter, orig nats.Header, ok bool) {
	h := m.Header
	if h.Get(HeaderStream) == "" || h.Get(HeaderSequence) == "" {
		return nil, nil, false
	}
	d = &jetwayv1.DeadLetter{
		Sequence: m.Sequence, Stored: timestamppb.New(m.Time),
		OriginStream: h.Get(HeaderStream), OriginConsumer: h.Get(HeaderConsumer), OriginSubject: h.Get(HeaderSubject),
		TermReason: h.Get(HeaderTermReason), TerminatedBy: h.Get(HeaderTerminatedBy), MsgId: h.Get(HeaderMsgID),
		Lost: h.Get(HeaderLost), Data: m.Data,
	}
	d.OriginSequence, _ = strconv.ParseUint(h.Get(HeaderSequence), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(h.Get(HeaderDeliveries), 10, 64)
	switch h.Get(HeaderReason) {
	case ReasonMaxDeliveries:
		d.Reason = jetwayv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES
	case ReasonTerminated:
		d.Reason = jetwayv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderTime)); err == nil {
		d.Time = timestamppb.New(t)
	}
	for k, vs := range h {
		if hasPrefixFold(k, headerPrefix) {
			continue
		}
		if orig == nil {
			orig = nats.Header{}
		}
		orig[k] = vs
	}
	d.Headers = bridge.HeadersTo(orig)
	return d, orig, true
}

// ListDeadLetters returns a page of a DLQ stream's dead letters.
func (s *Service) ListDeadLetters(ctx context.Context, req *jetwayv1.ListDeadLettersRequest) (*jetwayv1.ListDeadLettersResponse, error) {
	n := int(req.GetMaxMessages())
	switch {
	case n == 0:
		n = defaultListMessages
	case n < 0 || n > maxListMessages:
		return nil, &bridge.FieldError{Field: "max_messages", Err: fmt.Errorf("%w: 1 to %d (0: %d)", bridge.ErrInvalidArgument, maxListMessages, defaultListMessages)}
	}
	f, err := compileFilter("filter", req.GetFilter())
	if err != nil {
		return nil, err
	}
	js, _, err := s.dlqStream(ctx, req.GetStream(), false)
	if err != nil {
		return nil, err
	}
	seq := max(req.GetStartSequence(), 1)
	out := &jetwayv1.ListDeadLettersResponse{NextSequence: seq}
	// size bounds the page's payloads and headers by the bridge's read
	// byte cap, as ListMessages does (1000 dead letters of 1 MB each are
	// a gigabyte, and more than gRPC carries): the dead letter that would
	// cross it is left for the next page, unless it is the page's first.
	size := 0
	for scanned := 0; scanned < maxScan; {
		msgs, pending, err := bridge.DirectBatch(ctx, js, req.GetStream(), seq, min(batchSize, maxScan-scanned), s.maxBytes)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			out.End = true
			return out, nil
		}
		for i, m := range msgs {
			d, _, ok := parse(m)
			if ok && f.matches(d) {
				size += messageSize(m)
				if len(out.DeadLetters) > 0 && size > s.maxBytes {
					return out, nil
				}
				out.DeadLetters = append(out.DeadLetters, d)
			}
			scanned++
			seq, out.NextSequence = m.Sequence+1, m.Sequence+1
			if len(out.DeadLetters) == n {
				out.End = pending == 0 && i == len(msgs)-1
				return out, nil
			}
		}
		if pending == 0 {
			out.End = true
			return out, nil
		}
	}
	return out, nil
}

// messageSize is a DLQ message's subject, payload and header bytes.
func messageSize(m *jetstream.RawStreamMsg) int {
	n := len(m.Subject) + len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// RedriveDeadLetters sends dead letters back to their subjects.
func (s *Service) RedriveDeadLetters(req *jetwayv1.RedriveDeadLettersRequest, stream jetwayv1.DeadLetterService_RedriveDeadLettersServer) error {
	ctx := stream.Context()
	r := int(req.GetRate())
	switch {
	case r == 0:
		r = defaultRate
	case r < 0 || r > maxRate:
		return &bridge.FieldError{Field: "rate", Err: fmt.Errorf("%w: 1 to %d a second (0: %d)", bridge.ErrInvalidArgument, maxRate, defaultRate)}
	}
	if e := req.GetEndSequence(); e != 0 && e < req.GetStartSequence() {
		return &bridge.FieldError{Field: "end_sequence", Err: fmt.Errorf("%w: before start_sequence", bridge.ErrInvalidArgument)}
	}
	f, err := compileFilter("filter", req.GetFilter())
	if err != nil {
		return err
	}
	js, st, err := s.dlqStream(ctx, req.GetStream(), true)
	if err != nil {
		return err
	}
	end := req.GetEndSequence()
	if end == 0 {
		info, err := st.Info(ctx)
		if err != nil {
			return bridge.JetStreamError(err, fmt.Sprintf("stream %q", req.GetStream()))
		}
		end = info.State.LastSeq
	}
	sum := &jetwayv1.RedriveSummary{DryRun: req.GetDryRun()}
	lim := rate.NewLimiter(rate.Limit(r), 1)
	// wait is the call's context, also ended by Drain: the pacing between
	// publishes (a second each at rate 1) ends at once when the bridge
	// shuts down, not after the batch in hand. A publish under way keeps
	// the call's context, so that its outcome is known.
	wait, stopWait := context.WithCancel(ctx)
	defer stopWait()
	go func() {
		select {
		case <-s.drained:
			stopWait()
		case <-wait.Done():
		}
	}()
	drainedAt := func(seq uint64) error {
		return fmt.Errorf("%w: the bridge is shutting down; redrive again from sequence %d to continue", bridge.ErrUnavailable, seq)
	}
	seq := max(req.GetStartSequence(), 1)
	for seq <= end {
		select {
		case <-s.drained:
			return drainedAt(seq)
		default:
		}
		want := int(min(uint64(batchSize), end-seq+1))
		msgs, pending, err := bridge.DirectBatch(ctx, js, req.GetStream(), seq, want, s.maxBytes)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.Sequence > end {
				seq = end + 1
				break
			}
			select {
			case <-s.drained:
				return drainedAt(m.Sequence)
			default:
			}
			p, counted, err := s.redriveOne(ctx, wait, js, st, m, f, req, lim, sum)
			if err != nil {
				// Not redriven: the client left, or the bridge drains.
				if ctx.Err() == nil {
					return drainedAt(m.Sequence)
				}
				return ctx.Err()
			}
			seq, sum.LastSequence = m.Sequence+1, m.Sequence
			if !counted {
				continue
			}
			if err := stream.Send(&jetwayv1.RedriveDeadLettersResponse{Event: &jetwayv1.RedriveDeadLettersResponse_Progress{Progress: p}}); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if pending == 0 {
			break
		}
	}
	return stream.Send(&jetwayv1.RedriveDeadLettersResponse{Event: &jetwayv1.RedriveDeadLettersResponse_Summary{Summary: sum}})
}

// redriveOne redrives one DLQ message; counted is false for one the
// filter leaves out. An error is wait's: it ended before the message's
// turn came, and the message is neither redriven nor counted.
func (s *Service) redriveOne(ctx, wait context.Context, js jetstream.JetStream, st jetstream.Stream, m *jetstream.RawStreamMsg, f filter,
	req *jetwayv1.RedriveDeadLettersRequest, lim *rate.Limiter, sum *jetwayv1.RedriveSummary,
) (*jetwayv1.RedriveProgress, bool, error) {
	p := &jetwayv1.RedriveProgress{Sequence: m.Sequence}
	failed := func(why string) (*jetwayv1.RedriveProgress, bool, error) {
		p.Outcome, p.Error = jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_FAILED, why
		sum.Failed++
		return p, true, nil
	}
	d, orig, ok := parse(m)
	if !ok {
		if req.GetFilter() != nil {
			return nil, false, nil
		}
		sum.Matched++
		return failed(bridge.ErrInvalidDeadLetter.Error() + ": no " + HeaderStream + " header")
	}
	if !f.matches(d) {
		return nil, false, nil
	}
	sum.Matched++
	p.Subject = d.GetOriginSubject()
	if d.GetLost() != "" || d.GetOriginSubject() == "" {
		return failed("no payload to redrive: " + LostValue)
	}
	// The DLQ stream is a stream like any other: whoever may publish to
	// it can store a "dead letter" of their own. A redrive publishes only
	// what a client's Publish could: never to a reserved subject (a
	// $JS.API. subject would run an admin operation on the bridge's
	// connection).
	if err := bridge.ValidatePublishSubject(HeaderSubject, d.GetOriginSubject()); err != nil {
		return failed(fmt.Sprintf("%s: %v", bridge.ErrInvalidDeadLetter, err))
	}
	if err := s.authz.CanPublish(ctx, d.GetOriginSubject()); err != nil {
		p.Outcome, p.Error = jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_NOT_PERMITTED, err.Error()
		sum.NotPermitted++
		return p, true, nil
	}
	if req.GetDryRun() {
		p.Outcome = jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_REDRIVEN
		sum.Redriven++
		return p, true, nil
	}
	if err := lim.Wait(wait); err != nil {
		sum.Matched--
		return nil, false, err
	}
	out := nats.NewMsg(d.GetOriginSubject())
	for k, vs := range orig {
		// Nor with a header Publish refuses: JetStream's own (Nats-*, which
		// would change how the stream stores it: a direct get adds some)
		// or one nats.go reads as a status reply.
		if bridge.ValidateHeader("", k, vs) == nil {
			out.Header[k] = vs
		}
	}
	out.Data = m.Data
	id := d.GetMsgId()
	if id == "" {
		id = redriveMsgID(d.GetOriginStream(), d.GetOriginSequence())
	}
	ack, err := js.PublishMsg(ctx, out, jetstream.WithMsgID(id))
	if err != nil {
		err = bridge.JetStreamError(err, fmt.Sprintf("redrive dead letter %d to %q", m.Sequence, d.GetOriginSubject()))
		s.log.WarnContext(ctx, "redrive: not published", slog.Uint64("sequence", m.Sequence), slog.Any("error", err))
		return failed(err.Error())
	}
	p.StoredStream, p.StoredSequence = ack.Stream, ack.Sequence
	// A duplicate of the original message itself (its id still in the
	// original stream's duplicate window) was never redriven: JetStream
	// stored nothing. Deleting the dead letter would lose the message;
	// a duplicate of an earlier redrive's copy is another sequence.
	shadowed := ack.Duplicate && ack.Stream == d.GetOriginStream() && ack.Sequence == d.GetOriginSequence()
	if ack.Duplicate {
		p.Outcome = jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_DUPLICATE
		sum.Duplicates++
	} else {
		p.Outcome = jetwayv1.RedriveOutcome_REDRIVE_OUTCOME_REDRIVEN
		sum.Redriven++
	}
	if shadowed {
		p.Error = fmt.Sprintf("taken for the original message (%s sequence %d), whose message id is still in the stream's duplicate window: nothing stored, the dead letter kept; redrive again once the window has passed", ack.Stream, ack.Sequence)
	}
	if req.GetDelete() && !shadowed {
		if err := st.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			p.Error = bridge.JetStreamError(err, fmt.Sprintf("delete dead letter %d", m.Sequence)).Error()
		} else {
			p.Deleted = true
			sum.Deleted++
		}
	}
	return p, true, nil
}
