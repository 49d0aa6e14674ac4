package bridge

import (
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
