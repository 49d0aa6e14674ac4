package gateway

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
)

// earlyStatusConn is the gateway's connection for server streams, whose
// refusal before any response (a missing credential: the auth interceptor
// ends the stream before its handler runs) must be an ordinary HTTP error:
// the error handler's body and headers, WWW-Authenticate on a 401, as for
// unary calls.
//
// grpc-gateway calls a stream's Header() before forwarding it, and answers
// an error from it with the error handler; an error from the first Recv
// instead goes to ForwardResponseStream, which writes the status as a
// stream chunk ({"error": …}, or an SSE error event) without the error
// handler. grpc-go's Header() returns (nil, nil) for a stream that ended
// without headers, leaving the status to RecvMsg; here Header() returns
// that status.
type earlyStatusConn struct {
	grpc.ClientConnInterface
}

func (c earlyStatusConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
	if err != nil || !desc.ServerStreams {
		return cs, err
	}
	return &earlyStatusStream{ClientStream: cs}, nil
}

type earlyStatusStream struct {
	grpc.ClientStream
	// ended is io.EOF once Header found the stream ended cleanly without
	// headers (and so without messages).
	ended error
}

func (s *earlyStatusStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if md != nil || err != nil {
		return md, err
	}
	// Ended without headers, so without messages: RecvMsg returns the
	// status and decodes nothing into its argument.
	err = s.ClientStream.RecvMsg(&emptypb.Empty{})
	if errors.Is(err, io.EOF) {
		s.ended = err
		return nil, nil
	}
	return nil, err
}

func (s *earlyStatusStream) RecvMsg(m any) error {
	if s.ended != nil {
		return s.ended
	}
	return s.ClientStream.RecvMsg(m)
}

// StreamBufferBound is the most a REST stream's bytes may wait between
// the bridge's Send and the client's socket (see README, "REST streaming
// and flow control").
const StreamBufferBound = 192 << 10
