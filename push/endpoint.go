package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jetway-dev/jetway/bridge"
)

// maxEndpointLen bounds an endpoint URL.
const maxEndpointLen = 2048

// parseEndpoint checks that raw is an http or https URL with a host and
// no fragment. The error names field and never repeats the URL (it may
// hold credentials).
func parseEndpoint(field, raw string) (*url.URL, error) {
	bad := func(what string) error {
		return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %s", bridge.ErrInvalidEndpoint, what)}
	}
	if raw == "" {
		return nil, bad("required")
	}
	if len(raw) > maxEndpointLen {
		return nil, bad(fmt.Sprintf("longer than %d bytes", maxEndpointLen))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, bad("the scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return nil, bad("no host")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, bad("a fragment is never sent: remove it")
	case u.Opaque != "":
		return nil, bad("not an absolute http(s) URL")
	}
	if numericHost(u.Hostname()) {
		if _, err := netip.ParseAddr(strings.TrimSuffix(u.Hostname(), ".")); err != nil {
			return nil, bad("a numeric host must be a dotted-quad IPv4 address (127.1, 2130706433, 0177.0.0.1 and 0x7f.0.0.1 mean different addresses to different resolvers)")
		}
	}
	if p := u.Port(); p != "" {
		if _, err := netip.ParseAddrPort("127.0.0.1:" + p); err != nil || p == "0" {
			return nil, bad("bad port")
		}
	}
	return u, nil
}

// numericHost says whether every label of host is a decimal, octal or
// 0x-hexadecimal number: an IPv4 address in some spelling (inet_aton's
// shorthand forms included), never a DNS name.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, l := range strings.Split(host, ".") {
		digits := l
		if h, ok := strings.CutPrefix(strings.ToLower(l), "0x"); ok {
			digits = h
			if strings.Trim(digits, "0123456789abcdef") != "" {
				return false
			}
			continue
		}
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			return false
		}
	}
	return true
}

// redact is the endpoint as it may be shown and logged:
// scheme://host[:port]/path, with "…@" for user info and "?…" for a query
// (either may hold a credential).
func redact(u *url.URL) string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if u.User != nil {
		b.WriteString("…@")
	}
	b.WriteString(u.Host)
	b.WriteString(u.EscapedPath())
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteString("?…")
	}
	return b.String()
}

// origin is scheme://host[:port]: what the logs name.
func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// errForbiddenAddress is a connection refused by the address policy.
var errForbiddenAddress = errors.New("address refused")

// extraForbidden are ranges refused beyond netip's predicates: shared
// (carrier-grade NAT) space, IETF protocol assignments, benchmarking,
// reserved, the "this network" block, NAT64 (which reaches IPv4 through a
// translator) and the IPv6 discard and documentation prefixes' neighbours
// that route nowhere public.
var extraForbidden = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	// IPv4-compatible (deprecated: ::127.0.0.1) and IPv4-translated
	// (SIIT) addresses embed an IPv4 address Unmap does not see.
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("::ffff:0:0:0/96"),
}

// addressClass says why a is refused ("" when it is not): loopback,
// private, link-local (169.254.169.254, the cloud metadata address, is
// one), multicast, unspecified or reserved.
func addressClass(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	case a.IsPrivate():
		return "private"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	for _, p := range extraForbidden {
		if p.Contains(a) {
			return "reserved"
		}
	}
	return ""
}

// refusal is the error for address a of class.
func refusal(a netip.Addr, class string) error {
	return fmt.Errorf("%w: %s is a %s address; push endpoints may not reach loopback, private, link-local, multicast or unspecified addresses (start the bridge with --push-allow-private-endpoints to allow them)", errForbiddenAddress, a.Unmap(), class)
}

// dialControl is the dialer's Control: it sees the address each
// connection is made to, after DNS resolution, so a name that resolves
// to a public address at create and to a private one later (DNS
// rebinding) is refused at connect time.
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", errForbiddenAddress, address)
	}
	if c := addressClass(ap.Addr()); c != "" {
		return refusal(ap.Addr(), c)
	}
	return nil
}

// checkHost resolves u's host and refuses it when one of its addresses is
// refused: the early, friendly form of dialControl's check, at create and
// update. A name that does not resolve (yet) passes: every connection is
// checked anyway.
func checkHost(ctx context.Context, field string, u *url.URL) error {
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, _ = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		if bare := strings.TrimSuffix(host, "."); bare != host {
			// "localhost." is localhost to the dialer's resolver.
			more, _ := net.DefaultResolver.LookupNetIP(rctx, "ip", bare)
			addrs = append(addrs, more...)
		}
	}
	for _, a := range addrs {
		if c := addressClass(a); c != "" {
			return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: host %q resolves to %s, a %s address: refused (push endpoints may not reach loopback, private, link-local, multicast or unspecified addresses; start the bridge with --push-allow-private-endpoints to allow them)", bridge.ErrInvalidEndpoint, host, a.Unmap(), c)}
		}
	}
	return nil
}
