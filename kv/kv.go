// Package kv implements the jetway.v1 KVService: JetStream's key-value
// store through nats.go's jetstream.KeyValue, which it uses rather than
// re-implementing (bucket B is the stream KV_B on the subjects $KV.B.>).
//
// Every request's bucket and keys are validated with nats.go's rules
// before anything is authorized, so that no wildcard in a key can widen a
// permission check; then the bridge's Authorizer is asked as for the
// stream and subjects the call touches (see authorize.go). Errors wrap the
// bridge's sentinels (bridge.ErrBucketNotFound, bridge.ErrKeyExists…),
// which the server's error edge maps to gRPC statuses.
package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc"

	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// ErrInvalidOption is returned by New for an option with a bad value.
var ErrInvalidOption = errors.New("kv: invalid option")

// Service is the KVService.
type Service struct {
	jetwayv1.UnimplementedKVServiceServer

	conns bridge.ConnProvider
	authz bridge.Authorizer
	log   *slog.Logger

	drainOnce sync.Once
	drained   chan struct{} // closed by Drain
}

var _ jetwayv1.KVServiceServer = (*Service)(nil)

type options struct {
	authz bridge.Authorizer
	log   *slog.Logger
}

// Option configures New.
type Option func(*options) error

// WithAuthorizer makes every RPC ask a whether the caller may do it (the
// server passes the bridge's, audited). Without it every call is allowed,
// as in the bridge without client authentication.
func WithAuthorizer(a bridge.Authorizer) Option {
	return func(o *options) error {
		if a == nil {
			return fmt.Errorf("%w: nil Authorizer", ErrInvalidOption)
		}
		o.authz = a
		return nil
	}
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.log = l
		return nil
	}
}

// New returns the service over conns (each call's JetStream connection:
// the bridge's own or, with identity propagation, the caller's).
func New(conns bridge.ConnProvider, opts ...Option) (*Service, error) {
	if conns == nil {
		return nil, fmt.Errorf("%w: nil connection provider", ErrInvalidOption)
	}
	o := options{authz: bridge.AllowAll, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Service{conns: conns, authz: o.authz, log: o.log, drained: make(chan struct{})}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { jetwayv1.RegisterKVServiceServer(r, s) }

// Drain ends every watch and key listing with UNAVAILABLE ("the bridge is
// shutting down"), so that clients reconnect to another replica; new ones
// are refused. Safe to call more than once.
func (s *Service) Drain() { s.drainOnce.Do(func() { close(s.drained) }) }

// errDraining is the error of a stream ended by Drain.
var errDraining = fmt.Errorf("%w: the bridge is shutting down; reconnect to resume", bridge.ErrUnavailable)
