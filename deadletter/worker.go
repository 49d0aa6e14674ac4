package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/internal/logsafe"
)

// Advisory types (nats-server's JSConsumerDeliveryExceededAdvisoryType and
// JSConsumerDeliveryTerminatedAdvisoryType).
const (
	maxDeliverType = "io.nats.jetstream.advisory.v1.max_deliver"
	terminatedType = "io.nats.jetstream.advisory.v1.terminated"
)

// advisory is the part of nats-server's JSConsumerDeliveryExceededAdvisory
// and JSConsumerDeliveryTerminatedAdvisory the worker reads.
type advisory struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
}

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	// Replicas of the advisory stream and its consumer (default 1).
	Replicas int
	// AckWait is the advisory consumer's ack wait (default 30 s): how
	// long an advisory a stopped replica held waits before another takes
	// it. Taken when the consumer is created.
	AckWait time.Duration
	// Batch bounds the advisories a replica holds at once (default 16).
	Batch int
	// Retry is the delay before a failed advisory is tried again, and
	// between attempts to reach JetStream (default 5 s).
	Retry time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Worker turns advisories into dead letters. Run it in every replica:
// they share the durable consumer, so each advisory is handled by one at
// a time, and by another if that one stops before acking it.
type Worker struct {
	w    *Writer
	js   func(context.Context) (jetstream.JetStream, error)
	o    WorkerOptions
	log  *slog.Logger
	warn *logsafe.Limiter
}

// NewWorker returns a worker writing with w over the JetStream js gives.
func NewWorker(w *Writer, js func(context.Context) (jetstream.JetStream, error), o WorkerOptions) (*Worker, error) {
	if w == nil || js == nil {
		return nil, fmt.Errorf("%w: a Writer and a JetStream are required", ErrInvalidOption)
	}
	if o.Replicas < 0 || o.Replicas > 5 || o.AckWait < 0 || o.Batch < 0 || o.Retry < 0 {
		return nil, fmt.Errorf("%w: %+v", ErrInvalidOption, o)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Batch == 0 {
		o.Batch = 16
	}
	if o.Retry == 0 {
		o.Retry = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{w: w, js: js, o: o, log: log, warn: logsafe.NewLimiter(log, 1, 3)}, nil
}

// Ensure creates the advisory stream and consumer when missing (with
// nats.go directly: the Admin API refuses the reserved $JS. space). Any
// number of replicas may call it at once.
func (wk *Worker) Ensure(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	cfg := jetstream.StreamConfig{
		Name:        AdvisoryStream,
		Description: "Jetway: consumer advisories that make dead letters (issue 19)",
		Subjects:    advisorySubjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      7 * 24 * time.Hour,
		Replicas:    wk.o.Replicas,
		Duplicates:  2 * time.Minute,
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		// Another replica (or another version) made it: use it as it is.
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("deadletter: create stream %s: %w", AdvisoryStream, err)
		}
	}
	ccfg := jetstream.ConsumerConfig{
		Durable:       AdvisoryConsumer,
		Description:   "Jetway: every replica's dead-letter worker",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       wk.o.AckWait,
		MaxAckPending: 1024,
		Replicas:      wk.o.Replicas,
	}
	cons, err := js.CreateConsumer(ctx, AdvisoryStream, ccfg)
	if err != nil {
		if !errors.Is(err, jetstream.ErrConsumerExists) {
			return nil, fmt.Errorf("deadletter: create consumer %s: %w", AdvisoryConsumer, err)
		}
		if cons, err = js.Consumer(ctx, AdvisoryStream, AdvisoryConsumer); err != nil {
			return nil, fmt.Errorf("deadletter: consumer %s: %w", AdvisoryConsumer, err)
		}
	}
	return cons, nil
}

// Run handles advisories until ctx ends; it returns nil then. Failures
// to reach JetStream are logged (rate-limited) and retried.
func (wk *Worker) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := wk.session(ctx)
		if ctx.Err() != nil {
			break
		}
		wk.warn.Log(ctx, slog.LevelWarn, "dead letters: advisory worker retrying", slog.Any("error", err), slog.Duration("retry", wk.o.Retry))
		select {
		case <-ctx.Done():
		case <-time.After(wk.o.Retry):
		}
	}
	return nil
}

// session ensures the advisory consumer and pulls from it until an error.
func (wk *Worker) session(ctx context.Context) error {
	js, err := wk.js(ctx)
	if err != nil {
		return err
	}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := wk.Ensure(ectx, js)
	cancel()
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := cons.Fetch(wk.o.Batch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return fmt.Errorf("deadletter: fetch advisories: %w", err)
		}
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				// Shutting down: another replica takes it now.
				_ = msg.Nak()
				continue
			}
			wk.handleMsg(ctx, js, msg)
		}
		err = batch.Error()
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("deadletter: fetch advisories: %w", err)
		}
	}
	return nil
}

func (wk *Worker) handleMsg(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg) {
	hctx, cancel := context.WithTimeout(ctx, wk.o.AckWait/2)
	err := wk.Handle(hctx, js, msg.Data())
	cancel()
	if err != nil {
		wk.warn.Log(ctx, slog.LevelError, "dead letter not written: retrying", slog.Any("error", err), slog.Duration("retry", wk.o.Retry))
		_ = msg.NakWithDelay(wk.o.Retry)
		return
	}
	if err := msg.Ack(); err != nil {
		// Redelivered later: the dead letter's id makes the copy once.
		wk.warn.Log(ctx, slog.LevelWarn, "dead letters: advisory ack not sent", slog.Any("error", err))
	}
}

// Handle writes the dead letter an advisory asks for; nil means done
// (written, or none wanted).
func (wk *Worker) Handle(ctx context.Context, js jetstream.JetStream, data []byte) error {
	var a advisory
	if err := json.Unmarshal(data, &a); err != nil {
		wk.warn.Log(ctx, slog.LevelWarn, "dead letters: advisory not understood: skipped", slog.Any("error", err))
		return nil
	}
	o := origin{stream: a.Stream, consumer: a.Consumer, seq: a.StreamSeq, deliveries: a.Deliveries, at: a.Time}
	switch a.Type {
	case maxDeliverType:
		o.reason = ReasonMaxDeliveries
	case terminatedType:
		o.reason = ReasonTerminated
		t := decodeTerm(wk.w.keys, a.Stream, a.Consumer, a.StreamSeq, a.Reason)
		if t.signed && t.copied {
			return nil // the bridge copied it before the TERM
		}
		o.termReason, o.by = t.reason, t.identity
	default:
		return nil
	}
	if o.at.IsZero() {
		o.at = time.Now()
	}
	subject, err := wk.w.subjectOf(ctx, js, a.Stream, a.Consumer)
	if err != nil || subject == "" {
		return err
	}
	return wk.w.copyMsg(ctx, js, subject, o)
}
