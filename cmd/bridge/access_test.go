package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestTokenAccess: bridge token access mints, from the auth file and the
// ack keys, a token a bridge with the same files takes, narrowed as
// asked; its refusals name what is missing.
func TestTokenAccess(t *testing.T) {
	dir := t.TempDir()
	authFile, keysFile := filepath.Join(dir, "auth.json"), filepath.Join(dir, "ack-keys")
	data, _ := json.Marshal(auth.File{Identities: []auth.IdentityConfig{{
		Name: "hooks", APIKeyHashes: []string{auth.HashAPIKey("hooks-key-0123456789abcdef")},
		Grant: auth.Grant{Publish: &perm.Set{Allow: []string{"github.>"}}},
	}}})
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysFile, []byte("YWNrLWtleS1hLTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWI=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	var out, errOut bytes.Buffer
	args := []string{"token", "access", "--auth-config", authFile, "--ack-keys-file", keysFile, "--identity", "hooks", "--op", "publish", "--subject", "github.events", "--ttl", "5m"}
	if err := dispatch(context.Background(), nil, args, env, nil, &out, &errOut); err != nil {
		t.Fatalf("token access: %v (%s)", err, errOut.String())
	}
	tok := strings.TrimSpace(out.String())
	b := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile, c.Consume.AckKeysFile = authFile, keysFile })
	ctx := jetwaytest.Context(t, 20*time.Second)
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "GH", Subjects: []string{"github.>"}}); err != nil {
		t.Fatal(err)
	}
	if r := b.Do(t, http.MethodPost, "/v1/subjects/github.events:publish", `{"text":"x"}`, "Authorization", "Bearer "+tok); r.Status != http.StatusOK {
		t.Errorf("publish with the minted token: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodPost, "/v1/subjects/github.other:publish", `{"text":"x"}`, "Authorization", "Bearer "+tok); r.Status != http.StatusForbidden {
		t.Errorf("publish outside the token: %d %s", r.Status, r.Body)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-config", authFile, "--ack-keys-file", keysFile, "--identity", "nobody", "--op", "publish"}, `no identity "nobody"`},
		{[]string{"--auth-config", authFile, "--identity", "hooks", "--op", "publish"}, "ack keys are required"},
		{[]string{"--ack-keys-file", keysFile, "--identity", "hooks", "--op", "publish"}, "--auth-config"},
		{[]string{"--auth-config", authFile, "--ack-keys-file", keysFile, "--identity", "hooks", "--op", "consume"}, "no consume grant"},
		{[]string{"--auth-config", authFile, "--ack-keys-file", keysFile, "--identity", "hooks", "--op", "fly"}, "unknown operation"},
		{[]string{"--auth-config", authFile, "--ack-keys-file", keysFile, "--identity", "hooks", "--op", "publish", "--ttl", "5h"}, "max_access_token_lifetime"},
	} {
		err := dispatch(context.Background(), nil, append([]string{"token", "access"}, c.args...), env, nil, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("token access %q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
