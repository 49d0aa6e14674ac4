package gateway

import (
	"context"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Consumer control (issue 18), through the same interceptor chain as the
// other admin calls.

func (d directAdmin) PauseConsumer(ctx context.Context, r *jetwayv1.PauseConsumerRequest) (*jetwayv1.PauseConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_PauseConsumer_FullMethodName, r, d.s.PauseConsumer)
}

func (d directAdmin) ResumeConsumer(ctx context.Context, r *jetwayv1.ResumeConsumerRequest) (*jetwayv1.ResumeConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_ResumeConsumer_FullMethodName, r, d.s.ResumeConsumer)
}

func (d directAdmin) ResetConsumer(ctx context.Context, r *jetwayv1.ResetConsumerRequest) (*jetwayv1.ResetConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_ResetConsumer_FullMethodName, r, d.s.ResetConsumer)
}

func (d directAdmin) UnpinConsumer(ctx context.Context, r *jetwayv1.UnpinConsumerRequest) (*jetwayv1.UnpinConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_UnpinConsumer_FullMethodName, r, d.s.UnpinConsumer)
}
