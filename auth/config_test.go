package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEmptyGrantsGrantNothing: a section that is present but empty, in
// each spelling a YAML file can give it, grants nothing: not everything
// (nats-server's reading of an empty allow list) and not a load error
// that an operator might work around by removing the section.
func TestEmptyGrantsGrantNothing(t *testing.T) {
	for _, tc := range []struct {
		name, grant string
		check       func(context.Context) error
	}{
		{"publish: {}", "publish: {}", func(ctx context.Context) error { return Authorizer{}.CanPublish(ctx, "orders.1") }},
		{"publish: {allow: []}", "publish: {allow: []}", func(ctx context.Context) error { return Authorizer{}.CanPublish(ctx, "orders.1") }},
		{"publish with deny only", "publish: {deny: [secret.>]}", func(ctx context.Context) error { return Authorizer{}.CanPublish(ctx, "orders.1") }},
		{"publish: {allow: [], deny: []}", "publish: {allow: [], deny: []}", func(ctx context.Context) error { return Authorizer{}.CanPublish(ctx, "orders.1") }},
		{"consume.subjects: {}", "consume: {streams: [ORDERS], subjects: {}}", func(ctx context.Context) error {
			return Authorizer{}.CanReadSubjects(ctx, []string{"orders.1"})
		}},
		{"consume.subjects: {allow: []}", "consume: {streams: [ORDERS], subjects: {allow: []}}", func(ctx context.Context) error {
			return Authorizer{}.CanReadSubjects(ctx, []string{"orders.1"})
		}},
		{"admin.streams: []", "admin: {streams: [], write: true}", func(ctx context.Context) error { return Authorizer{}.CanAdmin(ctx, "ORDERS", false) }},
		{"admin.subjects: {}", "admin: {streams: [ORDERS], write: true, subjects: {}}", func(ctx context.Context) error {
			return Authorizer{}.CanAdminSubjects(ctx, "config.subjects", []string{"orders.>"})
		}},
		{"admin.subjects: {allow: []} on every stream", "admin: {write: true, subjects: {allow: []}}", func(ctx context.Context) error {
			return Authorizer{}.CanAdminSubjects(ctx, "config.subjects", []string{"orders.>"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "auth.yaml")
			yaml := "identities:\n  - name: svc\n    api_key_hashes: [\"" + HashAPIKey("svc-key-0123456789abcdef") + "\"]\n    " + tc.grant + "\n"
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadFile(path)
			if err != nil {
				t.Fatalf("LoadFile:\n%s\n%v", yaml, err)
			}
			id, err := c.Authenticate("ApiKey svc-key-0123456789abcdef", "", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.check(NewContext(context.Background(), id)); !errors.Is(err, ErrForbidden) {
				t.Errorf("%s granted it (%v); want ErrForbidden", tc.grant, err)
			}
		})
	}
}

// TestMissingSectionsAsDocumented: consume.subjects not given is the
// whole stream, admin.streams not given is every stream (and the account),
// admin.subjects not given is every subject for such an admin and none for
// a stream-scoped one.
func TestMissingSectionsAsDocumented(t *testing.T) {
	c, err := New(File{Identities: []IdentityConfig{
		{Name: "consumer", APIKeyHashes: []string{HashAPIKey("consumer-key-0123456789")}, Grant: Grant{Consume: &ConsumeGrant{Streams: []string{"ORDERS"}}}},
		{Name: "ops", APIKeyHashes: []string{HashAPIKey("ops-key-0123456789")}, Grant: Grant{Admin: &AdminGrant{Write: true}}},
		{Name: "scoped", APIKeyHashes: []string{HashAPIKey("scoped-key-0123456789")}, Grant: Grant{Admin: &AdminGrant{Streams: []string{"ORDERS"}, Write: true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := func(key string) context.Context {
		id, err := c.Authenticate("ApiKey "+key, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return NewContext(context.Background(), id)
	}
	var a Authorizer
	for name, err := range map[string]error{
		"consumer reads any subject of its stream": a.CanReadSubjects(ctx("consumer-key-0123456789"), []string{"orders.>"}),
		"ops administers any stream":               a.CanAdmin(ctx("ops-key-0123456789"), "ANY", true),
		"ops reads the account":                    a.CanReadAccount(ctx("ops-key-0123456789")),
		"ops sets any subject":                     a.CanAdminSubjects(ctx("ops-key-0123456789"), "config.subjects", []string{"x.>"}),
		"scoped creates durables on its stream":    a.CanCreateDurable(ctx("scoped-key-0123456789"), "ORDERS", "c"),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, err := range map[string]error{
		"scoped reads the account":             a.CanReadAccount(ctx("scoped-key-0123456789")),
		"scoped sets subjects without a grant": a.CanAdminSubjects(ctx("scoped-key-0123456789"), "config.subjects", []string{"orders.>"}),
		"consumer creates durables":            a.CanCreateDurable(ctx("consumer-key-0123456789"), "ORDERS", "c"),
	} {
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
}

// TestExampleConfigLoads: deploy/examples/auth.yaml, which the README
// points to, loads, and its service owns only its own subjects.
func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadFile(filepath.Join("..", "deploy", "examples", "auth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Authenticate("ApiKey example-key-0123456789abcdef", "", time.Now())
	if err != nil || id.Name != "billing-fn" {
		t.Fatalf("the example's API key: %v, %v", id, err)
	}
	for _, ic := range c.identities {
		if ic.Name != "orders-service" {
			continue
		}
		ctx := NewContext(context.Background(), ic)
		var a Authorizer
		if err := a.CanAdminSubjects(ctx, "config.subjects", []string{"orders.>"}); err != nil {
			t.Errorf("orders-service on orders.>: %v", err)
		}
		if err := a.CanAdminSubjects(ctx, "config.subjects", []string{"payments.>"}); !errors.Is(err, ErrForbidden) {
			t.Errorf("orders-service on payments.>: %v, want ErrForbidden", err)
		}
		return
	}
	t.Fatal("the example has no orders-service")
}
