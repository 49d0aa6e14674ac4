package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/refusal"
)

// JetStream API error codes (nats-server's errors.json) the bridge gives a
// meaning of its own. Codes not listed fall back on the API error's HTTP-like
// status.
var apiErrorCodes = map[jetstream.ErrorCode]error{
	10059: ErrStreamNotFound,      // JSStreamNotFoundErr
	10014: ErrConsumerNotFound,    // JSConsumerNotFoundErr
	10149: ErrConsumerNotFound,    // JSConsumerDoesNotExist (update of a missing consumer)
	10037: ErrMessageNotFound,     // JSNoMessageFoundErr
	10043: ErrMessageNotFound,     // JSSequenceNotFoundErrF
	10058: ErrStreamExists,        // JSStreamNameExistErr
	10013: ErrConsumerExists,      // JSConsumerNameExistErr
	10148: ErrConsumerExists,      // JSConsumerAlreadyExists
	10105: ErrConsumerExists,      // JSConsumerExistingActiveErr
	10060: ErrWrongExpectedStream, // JSStreamNotMatchErr
	10071: ErrWrongLastSequence,   // JSStreamWrongLastSequenceErrF
	10164: ErrWrongLastSequence,   // JSStreamWrongLastSequenceConstantErr
	10070: ErrWrongLastMsgID,      // JSStreamWrongLastMsgIDErrF
	10158: ErrDuplicateInProgress, // JSStreamDuplicateMessageConflict
	10065: ErrSubjectsOverlap,     // JSStreamSubjectOverlapErr
	10052: ErrInvalidConfig,       // JSStreamInvalidConfigF (status 500, but a refused config)
	10012: ErrInvalidConfig,       // JSConsumerCreateErrF (status 500, but a refused config)
	10109: ErrNotAllowed,          // JSStreamSealedErr
	10166: ErrNotAllowed,          // JSMessageTTLDisabledErr
	10165: ErrInvalidArgument,     // JSMessageTTLInvalidErr
	10204: ErrNotAllowed,          // JSConsumerInvalidResetErr (the consumer's deliver policy forbids it)
	10054: ErrPayloadTooLarge,     // JSStreamMessageExceedsMaximumErr
	10097: ErrPayloadTooLarge,     // JSStreamHeaderExceedsMaximumErr
	10002: ErrLimitExceeded,       // JSAccountResourcesExceededErr
	10023: ErrLimitExceeded,       // JSInsufficientResourcesErr
	10026: ErrLimitExceeded,       // JSMaximumConsumersLimitErr
	10027: ErrLimitExceeded,       // JSMaximumStreamsLimitErr
	10028: ErrLimitExceeded,       // JSMemoryResourcesExceededErr
	10047: ErrLimitExceeded,       // JSStorageResourcesExceededErr
	10122: ErrLimitExceeded,       // JSStreamMaxStreamBytesExceeded
	10008: ErrUnavailable,         // JSClusterNotAvailErr
	10004: ErrUnavailable,         // JSClusterIncompleteErr
	10039: ErrUnavailable,         // JSNotEnabledForAccountErr
	10076: ErrUnavailable,         // JSNotEnabledErr
	10118: ErrUnavailable,         // JSStreamOfflineErr
	10119: ErrUnavailable,         // JSConsumerOfflineErr
	10163: ErrUnavailable,         // JSStreamExpectedLastSeqPerSubjectNotReady
	10194: ErrUnavailable,         // JSStreamOfflineReasonErrF
	// Counters, schedules and rollups (2.11–2.14): a stream that does not
	// allow them is the stream's configuration; a bad value the request's.
	10168: ErrNotAllowed,        // JSMessageIncrDisabledErr
	10169: ErrInvalidArgument,   // JSMessageIncrMissingErr
	10170: ErrInvalidArgument,   // JSMessageIncrPayloadErr
	10171: ErrInvalidArgument,   // JSMessageIncrInvalidErr
	10172: ErrNotAllowed,        // JSMessageCounterBrokenErr
	10188: ErrNotAllowed,        // JSMessageSchedulesDisabledErr
	10189: ErrInvalidArgument,   // JSMessageSchedulesPatternInvalidErr
	10190: ErrInvalidArgument,   // JSMessageSchedulesTargetInvalidErr
	10191: ErrInvalidArgument,   // JSMessageSchedulesTTLInvalidErr
	10192: ErrInvalidArgument,   // JSMessageSchedulesRollupInvalidErr
	10203: ErrInvalidArgument,   // JSMessageSchedulesSourceInvalidErr
	10212: ErrInvalidArgument,   // JSMessageSchedulesSchedulerInvalidErr
	10223: ErrInvalidArgument,   // JSMessageSchedulesTimeZoneInvalidErr
	10193: ErrWrongLastSequence, // JSStreamExpectedLastSeqPerSubjectInvalid
	// Atomic batches (orbit.go's jetstreamext names the codes).
	10174: ErrNotAllowed,      // JSAtomicPublishDisabledErr
	10175: ErrInvalidArgument, // JSAtomicPublishMissingSeqErr
	10176: ErrUnavailable,     // JSAtomicPublishIncompleteBatchErr (a message lost on the way: nothing stored, retry)
	10177: ErrInvalidArgument, // JSAtomicPublishUnsupportedHeaderBatchErr
	10179: ErrInvalidArgument, // JSAtomicPublishInvalidBatchIDErr
	10199: ErrInvalidArgument, // JSAtomicPublishTooLargeBatchErrF
	10200: ErrInvalidArgument, // JSAtomicPublishInvalidBatchCommitErr
	10201: ErrInvalidArgument, // JSAtomicPublishContainsDuplicateMessageErr
	10209: ErrNotAllowed,      // JSMirrorWithAtomicPublishErr
	10210: ErrLimitExceeded,   // JSAtomicPublishTooManyInflight
	10211: ErrLimitExceeded,   // JSBatchPublishTooManyInflight
}

// ErrNoAnswer is a NATS request that got no answer within the bridge's
// own bound, not the caller's deadline: JetStream restarting, electing a
// leader or cut off. It wraps ErrUnavailable: retry. The server's bound
// on a call is a context whose cause is ErrNoAnswer.
var ErrNoAnswer = fmt.Errorf("%w: JetStream did not answer in time", ErrUnavailable)

// callEnded is the error of a call whose context ended: its cause when
// that is the server's bound (ErrNoAnswer), else the context's error.
func callEnded(ctx context.Context, what string) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrNoAnswer) {
		return fmt.Errorf("%s: %w", what, cause)
	}
	return translate(ctx.Err(), what)
}

// translate turns an error from nats.go into one wrapping a domain sentinel
// and, for logs and errors.Is, the original. what names the operation and
// its object, e.g. `stream "ORDERS"`. The message (which clients see) holds
// what and the sentinel's text or, for JetStream API errors, their
// description, which is written for clients ("subjects overlap with an
// existing stream", "wrong last sequence: 4"). Errors
// the bridge cannot classify keep their full text and no sentinel, and so
// become Internal, with the text only in the log.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	sentinel := classify(err)
	if sentinel == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg := what + ": " + sentinel.Error()
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Description != "" {
		msg = what + ": " + apiErr.Description
	}
	return &translated{msg: msg, sentinel: sentinel, cause: err}
}

// translated is a NATS error with its domain meaning.
type translated struct {
	msg             string
	sentinel, cause error
}

func (e *translated) Error() string   { return e.msg }
func (e *translated) Unwrap() []error { return []error{e.sentinel, e.cause} }

func classify(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if s, ok := apiErrorCodes[apiErr.ErrorCode]; ok {
			return s
		}
		// JSStreamStoreFailedF carries the store's reason; a limit with
		// discard new reads "maximum messages exceeded" and the like.
		if apiErr.ErrorCode == 10077 && strings.Contains(apiErr.Description, "maximum") {
			return ErrStreamFull
		}
		if strings.Contains(apiErr.Description, "not permitted") {
			return ErrNotAllowed
		}
		switch {
		case apiErr.Code == 400:
			return ErrInvalidConfig
		case apiErr.Code == 503:
			return ErrUnavailable
		}
		return nil
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful):
		// nats.go flattens the API error of a message delete into text
		// (jetstream/stream.go), so only the text tells why.
		switch msg := err.Error(); {
		case strings.Contains(msg, "not permitted"), strings.Contains(msg, "sealed"):
			return ErrNotAllowed
		case strings.Contains(msg, "not found"), strings.Contains(msg, "store EOF"):
			return ErrMessageNotFound
		}
		return nil
	case errors.Is(err, context.Canceled):
		return nil // mapped to Canceled at the edge
	case errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, refusal.ErrConnectionLost):
		// The bridge's own bound on an answer, not the caller's deadline:
		// JetStream is restarting, electing or unreachable.
		return ErrNoAnswer
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return ErrStreamNotFound
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrConsumerDoesNotExist):
		return ErrConsumerNotFound
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return ErrMessageNotFound
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return ErrNoStreamForSubject
	case errors.Is(err, jetstream.ErrInvalidStreamName), errors.Is(err, jetstream.ErrInvalidConsumerName):
		return ErrInvalidName
	case errors.Is(err, jetstream.ErrInvalidSubject), errors.Is(err, nats.ErrBadSubject):
		return ErrInvalidSubject
	case errors.Is(err, nats.ErrMaxPayload):
		return ErrPayloadTooLarge
	case errors.Is(err, nats.ErrPermissionViolation):
		return ErrPermissionDenied
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return ErrLimitExceeded
	case errors.Is(err, jetstream.ErrNotPullConsumer):
		return ErrNotAllowed // Jetway consumes pull consumers only
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, jetstream.ErrConnectionClosed), errors.Is(err, jetstream.ErrServerShutdown),
		errors.Is(err, jetstream.ErrJetStreamPublisherClosed):
		return ErrUnavailable
	}
	return nil
}

// While a stream or consumer is between leaders, and while nats-server
// restarts, JetStream answers a request for one that exists as it
// answers one for one that does not: nobody responds. noStreamAnswer and
// consumerAnswer tell the two apart by asking JetStream's API, whose own
// silence means it cannot tell: unavailable, retry. A client drops a
// message on NOT_FOUND; it retries on UNAVAILABLE.

// errCannotTell is JetStream's API not answering the question.
var errCannotTell = errors.New("JetStream could not tell")

// probeTimeout bounds the question.
const probeTimeout = time.Second

// askAPI bounds a probe of JetStream's API subject (after the API
// prefix) by probeTimeout, and ends it early when nats-server refuses
// the connection's NATS user that subject. refused, called once the probe
// returned (always, once), ends the watch and the context and says
// whether the refusal ended it.
func askAPI(ctx context.Context, js jetstream.JetStream, subject string) (_ context.Context, done func() (refused bool)) {
	tctx, cancel := context.WithTimeout(ctx, probeTimeout)
	qctx, refuse := context.WithCancelCause(tctx)
	w := refusal.Subject(js.Conn(), apiPrefix(js)+subject, refuse)
	return qctx, func() bool {
		w.Stop()
		was := errors.Is(context.Cause(qctx), nats.ErrPermissionViolation)
		refuse(nil)
		cancel()
		return was
	}
}

// noStreamAnswer is the error of a publish to subject that no stream
// answered (err, jetstream.ErrNoStreamResponse): NO_STREAM_FOR_SUBJECT
// only when JetStream says that no stream captures the subject, or when
// the connection's NATS user may not ask.
func noStreamAnswer(ctx context.Context, js jetstream.JetStream, subject string, err error, what string) error {
	qctx, done := askAPI(ctx, js, "STREAM.NAMES")
	name, perr := js.StreamNameBySubject(qctx, subject)
	refused := done()
	switch {
	case errors.Is(perr, jetstream.ErrStreamNotFound), refused:
		return translate(err, what)
	case perr == nil:
		return fmt.Errorf("%s: %w: stream %q did not answer (between leaders, or restarting); nothing was stored, retry", what, ErrUnavailable, name)
	case ctx.Err() != nil:
		return translate(ctx.Err(), what)
	}
	return fmt.Errorf("%s: %w: no stream answered, and %w whether one captures the subject (%v); retry", what, ErrUnavailable, errCannotTell, perr)
}

// consumerAnswer is the error of a request to a consumer that nobody
// answered: CONSUMER_NOT_FOUND only when JetStream says the consumer (or
// its stream) does not exist.
func consumerAnswer(ctx context.Context, js jetstream.JetStream, stream, consumer, what string) error {
	qctx, done := askAPI(ctx, js, "CONSUMER.INFO."+stream+"."+consumer)
	_, err := js.Consumer(qctx, stream, consumer)
	refused := done()
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound),
		// The NATS user may not ask: nobody answering is all there is to go on.
		refused:
		return fmt.Errorf("%s: %w", what, ErrConsumerNotFound)
	case err == nil:
		return fmt.Errorf("%s: %w: consumer %q on stream %q did not answer (between leaders, or restarting); retry", what, ErrUnavailable, consumer, stream)
	case ctx.Err() != nil:
		return translate(ctx.Err(), what)
	}
	return fmt.Errorf("%s: %w: the consumer did not answer, and JetStream could not tell whether it exists (%v); retry", what, ErrUnavailable, err)
}

// apiPrefix is the JetStream API prefix js's requests go to: "$JS.API."
// unless a domain ("$JS.<domain>.API.") or a prefix was set.
// (jetstream.NewWithDomain leaves Options().APIPrefix empty.)
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "" && !strings.HasSuffix(o.APIPrefix, "."):
		return o.APIPrefix + "."
	case o.APIPrefix != "":
		return o.APIPrefix
	}
	return jetstream.DefaultAPIPrefix
}

// noStreamVerdicts remembers, for one PublishStream, noStreamAnswer's
// verdicts of the last second, so that a batch to a subject no stream
// answers asks JetStream once, not once per message. Not safe for
// concurrent use.
type noStreamVerdicts struct {
	subject string
	at      time.Time
	err     error
	// silent: JetStream's API did not answer the last question, so it
	// will not answer one about another subject either for a while.
	silent bool
}

func (v *noStreamVerdicts) answer(ctx context.Context, js jetstream.JetStream, subject string, err error, what string) error {
	if now := time.Now(); v.err != nil && (v.subject == subject || v.silent) && now.Sub(v.at) < probeTimeout {
		if v.subject != subject {
			return fmt.Errorf("%s: %w: no stream answered, and JetStream's API is not answering; retry", what, ErrUnavailable)
		}
		return v.err
	}
	v.subject, v.err = subject, noStreamAnswer(ctx, js, subject, err, what)
	v.at = time.Now()
	v.silent = errors.Is(v.err, errCannotTell)
	return v.err
}
