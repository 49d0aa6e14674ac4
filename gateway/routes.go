package gateway

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The generated code registers the jetway.v1 descriptors and types
	// that the route table resolves operations against.
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// route is one HTTP binding of an RPC, as the OpenAPI document (generated
// from the same proto/jetway/v1/http.yaml as the grpc-gateway handlers)
// declares it.
type route struct {
	method string
	// pattern is the binding compiled as grpc-gateway compiles it, so that
	// it matches paths as grpc-gateway does and its String is that of the
	// pattern grpc-gateway puts in the request context.
	pattern runtime.Pattern
	// rpc is the full gRPC method, e.g. /jetway.v1.MessageService/Subscribe.
	rpc string
	// request is the type of the RPC's request message.
	request protoreflect.MessageType
	// hasBody: the binding maps a body; grpc-gateway then reads no query
	// parameters.
	hasBody bool
	// queryFilter holds the path parameters, which grpc-gateway skips in
	// the query.
	queryFilter *utilities.DoubleArray
	policy      routePolicy
}

// routePolicy is what a route admits from browsers and in its body.
type routePolicy struct {
	// bodyTypes are the media types a request body may have; nil means
	// application/json only. This is the place for a route that takes
	// other bodies (a raw webhook ingest, say): such a route must require
	// authentication, since a cross-site form or text/plain POST carries
	// no preflight, and the cross-origin check still applies to it.
	bodyTypes []string
	// crossSiteGET refuses cross-origin browser GETs as if they were
	// POSTs: for GETs that change state (see policyOf).
	crossSiteGET bool
	// queryToken admits an access token in the access_token query
	// parameter (querytoken.go): only where a client cannot send an
	// Authorization header (EventSource, webhook senders).
	queryToken bool
	// ingest takes the body raw and the message's headers and id from
	// the HTTP request (ingest.go).
	ingest bool
}

// policyOf is the policy of an RPC's routes.
func policyOf(rpc string) routePolicy {
	switch rpc {
	case jetwayv1.MessageService_Subscribe_FullMethodName:
		// Subscribe is a GET (EventSource can only GET), yet it creates an
		// ephemeral consumer or takes messages of a durable one: each
		// delivery counts against max_deliver and holds the message until
		// its ack wait ends. A cross-site <img>, <script> or no-cors fetch
		// must not do that with the user's network position or
		// certificate, so it is checked like a POST. Every other GET only
		// reads, and a cross-site page cannot read the answer.
		// EventSource cannot send Authorization: its access token rides
		// in the URL.
		return routePolicy{crossSiteGET: true, queryToken: true}
	case jetwayv1.KVService_WatchBucket_FullMethodName:
		// A watch creates an ordered consumer (as an ephemeral Subscribe
		// does, and checked the same way); EventSource cannot send
		// Authorization, so its access token rides in the URL.
		return routePolicy{crossSiteGET: true, queryToken: true}
	case jetwayv1.MessageService_Ingest_FullMethodName:
		// Webhook senders and devices send their own bodies, and many
		// are given only a URL (so an access token rides in it). A raw
		// body is what a cross-site form or text/plain POST sends
		// without a preflight: the bridge serves Ingest only with client
		// authentication (bridge.ErrAuthRequired), and the cross-origin
		// check applies as everywhere.
		return routePolicy{bodyTypes: []string{anyMediaType}, queryToken: true, ingest: true}
	}
	return routePolicy{}
}

// routeTable is the gateway's routes, for what grpc-gateway does not know
// or tell: the Allow header of a 405, the policy of the route a request
// took, the request type and parameters of a route that refused its
// parameters.
type routeTable struct {
	routes []route
	// byPattern is keyed by method and pattern string.
	byPattern map[string]*route
}

// loadRoutes reads the routes from the OpenAPI document. An operation it
// cannot resolve to a registered RPC, or a path template it cannot compile,
// is an error: the document and the gateway come from one generation.
func loadRoutes(doc []byte) (*routeTable, error) {
	var d struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name string `json:"name"`
				In   string `json:"in"`
				// Pattern is ".+" for a {field=**} variable (KV keys).
				Pattern string `json:"pattern"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("gateway: OpenAPI document: %w", err)
	}
	t := &routeTable{byPattern: map[string]*route{}}
	for template, ops := range d.Paths {
		deep := map[string]bool{}
		for _, op := range ops {
			for _, p := range op.Parameters {
				if p.In == "path" && p.Pattern == ".+" {
					deep[p.Name] = true
				}
			}
		}
		pat, err := compileTemplate(template, deep)
		if err != nil {
			return nil, err
		}
		for method, op := range ops {
			rpc, in, err := resolveOperation(op.OperationID)
			if err != nil {
				return nil, err
			}
			mt, err := protoregistry.GlobalTypes.FindMessageByName(in)
			if err != nil {
				return nil, fmt.Errorf("gateway: request type of %s: %w", rpc, err)
			}
			r := route{method: strings.ToUpper(method), pattern: pat, rpc: rpc, request: mt, policy: policyOf(rpc)}
			var pathParams [][]string
			for _, p := range op.Parameters {
				switch p.In {
				case "body":
					r.hasBody = true
				case "path":
					pathParams = append(pathParams, strings.Split(p.Name, "."))
				}
			}
			r.queryFilter = utilities.NewDoubleArray(pathParams)
			t.routes = append(t.routes, r)
		}
	}
	// A stable order, for the Allow header and the tests.
	slices.SortFunc(t.routes, func(a, b route) int {
		return strings.Compare(a.pattern.String()+" "+a.method, b.pattern.String()+" "+b.method)
	})
	for i := range t.routes {
		t.byPattern[t.routes[i].method+" "+t.routes[i].pattern.String()] = &t.routes[i]
	}
	return t, nil
}

// resolveOperation turns an OpenAPI operationId (Service_Method, with a
// number appended for additional bindings: MessageService_Subscribe2) into
// the full gRPC method and its request type.
func resolveOperation(id string) (rpc string, request protoreflect.FullName, err error) {
	svcName, method, ok := strings.Cut(id, "_")
	if !ok {
		return "", "", fmt.Errorf("gateway: OpenAPI operation %q is not Service_Method", id)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("jetway.v1." + svcName))
	svc, ok := d.(protoreflect.ServiceDescriptor)
	if err != nil || !ok {
		return "", "", fmt.Errorf("gateway: OpenAPI operation %q: no service jetway.v1.%s", id, svcName)
	}
	m := svc.Methods().ByName(protoreflect.Name(method))
	if m == nil {
		m = svc.Methods().ByName(protoreflect.Name(strings.TrimRight(method, "0123456789")))
	}
	if m == nil {
		return "", "", fmt.Errorf("gateway: OpenAPI operation %q: no method %s in %s", id, method, svc.FullName())
	}
	return "/" + string(svc.FullName()) + "/" + string(m.Name()), m.Input().FullName(), nil
}

// compileTemplate compiles a path template of literal segments, {field}
// variables and an optional :verb into a grpc-gateway pattern, with the
// opcodes protoc-gen-grpc-gateway generates for it. A variable named in
// deep is a {field=**} (the OpenAPI document writes it {field} with the
// pattern ".+"): it takes the rest of the path, and must be last. Other
// template syntax is not used by the API and is an error.
func compileTemplate(template string, deep map[string]bool) (runtime.Pattern, error) {
	fail := func(why string) (runtime.Pattern, error) {
		return runtime.Pattern{}, fmt.Errorf("gateway: path template %q: %s", template, why)
	}
	if !strings.HasPrefix(template, "/") {
		return fail("does not start with /")
	}
	segs := strings.Split(template[1:], "/")
	var verb string
	last := segs[len(segs)-1]
	if i := strings.LastIndex(last, ":"); i >= 0 && !strings.Contains(last[i:], "}") {
		segs[len(segs)-1], verb = last[:i], last[i+1:]
	}
	var ops []int
	var pool []string
	index := func(s string) int {
		if i := slices.Index(pool, s); i >= 0 {
			return i
		}
		pool = append(pool, s)
		return len(pool) - 1
	}
	for i, s := range segs {
		switch {
		case s == "" || strings.ContainsAny(s, "*="):
			return fail("unsupported segment " + s)
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && deep[s[1:len(s)-1]]:
			if i != len(segs)-1 {
				return fail("a {field=**} variable that is not last: " + s)
			}
			ops = append(ops, int(utilities.OpPushM), 0, int(utilities.OpConcatN), 1, int(utilities.OpCapture), index(s[1:len(s)-1]))
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			ops = append(ops, int(utilities.OpPush), 0, int(utilities.OpConcatN), 1, int(utilities.OpCapture), index(s[1:len(s)-1]))
		case strings.ContainsAny(s, "{}"):
			return fail("unsupported segment " + s)
		default:
			ops = append(ops, int(utilities.OpLitPush), index(s))
		}
	}
	pat, err := runtime.NewPattern(1, ops, pool, verb)
	if err != nil {
		return fail(err.Error())
	}
	return pat, nil
}

// lookup finds the route of a method and the pattern grpc-gateway matched.
func (t *routeTable) lookup(method string, pat runtime.Pattern) (*route, bool) {
	r, ok := t.byPattern[method+" "+pat.String()]
	return r, ok
}

// match reports whether a route's pattern matches path, as grpc-gateway's
// ServeMux does (the unescaped path split at '/', the verb split off the
// last segment when the pattern has one), and returns its parameters.
func (r *route) match(path string) (map[string]string, bool) {
	if !strings.HasPrefix(path, "/") {
		return nil, false
	}
	comps := strings.Split(path[1:], "/")
	var verb string
	if v := r.pattern.Verb(); v != "" {
		last := comps[len(comps)-1]
		if len(last) > len(v)+1 && strings.HasSuffix(last, ":"+v) {
			comps = slices.Clone(comps)
			comps[len(comps)-1], verb = last[:len(last)-len(v)-1], v
		}
	}
	params, err := r.pattern.MatchAndEscape(comps, verb, runtime.UnescapingModeDefault)
	return params, err == nil
}

// allow lists the methods that have a route matching path, for the Allow
// header of a 405.
func (t *routeTable) allow(path string) []string {
	var methods []string
	for i := range t.routes {
		if _, ok := t.routes[i].match(path); ok && !slices.Contains(methods, t.routes[i].method) {
			methods = append(methods, t.routes[i].method)
		}
	}
	slices.Sort(methods)
	return methods
}
