package bridge

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// The conversions and the error translation of the admin service, for
// packages that manage streams and consumers outside an RPC (package
// bootstrap): one schema, one validation, one meaning of JetStream's
// errors.

// StreamConfigFrom validates a stream configuration as CreateStream and
// UpdateStream do and converts it to nats.go's (the API's 0 "unlimited"
// as JetStream's -1, UNSPECIFIED enums as JetStream's defaults). field
// prefixes the field paths of its errors, each a *FieldError wrapping
// ErrInvalidArgument, ErrInvalidName, ErrInvalidSubject or
// ErrInvalidConfig.
func StreamConfigFrom(field string, c *jetwayv1.StreamConfig) (jetstream.StreamConfig, error) {
	return streamConfigFrom(field, c)
}

// StreamConfigTo converts a JetStream stream configuration to the API's,
// as GetStream shows it.
func StreamConfigTo(c jetstream.StreamConfig) *jetwayv1.StreamConfig { return streamConfigTo(c) }

// ConsumerConfigFrom validates a consumer configuration as CreateConsumer
// and UpdateConsumer do and converts it to a durable pull consumer's;
// errors as StreamConfigFrom's.
func ConsumerConfigFrom(field string, c *jetwayv1.ConsumerConfig) (jetstream.ConsumerConfig, error) {
	return consumerConfigFrom(field, c)
}

// ConsumerConfigTo converts a JetStream consumer configuration to the
// API's, as GetConsumer shows it.
func ConsumerConfigTo(c jetstream.ConsumerConfig) *jetwayv1.ConsumerConfig {
	return consumerConfigTo(c)
}

// JetStreamError turns an error from nats.go's jetstream package into one
// wrapping the bridge's sentinel for it (ErrStreamNotFound,
// ErrUnavailable, ErrPermissionDenied…) and the original; what names the
// operation and its object (`create stream "ORDERS"`). nil stays nil.
func JetStreamError(err error, what string) error { return translate(err, what) }

// ValidateName checks a stream or consumer name as the API does; the
// error is a *FieldError for field wrapping ErrInvalidName.
func ValidateName(field, name string) error { return validateName(field, name) }

// DirectBatch reads up to maxMsgs messages of stream from sequence seq on,
// and about maxBytes, with one batch direct get (as ListMessages does;
// the stream needs allow_direct). pending counts the messages after the
// batch (0: it reached the end). A deadline before JetStream finished the
// answer is an error, never a short batch.
func DirectBatch(ctx context.Context, js jetstream.JetStream, stream string, seq uint64, maxMsgs, maxBytes int) (msgs []*jetstream.RawStreamMsg, pending uint64, err error) {
	b, err := directGet(ctx, js, stream, directGetRequest{Seq: max(seq, 1), Batch: maxMsgs, MaxBytes: maxBytes}, maxMsgs, maxBytes)
	if err != nil {
		return nil, 0, err
	}
	return b.msgs, b.pending, nil
}

// ValidateSubject checks a subject as the API does (wildcards allowed or
// not); the error is a *FieldError for field wrapping ErrInvalidSubject.
func ValidateSubject(field, subject string, wildcards bool) error {
	return validateSubject(field, subject, wildcards)
}

// ValidatePublishSubject checks a subject a client publishes to: a valid
// subject without wildcards outside the reserved spaces ($JS., $SYS.,
// _INBOX. …); the error is a *FieldError wrapping ErrInvalidSubject.
func ValidatePublishSubject(field, subject string) error {
	return validatePublishSubject(field, subject)
}

// ValidateHeader checks one header as a client's Publish does (no Nats-*
// header, no Status or Description, values NATS stores as sent); the
// error is a *FieldError wrapping ErrInvalidHeader.
func ValidateHeader(field, name string, values []string) error {
	return validateHeader(field, name, values)
}

// HeadersTo converts NATS headers to the API's.
func HeadersTo(h nats.Header) map[string]*jetwayv1.HeaderValues { return headersTo(h) }
