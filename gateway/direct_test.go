package gateway_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc"

	"github.com/jetway-dev/jetway/gateway"
)

// TestChainUnary: interceptors run first-outermost, each sees the context
// the previous one passed on, and one that refuses stops the chain (the
// handler never runs).
func TestChainUnary(t *testing.T) {
	type key struct{}
	var order []string
	ic := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			order = append(order, name+">")
			resp, err := h(context.WithValue(ctx, key{}, name), req)
			order = append(order, "<"+name)
			return resp, err
		}
	}
	chain := gateway.ChainUnary(ic("a"), ic("b"), ic("c"))
	info := &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}
	resp, err := chain(context.Background(), "req", info, func(ctx context.Context, req any) (any, error) {
		order = append(order, "handler:"+ctx.Value(key{}).(string)+":"+req.(string))
		return "resp", nil
	})
	if err != nil || resp != "resp" {
		t.Fatalf("chain: %v, %v", resp, err)
	}
	if want := []string{"a>", "b>", "c>", "handler:c:req", "<c", "<b", "<a"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}

	order = nil
	refused := errors.New("refused")
	stop := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		order = append(order, "stop")
		return nil, refused
	}
	_, err = gateway.ChainUnary(ic("a"), stop, ic("c"))(context.Background(), "req", info, func(context.Context, any) (any, error) {
		order = append(order, "handler")
		return nil, nil
	})
	if !errors.Is(err, refused) || !slices.Equal(order, []string{"a>", "stop", "<a"}) {
		t.Errorf("refusing chain: %v, order %v", err, order)
	}
}
