package push

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
)

// TestSignStandardWebhooksVector: the signature of the Standard Webhooks
// libraries' own test vector.
func TestSignStandardWebhooksVector(t *testing.T) {
	key, err := secretKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("sign = %s, want %s", got, want)
	}
	s, err := newSecret()
	if err != nil || !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("newSecret %q %v", s, err)
	}
	if k, err := secretKey(s); err != nil || len(k) != 32 {
		t.Errorf("secretKey(newSecret) = %d bytes, %v", len(k), err)
	}
}

func TestRetryDelay(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	backoff := jetstream.ConsumerConfig{BackOff: []time.Duration{time.Second, 5 * time.Second}}
	for _, tc := range []struct {
		name       string
		cfg        jetstream.ConsumerConfig
		attempt    uint64
		retryAfter string
		want       time.Duration
	}{
		{"seconds", backoff, 1, "2", 2 * time.Second},
		{"date", backoff, 1, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", backoff, 1, now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"capped", backoff, 1, "999999", time.Hour},
		{"garbage falls back to backoff", backoff, 2, "soon", 5 * time.Second},
		{"backoff past its end", backoff, 9, "", 5 * time.Second},
		{"negative", backoff, 1, "-3", time.Second},
		{"exponential 1", jetstream.ConsumerConfig{}, 1, "", time.Second},
		{"exponential 4", jetstream.ConsumerConfig{}, 4, "", 8 * time.Second},
		{"exponential capped", jetstream.ConsumerConfig{}, 40, "", maxExponential},
	} {
		if got := retryDelay(tc.cfg, tc.attempt, tc.retryAfter, now); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestAddressClass(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"10.0.0.1": "private", "172.16.3.4": "private", "192.168.1.1": "private", "fd00::1": "private",
		"169.254.169.254": "link-local", "fe80::1": "link-local",
		"224.0.0.1": "multicast", "ff02::1": "multicast", "0.0.0.0": "unspecified", "::": "unspecified",
		"100.64.0.1": "reserved", "240.0.0.1": "reserved", "255.255.255.255": "broadcast", "64:ff9b::7f00:1": "reserved",
		"93.184.216.34": "", "2606:2800:220:1:248:1893:25c8:1946": "", "8.8.8.8": "",
	} {
		if got := addressClass(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	if err := dialControl("tcp", "127.0.0.1:80", nil); !errors.Is(err, errForbiddenAddress) || !strings.Contains(err.Error(), "--push-allow-private-endpoints") {
		t.Errorf("dialControl loopback: %v", err)
	}
	if err := dialControl("tcp", "93.184.216.34:443", nil); err != nil {
		t.Errorf("dialControl public: %v", err)
	}
}

func TestParseEndpointAndRedact(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/in":              "https://hooks.example.com/in",
		"https://u:p@hooks.example.com:8443/in?k=s": "https://…@hooks.example.com:8443/in?…",
		"http://hooks.example.com":                  "http://hooks.example.com",
	} {
		u, err := parseEndpoint("endpoint", raw)
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if got := redact(u); got != want {
			t.Errorf("redact(%s) = %s, want %s", raw, got, want)
		}
	}
	for _, raw := range []string{"", "ftp://x/", "https://", "https:///path", "mailto:a@b", "https://x/#frag", "https://x:0/", "https://x:99999/", "//x/", "x", strings.Repeat("a", 3000)} {
		_, err := parseEndpoint("endpoint", raw)
		if !errors.Is(err, bridge.ErrInvalidEndpoint) {
			t.Errorf("%q: %v, want INVALID_ENDPOINT", raw, err)
		}
		if err != nil && len(raw) > 5 && strings.Contains(err.Error(), raw) {
			t.Errorf("%q: the error repeats the URL: %v", raw, err)
		}
	}
}

// FuzzParseEndpoint: no panic; whatever passes is http(s) with a host, and
// its redacted form holds neither user info nor query.
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"https://u:p@h:1/p?q=1", "http://h", "http://[::1]:80/", "https://h/%zz", "http://h?#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parseEndpoint("endpoint", raw)
		if err != nil {
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			t.Fatalf("%q passed as %v", raw, u)
		}
		r := redact(u)
		if u.User != nil && !strings.HasPrefix(r, u.Scheme+"://…@") {
			t.Fatalf("redact(%q) = %q shows the user info", raw, r)
		}
		if u.RawQuery != "" && !strings.HasSuffix(r, "?…") {
			t.Fatalf("redact(%q) = %q shows the query", raw, r)
		}
		if strings.Count(r, "?") > 1 || strings.Contains(r, "?") && !strings.HasSuffix(r, "?…") {
			t.Fatalf("redact(%q) = %q", raw, r)
		}
	})
}
