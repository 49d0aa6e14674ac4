package bridge

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every Jetway error.
const ErrorDomain = "jetway.dev"

// ReasonInternal is the ErrorInfo reason of an error the bridge did not
// expect; its detail is logged, never sent.
const ReasonInternal = "INTERNAL"

type codeReason struct {
	code   codes.Code
	reason string
}

// errorCodes is the one table from domain errors to gRPC codes and reasons.
// grpc-gateway turns the code into the HTTP status (runtime.HTTPStatusFromCode).
var errorCodes = map[error]codeReason{
	ErrInvalidArgument: {codes.InvalidArgument, "INVALID_ARGUMENT"},
	ErrInvalidSubject:  {codes.InvalidArgument, "INVALID_SUBJECT"},
	ErrInvalidName:     {codes.InvalidArgument, "INVALID_NAME"},
	ErrInvalidHeader:   {codes.InvalidArgument, "INVALID_HEADER"},
	ErrInvalidConfig:   {codes.InvalidArgument, "INVALID_CONFIG"},
	// A message too large is a property of the request, not of a quota that
	// may free up later: InvalidArgument, not ResourceExhausted. (The HTTP
	// body cap answers 413 before the request reaches gRPC.)
	ErrPayloadTooLarge: {codes.InvalidArgument, "PAYLOAD_TOO_LARGE"},

	ErrStreamNotFound:   {codes.NotFound, "STREAM_NOT_FOUND"},
	ErrConsumerNotFound: {codes.NotFound, "CONSUMER_NOT_FOUND"},
	ErrMessageNotFound:  {codes.NotFound, "MESSAGE_NOT_FOUND"},
	// Publishing where no stream listens is NotFound: the stream the caller
	// meant does not exist (JetStream itself answers "no responders").
	ErrNoStreamForSubject: {codes.NotFound, "NO_STREAM_FOR_SUBJECT"},

	ErrStreamExists:   {codes.AlreadyExists, "STREAM_EXISTS"},
	ErrConsumerExists: {codes.AlreadyExists, "CONSUMER_EXISTS"},

	// Failed optimistic-concurrency expectations are Aborted (HTTP 409): the
	// client should re-read and retry, as AIP-193 advises for CAS conflicts.
	ErrWrongExpectedStream: {codes.Aborted, "WRONG_EXPECTED_STREAM"},
	ErrWrongLastSequence:   {codes.Aborted, "WRONG_LAST_SEQUENCE"},
	ErrWrongLastMsgID:      {codes.Aborted, "WRONG_LAST_MSG_ID"},
	ErrDuplicateInProgress: {codes.Aborted, "DUPLICATE_IN_PROGRESS"},

	ErrSubjectsOverlap: {codes.FailedPrecondition, "SUBJECTS_OVERLAP"},
	ErrNotAllowed:      {codes.FailedPrecondition, "NOT_ALLOWED"},
	// A consumer that refuses the bridge's pulls (priority groups, pinned
	// clients) is a property of the consumer, not of the call.
	ErrPullRefused: {codes.FailedPrecondition, "PULL_REFUSED"},
	// A pin that moved on is a state of the consumer: the client drops its
	// pin id and pulls again.
	ErrPinIDMismatch: {codes.FailedPrecondition, "PIN_ID_MISMATCH"},
	// A read too broad to answer at once is the request's to narrow.
	ErrTooManyResults: {codes.InvalidArgument, "TOO_MANY_RESULTS"},

	ErrStreamFull:    {codes.ResourceExhausted, "STREAM_FULL"},
	ErrLimitExceeded: {codes.ResourceExhausted, "LIMIT_EXCEEDED"},

	ErrPermissionDenied: {codes.PermissionDenied, "PERMISSION_DENIED"},
	ErrUnavailable:      {codes.Unavailable, "UNAVAILABLE"},
	ErrTimeout:          {codes.DeadlineExceeded, "TIMEOUT"},
	ErrUnimplemented:    {codes.Unimplemented, "UNIMPLEMENTED"},
	// A route the bridge serves only with client authentication: the
	// configuration refuses it, whoever asks (PERMISSION_DENIED, 403).
	ErrAuthRequired:    {codes.PermissionDenied, "AUTH_REQUIRED"},
	ErrAckTokenInvalid: {codes.InvalidArgument, "ACK_TOKEN_INVALID"},
	// An expired token is a state of the message, not a bad request: the
	// client must re-fetch, as for other failed preconditions.
	ErrAckTokenExpired:   {codes.FailedPrecondition, "ACK_TOKEN_EXPIRED"},
	ErrTokenNotPermitted: {codes.PermissionDenied, "ACK_TOKEN_NOT_PERMITTED"},

	// Client authentication and authorization (package auth). Quota
	// errors carry a RetryInfo detail and the gateway sends Retry-After.
	auth.ErrUnauthenticated: {codes.Unauthenticated, "UNAUTHENTICATED"},
	auth.ErrForbidden:       {codes.PermissionDenied, "NOT_PERMITTED"},
	auth.ErrQuota:           {codes.ResourceExhausted, "QUOTA_EXCEEDED"},
	auth.ErrNATSUnavailable: {codes.Unavailable, "UNAVAILABLE"},
	// Access tokens: a malformed request, or none to be had here (client
	// authentication off, a caller that cannot mint).
	auth.ErrInvalidScope: {codes.InvalidArgument, "INVALID_ACCESS_TOKEN_REQUEST"},
	auth.ErrAccessTokens: {codes.FailedPrecondition, "ACCESS_TOKENS_UNAVAILABLE"},

	// Key-value (issue 18). A wrong revision is a failed CAS, as a
	// publish's wrong last sequence is: Aborted (409).
	ErrInvalidBucket:  {codes.InvalidArgument, "INVALID_BUCKET"},
	ErrInvalidKey:     {codes.InvalidArgument, "INVALID_KEY"},
	ErrBucketNotFound: {codes.NotFound, "BUCKET_NOT_FOUND"},
	ErrKeyNotFound:    {codes.NotFound, "KEY_NOT_FOUND"},
	ErrBucketExists:   {codes.AlreadyExists, "BUCKET_EXISTS"},
	ErrKeyExists:      {codes.AlreadyExists, "KEY_EXISTS"},
	ErrWrongRevision:  {codes.Aborted, "WRONG_REVISION"},

	// Dead letters (issue 19): a dead letter not written is transient
	// (the TERM was not sent; retry it once the DLQ stream is there).
	ErrDeadLetterUnavailable: {codes.Unavailable, "DEAD_LETTER_UNAVAILABLE"},
	ErrInvalidDeadLetter:     {codes.FailedPrecondition, "INVALID_DEAD_LETTER"},
	// Push delivery (issue 19).
	ErrPushSubscriptionNotFound: {codes.NotFound, "PUSH_SUBSCRIPTION_NOT_FOUND"},
	ErrPushSubscriptionExists:   {codes.AlreadyExists, "PUSH_SUBSCRIPTION_EXISTS"},
	ErrInvalidEndpoint:          {codes.InvalidArgument, "INVALID_ENDPOINT"},
}

// Status converts an error returned by a service into the gRPC status sent
// to the client. Domain errors keep their message (it names the request's
// own fields and objects, never bridge internals) and gain an ErrorInfo and,
// for field errors, a BadRequest detail. A status error passes through.
// Anything else becomes Internal with a generic message; the second result
// reports that, so the caller logs the detail.
func Status(err error) (st *status.Status, internal bool) {
	if err == nil {
		return status.New(codes.OK, ""), false
	}
	if s, ok := status.FromError(err); ok {
		return s, false
	}
	cr, ok := lookup(err)
	if !ok {
		switch {
		case errors.Is(err, context.Canceled):
			cr = codeReason{codes.Canceled, "CANCELED"}
		case errors.Is(err, context.DeadlineExceeded):
			cr = codeReason{codes.DeadlineExceeded, "TIMEOUT"}
		default:
			return withInfo(status.New(codes.Internal, "internal error"), ReasonInternal, nil), true
		}
	}
	st = status.New(cr.code, err.Error())
	var fe *FieldError
	if errors.As(err, &fe) {
		return withInfo(st, cr.reason, fe), false
	}
	st = withInfo(st, cr.reason, nil)
	if cr.code == codes.Unavailable {
		// NATS restarting, a stream between leaders: soon over.
		if withRetry, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(UnavailableRetry)}); err == nil {
			st = withRetry
		}
	}
	var qe *auth.QuotaError
	if errors.As(err, &qe) {
		if withRetry, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(qe.RetryAfter)}); err == nil {
			st = withRetry
		}
	}
	return st, false
}

// UnavailableRetry is the retry delay an UNAVAILABLE error suggests (its
// RetryInfo, and Retry-After over REST): about the time a JetStream
// leader election or a NATS reconnect takes.
const UnavailableRetry = time.Second

// lookup finds the sentinel err wraps. Each error wraps at most one
// sentinel, so the map's iteration order does not matter.
func lookup(err error) (codeReason, bool) {
	for sentinel, cr := range errorCodes {
		if errors.Is(err, sentinel) {
			return cr, true
		}
	}
	return codeReason{}, false
}

func withInfo(st *status.Status, reason string, fe *FieldError) *status.Status {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}}
	if fe != nil {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: fe.Field, Description: fe.Err.Error(), Reason: reason,
		}}})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withDetails
}

// ErrorProto converts an error into the in-band Error of streaming and batch
// responses, with the code and reason a unary call would have returned.
func ErrorProto(err error) (*jetwayv1.Error, bool) {
	st, internal := Status(err)
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	return &jetwayv1.Error{Code: int32(st.Code()), Reason: reason, Message: st.Message()}, internal
}
