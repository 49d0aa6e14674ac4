package server_test

import (
	"net/http"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

func TestHealthAndReadiness(t *testing.T) {
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 10*time.Second)

	for _, path := range []string{"/healthz", "/readyz"} {
		if r := b.Do(t, http.MethodGet, path, ""); r.Status != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", path, r.Status, r.Body)
		}
	}
	resp, err := healthpb.NewHealthClient(b.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", resp.GetStatus())
	}
	if _, err := b.Admin.GetAccountInfo(ctx, &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Errorf("GetAccountInfo: %v", err)
	}
}
