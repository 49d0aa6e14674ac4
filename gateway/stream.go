package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

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

// What a REST stream (Subscribe, NDJSON or Server-Sent Events) may hold
// between the bridge's Send and its client, besides its window: the
// bridge pulls at most max_in_flight messages the client has not taken,
// and taken means given to these buffers, so they must be small.
const (
	// StreamWindow is the fixed HTTP/2 flow-control window of a stream
	// on the gateway's in-process gRPC connection: the gRPC server
	// sends a stream at most this much that grpc-gateway has not
	// received (and queues at most 64 KiB more, grpc-go's write quota).
	StreamWindow = 64 << 10
	// StreamSendBuffer is the SO_SNDBUF of an HTTP/1.x connection that
	// serves a streaming response: what the kernel holds that the client
	// has not taken. Linux doubles it (for its bookkeeping), so up to
	// 64 KiB of a stream wait there. It also bounds the stream's rate,
	// to about 2 × StreamSendBuffer a round trip to the client.
	StreamSendBuffer = 32 << 10
	// StreamBufferBound (192 KiB; README, "REST streaming and flow
	// control") is the most a REST stream's bytes may wait
	// between the bridge's Send and the socket of an HTTP/1.x client:
	// the stream window, the write quota and the send buffer (Linux's
	// doubled figure). grpc-gateway flushes every event, so net/http's
	// own buffer holds no backlog; a message or two may be in hand
	// between the buffers. Over HTTP/2 the client's own stream window
	// takes the send buffer's place (the connection is shared and its
	// send buffer left alone): what the client lets the server send
	// ahead is the client's to bound.
	StreamBufferBound = StreamWindow + 64<<10 + 2*StreamSendBuffer
)

type connKey struct{}

// ConnContext is http.Server's ConnContext: it keeps each connection in
// the context of its requests, so that a streaming response can cap its
// socket's send buffer (StreamSendBuffer).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// capSendBuffer sets the send buffer of r's TCP socket to
// StreamSendBuffer, on HTTP/1.x (one response at a time on the
// connection, so the cap is this stream's). The connection is the one
// ConnContext kept, unwrapped from TLS and from listeners' wrappers
// (Unwrap); without it, or without a TCP socket under it, nothing
// changes.
func capSendBuffer(r *http.Request, log *slog.Logger) {
	if r.ProtoMajor != 1 {
		return
	}
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	for c != nil {
		switch cc := c.(type) {
		case interface{ SetWriteBuffer(int) error }:
			if err := cc.SetWriteBuffer(StreamSendBuffer); err != nil {
				log.DebugContext(r.Context(), "streaming response: send buffer not capped",
					slog.String("peer", r.RemoteAddr), slog.Any("error", fmt.Errorf("set SO_SNDBUF: %w", err)))
			}
			return
		case *tls.Conn:
			c = cc.NetConn()
		case interface{ Unwrap() net.Conn }:
			c = cc.Unwrap()
		default:
			return
		}
	}
}

// isStream reports whether r is for a streaming route (Subscribe's
// :subscribe, a KV watch /v1/kv/{bucket}/watch, or a dead-letter redrive
// POST /v1/dead-letters/{stream}:redrive: NDJSON or Server-Sent Events).
func isStream(r *http.Request) bool {
	if r.Method == http.MethodPost {
		return strings.HasPrefix(r.URL.Path, "/v1/dead-letters/") && strings.HasSuffix(r.URL.Path, ":redrive")
	}
	return r.Method == http.MethodGet && (strings.HasSuffix(r.URL.Path, ":subscribe") || isWatch(r.URL.Path))
}

// isWatch matches /v1/kv/{bucket}/watch exactly (a key's path, under
// /entries/, may end in /watch too).
func isWatch(path string) bool {
	rest, ok := strings.CutPrefix(path, "/v1/kv/")
	if !ok {
		return false
	}
	bucket, tail, ok := strings.Cut(rest, "/")
	return ok && bucket != "" && tail == "watch"
}

// streamSocket caps the send buffer of streaming routes' HTTP/1.x
// sockets, and closes them after the stream.
func streamSocket(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isStream(r) {
			// Every event as it comes: no cache or proxy (nginx reads
			// X-Accel-Buffering) may hold the stream back.
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("X-Accel-Buffering", "no")
		}
		if isStream(r) && r.ProtoMajor == 1 {
			capSendBuffer(r, log)
			// The capped socket serves no request after the stream.
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
