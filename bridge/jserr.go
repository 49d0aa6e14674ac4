package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return ErrTimeout
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
