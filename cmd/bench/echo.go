package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// echoServer is a bare gRPC unary service in the bench process: it decodes
// a PublishRequest and answers a PublishResponse, touching nothing else.
// It is the ceiling a unary Publish through the bridge could reach. Its
// Fetch decodes a FetchRequest and answers a FetchResponse the bridge gave
// earlier: the gRPC half of a Fetch through the bridge, alone.
type echoServer struct {
	srv   *grpc.Server
	conn  *grpc.ClientConn
	fetch atomic.Pointer[jetwayv1.FetchResponse]
}

const (
	echoMethod      = "/bench.Echo/Publish"
	echoFetchMethod = "/bench.Echo/Fetch"
)

var echoDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Publish",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req jetwayv1.PublishRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			return &jetwayv1.PublishResponse{Stream: "ECHO", Sequence: uint64(len(req.GetData()))}, nil
		},
	}, {
		MethodName: "Fetch",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req jetwayv1.FetchRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			resp := srv.(*echoServer).fetch.Load()
			if resp == nil {
				return nil, status.Error(codes.FailedPrecondition, "no answer to echo")
			}
			return resp, nil
		},
	}},
}

// startEcho serves the echo on a loopback port and dials it with opts.
func startEcho(opts []grpc.DialOption) (*echoServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("echo listen: %w", err)
	}
	s := &echoServer{srv: grpc.NewServer()}
	s.srv.RegisterService(&echoDesc, s)
	go func() { _ = s.srv.Serve(lis) }()
	if s.conn, err = grpc.NewClient(lis.Addr().String(), opts...); err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("echo dial: %w", err)
	}
	return s, nil
}

// call makes one echo call.
func (s *echoServer) call(ctx context.Context, req *jetwayv1.PublishRequest) error {
	var resp jetwayv1.PublishResponse
	if err := s.conn.Invoke(ctx, echoMethod, req, &resp); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if resp.GetStream() != "ECHO" {
		return errors.New("echo: unexpected response")
	}
	return nil
}

// callFetch makes one echo Fetch and returns how many messages came.
func (s *echoServer) callFetch(ctx context.Context, req *jetwayv1.FetchRequest) (int, error) {
	var resp jetwayv1.FetchResponse
	if err := s.conn.Invoke(ctx, echoFetchMethod, req, &resp); err != nil {
		return 0, fmt.Errorf("echo Fetch: %w", err)
	}
	return len(resp.GetMessages()), nil
}

func (s *echoServer) stop() {
	_ = s.conn.Close()
	s.srv.Stop()
}
