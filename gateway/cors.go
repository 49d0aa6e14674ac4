package gateway

import (
	"net/http"
	"time"

	"github.com/rs/cors"

	"github.com/jetway-dev/jetway/requestid"
)

// CORS configures Cross-Origin Resource Sharing for the origins of
// Options.AllowedOrigins (rs/cors answers preflights and adds the
// response headers): without allowed origins no page elsewhere may read
// an answer, and a page on an origin not listed gets no CORS header at
// all, while the cross-origin check refuses what it would change.
type CORS struct {
	// AllowedMethods a preflight grants; empty: GET, HEAD, POST, PUT,
	// DELETE.
	AllowedMethods []string
	// AllowedHeaders a preflight grants beyond RequestHeaders.
	AllowedHeaders []string
	// AllowCredentials sends Access-Control-Allow-Credentials: true
	// (credentialed requests: cookies, which the bridge ignores, and TLS
	// client certificates).
	AllowCredentials bool
	// MaxAge is how long a browser may cache a preflight; 0 sends none
	// (the browser's default, 5 s).
	MaxAge time.Duration
}

// RequestHeaders are the request headers the API reads: every preflight
// of an allowed origin grants them.
var RequestHeaders = []string{"Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", requestid.Header, "traceparent", "tracestate"}

// ExposedHeaders are the response headers pages on allowed origins may
// read: the retry hint of quotas and unavailability, the request id, the
// methods a 405 lists, the media types a 415 names, and the challenge of
// a 401.
var ExposedHeaders = []string{"Retry-After", requestid.Header, "Allow", "Accept-Post", "WWW-Authenticate"}

// newCORS returns the CORS handler of origins: nil for none (rs/cors
// reads an empty list as every origin, "*").
func newCORS(origins []string, c CORS) *cors.Cors {
	if len(origins) == 0 {
		return nil
	}
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[o] = true
	}
	methods := c.AllowedMethods
	if len(methods) == 0 {
		methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete}
	}
	maxAge := int(c.MaxAge / time.Second)
	return cors.New(cors.Options{
		// Origins are exact (config checks them: scheme://host[:port]),
		// compared byte for byte: no wildcard, and never "null"
		// (sandboxed frames, file: pages), which config refuses.
		AllowOriginFunc:  func(origin string) bool { return allowed[origin] },
		AllowedMethods:   methods,
		AllowedHeaders:   append(append([]string{}, RequestHeaders...), c.AllowedHeaders...),
		ExposedHeaders:   ExposedHeaders,
		AllowCredentials: c.AllowCredentials,
		MaxAge:           maxAge,
		// A preflight is answered here, 204, and goes no further.
		OptionsSuccessStatus: http.StatusNoContent,
	})
}
