package kv

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
)

// kvErrors are nats.go's KeyValue errors and what they mean here. They
// are checked before the bridge's general translation: ErrKeyExists, for
// one, is also a JetStream "wrong last sequence".
var kvErrors = []struct {
	nats, sentinel error
}{
	{jetstream.ErrKeyExists, bridge.ErrKeyExists},
	{jetstream.ErrKeyRevisionMismatch, bridge.ErrWrongRevision},
	{jetstream.ErrKeyNotFound, bridge.ErrKeyNotFound},
	{jetstream.ErrKeyDeleted, bridge.ErrKeyNotFound},
	{jetstream.ErrNoKeysFound, bridge.ErrKeyNotFound},
	{jetstream.ErrBucketNotFound, bridge.ErrBucketNotFound},
	{jetstream.ErrBucketExists, bridge.ErrBucketExists},
	{jetstream.ErrInvalidBucketName, bridge.ErrInvalidBucket},
	{jetstream.ErrInvalidKey, bridge.ErrInvalidKey},
	{jetstream.ErrHistoryTooLarge, bridge.ErrInvalidConfig},
	{jetstream.ErrBadBucket, bridge.ErrInvalidBucket},
	{jetstream.ErrTTLOnDeleteNotSupported, bridge.ErrInvalidArgument},
}

// translate turns an error of nats.go into one wrapping the sentinel it
// means (and the original, for logs); what names the operation and its
// object.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	for _, e := range kvErrors {
		if errors.Is(err, e.nats) {
			return &kvError{msg: what + ": " + e.sentinel.Error(), sentinel: e.sentinel, cause: err}
		}
	}
	// A CAS conflict nats.go did not name (a delete with last_revision):
	// JetStream's wrong last sequence.
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return &kvError{msg: what + ": " + bridge.ErrWrongRevision.Error() + ": " + apiErr.Description, sentinel: bridge.ErrWrongRevision, cause: err}
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return &kvError{msg: what + ": " + bridge.ErrBucketNotFound.Error(), sentinel: bridge.ErrBucketNotFound, cause: err}
	}
	return bridge.JetStreamError(err, what)
}

type kvError struct {
	msg             string
	sentinel, cause error
}

func (e *kvError) Error() string   { return e.msg }
func (e *kvError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// translateCAS is translate for a write with an expected revision
// (UpdateEntry, DeleteEntry and PurgeEntry with last_revision): nats.go
// answers its mismatch as ErrKeyExists (JetStream's wrong last sequence,
// which ErrKeyExists matches by code) or ErrKeyRevisionMismatch; here it
// is a wrong revision.
func translateCAS(err error, what string) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return &kvError{msg: what + ": " + bridge.ErrWrongRevision.Error(), sentinel: bridge.ErrWrongRevision, cause: err}
	}
	return translate(err, what)
}

// jsErrMessageTTLDisabled is JetStream's JSMessageTTLDisabledErr.
const jsErrMessageTTLDisabled = 10166

// ttlHint says what a refused per-key TTL (CreateEntry's ttl,
// PurgeEntry's marker_ttl) needs.
func ttlHint(err error) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrMessageTTLDisabled {
		return " (a per-key TTL needs a bucket with limit_marker_ttl)"
	}
	return ""
}
