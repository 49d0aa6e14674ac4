package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestIdentityPropagationIsolatesAccounts runs two tenants whose
// identities carry NATS credentials of accounts A and B: each works on its
// own connection, so both have a stream ORDERS on orders.> without
// clashing, each sees only its own, and nats-server's own permissions
// apply on top of the bridge's.
func TestIdentityPropagationIsolatesAccounts(t *testing.T) {
	dir := t.TempDir()
	seedFile := func(name string) (string, string) {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		path := filepath.Join(dir, name+".nk")
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		return pub, path
	}
	pubA, seedA := seedFile("a")
	pubB, seedB := seedFile("b")
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `
listen: 127.0.0.1:-1
jetstream { store_dir: %q }
accounts {
  BRIDGE { jetstream: enabled, users: [{user: bridge, password: bridge-pw}] }
  A { jetstream: enabled, users: [{nkey: %s}] }
  B { jetstream: enabled, users: [{nkey: %s, permissions: {publish: {allow: [">"], deny: ["orders.secret"]}}}] }
}
`, filepath.Join(dir, "js"), pubA, pubB), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := natsserver.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	ns := jetwaytest.NATSServer(t, opts)

	everything := auth.Grant{
		Publish: &permSetAll, Consume: &auth.ConsumeGrant{Streams: []string{">"}}, Admin: &auth.AdminGrant{Write: true},
	}
	authFile := filepath.Join(dir, "auth.yaml")
	writeAuth(t, authFile, auth.File{Identities: []auth.IdentityConfig{
		{Name: "tenant-a", APIKeyHashes: []string{auth.HashAPIKey("key-a-0123456789")}, Grant: everything,
			NATS: &auth.NATSCredentialsConfig{NKeySeedFile: seedA}},
		{Name: "tenant-b", APIKeyHashes: []string{auth.HashAPIKey("key-b-0123456789")}, Grant: everything,
			NATS: &auth.NATSCredentialsConfig{NKeySeedFile: seedB}},
		{Name: "plain", APIKeyHashes: []string{auth.HashAPIKey("key-p-0123456789")}, Grant: everything},
	}})
	b := jetwaytest.StartWithoutNATSClient(t, func(c *config.Config) {
		c.NATS.URLs = ns.ClientURL()
		c.NATS.Credentials.User, c.NATS.Credentials.Password = "bridge", "bridge-pw"
		c.Auth.ConfigFile = authFile
	})
	ctx := jetwaytest.Context(t, 30*time.Second)
	as := func(key string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "ApiKey "+key)
	}
	a, bb, p := as("key-a-0123456789"), as("key-b-0123456789"), as("key-p-0123456789")

	orders := &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}}
	for _, who := range []context.Context{a, bb} {
		if _, err := b.Admin.CreateStream(who, orders); err != nil {
			t.Fatalf("create ORDERS: %v", err)
		}
	}
	publish := func(who context.Context, subject, text string) error {
		_, err := b.Messages.Publish(who, &jetwayv1.PublishRequest{Subject: subject, Payload: &jetwayv1.PublishRequest_Text{Text: text}})
		return err
	}
	for _, m := range []struct {
		who  context.Context
		text string
	}{{a, "A1"}, {bb, "B1"}, {bb, "B2"}} {
		if err := publish(m.who, "orders.new", m.text); err != nil {
			t.Fatalf("publish %s: %v", m.text, err)
		}
	}
	count := func(who context.Context) uint64 {
		t.Helper()
		r, err := b.Admin.GetStream(who, &jetwayv1.GetStreamRequest{Name: "ORDERS"})
		if err != nil {
			t.Fatalf("get ORDERS: %v", err)
		}
		return r.GetStream().GetState().GetMessages()
	}
	if n := count(a); n != 1 {
		t.Errorf("tenant A's ORDERS holds %d messages, want 1", n)
	}
	if n := count(bb); n != 2 {
		t.Errorf("tenant B's ORDERS holds %d messages, want 2", n)
	}
	got, err := b.Admin.GetMessage(a, &jetwayv1.GetMessageRequest{Stream: "ORDERS", Sequence: 1})
	if err != nil || string(got.GetMessage().GetData()) != "A1" {
		t.Errorf("tenant A reads %q, %v; want its own A1", got.GetMessage().GetData(), err)
	}
	// The plain identity runs in the bridge's own account: no ORDERS there.
	if _, err := b.Admin.GetStream(p, &jetwayv1.GetStreamRequest{Name: "ORDERS"}); status.Code(err) != codes.NotFound {
		t.Errorf("plain identity sees ORDERS: %v, want NOT_FOUND", err)
	}
	// Defence in depth: the bridge allows tenant B everything, its NATS
	// user may not publish to orders.secret. nats-server refuses the
	// publish with an asynchronous -ERR and no reply; the refusal ends the
	// call with PERMISSION_DENIED (package refusal), not at its deadline.
	short, cancel := context.WithTimeout(bb, 10*time.Second)
	defer cancel()
	if err := publish(short, "orders.secret", "x"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("tenant B's publish to orders.secret: %v, want PERMISSION_DENIED from nats-server's refusal", err)
	}
	// PublishStream: the refused publish fails on its own, and the stream
	// goes on.
	ps, err := b.Messages.PublishStream(short)
	if err != nil {
		t.Fatal(err)
	}
	for i, subj := range []string{"orders.secret", "orders.new"} {
		if err := ps.Send(&jetwayv1.PublishStreamRequest{Id: uint64(i), Publish: &jetwayv1.PublishRequest{Subject: subj, Payload: &jetwayv1.PublishRequest_Text{Text: "B3"}}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = ps.CloseSend()
	for range 2 {
		r, err := ps.Recv()
		if err != nil {
			t.Fatalf("PublishStream: %v", err)
		}
		switch {
		case r.GetId() == 0 && r.GetError().GetCode() != int32(codes.PermissionDenied):
			t.Errorf("PublishStream to orders.secret: %v, want PERMISSION_DENIED", r)
		case r.GetId() == 1 && r.GetAck() == nil:
			t.Errorf("PublishStream to orders.new after the refusal: %v, want an ack", r)
		}
	}
	if n := count(bb); n != 3 {
		t.Errorf("tenant B's ORDERS holds %d messages after the refused publishes, want 3 (B1, B2, B3)", n)
	}
	if err := publish(a, "orders.secret", "x"); err != nil {
		t.Errorf("tenant A publish to orders.secret: %v", err)
	}
}

var permSetAll = perm.Set{Allow: []string{">"}}

// writeAuth writes an auth configuration file (JSON is YAML).
func writeAuth(t *testing.T, path string, f auth.File) {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
