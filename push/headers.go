package push

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"golang.org/x/net/http/httpguts"
)

// Forwarded message headers.
const (
	// HeaderPrefix names a message header in a request:
	// Jetway-Header-<Name>, one line per value.
	HeaderPrefix = "Jetway-Header-"
	// HeaderSkipped counts the message's header values skipped as
	// invalid or over the bounds (present only when some were; the
	// headers NATS owns are never forwarded and not counted).
	HeaderSkipped = "Jetway-Skipped-Headers"
	// maxForwardedHeaders bounds the header values forwarded per request.
	maxForwardedHeaders = 64
	// maxForwardedBytes bounds the bytes of the forwarded header lines
	// per request (each "Jetway-Header-<Name>: <value>\r\n").
	maxForwardedBytes = 16 << 10
)

// forwardHeaders adds the headers of a message to rh as
// Jetway-Header-<Name>, each value, and answers how many values it
// skipped (also set as HeaderSkipped). Never forwarded: the headers NATS
// and JetStream own (Nats-*, and Status and Description, a status
// reply's). Skipped: a name that is not an HTTP token, a value that is not a valid HTTP field value (a control
// character); and, names in byte order, values in their order, what
// comes after 64 values or 16 KiB of header lines. Nothing a publisher
// puts in a header can so make the request fail (it would be retried
// forever) or grow it without bound.
func forwardHeaders(rh http.Header, h nats.Header) (skipped int) {
	if len(h) == 0 {
		return 0
	}
	n, size := 0, 0
	for _, name := range slices.Sorted(maps.Keys(h)) {
		values := h[name]
		if ownedByNATS(name) {
			continue // never forwarded: not counted
		}
		if !httpguts.ValidHeaderFieldName(name) {
			skipped += len(values)
			continue
		}
		key := HeaderPrefix + name
		for _, v := range values {
			line := len(key) + len(": ") + len(v) + len("\r\n")
			if !httpguts.ValidHeaderFieldValue(v) || n == maxForwardedHeaders || size+line > maxForwardedBytes {
				skipped++
				continue
			}
			rh.Add(key, v)
			n++
			size += line
		}
	}
	if skipped > 0 {
		rh.Set(HeaderSkipped, strconv.Itoa(skipped))
	}
	return skipped
}

// ownedByNATS: Nats-* headers are JetStream's (the message id, expected
// sequences, TTLs, rollups…) and Status and Description a status
// reply's: not the publisher's information.
func ownedByNATS(name string) bool {
	return len(name) >= 5 && strings.EqualFold(name[:5], "Nats-") ||
		strings.EqualFold(name, "Status") || strings.EqualFold(name, "Description")
}
