package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/gen/openapi"
)

// TestRouteTableMatchesGateway: every route of the table, requested with a
// path that fills its template, is served by the grpc-gateway handler of
// that very route (found by the pattern grpc-gateway puts in the context),
// so policies and Allow headers apply to what grpc-gateway serves.
func TestRouteTableMatchesGateway(t *testing.T) {
	rt, err := loadRoutes(openapi.JSON)
	if err != nil {
		t.Fatal(err)
	}
	yaml, err := os.ReadFile("../proto/jetway/v1/http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bindings := len(regexp.MustCompile(`(?m)^\s+(- )?(get|put|post|delete|patch): `).FindAll(yaml, -1))
	if len(rt.routes) != bindings || bindings == 0 {
		t.Errorf("%d routes, want the %d bindings of http.yaml", len(rt.routes), bindings)
	}
	var served *route
	mux := runtime.NewServeMux(runtime.WithMiddlewares(func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
			pat, _ := runtime.HTTPPattern(r.Context())
			served, _ = rt.lookup(r.Method, pat)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	ctx := context.Background()
	if err := jetwayv1.RegisterAdminServiceHandlerServer(ctx, mux, jetwayv1.UnimplementedAdminServiceServer{}); err != nil {
		t.Fatal(err)
	}
	if err := jetwayv1.RegisterAccessServiceHandlerServer(ctx, mux, jetwayv1.UnimplementedAccessServiceServer{}); err != nil {
		t.Fatal(err)
	}
	if err := jetwayv1.RegisterMessageServiceHandlerServer(ctx, mux, jetwayv1.UnimplementedMessageServiceServer{}); err != nil {
		t.Fatal(err)
	}
	if err := jetwayv1.RegisterKVServiceHandlerServer(ctx, mux, jetwayv1.UnimplementedKVServiceServer{}); err != nil {
		t.Fatal(err)
	}
	if err := jetwayv1.RegisterDeadLetterServiceHandlerServer(ctx, mux, jetwayv1.UnimplementedDeadLetterServiceServer{}); err != nil {
	}
	if err := jetwayv1.RegisterPushServiceHandlerServer(ctx, mux, jetwayv1.UnimplementedPushServiceServer{}); err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`\{[^}]*\}`)
	for i := range rt.routes {
		r := &rt.routes[i]
		path := vars.ReplaceAllString(r.pattern.String(), "X")
		served = nil
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, path, nil))
		if served != r {
			t.Errorf("%s %s (%s): served by %+v, want its own route", r.method, path, r.rpc, served)
		}
		if params, ok := r.match(path); !ok || len(params) == 0 && vars.MatchString(r.pattern.String()) {
			t.Errorf("%s %s: match = %v, %v", r.method, path, params, ok)
		}
	}
}

func TestRouteTableAllow(t *testing.T) {
	rt, err := loadRoutes(openapi.JSON)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/v1/streams":                          "GET POST",
		"/v1/streams/S":                        "DELETE GET PATCH PUT",
		"/v1/streams/S:purge":                  "DELETE GET PATCH POST PUT", // also a stream named "S:purge"
		"/v1/streams/S/consumers/C:subscribe":  "DELETE GET PUT",
		"/v1/streams/S/messages/1":             "DELETE GET",
		"/v1/subjects/a.b:publish":             "POST",
		"/v1/acks":                             "POST",
		"/v1/nothing":                          "",
		"/v1/subjects/a.b":                     "",
		"/v1/streams/S/consumers/C/x":          "",
		"/v1/streams/S/consumers/C:subscribe/": "",
	} {
		if got := strings.Join(rt.allow(path), " "); got != want {
			t.Errorf("allow(%s) = %q, want %q", path, got, want)
		}
	}
}
