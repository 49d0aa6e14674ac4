package server_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestScheduleTargetAuthorized: a schedule publishes to its target later,
// so the caller must be allowed to publish there too: an identity cannot
// reach a denied subject through a schedule on a permitted one.
func TestScheduleTargetAuthorized(t *testing.T) {
	e := authTStart(t)
	sched := func(target string) *jetwayv1.PublishRequest {
		return &jetwayv1.PublishRequest{Subject: "orders.eu.sched", Payload: &jetwayv1.PublishRequest_Text{Text: "x"},
			Schedule: &jetwayv1.MessageSchedule{When: &jetwayv1.MessageSchedule_At{At: timestamppb.New(time.Now().Add(time.Hour))}, Target: target}}
	}
	_, err := e.b.Messages.Publish(authTWith(e.ctx, "ApiKey "+e.ordersKey), sched("orders.secret.x"))
	authTWantCode(t, "schedule targeting a denied subject", err, codes.PermissionDenied, "NOT_PERMITTED")
	_, err = e.b.Messages.Publish(authTWith(e.ctx, "ApiKey "+e.ordersKey), sched("audit.x"))
	authTWantCode(t, "schedule targeting another tenant's subject", err, codes.PermissionDenied, "NOT_PERMITTED")
	// Permitted target: past authorization, JetStream refuses it (ORDERS
	// does not allow schedules).
	_, err = e.b.Messages.Publish(authTWith(e.ctx, "ApiKey "+e.ordersKey), sched("orders.eu.due"))
	authTWantCode(t, "schedule on a stream without allow_msg_schedules", err, codes.FailedPrecondition, "NOT_ALLOWED")
}
