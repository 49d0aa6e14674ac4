package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// The echo is a bare gRPC unary service in a process of its own (the bench
// binary started again with echoArg): it decodes a PublishRequest and
// answers a PublishResponse, touching nothing else. It is the ceiling a
// unary Publish through the bridge could reach. Its Fetch decodes a
// FetchRequest and answers a FetchResponse the bridge gave earlier (handed
// to it with Load): the gRPC half of a Fetch through the bridge, alone.
//
// It runs apart from the bench, as the bridge does, so that a call crosses
// from one process to another on both sides. In the bench process, client
// and server shared one Go runtime, and the echo then measured a ceiling
// no separate server can reach.

// echoArg, as the bench's only argument, makes it the echo process. The
// listener is inherited as file descriptor 3, so the address is known
// before the process starts and calls wait in the listen queue until it
// serves.
const echoArg = "-internal-echo-server"

const (
	echoMethod      = "/bench.Echo/Publish"
	echoFetchMethod = "/bench.Echo/Fetch"
	echoLoadMethod  = "/bench.Echo/Load"
)

// echoState is the echo process's one piece of state: the Fetch answer.
type echoState struct {
	fetch atomic.Pointer[jetwayv1.FetchResponse]
}

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
			resp := srv.(*echoState).fetch.Load()
			if resp == nil {
				return nil, status.Error(codes.FailedPrecondition, "no answer to echo")
			}
			return resp, nil
		},
	}, {
		MethodName: "Load",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			resp := new(jetwayv1.FetchResponse)
			if err := dec(resp); err != nil {
				return nil, err
			}
			srv.(*echoState).fetch.Store(resp)
			return &jetwayv1.FetchResponse{}, nil
		},
	}},
}

// serveEcho is the echo process: it serves on the inherited listener until
// SIGTERM (the bench also has it killed if the bench dies).
func serveEcho() error {
	lis, err := net.FileListener(os.NewFile(3, "echo-listener"))
	if err != nil {
		return fmt.Errorf("echo: inherited listener: %w", err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, &echoState{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil {
		return fmt.Errorf("echo: serve: %w", err)
	}
	return nil
}

// echoClient is the bench's side of a running echo process.
type echoClient struct {
	e    *env
	p    *proc
	conn *grpc.ClientConn
}

// startEcho starts the echo process and dials it. Its CPU is billed to
// the runs while it lives (see cpuNow).
func startEcho(e *env) (*echoClient, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("echo: find the bench binary: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("echo listen: %w", err)
	}
	addr := lis.Addr().String()
	f, err := lis.(*net.TCPListener).File() // a duplicate, for the child
	_ = lis.Close()
	if err != nil {
		return nil, fmt.Errorf("echo listener file: %w", err)
	}
	p, err := startProc("echo", exe, []string{echoArg}, filepath.Join(e.bridge.dir, "echo.log"), f)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	c := &echoClient{e: e, p: p}
	if c.conn, err = grpc.NewClient(addr, e.dialOptions()...); err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("echo dial: %w", err)
	}
	e.echoProc.Store(p)
	return c, nil
}

// call makes one echo call.
func (c *echoClient) call(ctx context.Context, req *jetwayv1.PublishRequest) error {
	var resp jetwayv1.PublishResponse
	if err := c.conn.Invoke(ctx, echoMethod, req, &resp); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if resp.GetStream() != "ECHO" {
		return errors.New("echo: unexpected response")
	}
	return nil
}

// load gives the echo the answer its Fetch returns.
func (c *echoClient) load(ctx context.Context, resp *jetwayv1.FetchResponse) error {
	if err := c.conn.Invoke(ctx, echoLoadMethod, resp, new(jetwayv1.FetchResponse)); err != nil {
		return fmt.Errorf("echo Load: %w", err)
	}
	return nil
}

// callFetch makes one echo Fetch and returns how many messages came.
func (c *echoClient) callFetch(ctx context.Context, req *jetwayv1.FetchRequest) (int, error) {
	var resp jetwayv1.FetchResponse
	if err := c.conn.Invoke(ctx, echoFetchMethod, req, &resp); err != nil {
		return 0, fmt.Errorf("echo Fetch: %w", err)
	}
	return len(resp.GetMessages()), nil
}

// stop closes the connection and stops the process.
func (c *echoClient) stop() error {
	c.e.echoProc.CompareAndSwap(c.p, nil)
	_ = c.conn.Close()
	return c.p.stop()
}
