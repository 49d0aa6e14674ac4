package bridge

import "context"

// authorizer answers permission questions for the identity of a call. The
// auth package implements it over the identity the authentication
// interceptor put in the context; its errors wrap auth.ErrForbidden.
type authorizer interface {
	// Identity names the caller for ack tokens ("" without client auth).
	Identity(ctx context.Context) string
	CanPublish(ctx context.Context, subject string) error
	// CanConsume checks a stream's consumer ("" for ephemeral) and, for
	// consumers the call creates, their filter subjects.
	CanConsume(ctx context.Context, stream, consumer string, filters []string) error
	// CanAdmin checks an admin operation on a stream ("" for account-wide).
	CanAdmin(ctx context.Context, stream string, write bool) error
	// CanSee filters listings.
	CanSee(ctx context.Context, stream string) bool
	// MaxFetchBatch is the caller's own Fetch batch cap; 0 for none.
	MaxFetchBatch(ctx context.Context) int
}

// allowAll is the authorizer without client authentication.
type allowAll struct{}

func (allowAll) Identity(context.Context) string                            { return "" }
func (allowAll) CanPublish(context.Context, string) error                   { return nil }
func (allowAll) CanConsume(context.Context, string, string, []string) error { return nil }
func (allowAll) CanAdmin(context.Context, string, bool) error               { return nil }
func (allowAll) CanSee(context.Context, string) bool                        { return true }
func (allowAll) MaxFetchBatch(context.Context) int                          { return 0 }
