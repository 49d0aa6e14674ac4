package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/jetway-dev/jetway/auth"
)

// AccessTokenParam is the query parameter that may carry an access token
// (auth.AccessTokenPrefix) where a client cannot send an Authorization
// header: a browser's EventSource, a webhook sender given only a URL.
const AccessTokenParam = "access_token"

// queryTokens takes an access token out of the URL before anything sees
// the URL (the trace span, the logs, grpc-gateway's query parsing) and
// hands it on as the Authorization header, on the routes whose policy
// admits one (routePolicy.queryToken: the GET streaming routes and the
// webhook ingest) and nowhere else: a credential in a URL ends up in
// browser history, proxy logs and Referer headers, so it is accepted only
// where no header can carry it, and only as an access token (short-lived
// and narrowed), never an API key. The cross-origin rules still apply to
// those routes (browser.go). Refusals are 400 with reason
// ACCESS_TOKEN_IN_QUERY and never repeat the token.
func queryTokens(rt *routeTable, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.RawQuery, AccessTokenParam) {
			next.ServeHTTP(w, r)
			return
		}
		rest, tokens := splitToken(r.URL.RawQuery)
		if len(tokens) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		// The request goes on without the token in its URL, whatever
		// the answer.
		u := *r.URL
		u.RawQuery = rest
		r2 := new(http.Request)
		*r2 = *r
		r2.URL = &u
		r2.RequestURI = u.RequestURI()
		r2.Header = r.Header.Clone()
		w.Header().Set("Referrer-Policy", "no-referrer")
		refuse := func(msg string) {
			writeError(w, http.StatusBadRequest, codes.InvalidArgument, "ACCESS_TOKEN_IN_QUERY", msg)
		}
		switch {
		case r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "":
			// A CORS preflight of a request that will carry the token:
			// answered (CORS) without it, and it is never a credential.
			r2.Header.Del("Authorization")
			next.ServeHTTP(w, r2)
		case len(tokens) > 1:
			refuse("more than one access_token in the query")
		case !rt.takesQueryToken(r.Method, u.EscapedPath()):
			refuse("an access_token in the URL is accepted only by the GET streaming routes (:subscribe) and the webhook ingest route; send it as Authorization: Bearer")
		case !strings.HasPrefix(tokens[0], auth.AccessTokenPrefix):
			refuse("only an access token (jwy_…, from POST /v1/access-tokens) may be sent in the URL; send other credentials in the Authorization header")
		case r.Header.Get("Authorization") != "":
			refuse("both an Authorization header and an access_token in the URL: send one")
		default:
			r2.Header.Set("Authorization", "Bearer "+tokens[0])
			next.ServeHTTP(w, r2.WithContext(context.WithValue(r2.Context(), queryTokenKey{}, true)))
		}
	})
}

// splitToken takes the access_token parameters out of a raw query,
// keeping the others exactly as sent.
func splitToken(raw string) (rest string, tokens []string) {
	var kept []string
	for _, part := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == AccessTokenParam {
			if val, err := url.QueryUnescape(v); err == nil {
				tokens = append(tokens, val)
			} else {
				tokens = append(tokens, "") // refused below: not an access token
			}
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&"), tokens
}

// takesQueryToken reports whether a route of method whose pattern matches
// path admits an access token in its query.
func (t *routeTable) takesQueryToken(method, path string) bool {
	if unescaped, err := url.PathUnescape(path); err == nil {
		path = unescaped
	}
	for i := range t.routes {
		r := &t.routes[i]
		if r.method != method && !(method == http.MethodHead && r.method == http.MethodGet) {
			continue
		}
		if _, ok := r.match(path); ok && r.policy.queryToken {
			// grpc-gateway may yet pick another route that matches
			// (GetStream's /v1/streams/{name} matches a :subscribe
			// path too): guard checks the route it took
			// (fromQueryToken).
			return true
		}
	}
	return false
}

type queryTokenKey struct{}

// fromQueryToken reports whether the request's credential came from its
// URL (queryTokens).
func fromQueryToken(r *http.Request) bool {
	v, _ := r.Context().Value(queryTokenKey{}).(bool)
	return v
}
