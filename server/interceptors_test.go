package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/bridge"
)

func TestErrorEdgeRecoversPanics(t *testing.T) {
	edge := errorEdge{log: slog.New(slog.DiscardHandler)}
	info := &grpc.UnaryServerInfo{FullMethod: "/jetway.v1.AdminService/GetStream"}
	_, err := edge.unary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		panic("boom: secret detail")
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("err = %v, want Internal", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("panic detail leaked: %v", err)
	}
}

// TestErrorEdgeClipsClientInput: an error (domain or internal) or a panic
// quoting 64 KiB a client sent is logged in a line of bounded size.
func TestErrorEdgeClipsClientInput(t *testing.T) {
	big := strings.Repeat("s", 64<<10)
	info := &grpc.UnaryServerInfo{FullMethod: "/jetway.v1.MessageService/Publish"}
	for _, tt := range []struct {
		name    string
		handler grpc.UnaryHandler
	}{
		{"domain error", func(context.Context, any) (any, error) {
			return nil, fmt.Errorf("%w: %q", bridge.ErrInvalidSubject, big)
		}},
		{"internal error", func(context.Context, any) (any, error) { return nil, errors.New("nats: " + big) }},
		{"panic", func(context.Context, any) (any, error) { panic(big) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			edge := errorEdge{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			_, _ = edge.unary(context.Background(), nil, info, tt.handler)
			line, _, _ := strings.Cut(buf.String(), " stack=")
			if len(line) > maxLoggedError+256 || strings.Contains(line, big[:maxLoggedError+1]) {
				t.Errorf("a line of %d bytes: %.300s", len(line), line)
			}
			if !strings.Contains(line, "bytes]") {
				t.Errorf("no clip marker: %.300s", line)
			}
		})
	}
}

func TestErrorEdgeMapsDomainErrors(t *testing.T) {
	edge := errorEdge{log: slog.New(slog.DiscardHandler)}
	info := &grpc.UnaryServerInfo{FullMethod: "/jetway.v1.AdminService/GetStream"}
	_, err := edge.unary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		return nil, errors.Join(bridge.ErrStreamNotFound)
	})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
}

func TestClampDeadline(t *testing.T) {
	clamp := clampDeadline(time.Second, 0)
	tests := []struct {
		name   string
		client time.Duration // 0: no deadline
		want   time.Duration
	}{
		{"none", 0, time.Second},
		{"longer", time.Hour, time.Second},
		{"shorter", 100 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every deadline here is set between start and end: it must lie
			// between start+want and end+want, however slow the machine.
			start := time.Now()
			ctx := context.Background()
			if tt.client > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.client)
				defer cancel()
			}
			var dl time.Time
			_, _ = clamp(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
				var ok bool
				if dl, ok = ctx.Deadline(); !ok {
					t.Fatal("no deadline")
				}
				return nil, nil
			})
			end := time.Now()
			if dl.Before(start.Add(tt.want)) || dl.After(end.Add(tt.want)) {
				t.Errorf("deadline %v after the call began (which took %v), want %v", dl.Sub(start), end.Sub(start), tt.want)
			}
		})
	}
}

func TestNATSGate(t *testing.T) {
	connected := false
	g := natsGate{connected: func() bool { return connected }}
	if err := g.check("/jetway.v1.MessageService/Publish"); status.Code(mustStatus(err)) != codes.Unavailable {
		t.Errorf("disconnected publish: %v", err)
	}
	if err := g.check("/grpc.health.v1.Health/Check"); err != nil {
		t.Errorf("health gated: %v", err)
	}
	connected = true
	if err := g.check("/jetway.v1.MessageService/Publish"); err != nil {
		t.Errorf("connected publish gated: %v", err)
	}
}

func mustStatus(err error) error {
	st, _ := bridge.Status(err)
	return st.Err()
}
