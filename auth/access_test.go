package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/jetway-dev/jetway/auth/perm"
	_ "github.com/jetway-dev/jetway/gen/jetway/v1" // registers the services
)

func accessTConfig(t *testing.T, names ...string) *Config {
	t.Helper()
	var ids []IdentityConfig
	for _, n := range names {
		ids = append(ids, IdentityConfig{Name: n, APIKeyHashes: []string{HashAPIKey(n + "-key-0123456789abcdef")}, Grant: Grant{
			Publish: &perm.Set{Allow: []string{"orders.>"}},
			Consume: &ConsumeGrant{Streams: []string{"ORDERS"}},
		}})
	}
	c, err := New(File{Identities: ids, MaxAccessTokenLifetime: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnableAccessTokens([][]byte{[]byte("ack-key-0123456789abcdef0123456789")}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAccessTokenVerify: what verification refuses, and what it allows.
func TestAccessTokenVerify(t *testing.T) {
	c := accessTConfig(t, "orders", "other")
	now := time.Unix(1_800_000_000, 0)
	id, err := c.Authenticate("ApiKey orders-key-0123456789abcdef", "", now)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.MintAccessToken(id, Scope{Operations: []Operation{OpPublish}, Subjects: []string{"orders.eu.>"}}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Authenticate("Bearer "+m.Token, "", now.Add(time.Minute))
	if err != nil || got.Name != "orders" || got.Method != "access_token" || got.TokenID() != m.ID {
		t.Fatalf("verify: %+v %v", got, err)
	}
	ctx := NewContext(context.Background(), got)
	if err := (Authorizer{}).CanPublish(ctx, "orders.eu.1"); err != nil {
		t.Errorf("publish in scope: %v", err)
	}
	for _, err := range []error{
		(Authorizer{}).CanPublish(ctx, "orders.us.1"),
		(Authorizer{}).CanConsume(ctx, "ORDERS", ""),
		(Authorizer{}).CanAdmin(ctx, "ORDERS", false),
		got.allowsMethod("/jetway.v1.AdminService/DeleteStream"),
		got.allowsMethod("/jetway.v1.AccessService/CreateAccessToken"),
	} {
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("out of scope: %v, want forbidden", err)
		}
	}
	if _, err := c.MintAccessToken(got, Scope{Operations: []Operation{OpPublish}}, time.Minute, now); !errors.Is(err, ErrForbidden) {
		t.Errorf("a token minting: %v", err)
	}

	header, body, _ := strings.Cut(strings.TrimPrefix(m.Token, AccessTokenPrefix), ".")
	body, sig, _ := strings.Cut(body, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	other := accessTConfig(t, "orders") // another key? same key: same derived key
	if err := other.EnableAccessTokens([][]byte{[]byte("another-key-0123456789abcdef012345")}); err != nil {
		t.Fatal(err)
	}
	removed := accessTConfig(t, "other") // the same key, without "orders"
	for what, tc := range map[string]struct {
		c   *Config
		tok string
		at  time.Time
	}{
		"expired":      {c, m.Token, now.Add(time.Hour + clockSkew + time.Second)},
		"issued later": {c, m.Token, now.Add(-time.Hour)},
		"tampered":     {c, AccessTokenPrefix + header + "." + body + "x." + sig, now},
		"alg none":     {c, AccessTokenPrefix + none + "." + body + ".", now},
		"no signature": {c, AccessTokenPrefix + header + "." + body, now},
		"other key":    {other, m.Token, now},
		"removed":      {removed, m.Token, now},
		"garbage":      {c, AccessTokenPrefix + "x.y.z", now},
		"huge":         {c, AccessTokenPrefix + strings.Repeat("a", maxTokenLen+1), now},
		"empty":        {c, AccessTokenPrefix, now},
		"not enabled yet": {func() *Config {
			c, _ := New(File{Identities: []IdentityConfig{{Name: "orders", APIKeyHashes: []string{HashAPIKey("k-0123456789abcdef")}}}})
			return c
		}(), m.Token, now},
	} {
		_, err := tc.c.Authenticate("Bearer "+tc.tok, "", tc.at)
		if !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: %v, want unauthenticated", what, err)
		}
		if err != nil && strings.Contains(err.Error(), sig[:16]) {
			t.Errorf("%s: the error quotes the token: %v", what, err)
		}
	}
	if _, err := c.MintAccessToken(id, Scope{Operations: []Operation{OpRead}}, 3*time.Hour, now); !errors.Is(err, ErrInvalidScope) {
		t.Errorf("ttl over the maximum: %v", err)
	}
	if _, err := c.MintAccessToken(id, Scope{Operations: []Operation{OpRead}}, time.Minute, now); !errors.Is(err, ErrForbidden) {
		t.Errorf("read without an admin grant: %v", err)
	}
	if _, err := c.MintAccessToken(Anonymous, Scope{Operations: []Operation{OpAck}}, time.Minute, now); !errors.Is(err, ErrAccessTokens) {
		t.Errorf("anonymous: %v", err)
	}
}

// TestEveryMethodClassified: each gRPC method of jetway.v1 is either
// under an operation of access tokens or refused to them on purpose, so a
// new RPC is a decision, not an accident.
func TestEveryMethodClassified(t *testing.T) {
	never := map[string]bool{
		"/jetway.v1.AccessService/CreateAccessToken": true,
		"/jetway.v1.AdminService/CreateStream":       true, "/jetway.v1.AdminService/UpdateStream": true,
		"/jetway.v1.AdminService/DeleteStream": true, "/jetway.v1.AdminService/PurgeStream": true,
		"/jetway.v1.AdminService/CreateConsumer": true, "/jetway.v1.AdminService/UpdateConsumer": true,
		"/jetway.v1.AdminService/DeleteConsumer": true, "/jetway.v1.AdminService/DeleteMessage": true,
		"/jetway.v1.AdminService/GetAccountInfo": true, "/jetway.v1.AdminService/ListSessions": true,
		"/jetway.v1.AdminService/GetBridgeInfo": true,
		// Key-value (issue 18): bucket admin writes.
		"/jetway.v1.KVService/CreateBucket": true, "/jetway.v1.KVService/UpdateBucket": true,
		"/jetway.v1.KVService/DeleteBucket": true,
		// consume (issue 18): consumer control is admin, never a token's
		"/jetway.v1.AdminService/PauseConsumer": true, "/jetway.v1.AdminService/ResumeConsumer": true,
		"/jetway.v1.AdminService/ResetConsumer": true, "/jetway.v1.AdminService/UnpinConsumer": true,
		// deadletters (issue 19): a redrive publishes and deletes as an admin
		"/jetway.v1.DeadLetterService/RedriveDeadLetters": true,
		// push (issue 19): push subscriptions hold a signing secret and
		// send a consumer's messages elsewhere: admin only, reads too.
		"/jetway.v1.PushService/CreatePushSubscription": true, "/jetway.v1.PushService/UpdatePushSubscription": true,
		"/jetway.v1.PushService/DeletePushSubscription": true, "/jetway.v1.PushService/GetPushSubscription": true,
		"/jetway.v1.PushService/ListPushSubscriptions": true,
	}
	listed := map[string]bool{}
	for _, ms := range operationMethods {
		for _, m := range ms {
			listed[m] = true
		}
	}
	seen := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("jetway.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			svc := fd.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				m := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				seen++
				if listed[m] == never[m] {
					t.Errorf("%s: listed under an operation %v, refused on purpose %v: want exactly one", m, listed[m], never[m])
				}
			}
		}
		return true
	})
	if seen < 20 {
		t.Errorf("%d methods seen", seen)
	}
}
