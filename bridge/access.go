package bridge

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/auth"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// AccessMinter mints access tokens (auth.Config).
type AccessMinter interface {
	MintAccessToken(id *auth.Identity, s auth.Scope, ttl time.Duration, now time.Time) (auth.Minted, error)
}

// WithAccessTokens serves AccessService with m (without it, or with
// client authentication off, CreateAccessToken is FAILED_PRECONDITION).
func WithAccessTokens(m AccessMinter) Option {
	return func(o *options) error {
		if m == nil {
			return fmt.Errorf("%w: nil AccessMinter", ErrInvalidOption)
		}
		o.minter = m
		return nil
	}
}

// accessService is AccessService.
type accessService struct {
	jetwayv1.UnimplementedAccessServiceServer
	minter AccessMinter
	now    func() time.Time
}

var operationsIn = map[jetwayv1.Operation]auth.Operation{
	jetwayv1.Operation_OPERATION_PUBLISH: auth.OpPublish,
	jetwayv1.Operation_OPERATION_CONSUME: auth.OpConsume,
	jetwayv1.Operation_OPERATION_ACK:     auth.OpAck,
	jetwayv1.Operation_OPERATION_READ:    auth.OpRead,
}

func operationOut(op auth.Operation) jetwayv1.Operation {
	for k, v := range operationsIn {
		if v == op {
			return k
		}
	}
	return jetwayv1.Operation_OPERATION_UNSPECIFIED
}

func (s *accessService) CreateAccessToken(ctx context.Context, req *jetwayv1.CreateAccessTokenRequest) (*jetwayv1.CreateAccessTokenResponse, error) {
	id := auth.FromContext(ctx)
	if s.minter == nil || id == nil || id.Method == auth.Anonymous.Method {
		return nil, fmt.Errorf("%w: they need client authentication (--auth-config)", auth.ErrAccessTokens)
	}
	var sc auth.Scope
	for i, op := range req.GetOperations() {
		o, ok := operationsIn[op]
		if !ok {
			return nil, fieldErr(fmt.Sprintf("operations[%d]", i), ErrInvalidArgument, "OPERATION_PUBLISH, OPERATION_CONSUME, OPERATION_ACK or OPERATION_READ")
		}
		sc.Operations = append(sc.Operations, o)
	}
	sc.Streams, sc.Subjects = req.GetStreams(), req.GetSubjects()
	var ttl time.Duration
	if req.Ttl != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, fieldErr("ttl", ErrInvalidArgument, "not a valid duration")
		}
		ttl = req.GetTtl().AsDuration()
		if ttl <= 0 {
			return nil, fieldErr("ttl", ErrInvalidArgument, "must be positive")
		}
	}
	m, err := s.minter.MintAccessToken(id, sc, ttl, s.now())
	if err != nil {
		return nil, err // auth's sentinels: status.go maps them
	}
	resp := &jetwayv1.CreateAccessTokenResponse{
		Token: m.Token, Id: m.ID, Identity: m.Identity, ExpiresAt: timestamppb.New(m.Expires),
		Streams: m.Scope.Streams, Subjects: m.Scope.Subjects,
	}
	for _, op := range m.Scope.Operations {
		resp.Operations = append(resp.Operations, operationOut(op))
	}
	return resp, nil
}

func newAccessService(m AccessMinter) *accessService {
	return &accessService{minter: m, now: time.Now}
}
