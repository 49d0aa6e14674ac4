package server_test

// Attacker- and operator-style tests of client authentication and
// authorization through a whole bridge, over gRPC and REST: every
// credential kind accepted when right and refused when wrong, permission
// checks on every RPC, headers that must not change who a caller is,
// mTLS, quotas, and the auth mode at startup.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
	"github.com/jetway-dev/jetway/server"
)

// authTMessage is the one message every refused credential gets.
const authTMessage = "unauthenticated: missing or invalid credentials"

// authTEnv is a bridge with client authentication on, its identities'
// credentials, and streams ORDERS (orders.>), SECRET (secret.>) and AUDIT
// (audit.>) with durable consumers ORDERS/billing and ORDERS/shipping.
type authTEnv struct {
	b        *jetwaytest.Bridge
	ctx      context.Context
	authFile string

	admin, orders, other, stranger nkeys.KeyPair
	ordersKey, otherKey            string
	rateGRPCKey, rateRESTKey       string
	streamsKey, reporterKey        string

	acct, untrusted                          nkeys.KeyPair
	alice, bob, revoked, expired, evil       nkeys.KeyPair
	aliceJWT, bobJWT, revokedJWT, expiredJWT string
	evilJWT                                  string
}

func authTKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func authTPub(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func authTUserJWT(t testing.TB, issuer, user nkeys.KeyPair, mutate func(*jwt.UserClaims)) string {
	t.Helper()
	uc := jwt.NewUserClaims(authTPub(t, user))
	if mutate != nil {
		mutate(uc)
	}
	s, err := uc.Encode(issuer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authTWriteConfig writes an auth configuration file (JSON, which the
// YAML loader reads) and returns its path.
func authTWriteConfig(t testing.TB, f auth.File) string {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func authTStart(t *testing.T) *authTEnv {
	t.Helper()
	return authTStartWith(t, nil)
}

// authTStartWith is authTStart with the bridge logging to log (nil: the
// test's log, warnings and errors only) and opts applied to its
// configuration.
func authTStartWith(t *testing.T, log *slog.Logger, opts ...jetwaytest.Option) *authTEnv {
	t.Helper()
	e := &authTEnv{
		admin: authTKey(t, nkeys.CreateUser), orders: authTKey(t, nkeys.CreateUser),
		other: authTKey(t, nkeys.CreateUser), stranger: authTKey(t, nkeys.CreateUser),
		ordersKey: "orders-api-key-0123456789abcdef", otherKey: "other-api-key-0123456789abcdef",
		rateGRPCKey: "rate-grpc-key-0123456789abcdef", rateRESTKey: "rate-rest-key-0123456789abcdef",
		streamsKey: "streams-key-0123456789abcdef", reporterKey: "reporter-key-0123456789abcdef",
		acct: authTKey(t, nkeys.CreateAccount), untrusted: authTKey(t, nkeys.CreateAccount),
		alice: authTKey(t, nkeys.CreateUser), bob: authTKey(t, nkeys.CreateUser),
		revoked: authTKey(t, nkeys.CreateUser), expired: authTKey(t, nkeys.CreateUser), evil: authTKey(t, nkeys.CreateUser),
	}
	// acct2 is trusted through its account JWT: users signed by its
	// signing key are accepted, and it revokes e.revoked.
	operator := authTKey(t, nkeys.CreateOperator)
	acct2, signer := authTKey(t, nkeys.CreateAccount), authTKey(t, nkeys.CreateAccount)
	ac := jwt.NewAccountClaims(authTPub(t, acct2))
	ac.SigningKeys.Add(authTPub(t, signer))
	ac.RevokeAt(authTPub(t, e.revoked), time.Now().Add(time.Hour))
	acctJWT, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	e.aliceJWT = authTUserJWT(t, e.acct, e.alice, func(uc *jwt.UserClaims) {
		uc.Name = "alice"
		uc.Pub.Allow.Add("orders.alice.>")
	})
	e.bobJWT = authTUserJWT(t, signer, e.bob, func(uc *jwt.UserClaims) {
		uc.Name = "bob"
		uc.IssuerAccount = authTPub(t, acct2)
		uc.Pub.Allow.Add("orders.bob.>")
	})
	e.revokedJWT = authTUserJWT(t, signer, e.revoked, func(uc *jwt.UserClaims) { uc.IssuerAccount = authTPub(t, acct2) })
	e.expiredJWT = authTUserJWT(t, e.acct, e.expired, func(uc *jwt.UserClaims) { uc.Expires = time.Now().Add(-time.Hour).Unix() })
	e.evilJWT = authTUserJWT(t, e.untrusted, e.evil, func(uc *jwt.UserClaims) { uc.Name = "alice" })

	all := &perm.Set{Allow: []string{">"}}
	path := authTWriteConfig(t, auth.File{
		MaxTokenLifetime: "5m",
		TrustedAccounts:  []auth.TrustedAccount{{PublicKey: authTPub(t, e.acct)}, {JWT: acctJWT}},
		JWTUsers:         &auth.Grant{Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS"}}},
		Identities: []auth.IdentityConfig{
			{Name: "admin", NKeys: []string{authTPub(t, e.admin)}, Grant: auth.Grant{
				Publish: all, Consume: &auth.ConsumeGrant{Streams: []string{">"}}, Admin: &auth.AdminGrant{Write: true},
			}},
			// A configured certificate subject: forged subject headers
			// would name it if the bridge trusted them.
			{Name: "certadmin", CertSubjects: []string{"CN=admin"}, Grant: auth.Grant{Admin: &auth.AdminGrant{Write: true}}},
			{Name: "orders", NKeys: []string{authTPub(t, e.orders)}, APIKeyHashes: []string{auth.HashAPIKey(e.ordersKey)}, Grant: auth.Grant{
				Publish: &perm.Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret.>"}},
				Consume: &auth.ConsumeGrant{
					Streams:        []string{"ORDERS.billing", "ORDERS.reports", "ORDERS"},
					Subjects:       &perm.Set{Allow: []string{"orders.eu.>"}},
					CreateDurables: true,
				},
				Admin: &auth.AdminGrant{Streams: []string{"ORDERS"}},
			}},
			{Name: "other", NKeys: []string{authTPub(t, e.other)}, APIKeyHashes: []string{auth.HashAPIKey(e.otherKey)}, Grant: auth.Grant{
				Publish: &perm.Set{Allow: []string{"orders.>"}},
				Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS.*"}},
			}},
			// May consume (and so create) the durable ORDERS/reports only.
			{Name: "reporter", APIKeyHashes: []string{auth.HashAPIKey(e.reporterKey)}, Grant: auth.Grant{
				Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS.reports"}, Subjects: &perm.Set{Allow: []string{"orders.eu.>"}}, CreateDurables: true},
			}},
			{Name: "rate-grpc", APIKeyHashes: []string{auth.HashAPIKey(e.rateGRPCKey)}, Grant: auth.Grant{
				Admin: &auth.AdminGrant{}, Limits: auth.Limits{RequestsPerSecond: 2, Burst: 2},
			}},
			{Name: "rate-rest", APIKeyHashes: []string{auth.HashAPIKey(e.rateRESTKey)}, Grant: auth.Grant{
				Admin: &auth.AdminGrant{}, Limits: auth.Limits{RequestsPerSecond: 2, Burst: 2},
			}},
			{Name: "streams2", APIKeyHashes: []string{auth.HashAPIKey(e.streamsKey)}, Grant: auth.Grant{
				Consume: &auth.ConsumeGrant{Streams: []string{"ORDERS"}}, Limits: auth.Limits{ConcurrentStreams: 2},
			}},
		},
	})
	e.authFile = path
	e.b = jetwaytest.StartWithLogger(t, log, append([]jetwaytest.Option{func(c *config.Config) { c.Auth.ConfigFile = path }}, opts...)...)
	e.ctx = jetwaytest.Context(t, 60*time.Second)
	for name, subj := range map[string]string{"ORDERS": "orders.>", "SECRET": "secret.>", "AUDIT": "audit.>"} {
		if _, err := e.b.JS.CreateStream(e.ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatalf("create stream %s: %v", name, err)
		}
	}
	for _, name := range []string{"billing", "shipping"} {
		if _, err := e.b.JS.CreateOrUpdateConsumer(e.ctx, "ORDERS", jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		}); err != nil {
			t.Fatalf("create consumer %s: %v", name, err)
		}
	}
	return e
}

// bearer is "Bearer <token>" minted by auth.MintToken for kp, carrying
// userJWT when not empty.
func (e *authTEnv) bearer(t testing.TB, kp nkeys.KeyPair, userJWT string) string {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.MintToken(seed, "jetway", time.Minute, userJWT, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// authTToken signs claims by hand (jwt's encoder stamps iat with the wall
// clock), for tokens with exactly the iat, exp and aud a case needs.
func authTToken(t testing.TB, kp nkeys.KeyPair, alg string, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	hdr, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": alg})
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	h, p := enc(hdr), enc(body)
	signed := h + "." + p
	if alg == "ed25519" { // v1: the signature covers the payload only
		signed = p
	}
	sig, err := kp.Sign([]byte(signed))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + h + "." + p + "." + enc(sig)
}

// authTClaims are the claims of kp's token for "jetway" from iat to exp,
// with extra claims merged in (nil deletes).
func authTClaims(t testing.TB, kp nkeys.KeyPair, iat, exp time.Time, extra map[string]any) map[string]any {
	t.Helper()
	pub := authTPub(t, kp)
	c := map[string]any{"iss": pub, "sub": pub, "aud": "jetway", "iat": iat.Unix(), "exp": exp.Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// authTWith adds an authorization to a gRPC context ("" adds none).
func authTWith(ctx context.Context, authz string, kv ...string) context.Context {
	if authz != "" {
		kv = append([]string{"authorization", authz}, kv...)
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// authTRESTAuth is the header pair of an authorization ("" for none).
func authTRESTAuth(authz string) []string {
	if authz == "" {
		return nil
	}
	return []string{"Authorization", authz}
}

// authTReason returns the ErrorInfo reason of a status.
func authTReason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// authTWantCode checks a gRPC error's code and ErrorInfo reason.
func authTWantCode(t testing.TB, what string, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %v %s", what, code, reason)
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Errorf("%s: %v is not a status", what, err)
		return nil
	}
	if st.Code() != code || authTReason(st) != reason {
		t.Errorf("%s: %v %q (%s), want %v %q", what, st.Code(), authTReason(st), st.Message(), code, reason)
	}
	return st
}

// authTUnauthenticated checks a gRPC refusal of credentials: the generic
// message, which says nothing of the check that failed.
func authTUnauthenticated(t testing.TB, what string, err error) {
	t.Helper()
	if st := authTWantCode(t, what, err, codes.Unauthenticated, "UNAUTHENTICATED"); st != nil && st.Message() != authTMessage {
		t.Errorf("%s: message %q, want %q", what, st.Message(), authTMessage)
	}
}

// authTRESTError is a REST error body (plain, or the in-band {"error": …}
// of a stream).
type authTRESTError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type   string `json:"@type"`
		Reason string `json:"reason"`
	} `json:"details"`
}

// authTWantREST checks a REST error response's status and reason and
// returns its body.
func authTWantREST(t testing.TB, what string, r jetwaytest.Response, httpStatus int, reason string) authTRESTError {
	t.Helper()
	var e authTRESTError
	if r.Status != httpStatus {
		t.Errorf("%s: HTTP %d %s, want %d %s", what, r.Status, r.Body, httpStatus, reason)
		return e
	}
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Code == 0 {
		var wrapped struct {
			Error authTRESTError `json:"error"`
		}
		if err := json.Unmarshal(r.Body, &wrapped); err != nil || wrapped.Error.Code == 0 {
			t.Errorf("%s: error body %q", what, r.Body)
			return e
		}
		e = wrapped.Error
	}
	got := ""
	for _, d := range e.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			got = d.Reason
		}
	}
	if got != reason {
		t.Errorf("%s: reason %q, want %q (body %s)", what, got, reason, r.Body)
	}
	return e
}

// authTRESTUnauthenticated checks a REST refusal of credentials: 401, a
// challenge, and the generic message.
func authTRESTUnauthenticated(t testing.TB, what string, r jetwaytest.Response) {
	t.Helper()
	e := authTWantREST(t, what, r, http.StatusUnauthorized, "UNAUTHENTICATED")
	if r.Status != http.StatusUnauthorized {
		return
	}
	if e.Message != authTMessage {
		t.Errorf("%s: message %q, want %q", what, e.Message, authTMessage)
	}
	if ch := r.Header.Get("WWW-Authenticate"); !strings.Contains(ch, "Bearer") || !strings.Contains(ch, "ApiKey") {
		t.Errorf("%s: WWW-Authenticate %q, want Bearer and ApiKey challenges", what, ch)
	}
}

func (e *authTEnv) publish(authz, subject string) error {
	_, err := e.b.Messages.Publish(authTWith(e.ctx, authz), &jetwayv1.PublishRequest{Subject: subject, Payload: &jetwayv1.PublishRequest_Text{Text: "x"}})
	return err
}

func (e *authTEnv) restPublish(t testing.TB, authz, subject string, header ...string) jetwaytest.Response {
	t.Helper()
	return e.b.Do(t, http.MethodPost, "/v1/subjects/"+subject+":publish", `{"text":"x"}`, append(authTRESTAuth(authz), header...)...)
}

// TestAuthCredentialsAccepted: each credential kind, right, is accepted
// over gRPC and REST as its own identity: it may publish where that
// identity may, and is refused (403, not 401) where it may not.
func TestAuthCredentialsAccepted(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	tests := []struct {
		name, authz, allowed, forbidden string
	}{
		{"NKey-signed token", e.bearer(t, e.orders, ""), "orders.eu.1", "secret.1"},
		{"NKey-signed token of the admin", e.bearer(t, e.admin, ""), "secret.1", ""},
		{"API key", "ApiKey " + e.ordersKey, "orders.eu.2", "secret.1"},
		{"user JWT of an account trusted by public key", e.bearer(t, e.alice, e.aliceJWT), "orders.alice.1", "orders.eu.1"},
		{"user JWT by the signing key of an account trusted by JWT", e.bearer(t, e.bob, e.bobJWT), "orders.bob.1", "orders.alice.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.publish(tt.authz, tt.allowed); err != nil {
				t.Errorf("gRPC publish to %s: %v", tt.allowed, err)
			}
			if r := e.restPublish(t, tt.authz, tt.allowed); r.Status != http.StatusOK {
				t.Errorf("REST publish to %s: %d %s", tt.allowed, r.Status, r.Body)
			}
			if tt.forbidden == "" {
				return
			}
			authTWantCode(t, "gRPC publish to "+tt.forbidden, e.publish(tt.authz, tt.forbidden), codes.PermissionDenied, "NOT_PERMITTED")
			authTWantREST(t, "REST publish to "+tt.forbidden, e.restPublish(t, tt.authz, tt.forbidden), http.StatusForbidden, "NOT_PERMITTED")
		})
	}
}

// TestAuthCredentialsRefused: wrong credentials of every kind get
// UNAUTHENTICATED / 401 with a challenge and one message that does not
// say which check failed.
func TestAuthCredentialsRefused(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	now := time.Now()
	tok := func(kp nkeys.KeyPair, iat, exp time.Time, extra map[string]any) string {
		return authTToken(t, kp, "ed25519-nkey", authTClaims(t, kp, iat, exp, extra))
	}
	valid := e.bearer(t, e.orders, "")
	parts := strings.Split(valid, ".")
	p := []byte(parts[1])
	if p[len(p)/2] == 'A' {
		p[len(p)/2] = 'B'
	} else {
		p[len(p)/2] = 'A'
	}
	tampered := parts[0] + "." + string(p) + "." + parts[2]
	tests := []struct{ name, authz string }{
		{"no credentials", ""},
		{"unknown scheme", "Basic b3JkZXJzOnB3"},
		{"wrong API key", "ApiKey " + e.ordersKey + "x"},
		{"API key hash as the key", "ApiKey " + auth.HashAPIKey(e.ordersKey)},
		{"unknown NKey", e.bearer(t, e.stranger, "")},
		{"orders' claims signed by an untrusted key", authTToken(t, e.stranger, "ed25519-nkey", authTClaims(t, e.orders, now, now.Add(time.Minute), nil))},
		{"expired token", tok(e.orders, now.Add(-2*time.Minute), now.Add(-time.Minute), nil)},
		{"expired token minted with a past time", func() string {
			seed, _ := e.orders.Seed()
			s, err := auth.MintToken(seed, "jetway", time.Minute, "", now.Add(-10*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + s
		}()},
		{"lifetime over the max", tok(e.orders, now, now.Add(6*time.Minute), nil)},
		{"lifetime of centuries (exp - iat overflows)", tok(e.orders, now, now, map[string]any{"exp": now.Unix() + 1e10})},
		{"wrong audience", tok(e.orders, now, now.Add(time.Minute), map[string]any{"aud": "other-bridge"})},
		{"issued in the future", tok(e.orders, now.Add(2*time.Minute), now.Add(3*time.Minute), nil)},
		{"expired user JWT", e.bearer(t, e.expired, e.expiredJWT)},
		{"revoked user JWT", e.bearer(t, e.revoked, e.revokedJWT)},
		{"user JWT signed by an untrusted account", e.bearer(t, e.evil, e.evilJWT)},
		{"proof token signed by a key other than the JWT's user", e.bearer(t, e.stranger, e.aliceJWT)},
		{"user JWT without proof token", "Bearer " + e.aliceJWT},
		{"tampered token", tampered},
		{"v1 algorithm with a type claim", authTToken(t, e.stranger, "ed25519", authTClaims(t, e.stranger, now, now.Add(time.Minute), map[string]any{"type": "x"}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authTUnauthenticated(t, "gRPC publish", e.publish(tt.authz, "orders.eu.1"))
			_, err := e.b.Admin.GetAccountInfo(authTWith(e.ctx, tt.authz), &jetwayv1.GetAccountInfoRequest{})
			authTUnauthenticated(t, "gRPC GetAccountInfo", err)
			stream, err := e.b.Messages.Subscribe(authTWith(e.ctx, tt.authz), &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "billing"})
			if err == nil {
				_, err = stream.Recv()
			}
			authTUnauthenticated(t, "gRPC Subscribe", err)
			authTRESTUnauthenticated(t, "REST publish", e.restPublish(t, tt.authz, "orders.eu.1"))
			authTRESTUnauthenticated(t, "REST account", e.b.Do(t, http.MethodGet, "/v1/account", "", authTRESTAuth(tt.authz)...))
		})
	}
}

// TestAuthTokenReplayedPastExpiry: a token works until its exp and not a
// moment after (polled, not slept).
func TestAuthTokenReplayedPastExpiry(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	now := time.Now()
	// exp is whole seconds: 2 to 3s ahead, so that the first call below
	// comes well before it even on a loaded machine.
	exp := time.Unix(now.Unix()+3, 0)
	authz := authTToken(t, e.orders, "ed25519-nkey", authTClaims(t, e.orders, now, exp, nil))
	if err := e.publish(authz, "orders.eu.1"); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := time.Now()
		err := e.publish(authz, "orders.eu.1")
		after := time.Now()
		if err != nil {
			// The bridge checked the token between before and after; only
			// an answer that came back before exp proves a refusal before
			// exp (on a loaded machine the call alone may take longer than
			// any fixed margin).
			if after.Before(exp) {
				t.Errorf("refused in [%v, %v], before its exp %v: %v", before, after, exp, err)
			}
			authTUnauthenticated(t, "replay past expiry (gRPC)", err)
			authTRESTUnauthenticated(t, "replay past expiry (REST)", e.restPublish(t, authz, "orders.eu.1"))
			return
		}
		if before.After(exp.Add(time.Second)) {
			t.Fatalf("token still accepted at %v, past its exp %v", before, exp)
		}
		if time.Now().After(deadline) {
			t.Fatal("token never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuthPublishPermissions: deny wins over allow, on Publish (gRPC and
// REST) and per message on PublishStream; a refused message is not stored.
func TestAuthPublishPermissions(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	orders := e.bearer(t, e.orders, "")
	for _, subj := range []string{"orders.secret.x", "orders.secret.a.b", "secret.1", "audit.1"} {
		authTWantCode(t, "gRPC publish to "+subj, e.publish(orders, subj), codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST publish to "+subj, e.restPublish(t, orders, subj), http.StatusForbidden, "NOT_PERMITTED")
	}
	if err := e.publish(orders, "orders.secret"); err != nil {
		t.Errorf("orders.secret (not under orders.secret.>): %v", err)
	}
	ps, err := e.b.Messages.PublishStream(authTWith(e.ctx, orders))
	if err != nil {
		t.Fatal(err)
	}
	for i, subj := range []string{"orders.eu.9", "orders.secret.9", "secret.9"} {
		if err := ps.Send(&jetwayv1.PublishStreamRequest{Id: uint64(i), Publish: &jetwayv1.PublishRequest{Subject: subj, Payload: &jetwayv1.PublishRequest_Text{Text: "x"}}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = ps.CloseSend()
	for i := range 3 {
		r, err := ps.Recv()
		if err != nil {
			t.Fatalf("PublishStream response %d: %v", i, err)
		}
		switch {
		case r.GetId() == 0 && r.GetAck() == nil:
			t.Errorf("PublishStream orders.eu.9: %v, want an ack", r)
		case r.GetId() > 0 && (r.GetError().GetCode() != int32(codes.PermissionDenied) || r.GetError().GetReason() != "NOT_PERMITTED"):
			t.Errorf("PublishStream %d: %v, want PERMISSION_DENIED NOT_PERMITTED", r.GetId(), r)
		}
	}
	for stream, subj := range map[string]string{"ORDERS": "orders.secret.x", "SECRET": "secret.1"} {
		st, err := e.b.JS.Stream(e.ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := st.GetLastMsgForSubject(e.ctx, subj); err == nil {
			t.Errorf("refused publish to %s stored as %d", subj, m.Sequence)
		}
	}
}

// authTSubscribeErr opens a Subscribe and returns the error of its first
// event (nil when it was admitted), closing it.
func authTSubscribeErr(ctx context.Context, c jetwayv1.MessageServiceClient, authz string, req *jetwayv1.SubscribeRequest) (*jetwayv1.SubscribeResponse, error) {
	ctx, cancel := context.WithTimeout(authTWith(ctx, authz), 10*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.Recv()
}

// TestAuthConsumePermissions: Subscribe, Fetch and Consume on forbidden
// streams and consumers, ephemeral filters outside consume.subjects and
// durables created with such filters are refused.
func TestAuthConsumePermissions(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	orders := e.bearer(t, e.orders, "")
	ordersKey := "ApiKey " + e.ordersKey
	filter := func(f ...string) *jetwayv1.ConsumerConfig { return &jetwayv1.ConsumerConfig{FilterSubjects: f} }
	refused := []struct {
		name string
		req  *jetwayv1.SubscribeRequest
		rest string
	}{
		{"ephemeral on a forbidden stream", &jetwayv1.SubscribeRequest{Stream: "SECRET", Config: filter("orders.eu.>")}, "/v1/streams/SECRET:subscribe?config.filter_subjects=orders.eu.%3E"},
		{"a forbidden durable", &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "shipping"}, "/v1/streams/ORDERS/consumers/shipping:subscribe"},
		{"a durable of a forbidden stream", &jetwayv1.SubscribeRequest{Stream: "SECRET", Consumer: "billing"}, "/v1/streams/SECRET/consumers/billing:subscribe"},
		{"ephemeral with a filter outside the subjects", &jetwayv1.SubscribeRequest{Stream: "ORDERS", Config: filter("orders.us.>")}, "/v1/streams/ORDERS:subscribe?config.filter_subjects=orders.us.%3E"},
		{"ephemeral with a filter wider than the subjects", &jetwayv1.SubscribeRequest{Stream: "ORDERS", Config: filter("orders.>")}, "/v1/streams/ORDERS:subscribe?config.filter_subjects=orders.%3E"},
		{"ephemeral with one of two filters outside", &jetwayv1.SubscribeRequest{Stream: "ORDERS", Config: filter("orders.eu.1", "orders.us.1")}, ""},
		{"ephemeral without a filter (all subjects)", &jetwayv1.SubscribeRequest{Stream: "ORDERS"}, "/v1/streams/ORDERS:subscribe"},
		{"durable created with a filter outside the subjects", &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "reports", Config: filter("orders.us.>")}, "/v1/streams/ORDERS/consumers/reports:subscribe?config.filter_subjects=orders.us.%3E"},
		{"durable created without a filter", &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "reports", Config: &jetwayv1.ConsumerConfig{}}, ""},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authTSubscribeErr(e.ctx, e.b.Messages, orders, tt.req)
			authTWantCode(t, "gRPC Subscribe", err, codes.PermissionDenied, "NOT_PERMITTED")
			c, err := e.b.Messages.Consume(authTWith(e.ctx, orders))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: tt.req}}); err != nil {
				t.Fatal(err)
			}
			_, err = c.Recv()
			authTWantCode(t, "gRPC Consume", err, codes.PermissionDenied, "NOT_PERMITTED")
			if tt.rest != "" {
				authTWantREST(t, "REST Subscribe", e.b.Do(t, http.MethodGet, tt.rest, "", "Authorization", ordersKey), http.StatusForbidden, "NOT_PERMITTED")
			}
		})
	}
	if _, err := e.b.JS.Consumer(e.ctx, "ORDERS", "reports"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("refused durable reports: %v, want it not created", err)
	}
	for _, c := range [][2]string{{"ORDERS", "shipping"}, {"SECRET", "billing"}, {"AUDIT", "x"}} {
		_, err := e.b.Messages.Fetch(authTWith(e.ctx, orders), &jetwayv1.FetchRequest{Stream: c[0], Consumer: c[1], NoWait: true})
		authTWantCode(t, "gRPC Fetch "+c[0]+"/"+c[1], err, codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST Fetch "+c[0]+"/"+c[1], e.b.Do(t, http.MethodPost, "/v1/streams/"+c[0]+"/consumers/"+c[1]+":fetch", `{"no_wait":true}`, "Authorization", ordersKey), http.StatusForbidden, "NOT_PERMITTED")
	}

	// What orders may do, it can: the checks are not refusing everything.
	// (Ephemeral consumers within the subjects: see
	// TestAuthEphemeralWithinSubjectsIsAdmitted.)
	if r, err := authTSubscribeErr(e.ctx, e.b.Messages, orders, &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "reports", Config: filter("orders.eu.>")}); err != nil || !r.GetSubscribed().GetCreated() {
		t.Errorf("durable created within the subjects: %v, %v", r, err)
	}
	if _, err := e.b.Messages.Fetch(authTWith(e.ctx, orders), &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "billing", NoWait: true}); err != nil {
		t.Errorf("Fetch ORDERS/billing: %v", err)
	}
}

// TestAuthEphemeralWithinSubjectsIsAdmitted: an identity whose
// consume.subjects allow orders.eu.> may open an ephemeral consumer
// filtered on orders.eu.> (Subscribe over gRPC and REST, and Consume) and
// receives what is published there.
func TestAuthEphemeralWithinSubjectsIsAdmitted(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	orders := e.bearer(t, e.orders, "")
	req := &jetwayv1.SubscribeRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{FilterSubjects: []string{"orders.eu.>"}}}
	r, err := authTSubscribeErr(e.ctx, e.b.Messages, orders, req)
	if err != nil || r.GetSubscribed() == nil {
		t.Errorf("gRPC Subscribe ORDERS filtered on orders.eu.> (within consume.subjects): %v, %v; want Subscribed", r, err)
	}
	c, err := e.b.Messages.Consume(authTWith(e.ctx, orders))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: req}}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Recv(); err != nil || r.GetSubscribed() == nil {
		t.Errorf("gRPC Consume ORDERS filtered on orders.eu.>: %v, %v; want Subscribed", r, err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, e.b.BaseURL+"/v1/streams/ORDERS:subscribe?config.filter_subjects=orders.eu.%3E", nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Authorization", "ApiKey "+e.ordersKey)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Errorf("REST Subscribe ORDERS filtered on orders.eu.>: %d %s, want 200", resp.StatusCode, body)
	}
}

// TestAuthDurableCreatedWithoutEphemeralRight: an identity granted the
// durable ORDERS/reports (and not ephemeral consumers) may create it
// through Subscribe with a filter within its consume.subjects; it may not
// create it with a filter outside them, nor open an ephemeral consumer.
func TestAuthDurableCreatedWithoutEphemeralRight(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	key := "ApiKey " + e.reporterKey
	_, err := authTSubscribeErr(e.ctx, e.b.Messages, key, &jetwayv1.SubscribeRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{FilterSubjects: []string{"orders.eu.>"}}})
	authTWantCode(t, "ephemeral without the ephemeral right", err, codes.PermissionDenied, "NOT_PERMITTED")
	_, err = authTSubscribeErr(e.ctx, e.b.Messages, key, &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "reports", Config: &jetwayv1.ConsumerConfig{FilterSubjects: []string{"orders.us.>"}}})
	authTWantCode(t, "durable created with a filter outside the subjects", err, codes.PermissionDenied, "NOT_PERMITTED")
	r, err := authTSubscribeErr(e.ctx, e.b.Messages, key, &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "reports", Config: &jetwayv1.ConsumerConfig{FilterSubjects: []string{"orders.eu.>"}}})
	if err != nil || !r.GetSubscribed().GetCreated() {
		t.Errorf("durable ORDERS/reports created with a filter within the subjects: %v, %v; want Subscribed, created", r, err)
	}
}

// TestAuthEphemeralGrantIsNotADurableNamedEphemeral: "ORDERS"
// grants ephemeral consumers whose filters stay within consume.subjects.
// It must not also grant a durable consumer that happens to be named
// "_ephemeral" (a valid name), which reads beyond those subjects.
func TestAuthEphemeralGrantIsNotADurableNamedEphemeral(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	if _, err := e.b.JS.CreateOrUpdateConsumer(e.ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "_ephemeral", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.JS.Publish(e.ctx, "orders.us.private", []byte("not for orders")); err != nil {
		t.Fatal(err)
	}
	orders := e.bearer(t, e.orders, "")
	resp, err := e.b.Messages.Fetch(authTWith(e.ctx, orders), &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "_ephemeral", Batch: 10, NoWait: true})
	if err == nil {
		var subjects []string
		for _, m := range resp.GetMessages() {
			subjects = append(subjects, m.GetSubject())
		}
		t.Errorf("orders (ephemeral filters limited to orders.eu.>) fetched %v from the durable ORDERS/_ephemeral, want PERMISSION_DENIED NOT_PERMITTED", subjects)
	} else {
		authTWantCode(t, "Fetch ORDERS/_ephemeral", err, codes.PermissionDenied, "NOT_PERMITTED")
	}
	_, err = authTSubscribeErr(e.ctx, e.b.Messages, orders, &jetwayv1.SubscribeRequest{Stream: "ORDERS", Consumer: "_ephemeral"})
	authTWantCode(t, "Subscribe ORDERS/_ephemeral", err, codes.PermissionDenied, "NOT_PERMITTED")
}

// TestAuthAdminPermissions: a read-only identity cannot change its own
// stream; an identity without admin cannot read; listings show only what
// admin.streams allow.
func TestAuthAdminPermissions(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	if _, err := e.b.JS.Publish(e.ctx, "orders.eu.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	orders := authTWith(e.ctx, e.bearer(t, e.orders, ""))
	other := authTWith(e.ctx, e.bearer(t, e.other, ""))
	denied := func(what string, err error) {
		t.Helper()
		authTWantCode(t, what, err, codes.PermissionDenied, "NOT_PERMITTED")
	}
	a := e.b.Admin
	cfg := &jetwayv1.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}
	_, err := a.CreateStream(orders, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "NEW", Subjects: []string{"new.>"}}})
	denied("read-only CreateStream NEW", err)
	_, err = a.CreateStream(orders, &jetwayv1.CreateStreamRequest{Config: cfg})
	denied("read-only CreateStream ORDERS", err)
	_, err = a.UpdateStream(orders, &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>", "more.>"}}})
	denied("read-only UpdateStream", err)
	_, err = a.PurgeStream(orders, &jetwayv1.PurgeStreamRequest{Name: "ORDERS"})
	denied("read-only PurgeStream", err)
	_, err = a.DeleteMessage(orders, &jetwayv1.DeleteMessageRequest{Stream: "ORDERS", Sequence: 1})
	denied("read-only DeleteMessage", err)
	_, err = a.CreateConsumer(orders, &jetwayv1.CreateConsumerRequest{Stream: "ORDERS", Config: &jetwayv1.ConsumerConfig{Name: "mine"}})
	denied("read-only CreateConsumer", err)
	_, err = a.DeleteConsumer(orders, &jetwayv1.DeleteConsumerRequest{Stream: "ORDERS", Name: "billing"})
	denied("read-only DeleteConsumer", err)
	_, err = a.DeleteStream(orders, &jetwayv1.DeleteStreamRequest{Name: "ORDERS"})
	denied("read-only DeleteStream", err)
	_, err = a.GetStream(orders, &jetwayv1.GetStreamRequest{Name: "SECRET"})
	denied("GetStream outside admin.streams", err)
	_, err = a.GetMessage(orders, &jetwayv1.GetMessageRequest{Stream: "SECRET", Sequence: 1})
	denied("GetMessage outside admin.streams", err)
	_, err = a.ListMessages(orders, &jetwayv1.ListMessagesRequest{Stream: "SECRET"})
	denied("ListMessages outside admin.streams", err)
	_, err = a.GetLastMessages(orders, &jetwayv1.GetLastMessagesRequest{Stream: "SECRET", Subjects: []string{">"}})
	denied("GetLastMessages outside admin.streams", err)
	_, err = a.ListMessages(other, &jetwayv1.ListMessagesRequest{Stream: "ORDERS"})
	denied("ListMessages without admin", err)
	_, err = a.ListConsumers(orders, &jetwayv1.ListConsumersRequest{Stream: "SECRET"})
	denied("ListConsumers outside admin.streams", err)
	_, err = a.GetStream(other, &jetwayv1.GetStreamRequest{Name: "ORDERS"})
	denied("GetStream without admin", err)
	_, err = a.ListStreams(other, &jetwayv1.ListStreamsRequest{})
	denied("ListStreams without admin", err)
	_, err = a.GetAccountInfo(other, &jetwayv1.GetAccountInfoRequest{})
	denied("GetAccountInfo without admin", err)
	_, err = a.GetConsumer(other, &jetwayv1.GetConsumerRequest{Stream: "ORDERS", Name: "billing"})
	denied("GetConsumer without admin", err)

	ordersKey := []string{"Authorization", "ApiKey " + e.ordersKey}
	otherKey := []string{"Authorization", "ApiKey " + e.otherKey}
	for _, c := range []struct {
		method, path, body string
		header             []string
	}{
		{http.MethodPost, "/v1/streams", `{"name":"NEW","subjects":["new.>"]}`, ordersKey},
		{http.MethodPut, "/v1/streams/ORDERS", `{"name":"ORDERS","subjects":["orders.>","more.>"]}`, ordersKey},
		{http.MethodDelete, "/v1/streams/ORDERS", "", ordersKey},
		{http.MethodPost, "/v1/streams/ORDERS:purge", `{}`, ordersKey},
		{http.MethodDelete, "/v1/streams/ORDERS/messages/1", "", ordersKey},
		{http.MethodDelete, "/v1/streams/ORDERS/consumers/billing", "", ordersKey},
		{http.MethodGet, "/v1/streams/SECRET", "", ordersKey},
		{http.MethodGet, "/v1/streams/ORDERS", "", otherKey},
		{http.MethodGet, "/v1/streams", "", otherKey},
		{http.MethodGet, "/v1/account", "", otherKey},
	} {
		authTWantREST(t, "REST "+c.method+" "+c.path, e.b.Do(t, c.method, c.path, c.body, c.header...), http.StatusForbidden, "NOT_PERMITTED")
	}

	// Nothing changed.
	info, err := e.b.JS.Stream(e.ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if st := info.CachedInfo(); st.State.Msgs != 1 || len(st.Config.Subjects) != 1 {
		t.Errorf("ORDERS changed by refused calls: %d messages, subjects %v", st.State.Msgs, st.Config.Subjects)
	}
	if _, err := e.b.JS.Consumer(e.ctx, "ORDERS", "billing"); err != nil {
		t.Errorf("billing: %v", err)
	}
	if _, err := e.b.JS.Stream(e.ctx, "NEW"); err == nil {
		t.Error("stream NEW created by a refused call")
	}

	// Reads within admin.streams work, and listings show only those.
	if _, err := a.GetStream(orders, &jetwayv1.GetStreamRequest{Name: "ORDERS"}); err != nil {
		t.Errorf("GetStream ORDERS: %v", err)
	}
	list, err := a.ListStreams(orders, &jetwayv1.ListStreamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if names := authTStreamNames(list); strings.Join(names, ",") != "ORDERS" {
		t.Errorf("ListStreams for orders shows %v, want [ORDERS]", names)
	}
	r := e.b.Do(t, http.MethodGet, "/v1/streams", "", ordersKey...)
	var rl jetwayv1.ListStreamsResponse
	if r.Status != http.StatusOK || protojson.Unmarshal(r.Body, &rl) != nil {
		t.Fatalf("REST ListStreams: %d %s", r.Status, r.Body)
	}
	if names := authTStreamNames(&rl); strings.Join(names, ",") != "ORDERS" {
		t.Errorf("REST ListStreams for orders shows %v, want [ORDERS]", names)
	}
	// A subject filter does not widen the listing.
	list, err = a.ListStreams(orders, &jetwayv1.ListStreamsRequest{Subject: "secret.>"})
	if err != nil || len(list.GetStreams()) != 0 {
		t.Errorf("ListStreams subject secret.> for orders: %v, %v", authTStreamNames(list), err)
	}
	admin := authTWith(e.ctx, e.bearer(t, e.admin, ""))
	if list, err := a.ListStreams(admin, &jetwayv1.ListStreamsRequest{}); err != nil || len(list.GetStreams()) != 3 {
		t.Errorf("ListStreams for admin: %v, %v, want all 3", authTStreamNames(list), err)
	}
}

func authTStreamNames(l *jetwayv1.ListStreamsResponse) []string {
	var names []string
	for _, s := range l.GetStreams() {
		names = append(names, s.GetConfig().GetName())
	}
	return names
}

// TestAuthAckOfAnotherIdentity: an ack token works only for the identity
// it was issued to; another identity's ack, nak or term is refused per
// operation with ACK_TOKEN_NOT_PERMITTED and changes nothing.
func TestAuthAckOfAnotherIdentity(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	if _, err := e.b.JS.Publish(e.ctx, "orders.eu.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	orders := authTWith(e.ctx, e.bearer(t, e.orders, ""))
	// A long poll, not no_wait: the consumer learns of the message just
	// after the publish is acknowledged.
	f, err := e.b.Messages.Fetch(orders, &jetwayv1.FetchRequest{Stream: "ORDERS", Consumer: "billing", Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 1 {
		t.Fatalf("Fetch: %v, %v", f, err)
	}
	tok := f.GetMessages()[0].GetAckToken()
	info := func() *jetstream.ConsumerInfo {
		t.Helper()
		c, err := e.b.JS.Consumer(e.ctx, "ORDERS", "billing")
		if err != nil {
			t.Fatal(err)
		}
		ci, err := c.Info(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ci
	}
	before := info()
	if before.NumAckPending != 1 {
		t.Fatalf("ack pending %d before, want 1", before.NumAckPending)
	}
	wantRefused := func(what string, r *jetwayv1.AckResult) {
		t.Helper()
		if r.GetError().GetCode() != int32(codes.PermissionDenied) || r.GetError().GetReason() != "ACK_TOKEN_NOT_PERMITTED" {
			t.Errorf("%s: result %v, want PERMISSION_DENIED ACK_TOKEN_NOT_PERMITTED", what, r)
		}
	}
	for _, who := range []struct{ name, authz string }{
		{"other (may consume ORDERS.*)", e.bearer(t, e.other, "")},
		{"other by API key", "ApiKey " + e.otherKey},
		{"a JWT user", e.bearer(t, e.alice, e.aliceJWT)},
		{"the admin", e.bearer(t, e.admin, "")},
	} {
		for _, kind := range []jetwayv1.AckKind{jetwayv1.AckKind_ACK_KIND_ACK, jetwayv1.AckKind_ACK_KIND_TERM, jetwayv1.AckKind_ACK_KIND_IN_PROGRESS} {
			resp, err := e.b.Messages.Ack(authTWith(e.ctx, who.authz), &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: tok, Kind: kind}}})
			if err != nil || len(resp.GetResults()) != 1 {
				t.Fatalf("%s gRPC %v: %v, %v", who.name, kind, resp, err)
			}
			wantRefused(fmt.Sprintf("%s gRPC %v", who.name, kind), resp.GetResults()[0])
			if resp.GetResults()[0].GetNewToken() != "" {
				t.Errorf("%s got a fresh token for another identity's message", who.name)
			}
		}
		body, _ := json.Marshal(map[string]any{"sync": true, "operations": []any{map[string]string{"token": tok, "kind": "ACK_KIND_TERM"}}})
		r := e.b.Do(t, http.MethodPost, "/v1/acks", string(body), "Authorization", who.authz)
		var ar jetwayv1.AckResponse
		if r.Status != http.StatusOK || protojson.Unmarshal(r.Body, &ar) != nil || len(ar.GetResults()) != 1 {
			t.Fatalf("%s REST ack: %d %s", who.name, r.Status, r.Body)
		}
		wantRefused(who.name+" REST term", ar.GetResults()[0])
	}
	after := info()
	if after.NumAckPending != before.NumAckPending || after.AckFloor != before.AckFloor || after.NumRedelivered != before.NumRedelivered {
		t.Errorf("consumer changed by refused acks: ack pending %d→%d, ack floor %+v→%+v", before.NumAckPending, after.NumAckPending, before.AckFloor, after.AckFloor)
	}
	// The owner's ack works: the check above could have seen a change.
	resp, err := e.b.Messages.Ack(orders, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: tok}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("owner's ack: %v, %v", resp, err)
	}
	if n := info().NumAckPending; n != 0 {
		t.Errorf("ack pending %d after the owner's ack, want 0", n)
	}
}

// TestAuthHeadersCannotChangeIdentity: over REST only Authorization
// speaks for the caller: Grpc-Metadata-*, X-Forwarded-*, the gateway's own
// certificate-subject metadata and proxies' client-certificate headers
// are ignored; over gRPC, the certificate-subject metadata from a network
// client is ignored.
func TestAuthHeadersCannotChangeIdentity(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	adminTok := e.bearer(t, e.admin, "")
	if r := e.b.Do(t, http.MethodGet, "/v1/account", "", "Authorization", adminTok); r.Status != http.StatusOK {
		t.Fatalf("admin token: %d %s", r.Status, r.Body)
	}
	forged := []string{
		"Grpc-Metadata-Authorization", adminTok,
		"Grpc-Metadata-X-Jetway-Verified-Cert-Subject", "CN=admin",
		"X-Jetway-Verified-Cert-Subject", "CN=admin",
		"X-Forwarded-For", "127.0.0.1",
		"X-Forwarded-User", "admin",
		"X-Forwarded-Client-Cert", `Subject="CN=admin"`,
		"X-Ssl-Client-S-Dn", "CN=admin",
		"X-Client-Cert-Subject", "CN=admin",
		"X-Remote-User", "admin",
		"Grpc-Metadata-X-Remote-User", "admin",
	}
	// An API-key client stays itself: other has no admin.
	authTWantREST(t, "other with forged headers", e.b.Do(t, http.MethodGet, "/v1/account", "", append([]string{"Authorization", "ApiKey " + e.otherKey}, forged...)...), http.StatusForbidden, "NOT_PERMITTED")
	authTWantREST(t, "other deleting a stream with forged headers", e.b.Do(t, http.MethodDelete, "/v1/streams/AUDIT", "", append([]string{"Authorization", "ApiKey " + e.otherKey}, forged...)...), http.StatusForbidden, "NOT_PERMITTED")
	// Without Authorization, no header makes a caller anyone.
	authTRESTUnauthenticated(t, "forged headers alone", e.b.Do(t, http.MethodGet, "/v1/account", "", forged...))
	for i := 0; i+1 < len(forged); i += 2 {
		authTRESTUnauthenticated(t, forged[i]+" alone", e.b.Do(t, http.MethodGet, "/v1/account", "", forged[i], forged[i+1]))
	}
	if _, err := e.b.JS.Stream(e.ctx, "AUDIT"); err != nil {
		t.Errorf("AUDIT: %v", err)
	}

	// gRPC: the certificate-subject metadata of a network client.
	_, err := e.b.Admin.GetAccountInfo(authTWith(e.ctx, "", auth.CertSubjectMetadata, "CN=admin"), &jetwayv1.GetAccountInfoRequest{})
	authTUnauthenticated(t, "gRPC cert-subject metadata alone", err)
	_, err = e.b.Admin.GetAccountInfo(authTWith(e.ctx, "ApiKey "+e.otherKey, auth.CertSubjectMetadata, "CN=admin"), &jetwayv1.GetAccountInfoRequest{})
	authTWantCode(t, "gRPC other with cert-subject metadata", err, codes.PermissionDenied, "NOT_PERMITTED")
	// A second authorization value does not replace the first.
	_, err = e.b.Admin.GetAccountInfo(authTWith(e.ctx, "ApiKey "+e.otherKey, "authorization", adminTok), &jetwayv1.GetAccountInfoRequest{})
	authTWantCode(t, "gRPC other with a second authorization", err, codes.PermissionDenied, "NOT_PERMITTED")
}

// TestAuthHealthWithoutCredentials: health, readiness and the OpenAPI
// document need no credentials; the API does.
func TestAuthHealthWithoutCredentials(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if r := e.b.Do(t, http.MethodGet, path, ""); r.Status != http.StatusOK {
			t.Errorf("GET %s without credentials: %d %s", path, r.Status, r.Body)
		}
	}
	resp, err := healthpb.NewHealthClient(e.b.Conn).Check(e.ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health without credentials: %v, %v", resp, err)
	}
	authTRESTUnauthenticated(t, "GET /v1/streams without credentials", e.b.Do(t, http.MethodGet, "/v1/streams", ""))
	_, err = e.b.Admin.ListStreams(e.ctx, &jetwayv1.ListStreamsRequest{})
	authTUnauthenticated(t, "gRPC ListStreams without credentials", err)
}

// TestAuthRequestRateQuota: requests_per_second 2, burst 2: the third
// quick call is refused with RESOURCE_EXHAUSTED / 429, a RetryInfo detail
// (gRPC) and Retry-After (REST), and calls are admitted again later.
func TestAuthRequestRateQuota(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	grpcKey := authTWith(e.ctx, "ApiKey "+e.rateGRPCKey)
	var (
		ok      int
		refused error
		header  metadata.MD
	)
	start := time.Now()
	for range 20 {
		var md metadata.MD
		if _, err := e.b.Admin.GetAccountInfo(grpcKey, &jetwayv1.GetAccountInfoRequest{}, grpc.Header(&md)); err != nil {
			refused, header = err, md
			break
		}
		ok++
	}
	// Two calls of the burst pass; the third is refused (more may pass if
	// the machine is slow enough for tokens to refill meanwhile).
	if maxOK := authTRateAllows(time.Since(start)); ok < 2 || ok > maxOK || refused == nil {
		t.Fatalf("%d calls passed in %v before a refusal (%v), want 2 (at most %d with the refills in that time)", ok, time.Since(start), refused, maxOK)
	}
	if st := authTWantCode(t, "gRPC call over the rate", refused, codes.ResourceExhausted, "QUOTA_EXCEEDED"); st != nil {
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		if d := retry.GetRetryDelay().AsDuration(); retry == nil || d <= 0 || d > time.Second {
			t.Errorf("RetryInfo %v, want a delay in (0, 1s]", retry)
		}
		// The message says what Retry-After says, never "retry in 0s".
		if !strings.Contains(st.Message(), "retry in 1s") {
			t.Errorf("message %q, want it to say retry in 1s as Retry-After does", st.Message())
		}
	}
	if v := header.Get("retry-after"); len(v) != 1 || v[0] != "1" {
		t.Errorf("gRPC retry-after header %v, want [1]", v)
	}
	authTPoll(t, "gRPC call admitted again", func() error {
		_, err := e.b.Admin.GetAccountInfo(grpcKey, &jetwayv1.GetAccountInfoRequest{})
		return err
	})

	// REST, its own identity and limiter.
	restKey := []string{"Authorization", "ApiKey " + e.rateRESTKey}
	ok = 0
	var r jetwaytest.Response
	start = time.Now()
	for range 20 {
		if r = e.b.Do(t, http.MethodGet, "/v1/account", "", restKey...); r.Status != http.StatusOK {
			break
		}
		ok++
	}
	if maxOK := authTRateAllows(time.Since(start)); ok < 2 || ok > maxOK || r.Status == http.StatusOK {
		t.Fatalf("%d REST calls passed in %v before a refusal (%d %s), want 2 (at most %d with the refills in that time)", ok, time.Since(start), r.Status, r.Body, maxOK)
	}
	authTWantREST(t, "REST call over the rate", r, http.StatusTooManyRequests, "QUOTA_EXCEEDED")
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds ≥ 1", r.Header.Get("Retry-After"))
	}
	authTPoll(t, "REST call admitted again", func() error {
		if r := e.b.Do(t, http.MethodGet, "/v1/account", "", restKey...); r.Status != http.StatusOK {
			return fmt.Errorf("%d %s", r.Status, r.Body)
		}
		return nil
	})
	// Another identity is not limited by these.
	if _, err := e.b.Admin.GetAccountInfo(authTWith(e.ctx, e.bearer(t, e.admin, "")), &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Errorf("admin while others are over their rate: %v", err)
	}
}

// authTRateAllows is how many calls a limiter of 2 per second with a burst
// of 2 (the rate-limited identities here) can admit within d: the burst,
// the refills during d, and one for a refill that lands as d ends. Two
// unless the machine is slow.
func authTRateAllows(d time.Duration) int {
	return 2 + int(2*d.Seconds()) + 1
}

// authTPoll retries f every 50ms until it succeeds, for at most 10s.
func authTPoll(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 10s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuthConcurrentStreamsQuota: concurrent_streams 2: a third Subscribe
// is refused over gRPC and REST; once one closes, a new one is admitted.
func TestAuthConcurrentStreamsQuota(t *testing.T) {
	t.Parallel()
	e := authTStart(t)
	key := "ApiKey " + e.streamsKey
	open := func() (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(authTWith(e.ctx, key))
		s, err := e.b.Messages.Subscribe(ctx, &jetwayv1.SubscribeRequest{Stream: "ORDERS"})
		if err == nil {
			var r *jetwayv1.SubscribeResponse
			if r, err = s.Recv(); err == nil && r.GetSubscribed() == nil {
				err = fmt.Errorf("first event %v", r)
			}
		}
		if err != nil {
			cancel()
			return nil, err
		}
		return cancel, nil
	}
	var cancels []context.CancelFunc
	for i := range 2 {
		c, err := open()
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		cancels = append(cancels, c)
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	_, err := open()
	authTWantCode(t, "third gRPC Subscribe", err, codes.ResourceExhausted, "QUOTA_EXCEEDED")

	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.b.BaseURL+"/v1/streams/ORDERS:subscribe", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	authTWantREST(t, "third REST Subscribe", jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, http.StatusTooManyRequests, "QUOTA_EXCEEDED")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("third REST Subscribe: no Retry-After")
	}

	cancels[0]()
	cancels = cancels[1:]
	authTPoll(t, "Subscribe after one closed", func() error {
		c, err := open()
		if err == nil {
			cancels = append(cancels, c)
		}
		return err
	})
}

// authTCerts is a CA, a server certificate for 127.0.0.1 and client
// certificates, in PEM files.
type authTCerts struct {
	dir                       string
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func authTNewCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// authTIssue signs a leaf certificate and returns it as a tls.Certificate
// and as PEM.
func authTIssue(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, subject pkix.Name, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// TestAuthMTLS: over TLS listeners with --tls-client-ca, a client
// certificate whose subject is configured is that identity over gRPC and
// REST; an unknown subject, a certificate of another CA and a forged
// subject header or metadata are not; token clients need no certificate.
func TestAuthMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, caKey := authTNewCA(t, "jetway test CA")
	rogue, rogueKey := authTNewCA(t, "rogue CA")
	_, srvCert, srvKey := authTIssue(t, ca, caKey, pkix.Name{CommonName: "127.0.0.1"}, true)
	adminCert, _, _ := authTIssue(t, ca, caKey, pkix.Name{CommonName: "admin", Organization: []string{"Jetway"}}, false)
	nobodyCert, _, _ := authTIssue(t, ca, caKey, pkix.Name{CommonName: "nobody", Organization: []string{"Jetway"}}, false)
	rogueCert, _, _ := authTIssue(t, rogue, rogueKey, pkix.Name{CommonName: "admin", Organization: []string{"Jetway"}}, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	apiKey := "tls-api-key-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "certadmin", CertSubjects: []string{"CN=admin,O=Jetway"}, Grant: auth.Grant{Admin: &auth.AdminGrant{Write: true}}},
		{Name: "keyed", APIKeyHashes: []string{auth.HashAPIKey(apiKey)}, Grant: auth.Grant{Admin: &auth.AdminGrant{}}},
	}})
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	b := jetwaytest.Start(t, func(c *config.Config) {
		c.Auth.ConfigFile = path
		c.Auth.TLSCert, c.Auth.TLSKey, c.Auth.TLSClientCA = write("srv.pem", srvCert), write("srv.key", srvKey), write("ca.pem", caPEM)
	})
	ctx := jetwaytest.Context(t, 60*time.Second)

	// clientTLS sends the certificate whatever CAs the server asks for
	// (Go's client would otherwise withhold one the server's CA list does
	// not name), as an attacker would.
	clientTLS := func(certs []tls.Certificate) *tls.Config {
		c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if len(certs) > 0 {
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		return c
	}
	grpcClient := func(certs ...tls.Certificate) jetwayv1.AdminServiceClient {
		t.Helper()
		conn, err := grpc.NewClient(b.Server.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(certs))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return jetwayv1.NewAdminServiceClient(conn)
	}
	rest := func(path string, header []string, certs ...tls.Certificate) (jetwaytest.Response, error) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: clientTLS(certs)}
		defer tr.CloseIdleConnections()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, "https://"+b.Server.HTTPAddr().String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return jetwaytest.Response{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return jetwaytest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, err
	}
	callCtx := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		t.Cleanup(cancel)
		return c
	}

	// The configured subject: admin, over gRPC and REST.
	if _, err := grpcClient(adminCert).GetAccountInfo(callCtx(), &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Errorf("gRPC with the admin certificate: %v", err)
	}
	if _, err := grpcClient(adminCert).DeleteStream(callCtx(), &jetwayv1.DeleteStreamRequest{Name: "NONE"}); status.Code(err) != codes.NotFound {
		t.Errorf("gRPC admin write with the admin certificate: %v, want NOT_FOUND (authorized)", err)
	}
	if r, err := rest("/v1/account", nil, adminCert); err != nil || r.Status != http.StatusOK {
		t.Errorf("REST with the admin certificate: %d %s %v", r.Status, r.Body, err)
	}
	// A token client needs no certificate.
	if _, err := grpcClient().GetAccountInfo(authTWith(callCtx(), "ApiKey "+apiKey), &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Errorf("gRPC API key over TLS without certificate: %v", err)
	}
	if r, err := rest("/v1/account", []string{"Authorization", "ApiKey " + apiKey}); err != nil || r.Status != http.StatusOK {
		t.Errorf("REST API key over TLS without certificate: %d %s %v", r.Status, r.Body, err)
	}

	// A verified certificate whose subject is not configured.
	_, err := grpcClient(nobodyCert).GetAccountInfo(callCtx(), &jetwayv1.GetAccountInfoRequest{})
	authTUnauthenticated(t, "gRPC with an unconfigured subject", err)
	r, err := rest("/v1/account", nil, nobodyCert)
	if err != nil {
		t.Fatal(err)
	}
	authTRESTUnauthenticated(t, "REST with an unconfigured subject", r)
	// ... that also claims the admin subject in a header or metadata.
	_, err = grpcClient(nobodyCert).GetAccountInfo(authTWith(callCtx(), "", auth.CertSubjectMetadata, "CN=admin,O=Jetway"), &jetwayv1.GetAccountInfoRequest{})
	authTUnauthenticated(t, "gRPC unconfigured subject with forged subject metadata", err)
	r, err = rest("/v1/account", []string{"X-Jetway-Verified-Cert-Subject", "CN=admin,O=Jetway", "Grpc-Metadata-X-Jetway-Verified-Cert-Subject", "CN=admin,O=Jetway"}, nobodyCert)
	if err != nil {
		t.Fatal(err)
	}
	authTRESTUnauthenticated(t, "REST unconfigured subject with forged subject headers", r)

	// No certificate, a forged subject.
	_, err = grpcClient().GetAccountInfo(authTWith(callCtx(), "", auth.CertSubjectMetadata, "CN=admin,O=Jetway"), &jetwayv1.GetAccountInfoRequest{})
	authTUnauthenticated(t, "gRPC without certificate, forged subject metadata", err)
	r, err = rest("/v1/account", []string{"X-Jetway-Verified-Cert-Subject", "CN=admin,O=Jetway"})
	if err != nil {
		t.Fatal(err)
	}
	authTRESTUnauthenticated(t, "REST without certificate, forged subject header", r)

	// A certificate with the admin subject from another CA: the handshake
	// fails, nothing is served.
	if _, err := grpcClient(rogueCert).GetAccountInfo(callCtx(), &jetwayv1.GetAccountInfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC with a certificate of another CA: %v, want a failed connection (UNAVAILABLE)", err)
	} else {
		t.Logf("gRPC with a certificate of another CA: %v", err)
	}
	if r, err := rest("/v1/account", nil, rogueCert); err == nil {
		t.Errorf("REST with a certificate of another CA: %d %s, want a failed handshake", r.Status, r.Body)
	} else {
		t.Logf("REST with a certificate of another CA: %v", err)
	}

	// Plain HTTP and plaintext gRPC are not served on the TLS listeners.
	plain, err := grpc.NewClient(b.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := jetwayv1.NewAdminServiceClient(plain).GetAccountInfo(authTWith(callCtx(), "ApiKey "+apiKey), &jetwayv1.GetAccountInfoRequest{}); err == nil {
		t.Error("plaintext gRPC served on the TLS listener")
	}
}

// TestAuthMode: without an auth configuration the bridge refuses to listen
// beyond loopback unless --auth-mode=none says so; health needs no
// credentials either way.
func TestAuthMode(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	parse := func(args ...string) (config.Config, error) {
		return config.Parse(append([]string{"--data-dir", t.TempDir(), "--shutdown-timeout", "5s"}, args...), func(string) string { return "" }, io.Discard)
	}
	for _, args := range [][]string{
		{"--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"},
		{"--grpc-listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0"},
		{"--grpc-listen", "127.0.0.1:0", "--http-listen", ":0"},
	} {
		cfg, err := parse(args...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := server.Start(ctx, cfg, log)
		if err == nil {
			cancel()
			_ = srv.Wait()
			t.Errorf("%v without --auth-config started", args)
			continue
		}
		cancel()
		if msg := err.Error(); !strings.Contains(msg, "--auth-config") || !strings.Contains(msg, "--auth-mode=none") {
			t.Errorf("%v: error %q does not say what to give", args, msg)
		}
	}
	if _, err := parse("--auth-mode", "required"); err == nil || !strings.Contains(err.Error(), "--auth-config") {
		t.Errorf("--auth-mode=required without --auth-config: %v", err)
	}
	if _, err := parse("--auth-mode", "none", "--auth-config", "x.yaml"); err == nil {
		t.Error("--auth-mode=none with --auth-config accepted")
	}
	if _, err := parse("--auth-mode", "off"); err == nil {
		t.Error("--auth-mode=off accepted")
	}

	// --auth-mode=none accepts the risk: it starts on 0.0.0.0 and serves
	// calls without credentials (reached here over loopback).
	cfg, err := parse("--auth-mode", "none", "--grpc-listen", "0.0.0.0:0", "--http-listen", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("--auth-mode=none on 0.0.0.0: %v", err)
	}
	defer func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	port := func(a net.Addr) string { return strconv.Itoa(a.(*net.TCPAddr).Port) }
	conn, err := grpc.NewClient("127.0.0.1:"+port(srv.GRPCAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx := jetwaytest.Context(t, 10*time.Second)
	if _, err := jetwayv1.NewAdminServiceClient(conn).GetAccountInfo(cctx, &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Errorf("auth off: GetAccountInfo without credentials: %v", err)
	}
	if h, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("auth off: health: %v, %v", h, err)
	}
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://127.0.0.1:"+port(srv.HTTPAddr())+"/v1/account", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("auth off: REST account without credentials: %d", resp.StatusCode)
	}
}
