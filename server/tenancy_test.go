package server_test

// Tenant isolation through what admins create: streams may not capture
// reserved subject spaces (for anyone) nor, for a stream-scoped admin,
// subjects outside its admin.subjects grant; account-wide reads need an
// admin of every stream; durable consumers made through Subscribe need a
// grant of their own.

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// reservedStreamSubjects overlap a reserved space: by prefix, and by
// wildcards whose text names no reserved prefix at all.
var reservedStreamSubjects = []string{
	"_INBOX.>", "_INBOX.*", "_INBOX.abc.def", "_R_.>", "$JS.>", "$JS.EVENT.>", "$JS.API.STREAM.NAMES",
	"$JS.ACK.>", "$JSC.>", "$SYS.>", "$NRG.>", "$SRV.>", "$MQTT.>", "$GR.>", "$GNR.>", "$LDS.>", "_JETWAY.>", "_JETWAY.v1.sessions", "_JETWAY.v1.push.state",
	">", "*.>", "*.*", "*.*.*", "*.EVENT.>", "*.API.>",
}

// TestStreamSubjectsStayOutOfReservedSpaces: no caller, not even one with
// every right (authentication off), may create or update a stream whose
// subjects overlap a reserved space; KV and object-store spaces stay
// usable.
func TestStreamSubjectsStayOutOfReservedSpaces(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	if _, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "X", Subjects: []string{"x.>"}}}); err != nil {
		t.Fatal(err)
	}
	for _, subj := range reservedStreamSubjects {
		t.Run(subj, func(t *testing.T) {
			cfg := &jetwayv1.StreamConfig{Name: "R", Subjects: []string{"r.>", subj}}
			_, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: cfg})
			authTWantCode(t, "gRPC CreateStream", err, codes.InvalidArgument, "INVALID_SUBJECT")
			body := `{"name":"R","subjects":["r.>",` + jsonString(subj) + `]}`
			e := authTWantREST(t, "REST CreateStream", b.Do(t, http.MethodPost, "/v1/streams", body), http.StatusBadRequest, "INVALID_SUBJECT")
			if e.Message == "" || !containsAll(e.Message, "config.subjects", "reserved") {
				t.Errorf("REST CreateStream: message %q, want it to name config.subjects and the reserved space", e.Message)
			}
			_, err = b.Admin.UpdateStream(ctx, &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "X", Subjects: []string{"x.>", subj}}})
			authTWantCode(t, "gRPC UpdateStream", err, codes.InvalidArgument, "INVALID_SUBJECT")
			authTWantREST(t, "REST UpdateStream", b.Do(t, http.MethodPut, "/v1/streams/X", `{"name":"X","subjects":["x.>",`+jsonString(subj)+`]}`), http.StatusBadRequest, "INVALID_SUBJECT")
		})
	}
	if _, err := b.JS.Stream(ctx, "R"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream R: %v, want it never created", err)
	}
	st, err := b.JS.Stream(ctx, "X")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Subjects; !slices.Equal(got, []string{"x.>"}) {
		t.Errorf("stream X subjects %v after refused updates, want [x.>]", got)
	}
	for _, subj := range []string{"$KV.bucket.>", "$O.store.>", "inbox.>", "JS.>"} {
		name := "OK" + string(rune('A'+len(subj)))
		if _, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: name, Subjects: []string{subj}}}); err != nil {
			t.Errorf("CreateStream on %q (not reserved): %v", subj, err)
		}
	}
}

// tenancyEnv is a bridge with two tenants, a read-only admin and an
// operator, each with an API key.
type tenancyEnv struct {
	b                            *jetwaytest.Bridge
	a, bKey, reader, ops, worker string // "ApiKey …" values
	aKey, bRaw, rRaw, oRaw       string
}

func tenancyStart(t *testing.T) *tenancyEnv {
	t.Helper()
	e := &tenancyEnv{aKey: "tenant-a-key-0123456789abcdef", bRaw: "tenant-b-key-0123456789abcdef",
		rRaw: "reader-key-0123456789abcdef", oRaw: "ops-key-0123456789abcdef"}
	e.a, e.bKey, e.reader, e.ops = "ApiKey "+e.aKey, "ApiKey "+e.bRaw, "ApiKey "+e.rRaw, "ApiKey "+e.oRaw
	workerKey := "worker-key-0123456789abcdef"
	e.worker = "ApiKey " + workerKey
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		// The pattern of deploy/examples/auth.yaml: a service that owns
		// its stream, and its subjects.
		{Name: "tenant-a", APIKeyHashes: []string{auth.HashAPIKey(e.aKey)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"a.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"A", "A.*"}, CreateDurables: true},
			Admin:   &auth.AdminGrant{Streams: []string{"A"}, Write: true, Subjects: &perm.Set{Allow: []string{"a.>"}}},
		}},
		// Owns stream B but was given no admin.subjects: it may not set
		// any.
		{Name: "tenant-b", APIKeyHashes: []string{auth.HashAPIKey(e.bRaw)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"b.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"B.*"}},
			Admin:   &auth.AdminGrant{Streams: []string{"B"}, Write: true},
		}},
		// May consume any durable of B, and no more.
		{Name: "worker", APIKeyHashes: []string{auth.HashAPIKey(workerKey)}, Grant: auth.Grant{
			Consume: &auth.ConsumeGrant{Streams: []string{"B.*"}},
		}},
		{Name: "reader", APIKeyHashes: []string{auth.HashAPIKey(e.rRaw)}, Grant: auth.Grant{
			Admin: &auth.AdminGrant{Streams: []string{"A", "B"}},
		}},
		{Name: "ops", APIKeyHashes: []string{auth.HashAPIKey(e.oRaw)}, Grant: auth.Grant{
			Admin: &auth.AdminGrant{Write: true},
		}},
	}})
	e.b = jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = path })
	return e
}

// TestScopedAdminSubjectsStayWithinGrant: a stream-scoped admin may give
// its stream only subjects within its admin.subjects, on create and on
// update, over gRPC and REST; a stream without subjects captures its name,
// which is checked the same way; consumer filters likewise. The operator
// is not so bound.
func TestScopedAdminSubjectsStayWithinGrant(t *testing.T) {
	t.Parallel()
	e := tenancyStart(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	create := func(authz string, cfg *jetwayv1.StreamConfig) error {
		_, err := e.b.Admin.CreateStream(authTWith(ctx, authz), &jetwayv1.CreateStreamRequest{Config: cfg})
		return err
	}
	if err := create(e.a, &jetwayv1.StreamConfig{Name: "A", Subjects: []string{"a.>"}}); err != nil {
		t.Fatalf("tenant-a creates A on a.>: %v", err)
	}
	// The reported attack: A's stream on _INBOX.> to read B's deliveries.
	authTWantREST(t, "REST PUT A with _INBOX.>", e.b.Do(t, http.MethodPut, "/v1/streams/A", `{"name":"A","subjects":["a.>","_INBOX.>"]}`, "Authorization", e.a), http.StatusBadRequest, "INVALID_SUBJECT")
	for _, subjects := range [][]string{{"a.>", "b.>"}, {"b.x"}, {"a.>", "c.*"}, {"*"}, {"other"}} {
		cfg := &jetwayv1.StreamConfig{Name: "A", Subjects: subjects}
		_, err := e.b.Admin.UpdateStream(authTWith(ctx, e.a), &jetwayv1.UpdateStreamRequest{Config: cfg})
		authTWantCode(t, "gRPC UpdateStream A to "+jsonList(subjects), err, codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST UpdateStream A to "+jsonList(subjects), e.b.Do(t, http.MethodPut, "/v1/streams/A", `{"name":"A","subjects":`+jsonList(subjects)+`}`, "Authorization", e.a), http.StatusForbidden, "NOT_PERMITTED")
	}
	if _, err := e.b.Admin.UpdateStream(authTWith(ctx, e.a), &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "A", Subjects: []string{"a.>"}, Description: "mine"}}); err != nil {
		t.Errorf("tenant-a updates A within a.>: %v", err)
	}
	got, err := e.b.Admin.GetStream(authTWith(ctx, e.ops), &jetwayv1.GetStreamRequest{Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.GetStream().GetConfig().GetSubjects(); !slices.Equal(s, []string{"a.>"}) {
		t.Errorf("stream A subjects %v after refused updates, want [a.>]", s)
	}

	// tenant-b owns B but has no admin.subjects: neither explicit
	// subjects nor the name's own subject (no subjects at all).
	err = create(e.bKey, &jetwayv1.StreamConfig{Name: "B", Subjects: []string{"b.>"}})
	authTWantCode(t, "tenant-b creates B on b.>", err, codes.PermissionDenied, "NOT_PERMITTED")
	err = create(e.bKey, &jetwayv1.StreamConfig{Name: "B"})
	authTWantCode(t, "tenant-b creates B with no subjects (captures \"B\")", err, codes.PermissionDenied, "NOT_PERMITTED")
	authTWantREST(t, "REST tenant-b creates B", e.b.Do(t, http.MethodPost, "/v1/streams", `{"name":"B"}`, "Authorization", e.bKey), http.StatusForbidden, "NOT_PERMITTED")
	// The operator may, and tenant-b then manages what it was given.
	if err := create(e.ops, &jetwayv1.StreamConfig{Name: "B", Subjects: []string{"b.>"}}); err != nil {
		t.Fatalf("ops creates B on b.>: %v", err)
	}
	if _, err := e.b.Admin.PurgeStream(authTWith(ctx, e.bKey), &jetwayv1.PurgeStreamRequest{Name: "B"}); err != nil {
		t.Errorf("tenant-b purges its B: %v", err)
	}
	// It may change B's limits, keeping the subjects it was given, but
	// not add one.
	if _, err := e.b.Admin.UpdateStream(authTWith(ctx, e.bKey), &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "B", Subjects: []string{"b.>"}, MaxMsgs: 100}}); err != nil {
		t.Errorf("tenant-b updates B's limits, subjects unchanged: %v", err)
	}
	_, err = e.b.Admin.UpdateStream(authTWith(ctx, e.bKey), &jetwayv1.UpdateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "B", Subjects: []string{"b.>", "c.>"}}})
	authTWantCode(t, "tenant-b adds c.> to B", err, codes.PermissionDenied, "NOT_PERMITTED")

	// Consumers an admin creates filter within its subjects.
	for _, f := range []string{"b.x", ">", "*.x"} {
		cfg := &jetwayv1.ConsumerConfig{Name: "c", FilterSubjects: []string{f}}
		_, err := e.b.Admin.CreateConsumer(authTWith(ctx, e.a), &jetwayv1.CreateConsumerRequest{Stream: "A", Config: cfg})
		authTWantCode(t, "tenant-a consumer on A filtered on "+f, err, codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST tenant-a consumer on A filtered on "+f, e.b.Do(t, http.MethodPost, "/v1/streams/A/consumers", `{"name":"c","filter_subjects":[`+jsonString(f)+`]}`, "Authorization", e.a), http.StatusForbidden, "NOT_PERMITTED")
	}
	for i, cfg := range []*jetwayv1.ConsumerConfig{{Name: "mine"}, {Name: "eu", FilterSubjects: []string{"a.eu.>"}}} {
		if _, err := e.b.Admin.CreateConsumer(authTWith(ctx, e.a), &jetwayv1.CreateConsumerRequest{Stream: "A", Config: cfg}); err != nil {
			t.Errorf("tenant-a consumer %d on A: %v", i, err)
		}
	}
	_, err = e.b.Admin.CreateConsumer(authTWith(ctx, e.bKey), &jetwayv1.CreateConsumerRequest{Stream: "B", Config: &jetwayv1.ConsumerConfig{Name: "c", FilterSubjects: []string{"b.x"}}})
	authTWantCode(t, "tenant-b filtered consumer on B (no admin.subjects)", err, codes.PermissionDenied, "NOT_PERMITTED")
}

// TestAccountInfoNeedsAccountWideAdmin: account totals cover every tenant:
// an admin of some streams may not read them, an admin of all may.
func TestAccountInfoNeedsAccountWideAdmin(t *testing.T) {
	t.Parallel()
	e := tenancyStart(t)
	ctx := jetwaytest.Context(t, 30*time.Second)
	for name, authz := range map[string]string{"tenant-a (write on A)": e.a, "reader (read on A and B)": e.reader} {
		_, err := e.b.Admin.GetAccountInfo(authTWith(ctx, authz), &jetwayv1.GetAccountInfoRequest{})
		authTWantCode(t, "gRPC GetAccountInfo as "+name, err, codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST GetAccountInfo as "+name, e.b.Do(t, http.MethodGet, "/v1/account", "", "Authorization", authz), http.StatusForbidden, "NOT_PERMITTED")
	}
	if _, err := e.b.Admin.GetAccountInfo(authTWith(ctx, e.ops), &jetwayv1.GetAccountInfoRequest{}); err != nil {
		t.Errorf("ops GetAccountInfo: %v", err)
	}
	// Listing stays open to scoped admins, filtered.
	if _, err := e.b.Admin.ListStreams(authTWith(ctx, e.reader), &jetwayv1.ListStreamsRequest{}); err != nil {
		t.Errorf("reader ListStreams: %v", err)
	}
}

// TestSubscribeCreatesDurablesOnlyWithGrant: an identity that may consume
// any durable of a stream cannot create new ones through Subscribe with a
// config (gRPC Subscribe, Consume and REST) without consume.create_durables.
func TestSubscribeCreatesDurablesOnlyWithGrant(t *testing.T) {
	t.Parallel()
	e := tenancyStart(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	for _, s := range []string{"A", "B"} {
		if _, err := e.b.Admin.CreateStream(authTWith(ctx, e.ops), &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: s, Subjects: []string{string(rune('a'+s[0]-'A')) + ".>"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		name := "spam" + string(rune('0'+i))
		req := &jetwayv1.SubscribeRequest{Stream: "B", Consumer: name, Config: &jetwayv1.ConsumerConfig{}}
		_, err := authTSubscribeErr(ctx, e.b.Messages, e.worker, req)
		authTWantCode(t, "gRPC Subscribe creating B/"+name, err, codes.PermissionDenied, "NOT_PERMITTED")
		c, err := e.b.Messages.Consume(authTWith(ctx, e.worker))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: req}}); err != nil {
			t.Fatal(err)
		}
		_, err = c.Recv()
		authTWantCode(t, "gRPC Consume creating B/"+name, err, codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST Subscribe creating B/"+name, e.b.Do(t, http.MethodGet, "/v1/streams/B/consumers/"+name+":subscribe?config.ack_wait=30s", "", "Authorization", e.worker), http.StatusForbidden, "NOT_PERMITTED")
		if _, err := e.b.Admin.GetConsumer(authTWith(ctx, e.ops), &jetwayv1.GetConsumerRequest{Stream: "B", Name: name}); err == nil {
			t.Errorf("consumer B/%s exists after refused creations", name)
		}
	}
	// With the grant, it is created.
	r, err := authTSubscribeErr(ctx, e.b.Messages, e.a, &jetwayv1.SubscribeRequest{Stream: "A", Consumer: "mine", Config: &jetwayv1.ConsumerConfig{}})
	if err != nil || !r.GetSubscribed().GetCreated() {
		t.Errorf("tenant-a (create_durables) Subscribe creating A/mine: %v, %v", r, err)
	}
	// An existing durable stays consumable without the grant.
	if _, err := e.b.Admin.CreateConsumer(authTWith(ctx, e.ops), &jetwayv1.CreateConsumerRequest{Stream: "B", Config: &jetwayv1.ConsumerConfig{Name: "worker"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Messages.Fetch(authTWith(ctx, e.worker), &jetwayv1.FetchRequest{Stream: "B", Consumer: "worker", NoWait: true}); err != nil {
		t.Errorf("worker Fetch B/worker: %v", err)
	}
}

// TestConsumerConfigRefusesNegativeDurations: every duration of a consumer
// configuration is refused when negative, over gRPC and REST, for
// CreateConsumer and for Subscribe's config.
func TestConsumerConfigRefusesNegativeDurations(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"s.>"}}}); err != nil {
		t.Fatal(err)
	}
	neg := durationpb.New(-5 * time.Second)
	for field, cfg := range map[string]*jetwayv1.ConsumerConfig{
		"inactive_threshold": {Name: "c", InactiveThreshold: neg},
		"max_expires":        {Name: "c", MaxExpires: neg},
		"ack_wait":           {Name: "c", AckWait: neg},
	} {
		_, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: cfg})
		authTWantCode(t, "gRPC CreateConsumer "+field+" -5s", err, codes.InvalidArgument, "INVALID_CONFIG")
		e := authTWantREST(t, "REST CreateConsumer "+field+" -5s", b.Do(t, http.MethodPost, "/v1/streams/S/consumers", `{"name":"c",`+jsonString(field)+`:"-5s"}`), http.StatusBadRequest, "INVALID_CONFIG")
		if !containsAll(e.Message, field) {
			t.Errorf("REST CreateConsumer %s -5s: message %q does not name the field", field, e.Message)
		}
		_, err = authTSubscribeErr(ctx, b.Messages, "", &jetwayv1.SubscribeRequest{Stream: "S", Config: &jetwayv1.ConsumerConfig{InactiveThreshold: cfg.InactiveThreshold, MaxExpires: cfg.MaxExpires, AckWait: cfg.AckWait}})
		authTWantCode(t, "gRPC Subscribe "+field+" -5s", err, codes.InvalidArgument, "INVALID_CONFIG")
	}
	if _, err := b.JS.Consumer(ctx, "S", "c"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer S/c: %v, want it never created", err)
	}
}

// jsonString is s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jsonList is ss as a JSON array of strings.
func jsonList(ss []string) string {
	b, _ := json.Marshal(ss)
	return string(b)
}

// containsAll reports whether s contains every one of parts.
func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
