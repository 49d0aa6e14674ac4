package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// echoServer is a bare gRPC unary service in the bench process: it decodes
// a PublishRequest and answers a PublishResponse, touching nothing else.
// It is the ceiling a unary Publish through the bridge could reach.
type echoServer struct {
	srv  *grpc.Server
	conn *grpc.ClientConn
}

const echoMethod = "/bench.Echo/Publish"

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
	}},
}

// startEcho serves the echo on a loopback port and dials it with opts.
func startEcho(opts []grpc.DialOption) (*echoServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("echo listen: %w", err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, struct{}{})
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("echo dial: %w", err)
	}
	return &echoServer{srv: srv, conn: conn}, nil
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

func (s *echoServer) stop() {
	_ = s.conn.Close()
	s.srv.Stop()
}
