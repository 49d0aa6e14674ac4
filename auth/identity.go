package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/jetway-dev/jetway/auth/perm"
)

// Errors of authorization. The bridge maps them at its error edge.
var (
	// ErrUnauthenticated is a call without a credential this bridge accepts.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden is an authenticated call its identity may not make.
	ErrForbidden = errors.New("permission denied")
	// ErrQuota is a call over its identity's rate or concurrency limit.
	ErrQuota = errors.New("quota exceeded")
)

// Identity is who a call comes from, as proven by its credential, and what
// it may do. Identities come only from verified credentials, never from
// anything else a client sends. One Identity serves every call its
// credential proves, concurrently: it is never changed once the
// configuration is read.
type Identity struct {
	// Name identifies the caller in logs, ack tokens and quotas.
	Name string
	// Method is how it authenticated: nkey, jwt, apikey, cert or none.
	Method string

	publish  *perm.Matcher // subjects it may publish to
	subjects *perm.Matcher // subjects it may consume (ephemeral filters)
	streams  *perm.Matcher // STREAM.CONSUMER names it may consume from
	admin    *perm.Matcher // streams it may administer (read)
	write    bool          // admin writes on those streams
	// adminAll is an admin of every stream: it may read account-wide
	// information.
	adminAll bool
	// adminSubjects bound its streams' subjects and its consumers'
	// filters; nil allows none.
	adminSubjects  *perm.Matcher
	createDurables bool // Subscribe may create durables it may consume
	limits         Limits
	nats           *NATSCredentials // its own NATS credentials, if any
	all            bool             // no restrictions (auth mode none)
	// scope narrows an access token's identity (nil for every other
	// credential): each check below also asks it.
	scope *scope
}

// Limits are an identity's quotas; zero means the server default.
type Limits struct {
	ConcurrentStreams int     `json:"concurrent_streams,omitempty"`
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
	Burst             int     `json:"burst,omitempty"`
	MaxFetchBatch     int     `json:"max_fetch_batch,omitempty"`
}

// Anonymous is the identity of every call when client authentication is
// off: it may do everything.
var Anonymous = &Identity{Name: "anonymous", Method: "none", all: true}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity of the call, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}

// streamKey is the name consume patterns match: "STREAM.CONSUMER" for a
// durable consumer, "STREAM" alone for an ephemeral one. Names cannot
// contain '.', so no durable can pass for an ephemeral grant ("ORDERS"
// matches no "ORDERS.x"), and "ORDERS.*" means any durable of ORDERS.
func streamKey(stream, consumer string) string {
	if consumer == "" {
		return stream
	}
	return stream + "." + consumer
}

// Authorizer answers the bridge's permission questions for the identity
// in a call's context. A context without an identity is refused: the
// authentication interceptor puts one in every call.
type Authorizer struct{}

func identity(ctx context.Context) (*Identity, error) {
	id := FromContext(ctx)
	if id == nil {
		return nil, fmt.Errorf("%w: no identity", ErrUnauthenticated)
	}
	return id, nil
}

// Identity names the caller (for ack tokens); "" when authentication is
// off.
func (Authorizer) Identity(ctx context.Context) string {
	if id := FromContext(ctx); id != nil && !id.all {
		return id.Name
	}
	return ""
}

// CanPublish checks a publish to subject.
func (Authorizer) CanPublish(ctx context.Context, subject string) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if !id.all && !id.publish.Allows(subject) {
		return fmt.Errorf("%w: %s may not publish to %q", ErrForbidden, id.Name, subject)
	}
	if !id.scope.allowsOp(OpPublish) || !id.scope.allowsSubjects(subject) {
		return id.scope.refuse(id, fmt.Sprintf("publishing to %q", subject))
	}
	return nil
}

// systemStreams are the bridge's own streams: the push subscriptions
// bucket (whose records hold signing secrets and name what is delivered
// where) and the dead-letter advisories. No authenticated identity reaches
// them through the API, whatever its grants ("*" included): reading one
// would reveal secrets, writing one would redirect deliveries, and
// creating one first would squat it.
var systemStreams = map[string]bool{"KV_JETWAY_PUSH": true, "JETWAY_DEAD_LETTER_ADVISORIES": true}

// refuseSystem refuses an identity's access to a system stream.
func refuseSystem(id *Identity, stream string) error {
	if id.all || !systemStreams[stream] {
		return nil
	}
	return fmt.Errorf("%w: stream %q is the bridge's own (push subscriptions, dead-letter advisories): no grant reaches it through the API", ErrForbidden, stream)
}

// CanConsume checks consuming from a stream's consumer ("" for an
// ephemeral one).
func (Authorizer) CanConsume(ctx context.Context, stream, consumer string) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if err := refuseSystem(id, stream); err != nil {
		return err
	}
	if id.all || id.streams.Allows(streamKey(stream, consumer)) {
		if !id.scope.allowsOp(OpConsume) || !id.scope.allowsStream(stream) {
			return id.scope.refuse(id, fmt.Sprintf("consuming from stream %q", stream))
		}
		if consumer != "" && !id.scope.allowsDurable() {
			return id.scope.refuse(id, fmt.Sprintf("consuming durable %q: a token narrowed by subjects consumes with filtered ephemeral subscriptions only", consumer))
		}
		return nil
	}
	if consumer == "" {
		return fmt.Errorf("%w: %s may not consume stream %q with an ephemeral consumer", ErrForbidden, id.Name, stream)
	}
	return fmt.Errorf("%w: %s may not consume %q on stream %q", ErrForbidden, id.Name, consumer, stream)
}

// CanReadSubjects checks the filter subjects of a consumer the call
// creates (no filter: every subject).
func (Authorizer) CanReadSubjects(ctx context.Context, filters []string) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if id.all {
		return nil
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for _, f := range filters {
		if !id.subjects.AllowsAll(f) {
			return fmt.Errorf("%w: %s may not consume subjects %q", ErrForbidden, id.Name, f)
		}
		if !id.scope.allowsOp(OpConsume) || !id.scope.allowsSubjects(f) {
			return id.scope.refuse(id, fmt.Sprintf("consuming subjects %q (a Subscribe needs a filter within the token's subjects)", f))
		}
	}
	return nil
}

// CanAdmin checks an admin operation on a stream ("" for account-wide
// operations), read or write.
func (Authorizer) CanAdmin(ctx context.Context, stream string, write bool) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if err := refuseSystem(id, stream); err != nil {
		return err
	}
	if id.all {
		return nil
	}
	ok := id.admin != nil && (!write || id.write)
	if ok && stream != "" {
		ok = id.admin.Allows(stream)
	}
	if !ok {
		verb := "read"
		if write {
			verb = "change"
		}
		if stream == "" {
			return fmt.Errorf("%w: %s may not list streams or read account information", ErrForbidden, id.Name)
		}
		return fmt.Errorf("%w: %s may not %s stream %q", ErrForbidden, id.Name, verb, stream)
	}
	if id.scope != nil && (write || !id.scope.allowsOp(OpRead) || (stream != "" && !id.scope.allowsStream(stream))) {
		if stream == "" {
			return id.scope.refuse(id, "account-wide reads")
		}
		return id.scope.refuse(id, fmt.Sprintf("administering stream %q", stream))
	}
	return nil
}

// CanAdminSubjects checks subjects an admin write gives a stream (its
// subjects, or the stream's name when it has none) or a consumer (its
// filters): each must lie within the identity's admin subjects, so that a
// tenant managing its own stream cannot capture another tenant's traffic.
// field names the request field in the error.
func (Authorizer) CanAdminSubjects(ctx context.Context, field string, subjects []string) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if id.all {
		return nil
	}
	if id.scope != nil {
		return id.scope.refuse(id, "admin writes")
	}
	for _, s := range subjects {
		if !id.adminSubjects.AllowsAll(s) {
			if id.adminSubjects == nil {
				return fmt.Errorf("%w: %s: %s has no admin.subjects grant and may not set subject %q", ErrForbidden, field, id.Name, s)
			}
			return fmt.Errorf("%w: %s: %q is outside the subjects %s may administer", ErrForbidden, field, s, id.Name)
		}
	}
	return nil
}

// CanCreateDurable checks that a Subscribe may create the durable consumer
// it names (it already passed CanConsume).
func (Authorizer) CanCreateDurable(ctx context.Context, stream, consumer string) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if id.scope != nil {
		return id.scope.refuse(id, "creating durable consumers")
	}
	if id.all || id.createDurables || (id.admin.Allows(stream) && id.write) {
		return nil
	}
	return fmt.Errorf("%w: %s may not create durable consumer %q on stream %q (consume.create_durables, or an admin write grant)", ErrForbidden, id.Name, consumer, stream)
}

// CanReadAccount checks account-wide reads (totals over every stream and
// tenant): only an admin of every stream may.
func (Authorizer) CanReadAccount(ctx context.Context) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if id.scope != nil {
		return id.scope.refuse(id, "account-wide reads")
	}
	if id.all || id.adminAll {
		return nil
	}
	return fmt.Errorf("%w: %s may not read account information (it needs admin over every stream)", ErrForbidden, id.Name)
}

// CanAck checks an ack of a delivery from stream, whose ack token (bound
// to the caller's identity) the caller holds: only an access token may
// refuse it (without the ack operation, or for another stream).
func (Authorizer) CanAck(ctx context.Context, stream string) error {
	id, err := identity(ctx)
	if err != nil {
		return err
	}
	if !id.scope.allowsOp(OpAck) || !id.scope.allowsStream(stream) {
		return id.scope.refuse(id, fmt.Sprintf("acking deliveries of stream %q", stream))
	}
	return nil
}

// CanSee reports whether a listing may show the stream to the caller.
func (a Authorizer) CanSee(ctx context.Context, stream string) bool {
	return a.CanAdmin(ctx, stream, false) == nil
}

// MaxFetchBatch is the caller's own cap on Fetch batches; 0 for none.
func (Authorizer) MaxFetchBatch(ctx context.Context) int {
	if id := FromContext(ctx); id != nil {
		return id.limits.MaxFetchBatch
	}
	return 0
}
