// Package config reads the bridge's configuration from flags and JETWAY_*
// environment variables; a flag given on the command line wins over the
// environment.
package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jetway-dev/jetway/auth"
)

// Config is the whole configuration, one struct per concern.
type Config struct {
	NATS    NATS
	Server  Server
	Consume Consume
	Browser Browser
	Auth    Auth
	Log     Log
	Tracing Tracing
	// Bootstrap declares streams and consumers to ensure at start.
	Bootstrap Bootstrap
	// DeadLetters configures the dead-letter worker (issue 19).
	DeadLetters DeadLetters
	// Push configures push delivery to HTTP endpoints (package push).
	Push Push
	// Warnings are what the start-up log should warn about and Parse does
	// not refuse: secrets given on the command line, visible to every local
	// user in ps and /proc/<pid>/cmdline. They never hold a secret.
	Warnings []string
}

// NATS says how the bridge reaches JetStream.
type NATS struct {
	// URLs are the NATS servers, comma-separated; empty runs an embedded
	// server.
	URLs string
	// DataDir is the embedded server's JetStream store.
	DataDir string
	// EmbeddedListen opens a NATS port on the embedded server ("" none).
	// The port is never anonymous: clients, and the bridge in process,
	// present EmbeddedUser and its password.
	EmbeddedListen string
	// EmbeddedUser is the user of the embedded server's port.
	EmbeddedUser string
	// EmbeddedPasswordFile holds EmbeddedUser's password (read at start).
	// Empty: the password is generated at the first start with a port and
	// kept in DataDir's embedded-nats-password file (mode 0600).
	EmbeddedPasswordFile string
	// EmbeddedSync is the embedded server's fsync policy: the zero value is
	// nats-server's default (an fsync every 2 minutes).
	EmbeddedSync SyncPolicy
	// EmbeddedMaxMemoryStore and EmbeddedMaxFileStore cap the embedded
	// server's JetStream memory and file stores, in bytes; 0 is
	// nats-server's default (a share of the memory and disk it sees).
	EmbeddedMaxMemoryStore, EmbeddedMaxFileStore Bytes
	// EmbeddedJSDomain is the embedded server's JetStream domain ("" none).
	EmbeddedJSDomain string
	// JSDomain is the JetStream domain of the --nats-url servers: the
	// bridge's JetStream API requests go to $JS.<domain>.API. ("" none).
	JSDomain string
	// Credentials are presented to NATS.
	Credentials auth.NATSCredentials
	// ConnectTimeout bounds the wait for the first connection at start.
	ConnectTimeout time.Duration
	// ReconnectWait is the longest pause between two rounds of
	// connection attempts (every server tried once), while the bridge is
	// not connected: at start, after a loss, with a refused credential.
	// The first pause is 50 ms, and each doubles up to it.
	ReconnectWait time.Duration
	// ReconnectJitter is the most added at random to each pause, so that
	// replicas that lost NATS together do not all come back at once.
	ReconnectJitter time.Duration
	// RequestTimeout bounds the wait for JetStream's answer to a publish
	// or one sync ack, whatever the client's deadline, and is the timeout
	// of JetStream calls whose client set no deadline.
	RequestTimeout time.Duration
}

// Server configures the gRPC and HTTP listeners.
type Server struct {
	GRPCListen string
	HTTPListen string
	// MaxConcurrentStreams caps concurrent RPCs per HTTP/2 connection.
	MaxConcurrentStreams uint
	// MaxCallTimeout clamps the deadline of unary calls (Grpc-Timeout).
	MaxCallTimeout time.Duration
	// ShutdownTimeout bounds the graceful drain at shutdown.
	ShutdownTimeout time.Duration
	// HTTPReadHeaderTimeout bounds the reading of a request's headers
	// (and of an HTTPS connection's TLS handshake).
	HTTPReadHeaderTimeout time.Duration
	// HTTPReadBodyTimeout bounds the reading of a request's body, from the
	// end of its headers; streaming responses are not bounded by it.
	HTTPReadBodyTimeout time.Duration
	// GRPCConnectionTimeout bounds a gRPC connection's handshake: TLS, the
	// HTTP/2 preface and settings.
	GRPCConnectionTimeout time.Duration
	// MaxConnections caps the open connections of each listener (gRPC,
	// HTTP); the next waits in the kernel's backlog. 0 is no cap.
	MaxConnections int
	// PublishWindow is PublishStream's per-stream pipeline window.
	PublishWindow int
	// MaxBodyBytes caps REST request bodies; 0 derives it from the NATS
	// maximum payload.
	MaxBodyBytes int64
	// MetricsListen is a host:port serving Prometheus /metrics on its
	// own, unauthenticated ("" none).
	MetricsListen string
	// PprofListen is a loopback host:port serving net/http/pprof under
	// /debug/pprof/ ("" none). Never the API listener: profiling is
	// unauthenticated and shows the command line.
	PprofListen string
	// FollowLiveHeap bounds the heap's growth between collections by the
	// live heap (package memlimit); off leaves it to GOGC and GOMEMLIMIT.
	FollowLiveHeap bool
	// ReplicaName names this process in the session views ("" the host
	// name and process id).
	ReplicaName string
}

// Browser configures what the HTTP listener admits from web pages.
type Browser struct {
	// AllowedOrigins are the origins (scheme://host[:port], as browsers
	// send them in Origin) whose pages may make cross-origin requests to
	// the REST API; any other cross-origin browser request that changes
	// state is refused. Empty: same-origin and non-browser clients only.
	// CORS answers these origins (and only these) too.
	AllowedOrigins Origins
	// CORSAllowedMethods are the methods a preflight grants.
	CORSAllowedMethods Tokens
	// CORSAllowedHeaders are request headers a preflight grants beyond
	// those the API reads (Authorization, Content-Type, Idempotency-Key,
	// Last-Event-ID, X-Request-Id, traceparent, tracestate).
	CORSAllowedHeaders Tokens
	// CORSAllowCredentials lets allowed pages send credentialed requests
	// (cookies the bridge ignores, TLS client certificates).
	CORSAllowCredentials bool
	// CORSMaxAge is how long browsers may cache a preflight's answer.
	CORSMaxAge time.Duration
}

// Tokens is a comma-separated list of HTTP tokens (header names,
// methods). Setting it again replaces the list.
type Tokens []string

// String joins the tokens with commas.
func (t *Tokens) String() string { return strings.Join(*t, ",") }

// Set parses a comma-separated list of RFC 9110 tokens; "" is none.
func (t *Tokens) Set(v string) error {
	var list Tokens
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		for _, r := range s {
			if r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
				return fmt.Errorf("%q is not an HTTP token (a header name or method)", s)
			}
		}
		list = append(list, s)
	}
	*t = list
	return nil
}

// Origins is a comma-separated list of web origins, each checked when set:
// scheme http or https, a host, an optional port and nothing else, in the
// lower-case form browsers send (an origin spelt otherwise would never
// match). Setting it again replaces the list.
type Origins []string

// String joins the origins with commas.
func (o *Origins) String() string { return strings.Join(*o, ",") }

// Set parses a comma-separated list; "" is none.
func (o *Origins) Set(v string) error {
	var list Origins
	if strings.TrimSpace(v) != "" {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if err := checkOrigin(s); err != nil {
				return err
			}
			list = append(list, s)
		}
	}
	*o = list
	return nil
}

func checkOrigin(s string) error {
	if s == "" {
		return errors.New("empty origin in the list")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("origin %q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("origin %q: want scheme http or https", s)
	case s != u.Scheme+"://"+u.Host || u.Hostname() == "":
		// Also what url.Parse normalises (an upper-case scheme) or drops.
		return fmt.Errorf("origin %q: want scheme://host[:port] in lower case and nothing else (no path, not even /)", s)
	case u.Host != strings.ToLower(u.Host):
		return fmt.Errorf("origin %q: browsers send the host in lower case", s)
	case net.ParseIP(u.Hostname()) == nil && strings.Trim(u.Hostname(), "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "":
		// No wildcards: every allowed origin is named. (Browsers send
		// international names as punycode, xn--….)
		return fmt.Errorf("origin %q: the host must be a DNS name (letters, digits, '.', '-', '_') or an IP address", s)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(p)
		switch {
		case err != nil || n < 1 || n > 65535 || strings.HasPrefix(p, "0"):
			return fmt.Errorf("origin %q: invalid port", s)
		case u.Scheme == "http" && n == 80, u.Scheme == "https" && n == 443:
			return fmt.Errorf("origin %q: browsers omit the scheme's default port", s)
		}
	}
	return nil
}

// SyncPolicy is when the embedded server fsyncs its JetStream store: the
// zero value is nats-server's default (every 2 minutes), Always an fsync
// before each message is acknowledged, Interval every Interval.
type SyncPolicy struct {
	Always   bool
	Interval time.Duration
}

// String is "always", or the interval ("0s" is the default).
func (p *SyncPolicy) String() string {
	if p.Always {
		return "always"
	}
	return p.Interval.String()
}

// Set parses "always" or a duration (0 is the default).
func (p *SyncPolicy) Set(v string) error {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "always") {
		*p = SyncPolicy{Always: true}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q: want a duration (e.g. 1s, 2m) or always", v)
	}
	if d < 0 {
		return fmt.Errorf("%q: must not be negative", v)
	}
	*p = SyncPolicy{Interval: d}
	return nil
}

// LogString is the policy for the start-up log: the default named.
func (p SyncPolicy) LogString() string {
	if p == (SyncPolicy{}) {
		return "default (2m)"
	}
	return p.String()
}

// Bytes is a size in bytes, given as a plain integer or with a suffix:
// KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (of 1000).
type Bytes int64

// String is the size in bytes.
func (b *Bytes) String() string { return strconv.FormatInt(int64(*b), 10) }

// LogString is the size for the start-up log: 0 named the default.
func (b Bytes) LogString() string {
	if b == 0 {
		return "default"
	}
	return b.String()
}

// Set parses a size.
func (b *Bytes) Set(v string) error {
	v = strings.TrimSpace(v)
	num, mult := v, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil:
		return fmt.Errorf("%q: want a number of bytes, e.g. 1073741824 or 1GiB", v)
	case n < 0:
		return fmt.Errorf("%q: must not be negative", v)
	case n > math.MaxInt64/mult:
		return fmt.Errorf("%q: too large", v)
	}
	*b = Bytes(n * mult)
	return nil
}

// Consume configures consuming: ack-token keys and request caps.
type Consume struct {
	// AckKeys are base64 keys (at least 32 bytes each), comma-separated;
	// the first signs, all verify. Empty: a random key per process.
	AckKeys string
	// AckKeysFile is a file holding AckKeys (commas or white space between
	// keys); not with AckKeys.
	AckKeysFile string
	// MaxFetchBatch, MaxFetchBytes and MaxFetchWait cap one Fetch.
	MaxFetchBatch int
	MaxFetchBytes int
	MaxFetchWait  time.Duration
	// MaxAckBatch caps the operations of one Ack call.
	MaxAckBatch int
	// MaxInFlight and MaxBytesInFlight cap one Subscribe/Consume window.
	MaxInFlight      int
	MaxBytesInFlight int
}

// AckKeyBytes decodes AckKeys, or the keys in AckKeysFile (read at each
// call).
func (c Consume) AckKeyBytes() ([][]byte, error) {
	name, text := "--ack-keys", c.AckKeys
	if c.AckKeysFile != "" {
		if strings.TrimSpace(c.AckKeys) != "" {
			return nil, errors.New("--ack-keys-file and --ack-keys (JETWAY_ACK_KEYS): set only one")
		}
		b, err := os.ReadFile(c.AckKeysFile)
		if err != nil {
			return nil, fmt.Errorf("--ack-keys-file: %w", err)
		}
		if name, text = "--ack-keys-file", string(b); strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("--ack-keys-file: %s is empty", c.AckKeysFile)
		}
	}
	fields := strings.FieldsFunc(text, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	var keys [][]byte
	for i, k := range fields {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			if raw, err = base64.RawURLEncoding.DecodeString(k); err != nil {
				return nil, fmt.Errorf("%s: key %d is not base64", name, i+1)
			}
		}
		if len(raw) < 32 {
			return nil, fmt.Errorf("%s: key %d is %d bytes, want at least 32 (openssl rand -base64 32)", name, i+1, len(raw))
		}
		keys = append(keys, raw)
	}
	return keys, nil
}

// Auth configures client authentication and TLS on the listeners.
type Auth struct {
	// Mode is auto (authentication when ConfigFile is set; otherwise none,
	// which is allowed only on loopback listeners), required or none.
	Mode string
	// ConfigFile declares identities, credentials and permissions.
	ConfigFile string
	// TLSCert and TLSKey serve TLS on both listeners; TLSClientCA verifies
	// client certificates (mTLS) when given.
	TLSCert, TLSKey, TLSClientCA string
}

// DeadLetters configures the dead-letter worker (package deadletter).
type DeadLetters struct {
	// Enabled runs the advisory stream and worker and copies TERMed
	// messages first (--dead-letters, default on).
	Enabled bool
	// Replicas of the advisory stream and its consumer.
	Replicas int
}

// Push configures push delivery (package push).
type Push struct {
	// AllowPrivateEndpoints lets push endpoints reach loopback, private,
	// link-local, multicast and unspecified addresses.
	AllowPrivateEndpoints bool
	// MaxInFlight caps the push requests in flight on this replica over
	// every subscription (each keeps one more of its own).
	MaxInFlight int
	// Replicas of the subscriptions bucket's stream KV_JETWAY_PUSH when
	// it is created.
	Replicas int
}

// Bootstrap configures the declarative bootstrap (package bootstrap).
type Bootstrap struct {
	// File lists the streams and consumers to ensure once the bridge
	// first reaches NATS ("" none); /readyz reports not ready until they
	// are.
	File string
}

// Log configures logging.
type Log struct {
	Format string // text or json
	Level  slog.Level
	// AuditFile receives the audit records (package audit) as JSON lines;
	// empty leaves them in the main log.
	AuditFile string
}

// Tracing configures OpenTelemetry tracing (package tracing).
type Tracing struct {
	// Endpoint is the OTLP collector's URL (http://host:4317 for gRPC,
	// http://host:4318 for HTTP); empty turns tracing off. The standard
	// OTEL_EXPORTER_OTLP_* variables (headers, certificates, timeout),
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply.
	Endpoint string
	// Protocol is grpc or http/protobuf.
	Protocol string
	// SampleRatio samples the traces the bridge starts (a caller's sampled
	// flag decides for the traces it continues).
	SampleRatio float64
}

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "JETWAY_"

// EnvName is the environment variable of a flag: JETWAY_ and the flag name
// in upper case with '-' as '_' (--nats-url is JETWAY_NATS_URL).
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// natsClientFlags are the flags of how a client reaches the --nats-url
// servers: domain, timeouts, credentials.
func natsClientFlags(fs *flag.FlagSet, n *NATS) {
	fs.StringVar(&n.JSDomain, "nats-js-domain", "", "JetStream domain of the --nats-url servers: JetStream API requests go to $JS.<domain>.API.; empty for none")
	fs.DurationVar(&n.ConnectTimeout, "nats-connect-timeout", 10*time.Second, "wait at most this long for the first NATS connection")
	fs.DurationVar(&n.ReconnectWait, "nats-reconnect-wait", 2*time.Second, "longest pause between rounds of NATS connection attempts while not connected: after a loss the first is 50ms, each doubling up to this; at start, this (each attempt that fails is logged)")
	fs.DurationVar(&n.ReconnectJitter, "nats-reconnect-jitter", 100*time.Millisecond, "most added at random to each pause between NATS connection attempts (0 for none)")
	fs.DurationVar(&n.RequestTimeout, "nats-request-timeout", 5*time.Second, "longest wait for JetStream's answer to a publish or one sync ack, whatever the client's deadline (past it: UNAVAILABLE), and the timeout of JetStream calls whose client set no deadline")
	cr := &n.Credentials
	fs.StringVar(&cr.CredsFile, "nats-creds", "", "NATS creds file (user JWT and seed, as nsc writes it)")
	fs.StringVar(&cr.NKeySeedFile, "nats-nkey-file", "", "file holding a NATS user NKey seed")
	fs.StringVar(&cr.NKeySeed, "nats-nkey", "", "NATS user NKey seed (prefer --nats-nkey-file or JETWAY_NATS_NKEY: the command line is visible in ps)")
	fs.StringVar(&cr.TokenFile, "nats-token-file", "", "file holding the NATS token (read again at each connect)")
	fs.StringVar(&cr.Token, "nats-token", "", "NATS token (prefer --nats-token-file or JETWAY_NATS_TOKEN: the command line is visible in ps)")
	fs.StringVar(&cr.User, "nats-user", "", "NATS user")
	fs.StringVar(&cr.PasswordFile, "nats-password-file", "", "file holding the NATS password of --nats-user (read again at each connect)")
	fs.StringVar(&cr.Password, "nats-password", "", "NATS password (prefer --nats-password-file or JETWAY_NATS_PASSWORD: the command line is visible in ps)")
	fs.StringVar(&cr.TLSCA, "nats-tls-ca", "", "PEM file of CAs for the NATS servers' certificates")
	fs.StringVar(&cr.TLSCert, "nats-tls-cert", "", "client certificate for TLS to NATS")
	fs.StringVar(&cr.TLSKey, "nats-tls-key", "", "client key for TLS to NATS")
	fs.StringVar(&cr.TLSServerName, "nats-tls-server-name", "", "server name expected in the NATS certificate")
}

// ParseNATSClient reads the flags and JETWAY_* variables that say how to
// reach NATS as a client (--nats-url, which is required here,
// --nats-js-domain, --nats-connect-timeout, --nats-request-timeout and
// the credentials), as the bridge reads them, for subcommands that
// connect on their own (bridge bootstrap). extra adds the subcommand's
// own flags, which are not read from the environment; the arguments
// after the flags are returned.
func ParseNATSClient(name string, args []string, getenv func(string) string, output io.Writer, extra func(*flag.FlagSet)) (NATS, []string, error) {
	var n NATS
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&n.URLs, "nats-url", "", "NATS server URLs, comma-separated (required)")
	natsClientFlags(fs, &n)
	ours := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { ours[f.Name] = true })
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return n, nil, fmt.Errorf("config: %w", err)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(f.Name)
		if v := getenv(env); v != "" && ours[f.Name] && !onCommandLine[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if n.URLs == "" {
		errs = append(errs, errors.New("--nats-url (or "+EnvName("nats-url")+") is required"))
	}
	if _, err := n.Credentials.Options(); err != nil {
		errs = append(errs, err)
	}
	if err := checkDomain(n.JSDomain); err != nil {
		errs = append(errs, fmt.Errorf("--nats-js-domain %q: %w", n.JSDomain, err))
	}
	if n.ConnectTimeout <= 0 || n.RequestTimeout <= 0 {
		errs = append(errs, errors.New("timeouts must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return n, nil, fmt.Errorf("config: %w", err)
	}
	return n, fs.Args(), nil
}

// Parse reads args (without the program name) and the environment. A
// variable of a flag also given in args is not read.
func Parse(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.SetOutput(output)
	n := &c.NATS
	fs.StringVar(&n.URLs, "nats-url", "", "NATS server URLs, comma-separated; empty starts an embedded JetStream server")
	fs.BoolVar(&c.DeadLetters.Enabled, "dead-letters", true, "copy the messages consumers with a dead_letter_subject give up on (max deliveries, TERM) there: keeps the stream JETWAY_DEAD_LETTER_ADVISORIES and its consumer jetway-dead-letters; false: neither")
	fs.IntVar(&c.DeadLetters.Replicas, "dead-letters-replicas", 1, "replicas of the JETWAY_DEAD_LETTER_ADVISORIES stream and its consumer (1 to 5; as many as the cluster's servers for a worker that survives a node)")
	fs.StringVar(&c.Bootstrap.File, "bootstrap", "", "file (YAML or JSON) of streams and consumers to ensure once NATS is reached: missing ones created, the settings it gives updated, nothing deleted; not ready until done")
	fs.StringVar(&n.DataDir, "data-dir", "jetway-data", "JetStream storage directory of the embedded server")
	fs.StringVar(&n.EmbeddedListen, "embedded-nats-listen", "", "open a NATS client port on the embedded server (host:port); empty opens none. The port requires --embedded-nats-user and its password")
	fs.StringVar(&n.EmbeddedUser, "embedded-nats-user", "jetway", "user of the embedded server's NATS port")
	fs.StringVar(&n.EmbeddedPasswordFile, "embedded-nats-password-file", "", "file holding the password of --embedded-nats-user; empty generates one, kept in <data-dir>/embedded-nats-password (mode 0600)")
	fs.Var(&n.EmbeddedSync, "embedded-sync-interval", "how often the embedded server fsyncs its JetStream store: a duration, or always (an fsync before each acknowledgement); 0 is nats-server's default, 2m")
	fs.Var(&n.EmbeddedMaxMemoryStore, "embedded-max-memory-store", "cap on the embedded server's JetStream memory store, in bytes (suffixes KiB, MiB, GiB, TiB, KB, MB, GB, TB); 0 is nats-server's default, 75% of the memory (or GOMEMLIMIT)")
	fs.Var(&n.EmbeddedMaxFileStore, "embedded-max-file-store", "cap on the embedded server's JetStream file store, in bytes (suffixes KiB, MiB, GiB, TiB, KB, MB, GB, TB); 0 is nats-server's default, derived from the disk's free space")
	fs.StringVar(&n.EmbeddedJSDomain, "embedded-js-domain", "", "JetStream domain of the embedded server; empty sets none")
	natsClientFlags(fs, n)

	s := &c.Server
	fs.StringVar(&s.GRPCListen, "grpc-listen", "127.0.0.1:9090", "gRPC listen address")
	fs.StringVar(&s.HTTPListen, "http-listen", "127.0.0.1:8080", "HTTP (REST, health, OpenAPI) listen address")
	fs.UintVar(&s.MaxConcurrentStreams, "max-concurrent-streams", 1024, "maximum concurrent RPCs per HTTP/2 connection")
	fs.DurationVar(&s.MaxCallTimeout, "max-call-timeout", time.Minute, "clamp on the deadline of unary calls")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "bound on the graceful drain at shutdown")
	fs.DurationVar(&s.HTTPReadHeaderTimeout, "http-read-header-timeout", 10*time.Second, "bound on reading a request's headers (and the TLS handshake)")
	fs.DurationVar(&s.HTTPReadBodyTimeout, "http-read-body-timeout", 30*time.Second, "bound on reading a REST request's body, from the end of its headers (408 and the connection closed); streaming responses are not bounded")
	fs.DurationVar(&s.GRPCConnectionTimeout, "grpc-connection-timeout", 10*time.Second, "bound on a gRPC connection's handshake (TLS, HTTP/2 preface and settings)")
	fs.IntVar(&s.MaxConnections, "max-connections", 4096, "most open connections per listener (gRPC, HTTP); more wait until one closes; 0 is no cap")
	fs.IntVar(&s.PublishWindow, "publish-window", 1024, "publishes one PublishStream may have awaiting acks")
	fs.Int64Var(&s.MaxBodyBytes, "http-max-body", 0, "maximum REST request body in bytes; 0 derives it from the NATS max payload")
	fs.StringVar(&s.MetricsListen, "metrics-listen", "", "serve Prometheus /metrics on this host:port of its own (unauthenticated: a private port for the scraper); with client authentication off, /metrics is also on the HTTP port")
	fs.StringVar(&s.PprofListen, "pprof-listen", "", "serve /debug/pprof/ on this loopback host:port of its own (unauthenticated; a non-loopback address is refused); empty serves none")
	fs.StringVar(&s.ReplicaName, "replica-name", "", "name of this bridge process in the session views (ListSessions, GetBridgeInfo); default the host name and process id")
	fs.BoolVar(&s.FollowLiveHeap, "follow-live-heap", true, "bound the heap's growth between collections by the live heap (trades up to about 5% of a core for less RSS); false leaves it to GOGC and GOMEMLIMIT")

	fs.Var(&c.Browser.AllowedOrigins, "allowed-origins", "web `origins` (scheme://host[:port], comma-separated) whose pages may make cross-origin REST requests, CORS included; default none: same-origin and non-browser clients only")
	b := &c.Browser
	b.CORSAllowedMethods = Tokens{"GET", "HEAD", "POST", "PUT", "DELETE"}
	fs.Var(&b.CORSAllowedMethods, "cors-allowed-methods", "`methods` a CORS preflight of an allowed origin is granted (comma-separated)")
	fs.Var(&b.CORSAllowedHeaders, "cors-allowed-headers", "request `headers` a CORS preflight is granted beyond the API's own (Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-Id, traceparent, tracestate), comma-separated")
	fs.BoolVar(&b.CORSAllowCredentials, "cors-allow-credentials", false, "let allowed origins send credentialed requests (Access-Control-Allow-Credentials: true; needed for TLS client certificates from pages)")
	fs.DurationVar(&b.CORSMaxAge, "cors-max-age", 10*time.Minute, "how long browsers may cache a CORS preflight answer (browsers cap it: Chromium at 2h)")

	fs.BoolVar(&c.Push.AllowPrivateEndpoints, "push-allow-private-endpoints", false, "let push endpoints reach loopback, private, link-local (169.254.169.254), multicast and unspecified addresses (refused by default: SSRF)")
	fs.IntVar(&c.Push.MaxInFlight, "push-max-in-flight", 256, "most push requests in flight on this replica over every subscription (each subscription keeps one more of its own)")
	fs.IntVar(&c.Push.Replicas, "push-replicas", 1, "replicas of the push subscriptions bucket's stream KV_JETWAY_PUSH when the first subscription creates it (1 to 5; 3 in a cluster so that subscriptions survive a node)")

	co := &c.Consume
	fs.StringVar(&co.AckKeys, "ack-keys", "", "ack-token keys, base64, comma-separated (first signs); every replica needs the same (prefer --ack-keys-file or JETWAY_ACK_KEYS: the command line is visible in ps)")
	fs.StringVar(&co.AckKeysFile, "ack-keys-file", "", "file holding the ack-token keys, base64, separated by commas or new lines (first signs); read at start")
	fs.IntVar(&co.MaxFetchBatch, "max-fetch-batch", 1000, "largest Fetch batch")
	fs.IntVar(&co.MaxFetchBytes, "max-fetch-bytes", 3<<20, "largest Fetch max_bytes (and its default)")
	fs.DurationVar(&co.MaxFetchWait, "max-fetch-wait", 30*time.Second, "longest Fetch wait")
	fs.IntVar(&co.MaxAckBatch, "max-ack-batch", 1000, "most operations in one Ack call")
	fs.IntVar(&co.MaxInFlight, "max-in-flight", 4096, "largest max_in_flight of one Subscribe/Consume stream")
	fs.IntVar(&co.MaxBytesInFlight, "max-bytes-in-flight", 64<<20, "largest max_bytes_in_flight of one Subscribe/Consume stream")

	a := &c.Auth
	fs.StringVar(&a.Mode, "auth-mode", "auto", "client authentication: auto (on when --auth-config is set, else off on loopback only), required, or none")
	fs.StringVar(&a.ConfigFile, "auth-config", "", "identities, credentials and permissions (YAML or JSON)")
	fs.StringVar(&a.TLSCert, "tls-cert", "", "server certificate for the gRPC and HTTP listeners")
	fs.StringVar(&a.TLSKey, "tls-key", "", "server key for the gRPC and HTTP listeners")
	fs.StringVar(&a.TLSClientCA, "tls-client-ca", "", "CA bundle that verifies client certificates (mTLS identities)")

	l := &c.Log
	fs.StringVar(&l.Format, "log-format", "text", "log format: text or json")
	fs.TextVar(&l.Level, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&l.AuditFile, "audit-log", "", "write the audit records (admin writes, authentication and authorization refusals) as JSON lines to this file (appended, mode 0600); empty keeps them in the main log, marked log=audit")

	t := &c.Tracing
	fs.StringVar(&t.Endpoint, "otlp-endpoint", "", "send OpenTelemetry traces to this OTLP collector URL (http://host:4317 with --otlp-protocol grpc, http://host:4318 with http/protobuf; https:// for TLS); empty: tracing off (trace context is still carried from callers into published messages)")
	fs.StringVar(&t.Protocol, "otlp-protocol", "grpc", "OTLP protocol: grpc or http/protobuf")
	fs.Float64Var(&t.SampleRatio, "trace-sample-ratio", 1, "share of the traces the bridge starts that are sampled, 0 to 1 (a caller's traceparent decides for its own traces)")

	// The command line, then the environment for every flag it did not
	// set: a flag on the command line wins.
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(f.Name)
		if v := getenv(env); v != "" && envErr == nil && !onCommandLine[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("config: %s: %w", env, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	// A secret given on the command line (not the environment) is worth a
	// warning: every local user sees it in ps.
	c.Warnings = inlineSecrets(onCommandLine, c.NATS.URLs)
	return c, c.validate()
}

// inlineSecrets warns about the secret flags given on the command line
// (onCommandLine[name] true), without their values.
func inlineSecrets(onCommandLine map[string]bool, urls string) []string {
	instead := map[string]string{
		"ack-keys":      "--ack-keys-file or " + EnvName("ack-keys"),
		"nats-password": "--nats-password-file or " + EnvName("nats-password"),
		"nats-token":    "--nats-token-file or " + EnvName("nats-token"),
		"nats-nkey":     "--nats-nkey-file or " + EnvName("nats-nkey"),
	}
	var ws []string
	for _, name := range []string{"ack-keys", "nats-password", "nats-token", "nats-nkey"} {
		if onCommandLine[name] {
			ws = append(ws, fmt.Sprintf("--%s on the command line is visible to every local user in ps and /proc/<pid>/cmdline: use %s", name, instead[name]))
		}
	}
	if onCommandLine["nats-url"] && hasUserInfo(urls) {
		ws = append(ws, "--nats-url with user information on the command line is visible to every local user in ps and /proc/<pid>/cmdline: use --nats-user with --nats-password-file, --nats-token-file, or "+EnvName("nats-url"))
	}
	return ws
}

func (c Config) validate() error {
	var errs []error
	// A listen address that cannot be one says so here, before the
	// loopback rule of client authentication could misread it.
	for _, a := range []struct {
		flag, addr string
		optional   bool
	}{
		{"--grpc-listen", c.Server.GRPCListen, false}, {"--http-listen", c.Server.HTTPListen, false},
		{"--pprof-listen", c.Server.PprofListen, true}, {"--embedded-nats-listen", c.NATS.EmbeddedListen, true},
		{"--metrics-listen", c.Server.MetricsListen, true},
	} {
		if a.addr == "" && a.optional {
			continue
		}
		if err := checkListen(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: bad address: %w", a.flag, a.addr, err))
		}
	}
	if c.Browser.CORSMaxAge < 0 || c.Browser.CORSMaxAge > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--cors-max-age %s: from 0 to 24h", c.Browser.CORSMaxAge))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.Log.Format))
	}
	if err := c.Tracing.check(); err != nil {
		errs = append(errs, err)
	}
	if c.NATS.URLs == "" && c.NATS.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required for the embedded server"))
	}
	if c.Server.PublishWindow < 1 || c.Server.PublishWindow > 65536 {
		errs = append(errs, fmt.Errorf("--publish-window %d: want 1 to 65536", c.Server.PublishWindow))
	}
	if c.Server.MaxCallTimeout <= 0 || c.Server.ShutdownTimeout <= 0 || c.NATS.RequestTimeout <= 0 || c.NATS.ConnectTimeout <= 0 {
		errs = append(errs, errors.New("timeouts must be positive"))
	}
	for _, t := range []struct {
		flag string
		d    time.Duration
	}{
		{"--http-read-header-timeout", c.Server.HTTPReadHeaderTimeout},
		{"--http-read-body-timeout", c.Server.HTTPReadBodyTimeout},
		{"--grpc-connection-timeout", c.Server.GRPCConnectionTimeout},
		{"--nats-reconnect-wait", c.NATS.ReconnectWait},
	} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", t.flag, t.d))
		}
	}
	if c.NATS.ReconnectJitter < 0 {
		errs = append(errs, fmt.Errorf("--nats-reconnect-jitter %s: must not be negative", c.NATS.ReconnectJitter))
	}
	if c.Server.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("--max-connections %d: want 0 (no cap) or more", c.Server.MaxConnections))
	}
	switch c.Auth.Mode {
	case "auto", "none":
	case "required":
		if c.Auth.ConfigFile == "" {
			errs = append(errs, errors.New("--auth-mode=required needs --auth-config"))
		}
	default:
		errs = append(errs, fmt.Errorf("--auth-mode %q: want auto, required or none", c.Auth.Mode))
	}
	if c.Auth.Mode == "none" && c.Auth.ConfigFile != "" {
		errs = append(errs, errors.New("--auth-mode=none contradicts --auth-config"))
	}
	if (c.Auth.TLSCert == "") != (c.Auth.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.Auth.TLSClientCA != "" && c.Auth.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if c.Server.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("--http-max-body must not be negative"))
	}
	if _, err := c.NATS.Credentials.Options(); err != nil {
		errs = append(errs, err)
	}
	if c.NATS.URLs == "" && c.NATS.Credentials != (auth.NATSCredentials{}) {
		errs = append(errs, errors.New("--nats-creds, --nats-nkey*, --nats-token*, --nats-user, --nats-password* and --nats-tls-* are for --nats-url: the embedded server's port uses --embedded-nats-user and --embedded-nats-password-file"))
	}
	if c.NATS.URLs != "" {
		var given []string
		for _, f := range []struct {
			flag string
			set  bool
		}{
			{"--embedded-nats-listen", c.NATS.EmbeddedListen != ""},
			{"--embedded-nats-password-file", c.NATS.EmbeddedPasswordFile != ""},
			{"--embedded-sync-interval", c.NATS.EmbeddedSync != SyncPolicy{}},
			{"--embedded-max-memory-store", c.NATS.EmbeddedMaxMemoryStore != 0},
			{"--embedded-max-file-store", c.NATS.EmbeddedMaxFileStore != 0},
			{"--embedded-js-domain", c.NATS.EmbeddedJSDomain != ""},
		} {
			if f.set {
				given = append(given, f.flag)
			}
		}
		if len(given) > 0 {
			errs = append(errs, fmt.Errorf("%s: for the embedded server, not with --nats-url (an external server's fsync, limits and domain are in its own configuration)", strings.Join(given, ", ")))
		}
	}
	if c.NATS.URLs == "" && c.NATS.JSDomain != "" {
		errs = append(errs, errors.New("--nats-js-domain is for --nats-url: the embedded server's domain is --embedded-js-domain"))
	}
	for _, d := range []struct{ flag, domain string }{{"--nats-js-domain", c.NATS.JSDomain}, {"--embedded-js-domain", c.NATS.EmbeddedJSDomain}} {
		if err := checkDomain(d.domain); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", d.flag, d.domain, err))
		}
	}
	if c.NATS.URLs == "" && c.NATS.EmbeddedListen != "" && c.NATS.EmbeddedUser == "" {
		errs = append(errs, errors.New("--embedded-nats-listen needs --embedded-nats-user: the port is never anonymous"))
	}
	if _, err := c.Consume.AckKeyBytes(); err != nil {
		errs = append(errs, err)
	}
	if c.Consume.MaxFetchBatch < 1 || c.Consume.MaxFetchBytes < 1 || c.Consume.MaxFetchWait <= 0 || c.Consume.MaxAckBatch < 1 ||
		c.Consume.MaxInFlight < 1 || c.Consume.MaxBytesInFlight < 1 {
		errs = append(errs, errors.New("--max-fetch-*, --max-ack-batch and --max-*-in-flight must be positive"))
	}
	if r := c.DeadLetters.Replicas; r < 1 || r > 5 {
		errs = append(errs, fmt.Errorf("--dead-letters-replicas %d: want 1 to 5", r))
	}
	if c.Push.MaxInFlight < 1 {
		errs = append(errs, errors.New("--push-max-in-flight must be positive"))
	}
	if r := c.Push.Replicas; r < 1 || r > 5 {
		errs = append(errs, fmt.Errorf("--push-replicas %d: want 1 to 5", r))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// check refuses an endpoint that is not an http(s) URL with a host, an
// unknown protocol and a ratio outside [0, 1].
func (t Tracing) check() error {
	var errs []error
	if t.Protocol != "grpc" && t.Protocol != "http/protobuf" {
		errs = append(errs, fmt.Errorf("--otlp-protocol %q: want grpc or http/protobuf", t.Protocol))
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 || t.SampleRatio != t.SampleRatio {
		errs = append(errs, fmt.Errorf("--trace-sample-ratio %v: want 0 to 1", t.SampleRatio))
	}
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--otlp-endpoint %q: want an http:// or https:// URL with a host (http://collector:4317)", RedactURLs(t.Endpoint)))
		}
	}
	return errors.Join(errs...)
}

// checkDomain checks a JetStream domain ("" is none): one subject token,
// as nats-server requires.
func checkDomain(d string) error {
	if d == "" {
		return nil
	}
	if strings.ContainsAny(d, ".*> \t\r\n") {
		return errors.New("a JetStream domain is one subject token: no '.', '*', '>' or white space")
	}
	return nil
}

// checkListen checks a host:port to listen on: a port number (0 picks
// one; -1 too, for nats-server), and a host that is empty (every
// interface), an IP address or a name.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. 127.0.0.1:8080")
	}
	if p, err := strconv.Atoi(port); err != nil || p < -1 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if strings.ContainsAny(host, " /\\") {
		return fmt.Errorf("host %q is not a host name or IP address", host)
	}
	return nil
}

// LogValue is the effective configuration for the start-up log, secrets
// redacted.
func (c Config) LogValue() slog.Value {
	mode := "embedded"
	if c.NATS.URLs != "" {
		mode = "external"
	}
	// Only what applies: an external NATS has no data dir or embedded
	// port, an embedded one no URL or credentials.
	nats := []any{slog.String("mode", mode)}
	if c.NATS.URLs != "" {
		nats = append(nats, slog.String("url", RedactURLs(c.NATS.URLs)), slog.Any("credentials", c.NATS.Credentials))
		if c.NATS.JSDomain != "" {
			nats = append(nats, slog.String("js_domain", c.NATS.JSDomain))
		}
	} else {
		nats = append(nats, slog.String("data_dir", c.NATS.DataDir), slog.String("sync_interval", c.NATS.EmbeddedSync.LogString()),
			slog.String("max_memory_store", c.NATS.EmbeddedMaxMemoryStore.LogString()), slog.String("max_file_store", c.NATS.EmbeddedMaxFileStore.LogString()))
		if c.NATS.EmbeddedJSDomain != "" {
			nats = append(nats, slog.String("js_domain", c.NATS.EmbeddedJSDomain))
		}
		if c.NATS.EmbeddedListen != "" {
			nats = append(nats, slog.String("embedded_listen", c.NATS.EmbeddedListen),
				slog.String("embedded_user", c.NATS.EmbeddedUser), slog.String("embedded_password_file", c.NATS.EmbeddedPasswordFile))
		}
	}
	nats = append(nats, slog.Duration("connect_timeout", c.NATS.ConnectTimeout), slog.Duration("reconnect_wait", c.NATS.ReconnectWait), slog.Duration("reconnect_jitter", c.NATS.ReconnectJitter),
		slog.Duration("request_timeout", c.NATS.RequestTimeout))
	// 0 is derived from the NATS max payload once connected; the serving
	// line logs the value in effect.
	maxBody := slog.Int64("http_max_body", c.Server.MaxBodyBytes)
	if c.Server.MaxBodyBytes == 0 {
		maxBody = slog.String("http_max_body", "auto (2 × NATS max payload + 64 KiB)")
	}
	return slog.GroupValue(
		slog.Group("nats", nats...),
		slog.Group("server",
			slog.String("grpc_listen", c.Server.GRPCListen),
			slog.String("http_listen", c.Server.HTTPListen),
			slog.Uint64("max_concurrent_streams", uint64(c.Server.MaxConcurrentStreams)),
			slog.Duration("max_call_timeout", c.Server.MaxCallTimeout),
			slog.Duration("shutdown_timeout", c.Server.ShutdownTimeout),
			slog.Duration("http_read_header_timeout", c.Server.HTTPReadHeaderTimeout),
			slog.Duration("http_read_body_timeout", c.Server.HTTPReadBodyTimeout),
			slog.Duration("grpc_connection_timeout", c.Server.GRPCConnectionTimeout),
			slog.Int("max_connections", c.Server.MaxConnections),
			slog.Int("publish_window", c.Server.PublishWindow),
			maxBody,
			slog.String("pprof_listen", c.Server.PprofListen), slog.String("metrics_listen", c.Server.MetricsListen),
			slog.Bool("follow_live_heap", c.Server.FollowLiveHeap),
			slog.String("replica_name", c.Server.ReplicaName)),
		slog.Group("browser",
			slog.String("allowed_origins", c.Browser.AllowedOrigins.String()),
			slog.String("cors_allowed_methods", c.Browser.CORSAllowedMethods.String()),
			slog.String("cors_allowed_headers", c.Browser.CORSAllowedHeaders.String()),
			slog.Bool("cors_allow_credentials", c.Browser.CORSAllowCredentials),
			slog.Duration("cors_max_age", c.Browser.CORSMaxAge)),
		slog.Group("consume",
			slog.Int("ack_keys", len(strings.FieldsFunc(c.Consume.AckKeys, func(r rune) bool { return r == ',' }))),
			slog.String("ack_keys_file", c.Consume.AckKeysFile),
			slog.Int("max_fetch_batch", c.Consume.MaxFetchBatch),
			slog.Int("max_fetch_bytes", c.Consume.MaxFetchBytes),
			slog.Duration("max_fetch_wait", c.Consume.MaxFetchWait),
			slog.Int("max_ack_batch", c.Consume.MaxAckBatch),
			slog.Int("max_in_flight", c.Consume.MaxInFlight),
			slog.Int("max_bytes_in_flight", c.Consume.MaxBytesInFlight)),
		slog.Group("auth",
			slog.String("mode", c.Auth.Mode),
			slog.String("config", c.Auth.ConfigFile),
			slog.Bool("tls", c.Auth.TLSCert != ""),
			slog.Bool("mtls", c.Auth.TLSClientCA != "")),
		slog.Group("log", slog.String("format", c.Log.Format), slog.String("level", c.Log.Level.String()), slog.String("audit_log", c.Log.AuditFile)),
		slog.Group("tracing", slog.String("otlp_endpoint", RedactURLs(c.Tracing.Endpoint)), slog.String("otlp_protocol", c.Tracing.Protocol), slog.Float64("sample_ratio", c.Tracing.SampleRatio)),
		slog.Group("bootstrap", slog.String("file", c.Bootstrap.File)),
		slog.Group("dead_letters", slog.Bool("enabled", c.DeadLetters.Enabled), slog.Int("replicas", c.DeadLetters.Replicas)),
		slog.Group("push", slog.Bool("allow_private_endpoints", c.Push.AllowPrivateEndpoints), slog.Int("max_in_flight", c.Push.MaxInFlight), slog.Int("replicas", c.Push.Replicas)),
	)
}

// hasUserInfo reports whether one of comma-separated NATS URLs carries a
// user and password or a token.
func hasUserInfo(urls string) bool {
	for _, u := range strings.Split(urls, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil && p.User != nil {
			return true
		}
	}
	return false
}

// RedactURLs hides the user information (user:password or token) of
// comma-separated NATS URLs, for logs.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		u = strings.TrimSpace(u)
		if p, err := url.Parse(u); err == nil && p.User != nil {
			p.User = url.User("REDACTED")
			u = p.String()
		}
		parts[i] = u
	}
	return strings.Join(parts, ",")
}
