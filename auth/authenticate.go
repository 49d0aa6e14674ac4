package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/internal/logsafe"
)

// clockSkew tolerates clocks of clients slightly ahead of the bridge.
const clockSkew = 30 * time.Second

// UserJWTClaim is the field of an NKey-signed token's "nats" data that
// carries a NATS user JWT: the token then proves possession of the JWT's
// user key.
const UserJWTClaim = "user_jwt"

// Authenticate returns the identity a call's credentials prove. authz is
// the Authorization value ("Bearer <token>" or "ApiKey <key>"); certSubject
// is the subject of a verified client certificate ("" without mTLS). The
// error says why, for the log; clients get only "unauthenticated". It
// never holds credential material (no part of a key, a token or an
// unrecognised value), and the client's strings it names (a scheme from a
// fixed list, claims, a certificate subject) are clipped to
// maxLoggedInput bytes.
func (c *Config) Authenticate(authz, certSubject string, now time.Time) (*Identity, error) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(authz), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case authz == "" && certSubject != "":
		if id := c.byCert[certSubject]; id != nil {
			return id, nil
		}
		return nil, fmt.Errorf("%w: certificate subject %q is not configured", ErrUnauthenticated, clip(certSubject))
	case authz == "":
		return nil, fmt.Errorf("%w: no credentials", ErrUnauthenticated)
	case strings.EqualFold(scheme, "ApiKey"):
		// Keys are looked up by their SHA-256: the comparison is of
		// hashes, which tells a timing attacker nothing about the key.
		if id := c.byAPIKey[sha256.Sum256([]byte(cred))]; id != nil && cred != "" {
			return id, nil
		}
		return nil, fmt.Errorf("%w: unknown API key", ErrUnauthenticated)
	case strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(cred, AccessTokenPrefix):
		// HMAC and claims checks, and the scope's patterns compiled,
		// once per token until it expires.
		if id, ok := c.tokens.get(cred, now); ok {
			return id, nil
		}
		id, exp, err := c.verifyAccess(cred[len(AccessTokenPrefix):], now)
		if err != nil {
			return nil, err
		}
		c.tokens.putFrom(cred, id, id.scope.issued.Add(-clockSkew), exp)
		return id, nil
	case strings.EqualFold(scheme, "Bearer"):
		// A client reuses its token for many calls: the result of the
		// signature check (an Ed25519 verification, ~50 µs) is kept until
		// the token expires. The configuration cannot change while the
		// process runs, so nothing else can change the answer.
		if id, ok := c.tokens.get(cred, now); ok {
			return id, nil
		}
		id, exp, err := c.verifyToken(cred, now)
		if err != nil {
			return nil, err
		}
		c.tokens.put(cred, id, exp)
		return id, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, describeScheme(authz))
}

// maxLoggedInput bounds each client string an error of Authenticate
// names (a claim, a certificate subject, a library's message about a
// token).
const maxLoggedInput = 64

func clip(s string) string { return logsafe.Clip(s, maxLoggedInput) }

// clipErr is err's message, clipped: the messages of the jwt library and
// of a recovered panic may quote parts of what the client sent.
func clipErr(err error) string { return clip(err.Error()) }

// schemes are the authorization schemes an unsupported value is named by
// in the log (IANA's HTTP authentication scheme registry and common
// others): a value whose first word is not one of these may be a bare
// credential, so none of it is logged.
var schemes = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"ApiKey", "Basic", "Bearer", "Concealed", "Digest", "DPoP", "GNAP", "HOBA", "Mutual", "Negotiate",
		"NTLM", "OAuth", "PrivateToken", "SCRAM-SHA-1", "SCRAM-SHA-256", "vapid", "Token", "Key",
		"AWS4-HMAC-SHA256", "Hawk", "MAC",
	} {
		m[strings.ToLower(s)] = s
	}
	return m
}()

// describeScheme says, for the log, why authz has no scheme Authenticate
// accepts, without any of the credential: a known scheme by its
// registered spelling (not the client's bytes), anything else by its
// length only.
func describeScheme(authz string) string {
	authz = strings.TrimSpace(authz)
	end := strings.IndexFunc(authz, func(r rune) bool { return r <= ' ' || r == 0x7f })
	if end < 0 {
		return fmt.Sprintf("authorization value without a scheme (%d bytes, not logged)", len(authz))
	}
	name, known := schemes[strings.ToLower(authz[:end])]
	switch {
	case !known:
		return fmt.Sprintf("unknown authorization scheme (%d bytes, not logged)", end)
	case authz[end] != ' ':
		return fmt.Sprintf("authorization scheme %s followed by %q, not a space", name, authz[end])
	}
	return "unsupported authorization scheme " + name
}

func (id *Identity) with(method string) *Identity {
	cp := *id
	cp.Method = method
	return &cp
}

// verifyToken checks an NKey-signed token: an Ed25519 signature by its
// issuer (a user NKey), this bridge as audience, a short lifetime, and an
// issuer the configuration knows, directly or through a NATS user JWT the
// token carries.
func (c *Config) verifyToken(tok string, now time.Time) (*Identity, time.Time, error) {
	var never time.Time
	if len(tok) > maxTokenLen {
		return nil, never, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, maxTokenLen)
	}
	gc, err := decodeGeneric(tok)
	if err != nil {
		return nil, never, fmt.Errorf("%w: token: %s", ErrUnauthenticated, clipErr(err))
	}
	iss := gc.Issuer
	switch {
	case !nkeys.IsValidPublicUserKey(iss):
		return nil, never, fmt.Errorf("%w: token issuer %q is not a user NKey", ErrUnauthenticated, clip(iss))
	case gc.Audience != c.audience:
		return nil, never, fmt.Errorf("%w: token audience %q, want %q", ErrUnauthenticated, clip(gc.Audience), c.audience)
	case gc.Expires == 0 || gc.IssuedAt == 0:
		return nil, never, fmt.Errorf("%w: token without iat and exp", ErrUnauthenticated)
	case time.Unix(gc.IssuedAt, 0).After(now.Add(clockSkew)):
		return nil, never, fmt.Errorf("%w: token issued in the future", ErrUnauthenticated)
	case !now.Before(time.Unix(gc.Expires, 0)):
		return nil, never, fmt.Errorf("%w: token expired", ErrUnauthenticated)
	case gc.Expires < gc.IssuedAt || gc.Expires-gc.IssuedAt > int64(c.maxLifetime/time.Second):
		// Compared in seconds: a product in nanoseconds would overflow
		// for absurd claims and let them through.
		return nil, never, fmt.Errorf("%w: token lifetime over %s", ErrUnauthenticated, c.maxLifetime)
	case gc.NotBefore != 0 && now.Add(clockSkew).Before(time.Unix(gc.NotBefore, 0)):
		return nil, never, fmt.Errorf("%w: token not valid yet", ErrUnauthenticated)
	}
	exp := time.Unix(gc.Expires, 0)
	if ujwt, ok := gc.Data[UserJWTClaim].(string); ok {
		id, ujwtExp, err := c.verifyUserJWT(ujwt, iss, now)
		if err != nil {
			return nil, never, err
		}
		if !ujwtExp.IsZero() && ujwtExp.Before(exp) {
			exp = ujwtExp
		}
		return id, exp, nil
	}
	if id := c.byNKey[iss]; id != nil {
		return id.with("nkey"), exp, nil
	}
	return nil, never, fmt.Errorf("%w: unknown NKey %s", ErrUnauthenticated, iss)
}

var errUntrusted = errors.New("not signed by a trusted account")

// maxTokenLen bounds a token (a user JWT inside makes it a few KiB).
const maxTokenLen = 16 << 10

// decodeGeneric is jwt.DecodeGeneric, which panics on some crafted tokens
// (a v1 header with a "type" claim and no "nats" object, in nats-io/jwt
// v2.8.2): a client's input must never reach a panic.
func decodeGeneric(tok string) (gc *jwt.GenericClaims, err error) {
	defer func() {
		if r := recover(); r != nil {
			gc, err = nil, fmt.Errorf("malformed token (%v)", r)
		}
	}()
	return jwt.DecodeGeneric(tok)
}

func (c *Config) verifyUserJWT(ujwt, holder string, now time.Time) (*Identity, time.Time, error) {
	var never time.Time
	uc, err := jwt.DecodeUserClaims(ujwt)
	if err != nil {
		return nil, never, fmt.Errorf("%w: user JWT: %s", ErrUnauthenticated, clipErr(err))
	}
	if uc.Subject != holder {
		return nil, never, fmt.Errorf("%w: the token is not signed by the JWT's user", ErrUnauthenticated)
	}
	acct := c.accounts[uc.Issuer]
	if acct == nil || (uc.IssuerAccount != "" && uc.IssuerAccount != acct.Subject) {
		return nil, never, fmt.Errorf("%w: user JWT %w", ErrUnauthenticated, errUntrusted)
	}
	if uc.Expires != 0 && !now.Before(time.Unix(uc.Expires, 0)) {
		return nil, never, fmt.Errorf("%w: user JWT expired", ErrUnauthenticated)
	}
	if uc.NotBefore != 0 && now.Before(time.Unix(uc.NotBefore, 0)) {
		return nil, never, fmt.Errorf("%w: user JWT not valid yet", ErrUnauthenticated)
	}
	if acct.Revocations.IsRevoked(uc.Subject, time.Unix(uc.IssuedAt, 0)) {
		return nil, never, fmt.Errorf("%w: user JWT revoked", ErrUnauthenticated)
	}
	var vr jwt.ValidationResults
	uc.Validate(&vr)
	if vr.IsBlocking(true) {
		return nil, never, fmt.Errorf("%w: user JWT invalid: %s", ErrUnauthenticated, clip(fmt.Sprint(vr.Errors())))
	}
	id, err := c.jwtIdentity(ujwt, uc)
	if err != nil {
		return nil, never, err
	}
	var exp time.Time
	if uc.Expires != 0 {
		exp = time.Unix(uc.Expires, 0)
	}
	return id, exp, nil
}

// jwtIdentity compiles (and caches) the identity of a NATS user: publish
// and subject permissions from the JWT, the rest from jwt_users.
func (c *Config) jwtIdentity(ujwt string, uc *jwt.UserClaims) (*Identity, error) {
	if id, ok := c.jwtCache.get(ujwt); ok {
		return id, nil
	}
	// The user's public key names it: JWT names are free text and two
	// users (of two accounts) may share one.
	id := c.jwtTemplate.with("jwt")
	id.Name = "jwt:" + uc.Subject
	var err error
	pub := perm.Set{Allow: uc.Pub.Allow, Deny: uc.Pub.Deny}
	if id.publish, err = perm.Compile(pub); err != nil {
		return nil, fmt.Errorf("%w: user JWT publish permissions: %s", ErrUnauthenticated, clipErr(err))
	}
	if id.streams != nil {
		if id.subjects, err = perm.Compile(perm.Set{Allow: uc.Sub.Allow, Deny: uc.Sub.Deny}); err != nil {
			return nil, fmt.Errorf("%w: user JWT subscribe permissions: %s", ErrUnauthenticated, clipErr(err))
		}
	}
	c.jwtCache.put(ujwt, id)
	return id, nil
}

// tokenCache keeps verified tokens until they expire, keyed by their
// SHA-256 (a token's bytes are not kept), within a budget of entries and
// of memory: a full cache starts over, so that a client minting and using
// many large tokens costs verification time, never memory.
type tokenCache struct {
	mu    sync.Mutex
	m     map[[32]byte]cachedToken
	bytes int
}

type cachedToken struct {
	id   *Identity
	from time.Time // zero: no start
	exp  time.Time
}

const (
	tokenCacheSize  = 10_000
	tokenCacheBytes = 32 << 20
)

func (c *tokenCache) get(tok string, now time.Time) (*Identity, bool) {
	k := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.exp) || now.Before(e.from) {
		return nil, false
	}
	return e.id, true
}

func (c *tokenCache) put(tok string, id *Identity, exp time.Time) {
	c.putFrom(tok, id, time.Time{}, exp)
}

// putFrom keeps a token valid from from (zero: any time before exp).
func (c *tokenCache) putFrom(tok string, id *Identity, from, exp time.Time) {
	cost := 256 + id.scope.size()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= tokenCacheSize || c.bytes+cost > tokenCacheBytes {
		c.m, c.bytes = make(map[[32]byte]cachedToken), 0
	}
	c.m[sha256.Sum256([]byte(tok))] = cachedToken{id: id, from: from, exp: exp}
	c.bytes += cost
}

// identityCache keeps the identities compiled from user JWTs (their
// checks of expiry and revocation run on every call regardless).
type identityCache struct {
	mu sync.Mutex
	m  map[string]*Identity
}

func (c *identityCache) get(k string) (*Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.m[k]
	return id, ok
}

func (c *identityCache) put(k string, id *Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 10_000 {
		c.m = map[string]*Identity{}
	}
	c.m[k] = id
}

// MintToken signs a token that proves the NKey seed's user to a bridge
// with the given audience, issued at now and valid for ttl (the bridge's
// maximum is 5 minutes unless configured otherwise). userJWT, when not
// empty, is a NATS user JWT for that key, carried in the token. The token
// is a NATS-style JWT (ed25519-nkey); it is signed here rather than with
// jwt.GenericClaims.Encode, which always stamps the wall clock as iat.
func MintToken(seed []byte, audience string, ttl time.Duration, userJWT string, now time.Time) (string, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", fmt.Errorf("auth: seed: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("auth: seed: %w", err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", errors.New("auth: the seed is not a user seed (SU…)")
	}
	claims := map[string]any{"iss": pub, "sub": pub, "aud": audience, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if userJWT != "" {
		claims["nats"] = map[string]any{UserJWTClaim: userJWT}
	}
	header, err := json.Marshal(map[string]string{"typ": "JWT", "alg": jwt.AlgorithmNkey})
	if err != nil {
		return "", fmt.Errorf("auth: token header: %w", err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("auth: token claims: %w", err)
	}
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := kp.Sign([]byte(signing))
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
