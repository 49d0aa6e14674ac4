package bridge

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sentinelNames parses errors.go and returns the name of every exported
// package-level error variable: the list the edge must map.
func sentinelNames(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatalf("parse errors.go: %v", err)
	}
	var names []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			for _, n := range spec.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "Err") {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}

// sentinelsByName must name every sentinel of errors.go; the test below
// fails when one is added there and not here (or not in errorCodes).
var sentinelsByName = map[string]error{
	"ErrInvalidArgument": ErrInvalidArgument, "ErrInvalidSubject": ErrInvalidSubject, "ErrInvalidName": ErrInvalidName,
	"ErrInvalidHeader": ErrInvalidHeader, "ErrInvalidConfig": ErrInvalidConfig, "ErrPayloadTooLarge": ErrPayloadTooLarge,
	"ErrStreamNotFound": ErrStreamNotFound, "ErrConsumerNotFound": ErrConsumerNotFound, "ErrMessageNotFound": ErrMessageNotFound,
	"ErrNoStreamForSubject": ErrNoStreamForSubject, "ErrStreamExists": ErrStreamExists, "ErrConsumerExists": ErrConsumerExists,
	"ErrWrongExpectedStream": ErrWrongExpectedStream, "ErrWrongLastSequence": ErrWrongLastSequence, "ErrWrongLastMsgID": ErrWrongLastMsgID,
	"ErrDuplicateInProgress": ErrDuplicateInProgress, "ErrSubjectsOverlap": ErrSubjectsOverlap, "ErrNotAllowed": ErrNotAllowed, "ErrPullRefused": ErrPullRefused, "ErrPinIDMismatch": ErrPinIDMismatch, "ErrTooManyResults": ErrTooManyResults,
	"ErrStreamFull": ErrStreamFull, "ErrLimitExceeded": ErrLimitExceeded, "ErrPermissionDenied": ErrPermissionDenied,
	"ErrUnavailable": ErrUnavailable, "ErrTimeout": ErrTimeout, "ErrUnimplemented": ErrUnimplemented, "ErrAuthRequired": ErrAuthRequired,
	"ErrAckTokenInvalid": ErrAckTokenInvalid, "ErrAckTokenExpired": ErrAckTokenExpired, "ErrTokenNotPermitted": ErrTokenNotPermitted,
	"ErrInvalidBucket": ErrInvalidBucket, "ErrInvalidKey": ErrInvalidKey, "ErrBucketNotFound": ErrBucketNotFound,
	"ErrKeyNotFound": ErrKeyNotFound, "ErrBucketExists": ErrBucketExists, "ErrKeyExists": ErrKeyExists, "ErrWrongRevision": ErrWrongRevision,
	"ErrDeadLetterUnavailable": ErrDeadLetterUnavailable, "ErrInvalidDeadLetter": ErrInvalidDeadLetter,
	"ErrPushSubscriptionNotFound": ErrPushSubscriptionNotFound, "ErrPushSubscriptionExists": ErrPushSubscriptionExists,
	"ErrInvalidEndpoint": ErrInvalidEndpoint,
}

// wantHTTP is the HTTP status each sentinel must reach REST clients with
// (STYLE.md, "Errors at the edge").
var wantHTTP = map[string]int{
	"ErrInvalidArgument": 400, "ErrInvalidSubject": 400, "ErrInvalidName": 400, "ErrInvalidHeader": 400,
	"ErrInvalidConfig": 400, "ErrPayloadTooLarge": 400, "ErrStreamNotFound": 404, "ErrConsumerNotFound": 404,
	"ErrMessageNotFound": 404, "ErrNoStreamForSubject": 404, "ErrStreamExists": 409, "ErrConsumerExists": 409,
	"ErrWrongExpectedStream": 409, "ErrWrongLastSequence": 409, "ErrWrongLastMsgID": 409, "ErrDuplicateInProgress": 409,
	"ErrSubjectsOverlap": 400, "ErrNotAllowed": 400, "ErrPullRefused": 400, "ErrPinIDMismatch": 400, "ErrTooManyResults": 400, "ErrStreamFull": 429, "ErrLimitExceeded": 429,
	"ErrPermissionDenied": 403, "ErrUnavailable": 503, "ErrTimeout": 504, "ErrUnimplemented": 501, "ErrAuthRequired": 403,
	"ErrAckTokenInvalid": 400, "ErrAckTokenExpired": 400, "ErrTokenNotPermitted": 403,
	"ErrInvalidBucket": 400, "ErrInvalidKey": 400, "ErrBucketNotFound": 404, "ErrKeyNotFound": 404,
	"ErrBucketExists": 409, "ErrKeyExists": 409, "ErrWrongRevision": 409,
	"ErrDeadLetterUnavailable": 503, "ErrInvalidDeadLetter": 400,
	"ErrPushSubscriptionNotFound": 404, "ErrPushSubscriptionExists": 409, "ErrInvalidEndpoint": 400,
}

func TestStatusCoversEverySentinel(t *testing.T) {
	names := sentinelNames(t)
	if len(names) != len(sentinelsByName) {
		t.Errorf("errors.go declares %d sentinels, the test knows %d: update sentinelsByName and wantHTTP", len(names), len(sentinelsByName))
	}
	reasons := map[string]string{}
	for _, name := range names {
		sentinel, ok := sentinelsByName[name]
		if !ok {
			t.Errorf("%s: not in sentinelsByName", name)
			continue
		}
		cr, ok := errorCodes[sentinel]
		if !ok {
			t.Errorf("%s: not mapped in errorCodes", name)
			continue
		}
		if prev, dup := reasons[cr.reason]; dup {
			t.Errorf("%s and %s share the reason %s", name, prev, cr.reason)
		}
		reasons[cr.reason] = name

		wrapped := fmt.Errorf("context: %w", &FieldError{Field: "f", Err: fmt.Errorf("%w: detail", sentinel)})
		st, internal := Status(wrapped)
		if internal {
			t.Errorf("%s: reported as internal", name)
		}
		if st.Code() != cr.code || cr.code == codes.OK || cr.code == codes.Internal || cr.code == codes.Unknown {
			t.Errorf("%s: code %v (table %v)", name, st.Code(), cr.code)
		}
		if got := runtime.HTTPStatusFromCode(st.Code()); got != wantHTTP[name] {
			t.Errorf("%s: HTTP %d, want %d", name, got, wantHTTP[name])
		}
		var info *errdetails.ErrorInfo
		var bad *errdetails.BadRequest
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				info = d
			case *errdetails.BadRequest:
				bad = d
			}
		}
		if info == nil || info.GetReason() != cr.reason || info.GetDomain() != ErrorDomain {
			t.Errorf("%s: ErrorInfo %v, want reason %s", name, info, cr.reason)
		}
		if bad == nil || len(bad.GetFieldViolations()) != 1 || bad.GetFieldViolations()[0].GetField() != "f" {
			t.Errorf("%s: BadRequest %v, want one violation of field f", name, bad)
		}
		if !strings.Contains(st.Message(), "detail") {
			t.Errorf("%s: message %q lost the detail", name, st.Message())
		}
	}
}

func TestStatusUnknownErrorIsInternalAndGeneric(t *testing.T) {
	st, internal := Status(errors.New("dial tcp 10.1.2.3:4222: secret internals"))
	if !internal || st.Code() != codes.Internal {
		t.Fatalf("got %v internal=%v, want Internal", st.Code(), internal)
	}
	if strings.Contains(st.Message(), "secret") || strings.Contains(st.Message(), "10.1.2.3") {
		t.Errorf("internal detail leaked: %q", st.Message())
	}
}

func TestStatusPassesStatusErrorsAndContextErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, _ := Status(tt.err); st.Code() != tt.want {
				t.Errorf("code %v, want %v", st.Code(), tt.want)
			}
		})
	}
}

func TestTranslateNATSErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"stream not found", jetstream.ErrStreamNotFound, ErrStreamNotFound},
		{"consumer not found", jetstream.ErrConsumerNotFound, ErrConsumerNotFound},
		{"msg not found", jetstream.ErrMsgNotFound, ErrMessageNotFound},
		{"no stream response", jetstream.ErrNoStreamResponse, ErrNoStreamForSubject},
		{"no responders", nats.ErrNoResponders, ErrUnavailable},
		{"connection closed", nats.ErrConnectionClosed, ErrUnavailable},
		{"timeout", nats.ErrTimeout, ErrNoAnswer},
		{"async timeout", jetstream.ErrAsyncPublishTimeout, ErrNoAnswer},
		{"permission", nats.ErrPermissionViolation, ErrPermissionDenied},
		{"max payload", nats.ErrMaxPayload, ErrPayloadTooLarge},
		{"wrong last seq", &jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence: 3"}, ErrWrongLastSequence},
		{"store full", &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, ErrStreamFull},
		{"delete denied", &jetstream.APIError{Code: 500, ErrorCode: 10057, Description: "message delete not permitted"}, ErrNotAllowed},
		{"other 400", &jetstream.APIError{Code: 400, ErrorCode: 19999, Description: "something odd"}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := translate(fmt.Errorf("call: %w", tt.err), "op")
			if !errors.Is(got, tt.want) {
				t.Errorf("translate(%v) = %v, want it to wrap %v", tt.err, got, tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("translate dropped the cause %v", tt.err)
			}
		})
	}
	if err := translate(errors.New("weird"), "op"); lookupOK(err) {
		t.Errorf("an unknown error was classified: %v", err)
	}
}

func lookupOK(err error) bool { _, ok := lookup(err); return ok }

func TestHTTPStatusOfCanceledIs499(t *testing.T) {
	// The gateway's own mapping; documented in STYLE.md.
	if got := runtime.HTTPStatusFromCode(codes.Canceled); got != 499 {
		t.Errorf("Canceled → %d", got)
	}
}
