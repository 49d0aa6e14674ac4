// Package console is the bridge's web console: static HTML, CSS and
// JavaScript modules embedded in the binary and served at /console/.
//
// The console holds no secret and needs no authentication to be served:
// the page asks its user for a credential (an API key or a bearer token),
// keeps it in the tab's sessionStorage (never in a URL) and calls only the
// public REST API with it in the Authorization header, so it can do
// exactly what that credential may do and nothing more. It is served with
// a Content-Security-Policy that allows nothing but its own files and
// same-origin requests: no inline script or style, no other origin, no
// framing.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// Path is where the console is served; requests for it without the
// trailing slash are redirected there.
const Path = "/console/"

//go:embed static
var static embed.FS

// contentSecurityPolicy allows the page its own files and same-origin
// requests only (fetch, the tail's event stream), and no framing.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"

// Handler serves the console's files under Path (GET and HEAD; the
// caller routes the methods). Every response, errors included, carries the
// security headers.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		// The directory is embedded at build time: it exists.
		panic("console: embedded files: " + err.Error())
	}
	fileServer := http.StripPrefix(Path, http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// Small files, and a new bridge version may change them: always
		// revalidate (the file server answers 304 by modification time).
		h.Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
}
