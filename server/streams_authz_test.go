package server_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestStreamSettingsAuthorized (issue 18): what a stream copies in
// (mirror, sources) and sends out or stores under (republish, subject
// transforms) is authorized, on create and on every form of update: a
// tenant cannot copy another tenant's stream into its own, republish
// into another tenant's subjects or a reserved space, or get there
// through update_mask; settings given by the operator do not block the
// tenant's other updates.
func TestStreamSettingsAuthorized(t *testing.T) {
	const keyA, keyB = "tenant-a-key-0123456789abcdef", "tenant-b-key-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "tenant-a", APIKeyHashes: []string{auth.HashAPIKey(keyA)}, Grant: auth.Grant{
			Admin: &auth.AdminGrant{Streams: []string{"A0", "A1", "A2"}, Write: true, Subjects: &perm.Set{Allow: []string{"a.>"}}},
		}},
		{Name: "tenant-b", APIKeyHashes: []string{auth.HashAPIKey(keyB)}, Grant: auth.Grant{
			Admin: &auth.AdminGrant{Streams: []string{"B"}, Write: true, Subjects: &perm.Set{Allow: []string{"b.>"}}},
		}},
	}})
	b := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 60*time.Second)
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "B", Subjects: []string{"b.>"}},
		{Name: "A0", Subjects: []string{"a.zero.>"}},
		// The operator gave A1 a source of B.
		{Name: "A1", Subjects: []string{"a.one.>"}, Sources: []*jetstream.StreamSource{{Name: "B", FilterSubject: "b.public.>"}}},
	} {
		if _, err := b.JS.CreateStream(ctx, cfg); err != nil {
			t.Fatalf("create %s: %v", cfg.Name, err)
		}
	}
	a := authTWith(ctx, "ApiKey "+keyA)
	create := func(cfg *jetwayv1.StreamConfig) error {
		cfg.Name = "A2"
		if cfg.Subjects == nil && cfg.Mirror == nil {
			cfg.Subjects = []string{"a.two.>"}
		}
		_, err := b.Admin.CreateStream(a, &jetwayv1.CreateStreamRequest{Config: cfg})
		return err
	}
	masked := func(cfg *jetwayv1.StreamConfig, paths ...string) error {
		cfg.Name = "A1"
		_, err := b.Admin.UpdateStream(a, &jetwayv1.UpdateStreamRequest{Config: cfg, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return err
	}
	denied := func(what string, err error) {
		t.Helper()
		authTWantCode(t, what, err, codes.PermissionDenied, "NOT_PERMITTED")
	}
	invalid := func(what string, err error) {
		t.Helper()
		authTWantCode(t, what, err, codes.InvalidArgument, "INVALID_SUBJECT")
	}

	denied("mirror of B", create(&jetwayv1.StreamConfig{Mirror: &jetwayv1.StreamSource{Name: "B"}}))
	denied("source of B", create(&jetwayv1.StreamConfig{Sources: []*jetwayv1.StreamSource{{Name: "B"}}}))
	denied("source of B among its own", create(&jetwayv1.StreamConfig{Sources: []*jetwayv1.StreamSource{{Name: "A0"}, {Name: "B", FilterSubject: "b.>"}}}))
	denied("external source", create(&jetwayv1.StreamConfig{Sources: []*jetwayv1.StreamSource{{Name: "A0", External: &jetwayv1.ExternalStream{ApiPrefix: "$JS.API"}}}}))
	denied("source in a domain", create(&jetwayv1.StreamConfig{Sources: []*jetwayv1.StreamSource{{Name: "A0", Domain: "hub"}}}))
	denied("republish into B's subjects", create(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Source: "a.two.>", Destination: "b.orders.>"}}))
	denied("subject transform into B's subjects", create(&jetwayv1.StreamConfig{SubjectTransform: &jetwayv1.SubjectTransform{Source: "a.two.>", Destination: "b.two.>"}}))
	denied("own source transformed into B's subjects", create(&jetwayv1.StreamConfig{Sources: []*jetwayv1.StreamSource{{
		Name: "A0", SubjectTransforms: []*jetwayv1.SubjectTransform{{Source: "a.zero.>", Destination: "b.zero.>"}},
	}}}))
	invalid("republish into $JS.>", create(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Destination: "$JS.API.STREAM.DELETE.B"}}))
	invalid("republish into _INBOX.>", create(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Destination: "_INBOX.>"}}))
	invalid("republish to a mapped first token", create(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Source: "a.two.*", Destination: "{{wildcard(1)}}.x"}}))
	if _, err := b.JS.Stream(ctx, "A2"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a refused create made A2: %v", err)
	}

	// The same through update_mask, on a stream A administers.
	denied("mask sources with B", masked(&jetwayv1.StreamConfig{Sources: []*jetwayv1.StreamSource{{Name: "B"}}}, "sources"))
	denied("mask republish into B", masked(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Destination: "b.x.>"}}, "republish"))
	denied("mask republish.destination into B", masked(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Destination: "b.x.>"}}, "republish.destination"))
	denied("mask mirror of B", masked(&jetwayv1.StreamConfig{Mirror: &jetwayv1.StreamSource{Name: "B"}}, "mirror"))
	denied("mask subjects of B", masked(&jetwayv1.StreamConfig{Subjects: []string{"b.>"}}, "subjects"))
	invalid("mask republish into $JS", masked(&jetwayv1.StreamConfig{Republish: &jetwayv1.Republish{Destination: "$JS.EVENT.x"}}, "republish"))
	// REST: PUT with update_mask, and PATCH.
	rest := func(method, path, body string) {
		t.Helper()
		authTWantREST(t, method+" "+path, b.Do(t, method, path, body, "Authorization", "ApiKey "+keyA), http.StatusForbidden, "NOT_PERMITTED")
	}
	rest(http.MethodPatch, "/v1/streams/A1", `{"sources":[{"name":"B"}]}`)
	rest(http.MethodPatch, "/v1/streams/A1", `{"republish":{"destination":"b.>"}}`)
	rest(http.MethodPut, "/v1/streams/A1?update_mask=sources", `{"sources":[{"name":"B"}]}`)
	st, err := b.JS.Stream(ctx, "A1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.RePublish != nil || len(cfg.Sources) != 1 || cfg.Sources[0].FilterSubject != "b.public.>" {
		t.Fatalf("a refused update changed A1: %+v", cfg)
	}

	// What A may do: its own source, transforms and republish within a.>;
	// and updating A1, whose source of B the operator set, leaving it.
	if err := create(&jetwayv1.StreamConfig{
		Sources:   []*jetwayv1.StreamSource{{Name: "A0", SubjectTransforms: []*jetwayv1.SubjectTransform{{Source: "a.zero.>", Destination: "a.two.copy.>"}}}},
		Republish: &jetwayv1.Republish{Source: "a.two.*", Destination: "a.out.{{wildcard(1)}}"},
	}); err != nil {
		t.Fatalf("A's own source and republish: %v", err)
	}
	if err := masked(&jetwayv1.StreamConfig{MaxMsgs: 10}, "max_msgs"); err != nil {
		t.Fatalf("masked update of A1 with the operator's source: %v", err)
	}
	got, err := b.Admin.GetStream(a, &jetwayv1.GetStreamRequest{Name: "A1"})
	if err != nil {
		t.Fatal(err)
	}
	full := got.GetStream().GetConfig()
	full.Description = "full update keeps the operator's source"
	if _, err := b.Admin.UpdateStream(a, &jetwayv1.UpdateStreamRequest{Config: full}); err != nil {
		t.Fatalf("full update of A1 with the operator's source: %v", err)
	}
	if r := b.Do(t, http.MethodPatch, "/v1/streams/A1", `{"description":"patched"}`, "Authorization", "ApiKey "+keyA); r.Status != http.StatusOK {
		t.Fatalf("PATCH description of A1: %d %s", r.Status, r.Body)
	}
	st, err = b.JS.Stream(ctx, "A1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.MaxMsgs != 10 || cfg.Description != "patched" || len(cfg.Sources) != 1 || cfg.Sources[0].Name != "B" {
		t.Errorf("A1 natively after A's updates: %+v", cfg)
	}
	a2, err := b.JS.Stream(ctx, "A2")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := a2.CachedInfo().Config; cfg.RePublish == nil || cfg.RePublish.Destination != "a.out.{{wildcard(1)}}" || len(cfg.Sources) != 1 {
		t.Errorf("A2 natively: %+v", cfg)
	}
	// B may not even read A's streams: no source of A2 for B either.
	_, err = b.Admin.CreateStream(authTWith(ctx, "ApiKey "+keyB), &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
		Name: "B", Subjects: []string{"b.>"}, Sources: []*jetwayv1.StreamSource{{Name: "A2"}},
	}})
	denied("B sourcing A2", err)

}
