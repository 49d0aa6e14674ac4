package gateway

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/jetway-dev/jetway/auth"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Direct serves the unary REST calls by calling the services in process,
// through the gRPC server's own unary interceptors, instead of through the
// in-memory gRPC connection: no HTTP/2 framing and no second protobuf
// encoding per call. Streaming calls (Subscribe) still take the
// connection, since grpc-gateway calls streams in process only over gRPC.
type Direct struct {
	Messages jetwayv1.MessageServiceServer
	Admin    jetwayv1.AdminServiceServer
	Access   jetwayv1.AccessServiceServer
	// Interceptor is the gRPC server's unary chain (see ChainUnary).
	Interceptor grpc.UnaryServerInterceptor
}

// ChainUnary composes unary interceptors into one, the first outermost,
// as grpc.ChainUnaryInterceptor does for the server.
func ChainUnary(ics ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		h := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, next := ics[i], h
			h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
		}
		return h(ctx, req)
	}
}

// gatewayAddr is the peer address of a direct call: the in-memory network,
// so that the auth interceptor trusts the client certificate the gateway
// verified (as it does on the in-memory connection), and nothing else.
type gatewayAddr struct{}

func (gatewayAddr) Network() string { return auth.InMemoryNetwork }
func (gatewayAddr) String() string  { return "gateway" }

var gatewayPeer = &peer.Peer{Addr: gatewayAddr{}, LocalAddr: gatewayAddr{}}

// call runs one unary method through the interceptors.
func call[Req, Resp any](ctx context.Context, ic grpc.UnaryServerInterceptor, srv any, method string, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	ctx = peer.NewContext(ctx, gatewayPeer)
	resp, err := ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, func(ctx context.Context, r any) (any, error) {
		return h(ctx, r.(Req))
	})
	if err != nil {
		var zero Resp
		return zero, err
	}
	return resp.(Resp), nil
}

// directMessages is MessageService's unary calls through the interceptors
// (its streaming calls are routed to the connection).
type directMessages struct {
	s  jetwayv1.MessageServiceServer
	ic grpc.UnaryServerInterceptor
	// A method not wrapped here answers Unimplemented: nothing reaches a
	// service without the interceptors.
	jetwayv1.UnimplementedMessageServiceServer
}

func (d directMessages) Publish(ctx context.Context, r *jetwayv1.PublishRequest) (*jetwayv1.PublishResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.MessageService_Publish_FullMethodName, r, d.s.Publish)
}

func (d directMessages) PublishBatch(ctx context.Context, r *jetwayv1.PublishBatchRequest) (*jetwayv1.PublishBatchResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.MessageService_PublishBatch_FullMethodName, r, d.s.PublishBatch)
}

func (d directMessages) Ingest(ctx context.Context, r *jetwayv1.IngestRequest) (*jetwayv1.IngestResponse, error) {
	fillIngest(ctx, r)
	return call(ctx, d.ic, d.s, jetwayv1.MessageService_Ingest_FullMethodName, r, d.s.Ingest)
}

func (d directMessages) Fetch(ctx context.Context, r *jetwayv1.FetchRequest) (*jetwayv1.FetchResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.MessageService_Fetch_FullMethodName, r, d.s.Fetch)
}

func (d directMessages) Ack(ctx context.Context, r *jetwayv1.AckRequest) (*jetwayv1.AckResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.MessageService_Ack_FullMethodName, r, d.s.Ack)
}

// directAdmin is AdminService through the interceptors.
type directAdmin struct {
	s  jetwayv1.AdminServiceServer
	ic grpc.UnaryServerInterceptor
	jetwayv1.UnimplementedAdminServiceServer
}

func (d directAdmin) CreateStream(ctx context.Context, r *jetwayv1.CreateStreamRequest) (*jetwayv1.CreateStreamResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_CreateStream_FullMethodName, r, d.s.CreateStream)
}

func (d directAdmin) UpdateStream(ctx context.Context, r *jetwayv1.UpdateStreamRequest) (*jetwayv1.UpdateStreamResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_UpdateStream_FullMethodName, r, d.s.UpdateStream)
}

func (d directAdmin) GetStream(ctx context.Context, r *jetwayv1.GetStreamRequest) (*jetwayv1.GetStreamResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetStream_FullMethodName, r, d.s.GetStream)
}

func (d directAdmin) ListStreams(ctx context.Context, r *jetwayv1.ListStreamsRequest) (*jetwayv1.ListStreamsResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_ListStreams_FullMethodName, r, d.s.ListStreams)
}

func (d directAdmin) DeleteStream(ctx context.Context, r *jetwayv1.DeleteStreamRequest) (*jetwayv1.DeleteStreamResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_DeleteStream_FullMethodName, r, d.s.DeleteStream)
}

func (d directAdmin) PurgeStream(ctx context.Context, r *jetwayv1.PurgeStreamRequest) (*jetwayv1.PurgeStreamResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_PurgeStream_FullMethodName, r, d.s.PurgeStream)
}

func (d directAdmin) CreateConsumer(ctx context.Context, r *jetwayv1.CreateConsumerRequest) (*jetwayv1.CreateConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_CreateConsumer_FullMethodName, r, d.s.CreateConsumer)
}

func (d directAdmin) UpdateConsumer(ctx context.Context, r *jetwayv1.UpdateConsumerRequest) (*jetwayv1.UpdateConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_UpdateConsumer_FullMethodName, r, d.s.UpdateConsumer)
}

func (d directAdmin) GetConsumer(ctx context.Context, r *jetwayv1.GetConsumerRequest) (*jetwayv1.GetConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetConsumer_FullMethodName, r, d.s.GetConsumer)
}

func (d directAdmin) ListConsumers(ctx context.Context, r *jetwayv1.ListConsumersRequest) (*jetwayv1.ListConsumersResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_ListConsumers_FullMethodName, r, d.s.ListConsumers)
}

func (d directAdmin) DeleteConsumer(ctx context.Context, r *jetwayv1.DeleteConsumerRequest) (*jetwayv1.DeleteConsumerResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_DeleteConsumer_FullMethodName, r, d.s.DeleteConsumer)
}

func (d directAdmin) GetMessage(ctx context.Context, r *jetwayv1.GetMessageRequest) (*jetwayv1.GetMessageResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetMessage_FullMethodName, r, d.s.GetMessage)
}

func (d directAdmin) GetCounter(ctx context.Context, r *jetwayv1.GetCounterRequest) (*jetwayv1.GetCounterResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetCounter_FullMethodName, r, d.s.GetCounter)
}

func (d directAdmin) GetLastMessage(ctx context.Context, r *jetwayv1.GetLastMessageRequest) (*jetwayv1.GetLastMessageResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetLastMessage_FullMethodName, r, d.s.GetLastMessage)
}

func (d directAdmin) DeleteMessage(ctx context.Context, r *jetwayv1.DeleteMessageRequest) (*jetwayv1.DeleteMessageResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_DeleteMessage_FullMethodName, r, d.s.DeleteMessage)
}

func (d directAdmin) ListSessions(ctx context.Context, r *jetwayv1.ListSessionsRequest) (*jetwayv1.ListSessionsResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_ListSessions_FullMethodName, r, d.s.ListSessions)
}

func (d directAdmin) GetBridgeInfo(ctx context.Context, r *jetwayv1.GetBridgeInfoRequest) (*jetwayv1.GetBridgeInfoResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetBridgeInfo_FullMethodName, r, d.s.GetBridgeInfo)
}

func (d directAdmin) GetAccountInfo(ctx context.Context, r *jetwayv1.GetAccountInfoRequest) (*jetwayv1.GetAccountInfoResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetAccountInfo_FullMethodName, r, d.s.GetAccountInfo)
}

// directAccess is AccessService through the interceptors.
type directAccess struct {
	s  jetwayv1.AccessServiceServer
	ic grpc.UnaryServerInterceptor
	jetwayv1.UnimplementedAccessServiceServer
}

func (d directAccess) CreateAccessToken(ctx context.Context, r *jetwayv1.CreateAccessTokenRequest) (*jetwayv1.CreateAccessTokenResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AccessService_CreateAccessToken_FullMethodName, r, d.s.CreateAccessToken)
}

// Reading (issue 18)

func (d directAdmin) ListMessages(ctx context.Context, r *jetwayv1.ListMessagesRequest) (*jetwayv1.ListMessagesResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_ListMessages_FullMethodName, r, d.s.ListMessages)
}

func (d directAdmin) GetLastMessages(ctx context.Context, r *jetwayv1.GetLastMessagesRequest) (*jetwayv1.GetLastMessagesResponse, error) {
	return call(ctx, d.ic, d.s, jetwayv1.AdminService_GetLastMessages_FullMethodName, r, d.s.GetLastMessages)
}
