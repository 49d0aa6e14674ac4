package gateway

import (
	"net/http"
	"net/http/pprof"
)

// Profiling returns the net/http/pprof handler under /debug/pprof/, for a
// listener of its own on loopback. It is unauthenticated and shows what
// no API client may see (/debug/pprof/cmdline is the command line, with
// any secret given as a flag; heap and goroutine profiles hold data in
// flight), so New never serves it.
func Profiling() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Loopback trusts the machine's users, not a page whose name was
	// rebound to 127.0.0.1 (it could read cmdline).
	return LoopbackHostOnly(mux)
}
