package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jetway-dev/jetway/auth/perm"
)

// Access tokens are short-lived, narrowed credentials an identity mints
// for clients that cannot hold its own: a browser's EventSource (no
// Authorization header), a webhook sender given only a URL, one worker
// that should only ack. A token is a JWT (HS256, golang-jwt) prefixed
// "jwy_": it names the identity, the operations it allows, stream and
// subject patterns and an expiry, and acts as that identity narrowed to
// them. The HMAC key is derived from the ack keys (HMAC-SHA256 of each
// with a fixed label), so every replica that can verify another's ack
// tokens verifies its access tokens too, and rotating the ack keys
// rotates these.
//
// Verification looks the identity up in the current configuration: a
// token of an identity removed from it, or whose grants shrank, can do no
// more than the identity now may. There is no revocation list: tokens are
// short (max_access_token_lifetime, default 1h, at most 24h); rotate the
// ack keys to invalidate every token at once.

// AccessTokenPrefix starts every access token (so that it is recognisable
// to secret scanners and to Authenticate).
const AccessTokenPrefix = "jwy_"

// Operation is a family of calls an access token may make.
type Operation string

// The operations (the proto's Operation, lower case in tokens).
const (
	OpPublish Operation = "publish"
	OpConsume Operation = "consume"
	OpAck     Operation = "ack"
	OpRead    Operation = "read"
)

// operationMethods are the gRPC methods each operation allows; a method
// listed under no operation is refused to every access token
// (TestEveryMethodClassified keeps the list whole).
var operationMethods = map[Operation][]string{
	OpPublish: {
		"/jetway.v1.MessageService/Publish",
		"/jetway.v1.MessageService/PublishStream",
		"/jetway.v1.MessageService/PublishBatch",
		"/jetway.v1.MessageService/Ingest",
		// Key-value (issue 18): writes of keys publish.
		"/jetway.v1.KVService/PutEntry",
		"/jetway.v1.KVService/CreateEntry",
		"/jetway.v1.KVService/UpdateEntry",
		"/jetway.v1.KVService/DeleteEntry",
		"/jetway.v1.KVService/PurgeEntry",
	},
	OpConsume: {
		"/jetway.v1.MessageService/Subscribe",
		"/jetway.v1.MessageService/Consume",
		"/jetway.v1.MessageService/Fetch",
		// Key-value (issue 18): reads of keys consume the bucket's stream.
		"/jetway.v1.KVService/GetEntry",
		"/jetway.v1.KVService/GetHistory",
		"/jetway.v1.KVService/ListKeys",
		"/jetway.v1.KVService/WatchBucket",
	},
	OpAck: {"/jetway.v1.MessageService/Ack"},
	OpRead: {
		"/jetway.v1.AdminService/GetStream",
		"/jetway.v1.AdminService/ListStreams",
		"/jetway.v1.AdminService/GetConsumer",
		"/jetway.v1.AdminService/ListConsumers",
		"/jetway.v1.AdminService/GetMessage",
		"/jetway.v1.AdminService/GetLastMessage",
		"/jetway.v1.AdminService/GetCounter",
		// Key-value (issue 18): a bucket's status, as a stream's.
		"/jetway.v1.KVService/GetBucket",
		"/jetway.v1.KVService/ListBuckets",
		"/jetway.v1.AdminService/ListMessages",
		"/jetway.v1.AdminService/GetLastMessages",
		// deadletters (issue 19): a page of a DLQ stream, as ListMessages.
		"/jetway.v1.DeadLetterService/ListDeadLetters",
	},
}

// Limits of what a token may carry.
const (
	maxScopePatterns  = 16
	maxScopePattern   = 256
	defaultAccessTTL  = 15 * time.Minute
	defaultAccessMax  = time.Hour
	maxAccessLifetime = 24 * time.Hour
	// accessAudience keeps access tokens and NKey-signed tokens apart.
	accessAudience = "jetway-access"
	accessKeyLabel = "jetway access token v1"
)

// Scope is what an access token allows, within its identity's grants.
type Scope struct {
	Operations []Operation
	// Streams are stream name patterns ("ORDERS", "*"); empty: any.
	Streams []string
	// Subjects are subject patterns; empty: any.
	Subjects []string
}

// scope is a compiled Scope, on the Identity of an access token.
type scope struct {
	ops      map[Operation]bool
	methods  map[string]bool
	streams  *perm.Matcher // nil: any
	subjects *perm.Matcher // nil: any
	id       string        // the token's id, for logs
	issued   time.Time
	expires  time.Time
	bytes    int // an estimate of what the compiled scope holds
}

// size estimates the memory a cached identity with this scope holds
// (the compiled matchers are several times their patterns' bytes:
// measured ~56 KiB for 32 patterns of 256 bytes).
func (s *scope) size() int {
	if s == nil {
		return 0
	}
	return 1024 + s.bytes
}

// accessClaims are an access token's claims.
type accessClaims struct {
	jwt.RegisteredClaims
	Ops      []Operation `json:"ops"`
	Streams  []string    `json:"streams,omitempty"`
	Subjects []string    `json:"subjects,omitempty"`
}

// accessKeys signs with the first key and verifies with any; each key's
// id (kid) is the first 8 bytes of its SHA-256, in hex.
type accessKeys struct {
	keys   [][]byte
	kids   []string
	maxTTL time.Duration
}

// EnableAccessTokens lets the configuration mint and verify access tokens
// with keys derived from ackKeys (the first signs). Call it before the
// configuration serves.
func (c *Config) EnableAccessTokens(ackKeys [][]byte) error {
	if len(ackKeys) == 0 {
		return errors.New("auth: access tokens need at least one ack key")
	}
	k := &accessKeys{maxTTL: c.maxAccessLifetime}
	for _, ak := range ackKeys {
		m := hmac.New(sha256.New, ak)
		m.Write([]byte(accessKeyLabel))
		key := m.Sum(nil)
		sum := sha256.Sum256(key)
		k.keys = append(k.keys, key)
		k.kids = append(k.kids, hex.EncodeToString(sum[:8]))
	}
	c.access = k
	return nil
}

// ErrAccessTokens is a mint the configuration cannot make (access tokens
// not enabled, or a caller that may not mint).
var ErrAccessTokens = errors.New("access tokens")

// Minted is a new access token.
type Minted struct {
	Token    string
	ID       string
	Identity string
	Expires  time.Time
	Scope    Scope
}

// MintAccessToken mints a token acting as id narrowed to s, valid for ttl
// (0: 15 minutes) from now. id must be a configured identity, proven by
// its own credential: an access token cannot mint another, and a NATS
// user's identity (from a JWT the bridge may not see again) cannot mint.
// Errors wrap ErrForbidden for a caller that may not mint what it asks,
// ErrInvalidScope for a malformed request.
func (c *Config) MintAccessToken(id *Identity, s Scope, ttl time.Duration, now time.Time) (Minted, error) {
	switch {
	case c.access == nil:
		return Minted{}, fmt.Errorf("%w: not enabled", ErrAccessTokens)
	case id == nil || id.all:
		return Minted{}, fmt.Errorf("%w: client authentication is off", ErrAccessTokens)
	case id.scope != nil:
		return Minted{}, fmt.Errorf("%w: an access token cannot mint access tokens", ErrForbidden)
	case id.Method == "jwt" || c.byName[id.Name] == nil:
		return Minted{}, fmt.Errorf("%w: %s is not a configured identity (NATS users cannot mint access tokens)", ErrForbidden, id.Name)
	}
	if ttl == 0 {
		ttl = defaultAccessTTL
	}
	if ttl < time.Second || ttl > c.access.maxTTL {
		return Minted{}, fmt.Errorf("%w: ttl %s: between 1s and %s (max_access_token_lifetime)", ErrInvalidScope, ttl, c.access.maxTTL)
	}
	s, err := normalizeScope(s)
	if err != nil {
		return Minted{}, err
	}
	if _, err := compileScope(s); err != nil {
		return Minted{}, err
	}
	if len(s.Subjects) > 0 && slices.Contains(s.Operations, OpRead) {
		// Stored messages and consumer listings are read by stream and
		// sequence: no subject can narrow them.
		return Minted{}, fmt.Errorf("%w: OPERATION_READ cannot be narrowed by subjects (stored messages are read by stream and sequence): mint it without subjects, narrowed by streams", ErrInvalidScope)
	}
	for _, op := range s.Operations {
		if !id.hasGrant(op) {
			return Minted{}, fmt.Errorf("%w: %s has no %s grant to give a token", ErrForbidden, id.Name, op)
		}
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Minted{}, fmt.Errorf("auth: token id: %w", err)
	}
	tid := base64.RawURLEncoding.EncodeToString(raw[:])
	exp := now.Add(ttl).Truncate(time.Second)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: id.Name, Audience: jwt.ClaimStrings{accessAudience}, ID: tid,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
		},
		Ops: s.Operations, Streams: s.Streams, Subjects: s.Subjects,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = c.access.kids[0]
	signed, err := t.SignedString(c.access.keys[0])
	if err != nil {
		return Minted{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return Minted{Token: AccessTokenPrefix + signed, ID: tid, Identity: id.Name, Expires: exp, Scope: s}, nil
}

// Identity is the configured identity of that name, nil if none (for
// minting access tokens offline: bridge token access).
func (c *Config) Identity(name string) *Identity { return c.byName[name] }

// ErrInvalidScope is a malformed access token request.
var ErrInvalidScope = errors.New("invalid access token request")

// normalizeScope checks a scope's size and operations, and sorts and
// dedupes it.
func normalizeScope(s Scope) (Scope, error) {
	if len(s.Operations) == 0 {
		return s, fmt.Errorf("%w: operations: at least one", ErrInvalidScope)
	}
	for _, op := range s.Operations {
		if _, ok := operationMethods[op]; !ok {
			return s, fmt.Errorf("%w: operations: unknown operation %q", ErrInvalidScope, clip(string(op)))
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"streams", s.Streams}, {"subjects", s.Subjects}} {
		if len(l.v) > maxScopePatterns {
			return s, fmt.Errorf("%w: %s: at most %d patterns", ErrInvalidScope, l.name, maxScopePatterns)
		}
		for _, p := range l.v {
			if p == "" || len(p) > maxScopePattern {
				return s, fmt.Errorf("%w: %s: a pattern of 1 to %d bytes", ErrInvalidScope, l.name, maxScopePattern)
			}
		}
	}
	for _, p := range s.Streams {
		if p != "*" && p != ">" && strings.ContainsAny(p, ". \t\r\n") {
			return s, fmt.Errorf("%w: streams: %q is not a stream name pattern (a name, or * for any)", ErrInvalidScope, clip(p))
		}
	}
	sorted := func(v []string) []string {
		v = slices.Clone(v)
		slices.Sort(v)
		return slices.Compact(v)
	}
	ops := slices.Clone(s.Operations)
	slices.Sort(ops)
	return Scope{Operations: slices.Compact(ops), Streams: sorted(s.Streams), Subjects: sorted(s.Subjects)}, nil
}

func compileScope(s Scope) (*scope, error) {
	sc := &scope{ops: map[Operation]bool{}, methods: map[string]bool{}}
	for _, p := range append(slices.Clone(s.Streams), s.Subjects...) {
		sc.bytes += 8 * len(p)
	}
	for _, op := range s.Operations {
		sc.ops[op] = true
		for _, m := range operationMethods[op] {
			sc.methods[m] = true
		}
	}
	var err error
	if len(s.Streams) > 0 {
		if sc.streams, err = perm.Compile(perm.Set{Allow: s.Streams}); err != nil {
			return nil, fmt.Errorf("%w: streams: %s", ErrInvalidScope, clipErr(err))
		}
	}
	if len(s.Subjects) > 0 {
		if sc.subjects, err = perm.Compile(perm.Set{Allow: s.Subjects}); err != nil {
			return nil, fmt.Errorf("%w: subjects: %s", ErrInvalidScope, clipErr(err))
		}
	}
	return sc, nil
}

// hasGrant reports whether the identity has any grant an operation uses
// (ack needs none: an ack token is the grant).
func (id *Identity) hasGrant(op Operation) bool {
	switch op {
	case OpPublish:
		return id.publish != nil
	case OpConsume:
		return id.streams != nil
	case OpRead:
		return id.admin != nil
	}
	return true
}

// verifyAccess checks an access token (without its prefix) and returns
// the identity it acts as and its expiry.
func (c *Config) verifyAccess(tok string, now time.Time) (*Identity, time.Time, error) {
	var never time.Time
	if c.access == nil {
		return nil, never, fmt.Errorf("%w: access token, but access tokens are not enabled", ErrUnauthenticated)
	}
	if len(tok) > maxTokenLen {
		return nil, never, fmt.Errorf("%w: access token longer than %d bytes", ErrUnauthenticated, maxTokenLen)
	}
	var claims accessClaims
	_, err := jwt.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if i := slices.Index(c.access.kids, kid); i >= 0 {
			return c.access.keys[i], nil
		}
		return nil, errors.New("unknown key id")
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithAudience(accessAudience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(clockSkew), jwt.WithTimeFunc(func() time.Time { return now }))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, never, fmt.Errorf("%w: access token expired", ErrUnauthenticated)
	case err != nil:
		// golang-jwt's messages name only claims and checks, never the
		// token; clipped all the same.
		return nil, never, fmt.Errorf("%w: access token: %s", ErrUnauthenticated, clipErr(err))
	}
	exp := claims.ExpiresAt.Time
	if !now.Before(exp) {
		return nil, never, fmt.Errorf("%w: access token expired", ErrUnauthenticated)
	}
	if claims.IssuedAt == nil || exp.Sub(claims.IssuedAt.Time) > c.access.maxTTL+time.Second {
		return nil, never, fmt.Errorf("%w: access token lifetime over %s", ErrUnauthenticated, c.access.maxTTL)
	}
	base := c.byName[claims.Subject]
	if base == nil {
		return nil, never, fmt.Errorf("%w: access token of identity %q, which is not configured", ErrUnauthenticated, clip(claims.Subject))
	}
	s, err := normalizeScope(Scope{Operations: claims.Ops, Streams: claims.Streams, Subjects: claims.Subjects})
	if err != nil {
		return nil, never, fmt.Errorf("%w: access token: %s", ErrUnauthenticated, clipErr(err))
	}
	sc, err := compileScope(s)
	if err != nil {
		return nil, never, fmt.Errorf("%w: access token: %s", ErrUnauthenticated, clipErr(err))
	}
	sc.id, sc.issued, sc.expires = claims.ID, claims.IssuedAt.Time, exp
	id := base.with("access_token")
	id.scope = sc
	return id, exp, nil
}

// TokenID is the id of the access token a call authenticated with, ""
// for other credentials (for logs and audit records).
func (id *Identity) TokenID() string {
	if id == nil || id.scope == nil {
		return ""
	}
	return id.scope.id
}

// Expires is when the credential of the call stops working: an access
// token's expiry (its streams end then); zero for other credentials.
func (id *Identity) Expires() time.Time {
	if id == nil || id.scope == nil {
		return time.Time{}
	}
	return id.scope.expires
}

// allowsMethod refuses, for an access token, a gRPC method none of its
// operations covers.
func (id *Identity) allowsMethod(method string) error {
	if id.scope == nil || id.scope.methods[method] {
		return nil
	}
	return fmt.Errorf("%w: the access token does not allow %s", ErrForbidden, clip(method))
}

// The scope checks below run after the identity's own: a token allows
// only what both allow.

func (s *scope) allowsOp(op Operation) bool { return s == nil || s.ops[op] }

func (s *scope) allowsStream(stream string) bool {
	return s == nil || s.streams == nil || s.streams.Allows(stream)
}

// allowsSubjects reports whether every subject a pattern matches is in
// the scope.
func (s *scope) allowsSubjects(pattern string) bool {
	return s == nil || s.subjects == nil || s.subjects.AllowsAll(pattern)
}

// allowsDurable reports whether the scope lets its token consume a
// durable consumer: not when it names subjects, which a durable's own
// filters (set by an admin) would not respect.
func (s *scope) allowsDurable() bool { return s == nil || s.subjects == nil }

func (s *scope) refuse(id *Identity, what string) error {
	return fmt.Errorf("%w: the access token of %s does not allow %s", ErrForbidden, id.Name, what)
}
