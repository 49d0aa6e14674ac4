package push

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"golang.org/x/net/http/httpguts"
)

// TestForwardHeaders: ordinary headers forwarded with every value, in
// order; JetStream's and status replies' not; hostile names and values
// skipped and counted; the count and size bounds hold.
func TestForwardHeaders(t *testing.T) {
	many := nats.Header{}
	for i := range 100 {
		many.Add(fmt.Sprintf("X-N-%03d", i), "v")
	}
	big := nats.Header{"A-Big": {strings.Repeat("a", 10<<10)}, "B-Big": {strings.Repeat("b", 10<<10)}, "C-Small": {"c"}}
	tests := []struct {
		name    string
		in      nats.Header
		want    http.Header
		skipped int
	}{
		{"none", nil, http.Header{}, 0},
		{"ordinary and multi-valued", nats.Header{"X-Tenant": {"acme"}, "x-multi": {"a", "b"}, "Content-Type": {"application/json"}, "Jetway-Dead-Letter-Reason": {"terminated"}},
			http.Header{"Jetway-Header-X-Tenant": {"acme"}, "Jetway-Header-X-Multi": {"a", "b"}, "Jetway-Header-Content-Type": {"application/json"}, "Jetway-Header-Jetway-Dead-Letter-Reason": {"terminated"}}, 0},
		{"owned by NATS", nats.Header{"Nats-Msg-Id": {"m"}, "nats-expected-stream": {"S"}, "Status": {"408"}, "description": {"x"}, "Ok": {"1"}},
			http.Header{"Jetway-Header-Ok": {"1"}}, 0},
		{"hostile names", nats.Header{"Bad Name": {"v"}, "Ünicode": {"v"}, "(paren)": {"v"}, "": {"v"}, "Ok": {"1"}},
			http.Header{"Jetway-Header-Ok": {"1"}, HeaderSkipped: {"4"}}, 4},
		{"hostile values", nats.Header{"X-Ctl": {"a\x01b", "fine"}, "X-Del": {"a\x7fb"}, "X-Nul": {"\x00"}, "X-Tab": {"a\tb"}, "X-Utf8": {"é"}},
			http.Header{"Jetway-Header-X-Ctl": {"fine"}, "Jetway-Header-X-Tab": {"a\tb"}, "Jetway-Header-X-Utf8": {"é"}, HeaderSkipped: {"3"}}, 3},
		{"64 values at most, in name order", many, func() http.Header {
			h := http.Header{HeaderSkipped: {"36"}}
			for i := range 64 {
				h.Add(fmt.Sprintf("Jetway-Header-X-N-%03d", i), "v")
			}
			return h
		}(), 36},
		{"16 KiB at most", big, http.Header{"Jetway-Header-A-Big": {strings.Repeat("a", 10<<10)}, "Jetway-Header-C-Small": {"c"}, HeaderSkipped: {"1"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := http.Header{}
			if n := forwardHeaders(got, tt.in); n != tt.skipped {
				t.Errorf("skipped %d, want %d", n, tt.skipped)
			}
			if !equalHeaders(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			checkForwarded(t, got)
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// checkForwarded: what forwardHeaders added is a valid HTTP header block
// within the bounds.
func checkForwarded(t *testing.T, h http.Header) {
	t.Helper()
	n, size := 0, 0
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			t.Fatalf("invalid name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("%s: invalid value %q", k, v)
			}
			if strings.HasPrefix(k, HeaderPrefix) {
				n++
				size += len(k) + len(v) + 4
			}
		}
	}
	if n > maxForwardedHeaders || size > maxForwardedBytes {
		t.Fatalf("%d values, %d bytes forwarded", n, size)
	}
	// Go's client writes it as is: no name or value it refuses.
	var b bytes.Buffer
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
}

// FuzzForwardHeaders: whatever a message's headers hold (as nats.go reads
// them off the wire), the request's header block is valid and bounded,
// and a request carrying it can be written.
func FuzzForwardHeaders(f *testing.F) {
	f.Add("X-Tenant", "acme", "Bad Name", "a\x01b")
	f.Add("Nats-Msg-Id", "m", "Status", "408")
	f.Add("é", "\x7f", "a:b", strings.Repeat("x", 20<<10))
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		in := nats.Header{}
		in.Add(n1, v1)
		in.Add(n2, v2)
		in.Add(n2+"-2", v1)
		h := http.Header{}
		forwardHeaders(h, in)
		checkForwarded(t, h)
		req, err := http.NewRequest(http.MethodPost, "http://example.com/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		if err := req.Write(&bytes.Buffer{}); err != nil {
			t.Fatalf("request with %v: %v", h, err)
		}
	})
}
