package bridge

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Authorizer answers permission questions for the identity of a call. The
// auth package implements it (auth.Authorizer) over the identity the
// authentication interceptor put in the context; its errors wrap
// auth.ErrForbidden.
type Authorizer interface {
	// Identity names the caller for ack tokens ("" without client auth).
	Identity(ctx context.Context) string
	CanPublish(ctx context.Context, subject string) error
	// CanConsume checks a stream's consumer ("" for ephemeral).
	CanConsume(ctx context.Context, stream, consumer string) error
	// CanReadSubjects checks the filters of a consumer the call creates.
	CanReadSubjects(ctx context.Context, filters []string) error
	// CanAdmin checks an admin operation on a stream ("" for account-wide).
	CanAdmin(ctx context.Context, stream string, write bool) error
	// CanAdminSubjects checks the subjects an admin write gives a stream
	// or a consumer (field names them in errors).
	CanAdminSubjects(ctx context.Context, field string, subjects []string) error
	// CanCreateDurable checks a Subscribe that would create a durable.
	CanCreateDurable(ctx context.Context, stream, consumer string) error
	// CanReadAccount checks account-wide reads.
	CanReadAccount(ctx context.Context) error
	// CanAck checks an ack of a delivery from stream with an ack token
	// issued to the caller (an access token may narrow acks).
	CanAck(ctx context.Context, stream string) error
	// CanSee filters listings.
	CanSee(ctx context.Context, stream string) bool
	// MaxFetchBatch is the caller's own Fetch batch cap; 0 for none.
	MaxFetchBatch(ctx context.Context) int
}

// allowAll is the authorizer without client authentication.
type allowAll struct{}

// AllowAll is the Authorizer without client authentication, for the
// services outside this package (kv, push, deadletter).
var AllowAll Authorizer = allowAll{}

func (allowAll) Identity(context.Context) string                          { return "" }
func (allowAll) CanPublish(context.Context, string) error                 { return nil }
func (allowAll) CanConsume(context.Context, string, string) error         { return nil }
func (allowAll) CanReadSubjects(context.Context, []string) error          { return nil }
func (allowAll) CanAdmin(context.Context, string, bool) error             { return nil }
func (allowAll) CanSee(context.Context, string) bool                      { return true }
func (allowAll) CanAdminSubjects(context.Context, string, []string) error { return nil }
func (allowAll) CanCreateDurable(context.Context, string, string) error   { return nil }
func (allowAll) CanReadAccount(context.Context) error                     { return nil }
func (allowAll) CanAck(context.Context, string) error                     { return nil }
func (allowAll) MaxFetchBatch(context.Context) int                        { return 0 }

// ConnProvider gives the JetStream connection a call runs on: the
// bridge's own or, with identity propagation (auth.Pool), the caller's
// own pooled connection, so that nats-server's permissions and account
// isolation apply too. An error for a connection that cannot be had
// wraps ErrUnavailable or another sentinel Status knows.
type ConnProvider interface {
	// JetStream is for unary calls.
	JetStream(ctx context.Context) (jetstream.JetStream, error)
	// Acquire is for streams: the connection stays open until release.
	Acquire(ctx context.Context) (js jetstream.JetStream, release func(), err error)
}

// canDeadLetter checks a consumer's dead_letter_subject (issue 19): the
// bridge publishes its dead letters there, so it is a subject the caller
// gives, as a stream's subjects are, and must lie within its
// admin.subjects (a tenant cannot aim dead letters into another's).
func canDeadLetter(ctx context.Context, authz Authorizer, field string, cfg jetstream.ConsumerConfig) error {
	d := cfg.Metadata[DeadLetterSubjectKey]
	if d == "" {
		return nil
	}
	return authz.CanAdminSubjects(ctx, field, []string{d})
}
