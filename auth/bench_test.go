package auth

import (
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/jetway-dev/jetway/auth/perm"
)

func benchConfig(b *testing.B) (*Config, string) {
	b.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	cfg, err := New(File{Identities: []IdentityConfig{{
		Name: "svc", NKeys: []string{pub}, APIKeyHashes: []string{HashAPIKey("bench-key-0123456789")},
		Grant: Grant{Publish: &perm.Set{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := MintToken(seed, "jetway", 5*time.Minute, "", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return cfg, tok
}

// BenchmarkAuthenticateAPIKey is the per-call cost of an API key.
func BenchmarkAuthenticateAPIKey(b *testing.B) {
	cfg, _ := benchConfig(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cfg.Authenticate("ApiKey bench-key-0123456789", "", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateNKeyToken is the per-call cost of an NKey-signed
// token (an Ed25519 verification).
func BenchmarkAuthenticateNKeyToken(b *testing.B) {
	cfg, tok := benchConfig(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cfg.Authenticate("Bearer "+tok, "", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCanPublish is the per-message authorization cost.
func BenchmarkCanPublish(b *testing.B) {
	cfg, _ := benchConfig(b)
	id, err := cfg.Authenticate("ApiKey bench-key-0123456789", "", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx := NewContext(b.Context(), id)
	b.ReportAllocs()
	for b.Loop() {
		if err := (Authorizer{}).CanPublish(ctx, "orders.eu.new"); err != nil {
			b.Fatal(err)
		}
	}
}
