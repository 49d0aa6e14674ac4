package bridge

import (
	"errors"
	"fmt"
)

// Domain errors. Every error a service returns wraps exactly one of these (or
// is a context error); status.go maps each to a gRPC code and an ErrorInfo
// reason. Add a sentinel here and the exhaustiveness test fails until it is
// mapped.
var (
	// ErrInvalidArgument is a malformed request field not covered below.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrInvalidSubject is a subject that is empty, malformed, uses wildcards
	// where they are not allowed, or names a reserved subject space.
	ErrInvalidSubject = errors.New("invalid subject")
	// ErrInvalidName is a stream or consumer name JetStream would refuse.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidHeader is a header name or value NATS cannot carry, or a
	// reserved Nats-* header.
	ErrInvalidHeader = errors.New("invalid header")
	// ErrInvalidConfig is a stream or consumer configuration JetStream refused.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrPayloadTooLarge is a message larger than the NATS maximum payload or
	// the stream's maximum message size.
	ErrPayloadTooLarge = errors.New("payload too large")

	// ErrStreamNotFound is an unknown stream.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrConsumerNotFound is an unknown consumer.
	ErrConsumerNotFound = errors.New("consumer not found")
	// ErrMessageNotFound is a stream sequence or subject with no message.
	ErrMessageNotFound = errors.New("message not found")
	// ErrNoStreamForSubject is a publish to a subject no stream captures.
	ErrNoStreamForSubject = errors.New("no stream captures the subject")

	// ErrStreamExists is a create of a stream whose name is taken by a
	// different configuration.
	ErrStreamExists = errors.New("stream already exists with a different configuration")
	// ErrConsumerExists is a create of a consumer whose name is taken by a
	// different configuration.
	ErrConsumerExists = errors.New("consumer already exists with a different configuration")

	// ErrWrongExpectedStream is a publish whose expected_stream did not match.
	ErrWrongExpectedStream = errors.New("expected stream does not match")
	// ErrWrongLastSequence is a publish whose expected last (subject)
	// sequence did not match.
	ErrWrongLastSequence = errors.New("wrong last sequence")
	// ErrWrongLastMsgID is a publish whose expected last msg id did not match.
	ErrWrongLastMsgID = errors.New("wrong last msg id")
	// ErrDuplicateInProgress is a publish racing another with the same msg id.
	ErrDuplicateInProgress = errors.New("a message with this msg id is being stored")

	// ErrSubjectsOverlap is a stream whose subjects overlap another stream's.
	ErrSubjectsOverlap = errors.New("subjects overlap with an existing stream")
	// ErrNotAllowed is an operation the stream's configuration forbids
	// (sealed, deny delete, deny purge, TTLs disabled).
	ErrNotAllowed = errors.New("operation not allowed by the stream configuration")

	// ErrStreamFull is a publish refused by a stream limit with discard new.
	ErrStreamFull = errors.New("stream limit reached")
	// ErrLimitExceeded is an account or server resource limit.
	ErrLimitExceeded = errors.New("resource limit exceeded")

	// ErrPermissionDenied is a NATS permission violation.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable is NATS or JetStream not reachable or not ready.
	ErrUnavailable = errors.New("jetstream unavailable")
	// ErrPullRefused is a pull request JetStream refused for what the
	// consumer requires (a priority group, a pin id…) that the bridge's
	// pull did not carry: the consumer cannot be read this way.
	ErrPullRefused = errors.New("pull request refused")
	// ErrPinIDMismatch is a pull for a pinned-client priority group whose
	// pin id is not the current one (another client is pinned, or the pin
	// moved on): drop the pin id and pull again to be pinned anew.
	ErrPinIDMismatch = errors.New("pin id is not the current one")
	// ErrTooManyResults is a read whose answer would exceed what JetStream
	// or the bridge returns at once (a multi-last get over more than 1024
	// subjects, or past the byte cap): narrow the request.
	ErrTooManyResults = errors.New("too many results")
	// ErrTimeout is a NATS operation that did not answer in time.
	ErrTimeout = errors.New("jetstream did not answer in time")
	// ErrAckTokenInvalid is an ack token this service did not issue:
	// malformed, forged or tampered with.
	ErrAckTokenInvalid = errors.New("invalid ack token")
	// ErrAckTokenExpired is an authentic ack token past its ack deadline:
	// JetStream redelivers the message, and a late ack must not acknowledge
	// that redelivery.
	ErrAckTokenExpired = errors.New("ack token expired")

	// ErrTokenNotPermitted is an authentic ack token presented by an
	// identity other than the one it was issued to.
	ErrTokenNotPermitted = errors.New("ack token not permitted")

	// ErrUnimplemented is an RPC this version does not provide yet.
	ErrUnimplemented = errors.New("not implemented")
	// ErrAuthRequired is a call served only to authenticated callers
	// (Ingest) made while client authentication is off.
	ErrAuthRequired = errors.New("client authentication required")

	// --- Key-value (issue 18; package kv) ---

	// ErrInvalidBucket is a bucket name nats.go's KeyValue refuses
	// (letters, digits, '-' and '_' only).
	ErrInvalidBucket = errors.New("invalid bucket name")
	// ErrInvalidKey is a key nats.go's KeyValue refuses, or a wildcard
	// where a single key is meant.
	ErrInvalidKey = errors.New("invalid key")
	// ErrBucketNotFound is an unknown bucket.
	ErrBucketNotFound = errors.New("bucket not found")
	// ErrKeyNotFound is a key without a value (never put, deleted,
	// purged), or a revision the key does not have.
	ErrKeyNotFound = errors.New("key not found")
	// ErrBucketExists is a create of a bucket whose name is taken by a
	// different configuration.
	ErrBucketExists = errors.New("bucket already exists with a different configuration")
	// ErrKeyExists is a create of a key that has a value.
	ErrKeyExists = errors.New("key exists")
	// ErrWrongRevision is an update or delete whose expected revision is
	// not the key's latest.
	ErrWrongRevision = errors.New("wrong revision")

	// Dead letters (issue 19).

	// ErrDeadLetterUnavailable is a TERM the bridge did not send because
	// the message's dead letter could not be written first (no stream
	// captures the consumer's dead_letter_subject, JetStream did not
	// answer): the message stays unterminated; retry.
	ErrDeadLetterUnavailable = errors.New("dead letter not written")
	// ErrInvalidDeadLetter is a redrive of a DLQ stream message that is not
	// a dead letter (no Jetway-Dead-Letter-* origin headers).
	ErrInvalidDeadLetter = errors.New("not a dead letter")
	// --- Push delivery (issue 19; package push) ---

	// ErrPushSubscriptionNotFound is an unknown push subscription.
	ErrPushSubscriptionNotFound = errors.New("push subscription not found")
	// ErrPushSubscriptionExists is a create of a push subscription whose
	// name is taken.
	ErrPushSubscriptionExists = errors.New("push subscription already exists")
	// ErrInvalidEndpoint is a push endpoint that is not an http(s) URL
	// with a host, or one that resolves to an address push may not reach
	// (loopback, private, link-local, multicast, unspecified) without
	// --push-allow-private-endpoints.
	ErrInvalidEndpoint = errors.New("invalid endpoint")
)

// FieldError is an invalid request field: its path (as in the proto, e.g.
// "config.name") and what is wrong with it. It wraps a sentinel.
type FieldError struct {
	// Field is the proto field path.
	Field string
	// Err is what is wrong; it wraps a sentinel above.
	Err error
}

// Error reports the field and the problem.
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the problem.
func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr builds a FieldError wrapping sentinel with a formatted detail.
func fieldErr(field string, sentinel error, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	if detail == "" {
		return &FieldError{Field: field, Err: sentinel}
	}
	return &FieldError{Field: field, Err: fmt.Errorf("%w: %s", sentinel, detail)}
}
