package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/internal/logsafe"
)

// Tests of Config.Authenticate without servers: every credential kind,
// accepted when right and refused when wrong, at a fixed time. Tokens are
// signed here by hand (atToken) so that iat, exp, aud and nbf are exactly
// what each case needs: jwt's own Encode stamps iat with the wall clock.

// atFixture holds keys, credentials and a configuration that knows some of
// them.
type atFixture struct {
	now time.Time
	cfg *Config

	svc, stranger, alice, bob, revoked, expired, evil nkeys.KeyPair
	svcPub                                            string
	apiKey, certSubject                               string

	acct, acct2, signer, untrusted nkeys.KeyPair
	acctPub, acct2Pub              string

	aliceJWT, bobJWT, revokedJWT, expiredJWT, evilJWT, crossJWT string
}

// atRaw returns a key pair of the given kind from a fixed seed, so that
// fuzz seeds stay valid from run to run.
func atRaw(t testing.TB, prefix nkeys.PrefixByte, b byte) nkeys.KeyPair {
	t.Helper()
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = b + byte(i)
	}
	kp, err := nkeys.FromRawSeed(prefix, raw)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func atPub(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func atSeed(t testing.TB, kp nkeys.KeyPair) []byte {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// atToken signs claims as a JWT with the ed25519-nkey algorithm (the
// signature covers header.payload), exactly as given.
func atToken(t testing.TB, kp nkeys.KeyPair, claims map[string]any) string {
	t.Helper()
	return atTokenAlg(t, kp, "ed25519-nkey", claims)
}

// atTokenAlg signs with the given header algorithm: "ed25519" is the v1
// form, whose signature covers only the payload.
func atTokenAlg(t testing.TB, kp nkeys.KeyPair, alg string, claims map[string]any) string {
	t.Helper()
	hdr, err := json.Marshal(map[string]string{"typ": "JWT", "alg": alg})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	h, p := enc(hdr), enc(body)
	signed := h + "." + p
	if alg == "ed25519" {
		signed = p
	}
	sig, err := kp.Sign([]byte(signed))
	if err != nil {
		t.Fatal(err)
	}
	return h + "." + p + "." + enc(sig)
}

// atClaims are the claims of a token by kp for audience "jetway", issued
// at iat and expiring at exp; extra claims are merged in.
func atClaims(t testing.TB, kp nkeys.KeyPair, iat, exp time.Time, extra map[string]any) map[string]any {
	t.Helper()
	pub := atPub(t, kp)
	c := map[string]any{"iss": pub, "sub": pub, "aud": "jetway", "iat": iat.Unix(), "exp": exp.Unix(), "jti": "x"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// atUserJWT encodes a NATS user JWT for user, signed by issuer.
func atUserJWT(t testing.TB, issuer, user nkeys.KeyPair, mutate func(*jwt.UserClaims)) string {
	t.Helper()
	uc := jwt.NewUserClaims(atPub(t, user))
	if mutate != nil {
		mutate(uc)
	}
	s, err := uc.Encode(issuer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	atOnce    sync.Once
	atShared  *atFixture
	atInitErr error
)

// atNewFixture builds the fixture. now is the wall clock truncated to the
// second: user JWTs get the wall clock as iat from jwt's encoder, and
// UserClaims.Validate reads the wall clock.
func atNewFixture(t testing.TB) *atFixture {
	t.Helper()
	f := &atFixture{now: time.Unix(time.Now().Unix(), 0)}
	f.svc = atRaw(t, nkeys.PrefixByteUser, 1)
	f.stranger = atRaw(t, nkeys.PrefixByteUser, 2)
	f.alice = atRaw(t, nkeys.PrefixByteUser, 3)
	f.bob = atRaw(t, nkeys.PrefixByteUser, 4)
	f.revoked = atRaw(t, nkeys.PrefixByteUser, 5)
	f.expired = atRaw(t, nkeys.PrefixByteUser, 6)
	f.evil = atRaw(t, nkeys.PrefixByteUser, 7)
	f.acct = atRaw(t, nkeys.PrefixByteAccount, 10)
	f.acct2 = atRaw(t, nkeys.PrefixByteAccount, 11)
	f.signer = atRaw(t, nkeys.PrefixByteAccount, 12)
	f.untrusted = atRaw(t, nkeys.PrefixByteAccount, 13)
	operator := atRaw(t, nkeys.PrefixByteOperator, 20)
	f.svcPub, f.acctPub, f.acct2Pub = atPub(t, f.svc), atPub(t, f.acct), atPub(t, f.acct2)
	f.apiKey = "k3y-0f-the-api-client-0123456789"
	f.certSubject = "CN=client,O=Acme"

	// acct2 is trusted through its JWT: its signing key signs users, and
	// it revokes f.revoked (an hour ahead, so any JWT issued now is
	// revoked).
	ac := jwt.NewAccountClaims(f.acct2Pub)
	ac.SigningKeys.Add(atPub(t, f.signer))
	ac.RevokeAt(atPub(t, f.revoked), f.now.Add(time.Hour))
	acctJWT, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}

	f.aliceJWT = atUserJWT(t, f.acct, f.alice, func(uc *jwt.UserClaims) {
		uc.Name = "alice"
		uc.Pub.Allow.Add("orders.>")
		uc.Pub.Deny.Add("orders.secret")
		uc.Sub.Allow.Add("orders.eu.>")
	})
	f.bobJWT = atUserJWT(t, f.signer, f.bob, func(uc *jwt.UserClaims) {
		uc.Name = "bob"
		uc.IssuerAccount = f.acct2Pub
	})
	f.revokedJWT = atUserJWT(t, f.signer, f.revoked, func(uc *jwt.UserClaims) { uc.IssuerAccount = f.acct2Pub })
	f.expiredJWT = atUserJWT(t, f.acct, f.expired, func(uc *jwt.UserClaims) { uc.Expires = f.now.Add(-time.Hour).Unix() })
	f.evilJWT = atUserJWT(t, f.untrusted, f.evil, func(uc *jwt.UserClaims) { uc.Name = "svc" })
	// Signed by acct2's signing key but claiming to be of acct.
	f.crossJWT = atUserJWT(t, f.signer, f.bob, func(uc *jwt.UserClaims) { uc.IssuerAccount = f.acctPub })

	f.cfg, err = New(File{
		MaxTokenLifetime: "5m",
		TrustedAccounts:  []TrustedAccount{{PublicKey: f.acctPub}, {JWT: acctJWT}},
		JWTUsers:         &Grant{Consume: &ConsumeGrant{Streams: []string{"ORDERS"}}},
		Identities: []IdentityConfig{
			{Name: "svc", NKeys: []string{f.svcPub}, Grant: Grant{Publish: &perm.Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret.>"}}}},
			{Name: "api", APIKeyHashes: []string{HashAPIKey(f.apiKey)}},
			{Name: "certuser", CertSubjects: []string{f.certSubject}},
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// atFix returns the fixture shared by the tests of this file.
func atFix(t testing.TB) *atFixture {
	t.Helper()
	atOnce.Do(func() {
		defer func() {
			if atShared == nil && atInitErr == nil {
				atInitErr = errors.New("fixture setup failed")
			}
		}()
		atShared = atNewFixture(t)
	})
	if atInitErr != nil {
		t.Fatal(atInitErr)
	}
	return atShared
}

// atBearer is a valid token of kp now, carrying userJWT when not empty.
func (f *atFixture) atBearer(t testing.TB, kp nkeys.KeyPair, userJWT string) string {
	t.Helper()
	extra := map[string]any{}
	if userJWT != "" {
		extra["nats"] = map[string]any{UserJWTClaim: userJWT}
	}
	return "Bearer " + atToken(t, kp, atClaims(t, kp, f.now, f.now.Add(time.Minute), extra))
}

// atTamper changes one character in the middle of the payload of a
// "Bearer <jwt>" value.
func atTamper(authz string) string {
	tok := strings.TrimPrefix(authz, "Bearer ")
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	i := len(p) / 2
	if p[i] == 'A' {
		p[i] = 'B'
	} else {
		p[i] = 'A'
	}
	parts[1] = string(p)
	return "Bearer " + strings.Join(parts, ".")
}

func TestAuthenticateAccepts(t *testing.T) {
	f := atFix(t)
	now := f.now
	tests := []struct {
		name, authz, cert    string
		wantName, wantMethod string
	}{
		{"nkey token", f.atBearer(t, f.svc, ""), "", "svc", "nkey"},
		{"nkey token, lower-case scheme and extra spaces", "  bearer   " + strings.TrimPrefix(f.atBearer(t, f.svc, ""), "Bearer ") + "  ", "", "svc", "nkey"},
		{"nkey token issued within the clock skew", "Bearer " + atToken(t, f.svc, atClaims(t, f.svc, now.Add(20*time.Second), now.Add(time.Minute), nil)), "", "svc", "nkey"},
		{"nkey token of exactly the max lifetime", "Bearer " + atToken(t, f.svc, atClaims(t, f.svc, now, now.Add(5*time.Minute), nil)), "", "svc", "nkey"},
		{"nkey token whose nbf has passed", "Bearer " + atToken(t, f.svc, atClaims(t, f.svc, now, now.Add(time.Minute), map[string]any{"nbf": now.Unix()})), "", "svc", "nkey"},
		{"api key", "ApiKey " + f.apiKey, "", "api", "apikey"},
		{"api key, lower-case scheme", "apikey " + f.apiKey, "", "api", "apikey"},
		{"certificate subject", "", f.certSubject, "certuser", "cert"},
		{"a token wins over a certificate", f.atBearer(t, f.svc, ""), f.certSubject, "svc", "nkey"},
		{"user JWT of an account trusted by public key", f.atBearer(t, f.alice, f.aliceJWT), "", "jwt:" + atPub(t, f.alice), "jwt"},
		{"user JWT by the signing key of an account trusted by JWT", f.atBearer(t, f.bob, f.bobJWT), "", "jwt:" + atPub(t, f.bob), "jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.cfg.Authenticate(tt.authz, tt.cert, now)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.Name != tt.wantName || id.Method != tt.wantMethod {
				t.Errorf("identity %q by %q, want %q by %q", id.Name, id.Method, tt.wantName, tt.wantMethod)
			}
		})
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	f := atFix(t)
	now := f.now
	tok := func(kp nkeys.KeyPair, iat, exp time.Time, extra map[string]any) string {
		return "Bearer " + atToken(t, kp, atClaims(t, kp, iat, exp, extra))
	}
	valid := f.atBearer(t, f.svc, "")
	// The svc's claims, signed by a stranger: the signature is not iss's.
	forged := "Bearer " + atToken(t, f.stranger, atClaims(t, f.svc, now, now.Add(time.Minute), nil))
	// An account key as issuer of the token.
	byAccount := "Bearer " + atToken(t, f.acct, atClaims(t, f.acct, now, now.Add(time.Minute), nil))
	// A valid token with its signature chunk swapped for another token's.
	otherSig := strings.Split(tok(f.svc, now, now.Add(2*time.Minute), nil), ".")[2]
	parts := strings.Split(valid, ".")
	swapped := parts[0] + "." + parts[1] + "." + otherSig
	tests := []struct{ name, authz, cert string }{
		{"nothing", "", ""},
		{"blank", "   ", ""},
		{"unknown scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:pw")), ""},
		{"scheme alone", "Bearer", ""},
		{"api key scheme alone", "ApiKey", ""},
		{"api key scheme and spaces", "ApiKey    ", ""},
		{"wrong api key", "ApiKey " + f.apiKey + "x", ""},
		{"api key hash instead of the key", "ApiKey " + HashAPIKey(f.apiKey), ""},
		{"api key as bearer", "Bearer " + f.apiKey, ""},
		{"not a token", "Bearer not.a.token", ""},
		{"unknown NKey", f.atBearer(t, f.stranger, ""), ""},
		{"signed by a key other than iss", forged, ""},
		{"issuer is an account key", byAccount, ""},
		{"tampered payload", atTamper(valid), ""},
		{"tampered signature", swapped, ""},
		{"expired", tok(f.svc, now.Add(-2*time.Minute), now.Add(-time.Second), nil), ""},
		{"expires exactly now", tok(f.svc, now.Add(-time.Minute), now, nil), ""},
		{"lifetime over the max", tok(f.svc, now, now.Add(5*time.Minute+time.Second), nil), ""},
		{"wrong audience", tok(f.svc, now, now.Add(time.Minute), map[string]any{"aud": "other-bridge"}), ""},
		{"no audience", tok(f.svc, now, now.Add(time.Minute), map[string]any{"aud": nil}), ""},
		{"issued in the future", tok(f.svc, now.Add(31*time.Second), now.Add(2*time.Minute), nil), ""},
		{"not valid yet (nbf)", tok(f.svc, now, now.Add(2*time.Minute), map[string]any{"nbf": now.Add(time.Minute).Unix()}), ""},
		{"no iat", tok(f.svc, now, now.Add(time.Minute), map[string]any{"iat": nil}), ""},
		{"no exp", tok(f.svc, now, now.Add(time.Minute), map[string]any{"exp": nil}), ""},
		{"user_jwt that is not a JWT", f.atBearer(t, f.alice, "garbage"), ""},
		{"user_jwt not a string, unknown NKey", tok(f.alice, now, now.Add(time.Minute), map[string]any{"nats": map[string]any{UserJWTClaim: 42}}), ""},
		{"expired user JWT", f.atBearer(t, f.expired, f.expiredJWT), ""},
		{"revoked user JWT", f.atBearer(t, f.revoked, f.revokedJWT), ""},
		{"user JWT signed by an untrusted account", f.atBearer(t, f.evil, f.evilJWT), ""},
		{"proof token signed by a key other than the JWT's user", f.atBearer(t, f.svc, f.aliceJWT), ""},
		{"proof token by a stranger carrying alice's JWT", f.atBearer(t, f.stranger, f.aliceJWT), ""},
		{"user JWT whose issuer_account is not its signing key's account", f.atBearer(t, f.bob, f.crossJWT), ""},
		{"user JWT as the bearer token itself", "Bearer " + f.aliceJWT, ""},
		{"certificate subject not configured", "", "CN=admin"},
		{"certificate subject differing in case", "", strings.ToLower(f.certSubject)},
		{"invalid token does not fall back to the certificate", "Bearer x", f.certSubject},
		{"wrong api key does not fall back to the certificate", "ApiKey nope", f.certSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.cfg.Authenticate(tt.authz, tt.cert, now)
			if err == nil {
				t.Fatalf("accepted as %q (%s)", id.Name, id.Method)
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("error %v does not wrap ErrUnauthenticated", err)
			}
			if id != nil {
				t.Errorf("identity %v returned with the error", id)
			}
		})
	}
}

// TestAuthenticateReplayPastExpiry: the same token is accepted until its
// exp and refused from then on.
func TestAuthenticateReplayPastExpiry(t *testing.T) {
	f := atFix(t)
	authz := f.atBearer(t, f.svc, "")
	for _, at := range []time.Duration{0, 30 * time.Second, time.Minute - time.Nanosecond} {
		if _, err := f.cfg.Authenticate(authz, "", f.now.Add(at)); err != nil {
			t.Errorf("at +%v: %v", at, err)
		}
	}
	for _, at := range []time.Duration{time.Minute, time.Hour} {
		if id, err := f.cfg.Authenticate(authz, "", f.now.Add(at)); err == nil {
			t.Errorf("replayed at +%v: accepted as %q", at, id.Name)
		}
	}
}

// TestAuthenticateLifetimeOverflow: a token valid for centuries must be
// refused by the max lifetime. exp - iat is multiplied by time.Second in
// an int64 Duration, which overflows for exp - iat beyond ~292 years and
// wraps negative.
func TestAuthenticateLifetimeOverflow(t *testing.T) {
	f := atFix(t)
	for _, secs := range []int64{1e10, 1 << 40, 1<<62 - 1} {
		claims := atClaims(t, f.svc, f.now, f.now, map[string]any{"exp": f.now.Unix() + secs})
		authz := "Bearer " + atToken(t, f.svc, claims)
		if id, err := f.cfg.Authenticate(authz, "", f.now); err == nil {
			t.Errorf("token with exp = iat + %d s (max lifetime 5m) accepted as %q", secs, id.Name)
		}
	}
	// A negative iat with a near exp: the same overflow from the other end.
	claims := atClaims(t, f.svc, f.now, f.now.Add(time.Minute), map[string]any{"iat": int64(-1e10)})
	if id, err := f.cfg.Authenticate("Bearer "+atToken(t, f.svc, claims), "", f.now); err == nil {
		t.Errorf("token with iat = -1e10 accepted as %q", id.Name)
	}
}

// TestAuthenticateV1HeaderDoesNotPanic: a token with the v1 algorithm
// ("ed25519"), validly signed by any key the attacker makes, with a "type"
// claim and no "nats" object, must be refused, not panic.
func TestAuthenticateV1HeaderDoesNotPanic(t *testing.T) {
	f := atFix(t)
	attacker, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	authz := "Bearer " + atTokenAlg(t, attacker, "ed25519", atClaims(t, attacker, f.now, f.now.Add(time.Minute), map[string]any{"type": "generic"}))
	id, err := atAuthenticateNoPanic(t, f.cfg, authz, "", f.now)
	if err == nil {
		t.Errorf("accepted as %q", id.Name)
	}
}

// atAuthenticateNoPanic calls Authenticate and turns a panic into a test
// error.
func atAuthenticateNoPanic(t testing.TB, c *Config, authz, cert string, now time.Time) (id *Identity, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("Authenticate(%.60q…) panicked: %v", authz, r)
			id, err = nil, errors.New("panicked")
		}
	}()
	return c.Authenticate(authz, cert, now)
}

// TestMintTokenRoundTrip: MintToken's tokens authenticate until they
// expire, with and without a user JWT.
func TestMintTokenRoundTrip(t *testing.T) {
	f := atFix(t)
	now := time.Now()
	tok, err := MintToken(atSeed(t, f.svc), "jetway", time.Minute, "", now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.cfg.Authenticate("Bearer "+tok, "", now)
	if err != nil || id.Name != "svc" || id.Method != "nkey" {
		t.Fatalf("minted token: %v, %v", id, err)
	}
	if _, err := f.cfg.Authenticate("Bearer "+tok, "", now.Add(time.Minute+time.Second)); err == nil {
		t.Error("minted token accepted after its ttl")
	}
	tok, err = MintToken(atSeed(t, f.alice), "jetway", time.Minute, f.aliceJWT, now)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := f.cfg.Authenticate("Bearer "+tok, "", now); err != nil || id.Name != "jwt:"+atPub(t, f.alice) {
		t.Fatalf("minted token with user JWT: %v, %v", id, err)
	}
	if tok, err := MintToken(atSeed(t, f.svc), "elsewhere", time.Minute, "", now); err != nil {
		t.Fatal(err)
	} else if _, err := f.cfg.Authenticate("Bearer "+tok, "", now); err == nil {
		t.Error("token minted for another audience accepted")
	}
	if tok, err := MintToken(atSeed(t, f.svc), "jetway", 10*time.Minute, "", now); err != nil {
		t.Fatal(err)
	} else if _, err := f.cfg.Authenticate("Bearer "+tok, "", now); err == nil {
		t.Error("token minted with a ttl over the max lifetime accepted")
	}
	for _, kp := range []nkeys.KeyPair{f.acct, atRaw(t, nkeys.PrefixByteOperator, 20)} {
		if _, err := MintToken(atSeed(t, kp), "jetway", time.Minute, "", now); err == nil {
			t.Error("MintToken accepted a seed that is not a user seed")
		}
	}
	if _, err := MintToken([]byte("SUnot-a-seed"), "jetway", time.Minute, "", now); err == nil {
		t.Error("MintToken accepted a malformed seed")
	}
}

// TestMintTokenIssuedAtIsNow: the token's iat is the now given to
// MintToken (jwt's Encode stamps the wall clock over it).
func TestMintTokenIssuedAtIsNow(t *testing.T) {
	f := atFix(t)
	now := time.Unix(1_900_000_000, 0)
	tok, err := MintToken(atSeed(t, f.svc), "jetway", time.Minute, "", now)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := jwt.DecodeGeneric(tok)
	if err != nil {
		t.Fatal(err)
	}
	if gc.IssuedAt != now.Unix() || gc.Expires != now.Add(time.Minute).Unix() {
		t.Errorf("iat %d exp %d, want iat %d exp %d", gc.IssuedAt, gc.Expires, now.Unix(), now.Add(time.Minute).Unix())
	}
	if _, err := f.cfg.Authenticate("Bearer "+tok, "", now); err != nil {
		t.Errorf("token minted at %v refused at %v: %v", now, now, err)
	}
}

// TestAuthenticateErrorsSayWhyForTheLog: the error (logged, never sent)
// names the failed check; the interceptor sends one generic message.
func TestAuthenticateErrorsSayWhyForTheLog(t *testing.T) {
	f := atFix(t)
	_, err := f.cfg.Authenticate("Bearer "+atToken(t, f.svc, atClaims(t, f.svc, f.now.Add(-2*time.Minute), f.now.Add(-time.Minute), nil)), "", f.now)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	if !strings.Contains(errUnauthenticated.Error(), "missing or invalid credentials") {
		t.Errorf("client message %q", errUnauthenticated)
	}
	for _, word := range []string{"expired", "audience", "revoked", "signature", "NKey", "key"} {
		if strings.Contains(strings.ToLower(errUnauthenticated.Error()), strings.ToLower(word)) {
			t.Errorf("client message %q names %q", errUnauthenticated, word)
		}
	}
}

// TestJWTIdentityPermissions: a JWT user publishes and consumes what its
// JWT allows, consumes the streams of jwt_users, and administers nothing.
func TestJWTIdentityPermissions(t *testing.T) {
	f := atFix(t)
	id, err := f.cfg.Authenticate(f.atBearer(t, f.alice, f.aliceJWT), "", f.now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := NewContext(context.Background(), id)
	var a Authorizer
	if err := a.CanPublish(ctx, "orders.eu.1"); err != nil {
		t.Errorf("publish allowed by the JWT: %v", err)
	}
	for _, s := range []string{"orders.secret", "payments.1"} {
		if err := a.CanPublish(ctx, s); !errors.Is(err, ErrForbidden) {
			t.Errorf("publish to %q: %v, want forbidden", s, err)
		}
	}
	if err := atConsume(a, ctx, "ORDERS", "", []string{"orders.eu.>"}); err != nil {
		t.Errorf("ephemeral within the JWT's sub allow: %v", err)
	}
	if err := atConsume(a, ctx, "ORDERS", "", []string{"orders.>"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("ephemeral beyond the JWT's sub allow: %v", err)
	}
	if err := atConsume(a, ctx, "ORDERS", "billing", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("durable not in jwt_users: %v", err)
	}
	if err := a.CanAdmin(ctx, "", false); !errors.Is(err, ErrForbidden) {
		t.Errorf("admin without jwt_users.admin: %v", err)
	}
	if a.Identity(ctx) != "jwt:"+atPub(t, f.alice) {
		t.Errorf("ack identity %q", a.Identity(ctx))
	}
}

// TestJWTUsersOfDifferentAccountsAreDistinct: two users of two trusted
// accounts whose JWTs carry the same name are different identities. The
// identity's Name binds ack tokens and keys quotas, so a shared name lets
// one ack the other's messages and spend its quota.
func TestJWTUsersOfDifferentAccountsAreDistinct(t *testing.T) {
	f := atFix(t)
	u1, u2 := atRaw(t, nkeys.PrefixByteUser, 30), atRaw(t, nkeys.PrefixByteUser, 31)
	j1 := atUserJWT(t, f.acct, u1, func(uc *jwt.UserClaims) { uc.Name = "app" })
	j2 := atUserJWT(t, f.signer, u2, func(uc *jwt.UserClaims) { uc.Name = "app"; uc.IssuerAccount = f.acct2Pub })
	id1, err := f.cfg.Authenticate(f.atBearer(t, u1, j1), "", f.now)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := f.cfg.Authenticate(f.atBearer(t, u2, j2), "", f.now)
	if err != nil {
		t.Fatal(err)
	}
	var a Authorizer
	n1 := a.Identity(NewContext(context.Background(), id1))
	n2 := a.Identity(NewContext(context.Background(), id2))
	if n1 == n2 {
		t.Errorf("user %s of account %s and user %s of account %s are both identity %q (ack tokens and quotas are shared)",
			atPub(t, u1), f.acctPub, atPub(t, u2), f.acct2Pub, n1)
	}
}

// TestJWTUsersConsumeFailsClosed: jwt_users.consume without streams is
// refused at load time, as it is for identities, instead of granting
// every stream to every JWT user; invalid jwt_users patterns are refused
// at load time too.
func TestJWTUsersConsumeFailsClosed(t *testing.T) {
	f := atFix(t)
	base := func(g *Grant) File {
		return File{TrustedAccounts: []TrustedAccount{{PublicKey: f.acctPub}}, JWTUsers: g}
	}
	if _, err := New(File{Identities: []IdentityConfig{{Name: "x", NKeys: []string{f.svcPub}, Grant: Grant{Consume: &ConsumeGrant{}}}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("identity consume without streams: %v, want ErrInvalidConfig", err)
	}
	c, err := New(base(&Grant{Consume: &ConsumeGrant{}}))
	if err == nil {
		id, aerr := c.Authenticate(f.atBearer(t, f.alice, f.aliceJWT), "", f.now)
		if aerr != nil {
			t.Fatalf("Authenticate: %v", aerr)
		}
		if cerr := atConsume(Authorizer{}, NewContext(context.Background(), id), "ANY_STREAM", "any_consumer", nil); cerr == nil {
			t.Errorf("jwt_users.consume without streams loads and lets every JWT user consume every stream's every consumer")
		}
	}
	for _, g := range []*Grant{
		{Consume: &ConsumeGrant{Streams: []string{"ORDERS..x"}}},
		{Admin: &AdminGrant{Streams: []string{"a b"}}},
	} {
		if _, err := New(base(g)); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("jwt_users %+v: New = %v, want ErrInvalidConfig (otherwise every JWT user is refused at run time)", g, err)
		}
	}
}

// TestAuthorizer covers the permission questions on configured
// identities: deny wins, ephemeral filters, admin scope and write.
func TestAuthorizer(t *testing.T) {
	f := atFix(t)
	c, err := New(File{Identities: []IdentityConfig{
		{Name: "orders", NKeys: []string{f.svcPub}, Grant: Grant{
			Publish: &perm.Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret.>"}},
			Consume: &ConsumeGrant{Streams: []string{"ORDERS.billing", "ORDERS"}, Subjects: &perm.Set{Allow: []string{"orders.eu.>"}}},
			Admin:   &AdminGrant{Streams: []string{"ORDERS"}},
		}},
		{Name: "nothing", APIKeyHashes: []string{HashAPIKey("nothing-key-0123456789")}},
		{Name: "writer", CertSubjects: []string{"CN=w"}, Grant: Grant{Admin: &AdminGrant{Write: true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctxOf := func(authz, cert string) context.Context {
		id, err := c.Authenticate(authz, cert, f.now)
		if err != nil {
			t.Fatal(err)
		}
		return NewContext(context.Background(), id)
	}
	orders := ctxOf(f.atBearer(t, f.svc, ""), "")
	nothing := ctxOf("ApiKey nothing-key-0123456789", "")
	writer := ctxOf("", "CN=w")
	var a Authorizer
	check := func(name string, err error, allowed bool) {
		t.Helper()
		switch {
		case allowed && err != nil:
			t.Errorf("%s: %v, want allowed", name, err)
		case !allowed && !errors.Is(err, ErrForbidden):
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
	check("publish orders.eu.1", a.CanPublish(orders, "orders.eu.1"), true)
	check("publish orders.secret.x (deny wins)", a.CanPublish(orders, "orders.secret.x"), false)
	check("publish payments.1", a.CanPublish(orders, "payments.1"), false)
	check("publish wildcard subject", a.CanPublish(orders, "orders.*"), false)
	check("publish by identity without publish", a.CanPublish(nothing, "orders.eu.1"), false)
	check("consume ORDERS.billing", atConsume(a, orders, "ORDERS", "billing", nil), true)
	check("consume ORDERS.shipping", atConsume(a, orders, "ORDERS", "shipping", nil), false)
	check("consume SECRET ephemeral", atConsume(a, orders, "SECRET", "", []string{"orders.eu.>"}), false)
	check("ephemeral within subjects", atConsume(a, orders, "ORDERS", "", []string{"orders.eu.>"}), true)
	check("ephemeral outside subjects", atConsume(a, orders, "ORDERS", "", []string{"orders.us.>"}), false)
	check("ephemeral overlapping subjects", atConsume(a, orders, "ORDERS", "", []string{"orders.*.1"}), false)
	check("ephemeral without filter", atConsume(a, orders, "ORDERS", "", nil), false)
	check("ephemeral with one filter outside", atConsume(a, orders, "ORDERS", "", []string{"orders.eu.1", "orders.us.1"}), false)
	check("consume by identity without consume", atConsume(a, nothing, "ORDERS", "billing", nil), false)
	check("admin read ORDERS", a.CanAdmin(orders, "ORDERS", false), true)
	check("admin write ORDERS by read-only", a.CanAdmin(orders, "ORDERS", true), false)
	check("admin read SECRET", a.CanAdmin(orders, "SECRET", false), false)
	check("admin read without admin", a.CanAdmin(nothing, "ORDERS", false), false)
	check("account info without admin", a.CanAdmin(nothing, "", false), false)
	check("admin write any by writer", a.CanAdmin(writer, "ANY", true), true)
	if a.CanSee(orders, "SECRET") || !a.CanSee(orders, "ORDERS") || a.CanSee(nothing, "ORDERS") {
		t.Error("CanSee does not follow admin.streams")
	}
	if a.Identity(orders) != "orders" || a.Identity(context.Background()) != "" {
		t.Errorf("Identity: %q, %q", a.Identity(orders), a.Identity(context.Background()))
	}
	// No identity in the context: refused, never allowed.
	if err := a.CanPublish(context.Background(), "orders.eu.1"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("no identity: %v", err)
	}
	// Anonymous (auth off) may do everything and binds no identity.
	anon := NewContext(context.Background(), Anonymous)
	check("anonymous admin", a.CanAdmin(anon, "X", true), true)
	if a.Identity(anon) != "" {
		t.Errorf("anonymous identity %q", a.Identity(anon))
	}
}

// FuzzAuthenticate: arbitrary authorization values and certificate
// subjects never panic, every error wraps ErrUnauthenticated, and nothing
// authenticates but the configured API key, the subject, or a token whose
// signed payload is one of the valid tokens' (a fuzzer cannot sign).
// TestAuthenticateErrorsHoldNoCredential: the reason Authenticate gives
// (which the interceptor logs) holds no part of a credential, names a
// scheme only by its registered spelling, and clips what else a client
// sent.
func TestAuthenticateErrorsHoldNoCredential(t *testing.T) {
	f := atFix(t)
	now := f.now
	huge := strings.Repeat("k", 64<<10)
	long := strings.Repeat("a", 8<<10)
	tests := []struct {
		name, authz, cert string
		secret, want      string // want: a word the reason still has
	}{
		{"bare key", "mysecretkey123", "", "mysecretkey123", "without a scheme"},
		{"bare key of 64 KiB", huge, "", huge[:16], "without a scheme"},
		{"api key after a tab", "ApiKey\tmysecretkey123", "", "mysecretkey123", "ApiKey"},
		{"token after a tab", "Bearer\t" + strings.TrimPrefix(f.atBearer(t, f.svc, ""), "Bearer "), "", strings.TrimPrefix(f.atBearer(t, f.svc, ""), "Bearer ")[:24], "Bearer"},
		{"unknown first word", "mysecretkey123 and more", "", "mysecretkey123", "unknown authorization scheme"},
		{"unknown first word, with a tab", "mysecretkey123\tmore", "", "mysecretkey123", "unknown authorization scheme"},
		{"basic", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:hunter2")), "", base64.StdEncoding.EncodeToString([]byte("svc:hunter2")), "Basic"},
		{"basic, lower case", "basic c3ZjOmh1bnRlcjI=", "", "c3ZjOmh1bnRlcjI=", "Basic"},
		{"api key of 64 KiB", "ApiKey " + huge, "", huge[:16], "unknown API key"},
		{"token of 64 KiB", "Bearer " + huge, "", huge[:16], "longer than"},
		{"opaque bearer secret", "Bearer mysecretkey123", "", "mysecretkey123", "token"},
		{"long audience", "Bearer " + atToken(t, f.svc, atClaims(t, f.svc, now, now.Add(time.Minute), map[string]any{"aud": long})), "", long[:maxLoggedInput+1], "audience"},
		{"long certificate subject", "", "CN=" + long, long[:maxLoggedInput+1], "certificate subject"},
		{"user JWT that is not a JWT", f.atBearer(t, f.alice, "garbage-"+long), "", long[:maxLoggedInput+1], "user JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.cfg.Authenticate(tt.authz, tt.cert, now)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, tt.secret) {
				t.Errorf("reason %q holds %q", logsafe.Clip(msg, 200), logsafe.Clip(tt.secret, 40))
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("reason %q does not say %q", msg, tt.want)
			}
			if len(msg) > 256 {
				t.Errorf("reason of %d bytes: %q", len(msg), logsafe.Clip(msg, 200))
			}
		})
	}
}

func FuzzAuthenticate(f *testing.F) {
	fx := atFuzzFixture(f)
	for _, s := range fx.seeds {
		f.Add(s, "")
	}
	f.Add("", fx.certSubject)
	f.Add("ApiKey "+fx.apiKey, "")
	f.Add("ApiKey "+fx.apiKey, fx.certSubject)
	f.Add("Bearer "+fx.apiKey, "CN=admin")
	f.Fuzz(func(t *testing.T, authz, cert string) {
		id, err := atAuthenticateNoPanic(t, fx.cfg, authz, cert, fx.now)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) && err.Error() != "panicked" {
				t.Errorf("error %v does not wrap ErrUnauthenticated", err)
			}
			// The reason is logged: bounded whatever the input.
			if len(err.Error()) > 256 {
				t.Errorf("reason of %d bytes", len(err.Error()))
			}
			return
		}
		scheme, cred, _ := strings.Cut(strings.TrimSpace(authz), " ")
		cred = strings.TrimSpace(cred)
		switch {
		case authz == "":
			if cert != fx.certSubject || id.Name != "certuser" {
				t.Fatalf("subject %q authenticated as %q", cert, id.Name)
			}
		case strings.EqualFold(scheme, "ApiKey"):
			if cred != fx.apiKey || id.Name != "api" {
				t.Fatalf("api key %q authenticated as %q", cred, id.Name)
			}
		case strings.EqualFold(scheme, "Bearer"):
			parts := strings.Split(cred, ".")
			if len(parts) != 3 || !fx.payloads[parts[1]] {
				t.Fatalf("token %q with a payload no valid token has authenticated as %q", cred, id.Name)
			}
		default:
			t.Fatalf("%q authenticated as %q", authz, id.Name)
		}
	})
}

type atFuzz struct {
	*atFixture
	now      time.Time
	seeds    []string
	payloads map[string]bool
}

// atFuzzFixture is a configuration at a fixed time with deterministic keys
// and tokens, so that the committed seeds stay meaningful.
func atFuzzFixture(t testing.TB) *atFuzz {
	fx := &atFuzz{atFixture: atFix(t), now: time.Unix(2_000_000_000, 0), payloads: map[string]bool{}}
	now := fx.now
	tok := func(kp nkeys.KeyPair, iat, exp time.Time, extra map[string]any) string {
		return atToken(t, kp, atClaims(t, kp, iat, exp, extra))
	}
	valid := []string{
		tok(fx.svc, now, now.Add(time.Minute), nil),
		tok(fx.svc, now.Add(-time.Minute), now.Add(time.Minute), nil),
	}
	for _, v := range valid {
		fx.payloads[strings.Split(v, ".")[1]] = true
		fx.seeds = append(fx.seeds, "Bearer "+v)
	}
	fx.seeds = append(fx.seeds,
		"Bearer "+tok(fx.svc, now.Add(-time.Hour), now.Add(-time.Minute), nil),
		"Bearer "+tok(fx.svc, now, now.Add(time.Hour), nil),
		"Bearer "+tok(fx.svc, now, now.Add(time.Minute), map[string]any{"aud": "x"}),
		"Bearer "+tok(fx.stranger, now, now.Add(time.Minute), nil),
		"Bearer "+tok(fx.svc, now, now.Add(time.Minute), map[string]any{"exp": now.Unix() + 1e10}),
		"Bearer "+tok(fx.evil, now, now.Add(time.Minute), map[string]any{"nats": map[string]any{UserJWTClaim: fx.evilJWT}}),
		"Bearer "+tok(fx.svc, now, now.Add(time.Minute), map[string]any{"nats": map[string]any{UserJWTClaim: fx.aliceJWT}}),
		"Bearer "+atTokenAlg(t, fx.stranger, "ed25519", atClaims(t, fx.stranger, now, now.Add(time.Minute), map[string]any{"type": "generic"})),
		atTamper("Bearer "+valid[0]),
	)
	return fx
}

// atConsume is the check an ephemeral subscription (consumer "") goes
// through: the stream right, then the filters.
func atConsume(a Authorizer, ctx context.Context, stream, consumer string, filters []string) error {
	if err := a.CanConsume(ctx, stream, consumer); err != nil {
		return err
	}
	if consumer == "" {
		return a.CanReadSubjects(ctx, filters)
	}
	return nil
}
