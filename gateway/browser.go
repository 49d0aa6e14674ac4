package gateway

import (
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/jetway-dev/jetway/tracing"
)

// Cross-site request forgery: any web page can send a browser to the
// bridge, with the user's network position (loopback, a private network)
// and TLS client certificate, and browsers send "simple" requests (GET,
// and POST with a text/plain, form or multipart body) without asking first.
// Two rules close that, whatever the credential:
//
//   - A request body is accepted only as application/json (by route: see
//     routePolicy.bodyTypes). A page cannot send that cross-origin without
//     a CORS preflight, which the bridge does not grant.
//   - A browser request from another origin that changes state (POST, PUT,
//     PATCH, DELETE, and the GETs of routePolicy.crossSiteGET) is refused
//     with 403 unless its Origin is allowed (Options.AllowedOrigins). Go's
//     http.CrossOriginProtection decides: Sec-Fetch-Site, else Origin
//     against Host; requests with neither come from non-browser clients,
//     or from the same origin, and pass.

// mimeJSON is the media type of request bodies (a route may take others:
// routePolicy.bodyTypes).
const mimeJSON = "application/json"

// newCrossOrigin returns the cross-origin check trusting origins.
func newCrossOrigin(origins []string) (*http.CrossOriginProtection, error) {
	cop := http.NewCrossOriginProtection()
	for _, o := range origins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("gateway: AllowedOrigins: %w", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(refuseCrossOrigin))
	return cop, nil
}

func refuseCrossOrigin(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusForbidden, codes.PermissionDenied, "CROSS_ORIGIN_REFUSED",
		"cross-origin request refused: the page's origin is not an allowed origin of this bridge")
}

// hasBody reports whether a request carries a body: a length, or chunks
// (ContentLength -1).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// acceptsBody reports whether a body of media type contentType is one of
// types (application/json when types is empty). Parameters are allowed,
// but a charset must be UTF-8: JSON is UTF-8 (RFC 8259).
func acceptsBody(contentType string, types []string) bool {
	if len(types) == 0 {
		types = []string{mimeJSON}
	}
	if slices.Contains(types, anyMediaType) {
		return true // stored as sent, whatever its charset
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !slices.Contains(types, mt) {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// guard is grpc-gateway middleware: it runs once grpc-gateway has chosen
// the route, so it applies the route's policy to exactly what is served.
// A route missing from the table (it cannot be: TestRouteTableMatchesGateway)
// gets the strictest policy.
func guard(rt *routeTable, cop *http.CrossOriginProtection, log *slog.Logger) runtime.Middleware {
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
			pat, _ := runtime.HTTPPattern(r.Context())
			policy := routePolicy{crossSiteGET: true}
			rte, found := rt.lookup(r.Method, pat)
			if found {
				policy = rte.policy
				tracing.NameRoute(r.Context(), r.Method, strings.ReplaceAll(pat.String(), "=*}", "}"))
			} else {
				log.ErrorContext(r.Context(), "gateway route missing from the route table", slog.String("method", r.Method), slog.String("pattern", pat.String()))
			}
			if fromQueryToken(r) && !policy.queryToken {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, "ACCESS_TOKEN_IN_QUERY",
					"an access_token in the URL is accepted only by the GET streaming routes (:subscribe) and the webhook ingest route; send it as Authorization: Bearer")
				return
			}
			if policy.crossSiteGET && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				// CrossOriginProtection lets GET pass (safe methods must
				// not change state): ask it about the same request as a
				// POST.
				asPost := new(http.Request)
				*asPost = *r
				asPost.Method = http.MethodPost
				if err := cop.Check(asPost); err != nil {
					refuseCrossOrigin(w, r)
					return
				}
			}
			if hasBody(r) && !acceptsBody(r.Header.Get("Content-Type"), policy.bodyTypes) {
				types := policy.bodyTypes
				if len(types) == 0 {
					types = []string{mimeJSON}
				}
				w.Header().Set("Accept-Post", strings.Join(types, ", "))
				writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "UNSUPPORTED_MEDIA_TYPE",
					"a request body must be sent with Content-Type: "+strings.Join(types, " or "))
				return
			}
			if found && !rte.hasBody {
				if st := unknownQueryParameter(rte, r.URL.Query()); st != nil {
					writeStatus(w, http.StatusBadRequest, st)
					return
				}
			}
			if policy.ingest {
				if r = prepareIngest(w, r); r == nil {
					return
				}
			}
			next(w, r, params)
		}
	}
}

// LoopbackHostOnly refuses (421 MISDIRECTED_HOST) a request whose Host is
// not a loopback name or address: localhost (and *.localhost, which
// browsers resolve to loopback themselves), 127.0.0.0/8 or ::1. It closes
// DNS rebinding, where a page's own name is made to resolve to 127.0.0.1:
// its requests are then same-origin to the browser (Origin equals Host,
// Sec-Fetch-Site same-origin) and pass the cross-origin check, but their
// Host is the attacker's name. It guards what trusts loopback alone: the
// API with authentication off, and the profiling listener.
func LoopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusMisdirectedRequest, codes.PermissionDenied, "MISDIRECTED_HOST",
				"this bridge serves loopback host names only (localhost, 127.0.0.1, [::1]) while client authentication is off")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
