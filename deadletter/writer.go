package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/bridge/acktoken"
)

// Observer counts dead letters (package metrics implements it).
type Observer interface {
	// DeadLetterWritten counts a dead letter stored (or found a
	// duplicate of one stored before) with its reason.
	DeadLetterWritten(reason string)
	// DeadLetterFailed counts a dead letter not written (to be retried).
	DeadLetterFailed(reason string)
}

type noObserver struct{}

func (noObserver) DeadLetterWritten(string) {}
func (noObserver) DeadLetterFailed(string)  {}

// Writer writes dead letters. It is safe for concurrent use.
type Writer struct {
	keys [][]byte
	log  *slog.Logger
	obs  Observer
	now  func() time.Time

	mu    sync.Mutex
	cache map[string]cached // stream + "\x00" + consumer
}

type cached struct {
	subject string
	at      time.Time
}

// WriterOptions configure NewWriter.
type WriterOptions struct {
	// AckKeys are the bridge's ack keys: the TERM reasons it sends are
	// signed with a key derived from the first, and the advisory path
	// verifies them with all. Without keys a TERM carries the client's
	// reason alone (no identity for the advisory path).
	AckKeys [][]byte
	// Logger; nil discards.
	Logger *slog.Logger
	// Observer; nil counts nothing.
	Observer Observer
}

// NewWriter returns a Writer.
func NewWriter(o WriterOptions) (*Writer, error) {
	for i, k := range o.AckKeys {
		if len(k) == 0 {
			return nil, fmt.Errorf("%w: ack key %d is empty", ErrInvalidOption, i)
		}
	}
	w := &Writer{keys: termKeys(o.AckKeys), log: o.Logger, obs: o.Observer, now: time.Now, cache: map[string]cached{}}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.obs == nil {
		w.obs = noObserver{}
	}
	return w, nil
}

var _ bridge.Terminator = (*Writer)(nil)

// origin is what a dead letter says of its message.
type origin struct {
	stream, consumer string
	seq, deliveries  uint64
	reason           string // ReasonMaxDeliveries or ReasonTerminated
	termReason, by   string
	at               time.Time
}

// subjectOf is the dead-letter subject of a consumer ("" for none, or
// for a consumer that is gone), cached for lookupTTL.
func (w *Writer) subjectOf(ctx context.Context, js jetstream.JetStream, stream, consumer string) (string, error) {
	key := stream + "\x00" + consumer
	now := w.now()
	w.mu.Lock()
	c, ok := w.cache[key]
	w.mu.Unlock()
	if ok && now.Sub(c.at) < lookupTTL {
		return c.subject, nil
	}
	cons, err := js.Consumer(ctx, stream, consumer)
	subject := ""
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return "", fmt.Errorf("consumer %q on stream %q: %w", consumer, stream, err)
	default:
		subject = cons.CachedInfo().Config.Metadata[bridge.DeadLetterSubjectKey]
		// The API checks the subject it sets, but a consumer made natively
		// carries any metadata: a reserved subject ($JS.API.…,
		// $KV.JETWAY_PUSH.…) would have the bridge's own connection run an
		// admin operation with the message as its request. None, then.
		if subject != "" {
			if err := bridge.ValidatePublishSubject("metadata "+bridge.DeadLetterSubjectKey, subject); err != nil {
				w.log.Warn("dead letters: a consumer's dead-letter subject is refused: no dead letters for it",
					slog.String("stream", stream), slog.String("consumer", consumer), slog.Any("error", err))
				subject = ""
			}
		}
	}
	w.mu.Lock()
	if len(w.cache) > 4096 {
		clear(w.cache) // bounded: a few seconds of consumers
	}
	w.cache[key] = cached{subject: subject, at: now}
	w.mu.Unlock()
	return subject, nil
}

// copyMsg reads the message from its stream and publishes its dead letter
// to subject (with headers and no payload when it is gone).
func (w *Writer) copyMsg(ctx context.Context, js jetstream.JetStream, subject string, o origin) error {
	var raw *jetstream.RawStreamMsg
	st, err := js.Stream(ctx, o.stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return fmt.Errorf("stream %q: %w", o.stream, err)
	default:
		raw, err = st.GetMsg(ctx, o.seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			raw = nil
		case err != nil:
			return fmt.Errorf("message %d of stream %q: %w", o.seq, o.stream, err)
		}
	}
	return w.publish(ctx, js, subject, o, raw)
}

// publish writes the dead letter of raw (nil: lost) to subject.
func (w *Writer) publish(ctx context.Context, js jetstream.JetStream, subject string, o origin, raw *jetstream.RawStreamMsg) error {
	m := nats.NewMsg(subject)
	if raw != nil {
		for k, vs := range raw.Header {
			if keepHeader(k) {
				m.Header[k] = append([]string(nil), vs...)
			}
		}
		m.Data = raw.Data
		m.Header.Set(HeaderSubject, raw.Subject)
		if id := raw.Header.Get(jetstream.MsgIDHeader); id != "" {
			m.Header.Set(HeaderMsgID, id)
		}
	} else {
		m.Header.Set(HeaderLost, LostValue)
	}
	m.Header.Set(HeaderStream, o.stream)
	m.Header.Set(HeaderConsumer, o.consumer)
	m.Header.Set(HeaderSequence, strconv.FormatUint(o.seq, 10))
	m.Header.Set(HeaderDeliveries, strconv.FormatUint(o.deliveries, 10))
	m.Header.Set(HeaderReason, o.reason)
	if o.termReason != "" {
		m.Header.Set(HeaderTermReason, o.termReason)
	}
	if o.by != "" {
		m.Header.Set(HeaderTerminatedBy, o.by)
	}
	m.Header.Set(HeaderTime, o.at.UTC().Format(time.RFC3339Nano))
	ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(MsgID(o.stream, o.consumer, o.seq)))
	if err != nil {
		w.obs.DeadLetterFailed(o.reason)
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%w: no stream captures the dead-letter subject %q of consumer %q on stream %q", bridge.ErrDeadLetterUnavailable, subject, o.consumer, o.stream)
		}
		return fmt.Errorf("%w: dead letter of message %d of stream %q to %q: %w", bridge.ErrDeadLetterUnavailable, o.seq, o.stream, subject, err)
	}
	w.obs.DeadLetterWritten(o.reason)
	w.log.Debug("dead letter written", slog.String("stream", o.stream), slog.String("consumer", o.consumer),
		slog.Uint64("sequence", o.seq), slog.String("reason", o.reason), slog.String("dlq_stream", ack.Stream),
		slog.Uint64("dlq_sequence", ack.Sequence), slog.Bool("duplicate", ack.Duplicate))
	return nil
}

// keepHeader: a dead letter keeps the original's headers but JetStream's
// own (Nats-*: a Nats-Expected-*, Nats-Rollup, Nats-TTL, Nats-Schedule,
// Nats-Incr or Nats-Batch-* header would change how the DLQ stream stores
// it; the Nats-Msg-Id is in Jetway-Dead-Letter-Msg-Id) and any dead-letter
// header it had (a redriven dead letter gets new ones).
func keepHeader(k string) bool {
	return !hasPrefixFold(k, "Nats-") && !hasPrefixFold(k, headerPrefix)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// BeforeTerm is bridge.Terminator's: the dead letter of the delivery reply
// names, when its consumer has a dead-letter subject, then the signed
// reason for +TERM.
func (w *Writer) BeforeTerm(ctx context.Context, js jetstream.JetStream, reply, reason, identity string) (string, error) {
	r, err := acktoken.ParseReply(reply)
	if err != nil {
		return "", fmt.Errorf("%w: %w", bridge.ErrInvalidArgument, err)
	}
	copied, err := w.copyFirst(ctx, js, origin{
		stream: r.Stream, consumer: r.Consumer, seq: r.StreamSeq, deliveries: r.Delivered,
		reason: ReasonTerminated, termReason: reason, by: identity,
	})
	if err != nil {
		return "", err
	}
	if !copied {
		// No dead-letter subject: nothing for the advisory path to do
		// with an identity, and the reason stays the client's.
		return reason, nil
	}
	return w.termReason(r.Stream, r.Consumer, r.StreamSeq, identity, copied, reason), nil
}

// copyFirst writes o's dead letter when its consumer has a dead-letter
// subject, and says whether it did.
func (w *Writer) copyFirst(ctx context.Context, js jetstream.JetStream, o origin) (bool, error) {
	subject, err := w.subjectOf(ctx, js, o.stream, o.consumer)
	if err != nil {
		return false, fmt.Errorf("%w: %w", bridge.ErrDeadLetterUnavailable, err)
	}
	if subject == "" {
		return false, nil
	}
	o.at = w.now()
	if err := w.copyMsg(ctx, js, subject, o); err != nil {
		return false, err
	}
	return true, nil
}

func (w *Writer) termReason(stream, consumer string, seq uint64, identity string, copied bool, reason string) string {
	if len(w.keys) == 0 {
		return reason
	}
	return encodeTerm(w.keys[0], stream, consumer, seq, identity, copied, reason)
}

// Terminate copies msg to its consumer's dead-letter subject (if it has
// one), then TERMs it with reason, which carries identity for the
// advisory path. An error before the TERM leaves msg unterminated: the
// caller NAKs it or lets it be redelivered. It is the contract of issue
// 19 with package push (a method value has push.Options.Terminate's
// shape once identity is bound).
func (w *Writer) Terminate(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, reason, identity string) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("terminate: %w", err)
	}
	copied, err := w.copyFirst(ctx, js, origin{
		stream: md.Stream, consumer: md.Consumer, seq: md.Sequence.Stream, deliveries: md.NumDelivered,
		reason: ReasonTerminated, termReason: reason, by: identity,
	})
	if err != nil {
		return err
	}
	if copied {
		reason = w.termReason(md.Stream, md.Consumer, md.Sequence.Stream, identity, copied, reason)
	}
	if err := msg.TermWithReason(reason); err != nil {
		return fmt.Errorf("terminate: %w", err)
	}
	return nil
}

// Terminate is Writer.Terminate without the bridge's keys: the copy is
// made first in the same way, and the TERM carries reason alone (an
// advisory of it that reaches the worker after the DLQ stream's duplicate
// window would be copied again, without an identity). Prefer a Writer's.
func Terminate(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, reason, identity string) error {
	w, _ := NewWriter(WriterOptions{})
	return w.Terminate(ctx, js, msg, reason, identity)
}

func uitoa(n uint64) string { return strconv.FormatUint(n, 10) }
