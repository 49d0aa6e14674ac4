package server_test

// KVService over gRPC and REST against a real nats-server, each result
// read natively with nats.go's jetstream.KeyValue; tenants with grants for
// one bucket cannot reach another.

import (
	"bufio"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestKVOverGRPCAndREST(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	c := jetwayv1.NewKVServiceClient(b.Conn)

	// Buckets: gRPC create, REST create, native reads.
	if _, err := c.CreateBucket(ctx, &jetwayv1.CreateBucketRequest{Config: &jetwayv1.BucketConfig{Bucket: "CFG", History: 5}}); err != nil {
		t.Fatal(err)
	}
	if r := b.Do(t, http.MethodPost, "/v1/kv", `{"bucket":"REST","history":3}`); r.Status != 200 {
		t.Fatalf("REST CreateBucket: %d %s", r.Status, r.Body)
	}
	for name, hist := range map[string]int64{"CFG": 5, "REST": 3} {
		kv, err := b.JS.KeyValue(ctx, name)
		if err != nil {
			t.Fatalf("native %s: %v", name, err)
		}
		st, err := kv.Status(ctx)
		if err != nil || st.History() != hist {
			t.Errorf("native %s history %v (%v), want %d", name, st.History(), err, hist)
		}
	}
	if r := b.Do(t, http.MethodPut, "/v1/kv/REST", `{"bucket":"REST","history":7}`); r.Status != 200 {
		t.Fatalf("REST UpdateBucket: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodGet, "/v1/kv/REST", ""); r.Status != 200 || !strings.Contains(string(r.Body), `"history":7`) {
		t.Errorf("REST GetBucket: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodGet, "/v1/kv", ""); r.Status != 200 || !strings.Contains(string(r.Body), `"CFG"`) || !strings.Contains(string(r.Body), `"REST"`) {
		t.Errorf("REST ListBuckets: %d %s", r.Status, r.Body)
	}
	_, err := c.CreateBucket(ctx, &jetwayv1.CreateBucketRequest{Config: &jetwayv1.BucketConfig{Bucket: "CFG", History: 2}})
	authTWantCode(t, "CreateBucket taken", err, codes.AlreadyExists, "BUCKET_EXISTS")
	_, err = c.CreateBucket(ctx, &jetwayv1.CreateBucketRequest{Config: &jetwayv1.BucketConfig{Bucket: "a.b"}})
	authTWantCode(t, "CreateBucket a.b", err, codes.InvalidArgument, "INVALID_BUCKET")
	_, err = c.GetBucket(ctx, &jetwayv1.GetBucketRequest{Bucket: "NOPE"})
	authTWantCode(t, "GetBucket NOPE", err, codes.NotFound, "BUCKET_NOT_FOUND")
	authTWantREST(t, "REST GetBucket NOPE", b.Do(t, http.MethodGet, "/v1/kv/NOPE", ""), 404, "BUCKET_NOT_FOUND")

	kv, err := b.JS.KeyValue(ctx, "CFG")
	if err != nil {
		t.Fatal(err)
	}
	// Keys with '/' and '.', and keys named like the routes' literals.
	keys := []string{"a/b.c", "keys", "watch", "entries/x", "history"}
	for i, k := range keys {
		r := b.Do(t, http.MethodPut, "/v1/kv/CFG/entries/"+k, `{"value":"`+b64("v"+k)+`"}`)
		if r.Status != 200 {
			t.Fatalf("REST PutEntry %s: %d %s", k, r.Status, r.Body)
		}
		e, err := kv.Get(ctx, k)
		if err != nil || string(e.Value()) != "v"+k || e.Revision() != uint64(i+1) {
			t.Errorf("native Get %s: %v %q rev %d", k, err, e.Value(), e.Revision())
		}
		if !strings.Contains(string(r.Body), `"revision":"`+itoa(i+1)+`"`) {
			t.Errorf("REST PutEntry %s: %s, want revision %d", k, r.Body, i+1)
		}
		got := b.Do(t, http.MethodGet, "/v1/kv/CFG/entries/"+k, "")
		if got.Status != 200 || !strings.Contains(string(got.Body), `"key":"`+k+`"`) || !strings.Contains(string(got.Body), b64("v"+k)) {
			t.Errorf("REST GetEntry %s: %d %s", k, got.Status, got.Body)
		}
	}
	// A native put is seen by the bridge, with the same revision.
	rev, err := kv.Put(ctx, "native", []byte("n1"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.GetEntry(ctx, &jetwayv1.GetEntryRequest{Bucket: "CFG", Key: "native"})
	if err != nil || string(g.GetEntry().GetValue()) != "n1" || g.GetEntry().GetRevision() != rev {
		t.Errorf("GetEntry native: %v %v, want rev %d", g, err, rev)
	}
	// Create: 409 when the key has a value.
	_, err = c.CreateEntry(ctx, &jetwayv1.CreateEntryRequest{Bucket: "CFG", Key: "native", Value: []byte("x")})
	authTWantCode(t, "CreateEntry exists", err, codes.AlreadyExists, "KEY_EXISTS")
	authTWantREST(t, "REST CreateEntry exists", b.Do(t, http.MethodPost, "/v1/kv/CFG/entries/native", `{"value":"eA=="}`), 409, "KEY_EXISTS")
	if r := b.Do(t, http.MethodPost, "/v1/kv/CFG/entries/new.key", `{"value":"eA=="}`); r.Status != 200 {
		t.Errorf("REST CreateEntry: %d %s", r.Status, r.Body)
	}
	// Update by revision: 409 on a mismatch.
	_, err = c.UpdateEntry(ctx, &jetwayv1.UpdateEntryRequest{Bucket: "CFG", Key: "native", Value: []byte("n2"), Revision: rev + 100})
	authTWantCode(t, "UpdateEntry wrong", err, codes.Aborted, "WRONG_REVISION")
	authTWantREST(t, "REST UpdateEntry wrong", b.Do(t, http.MethodPost, "/v1/kv/CFG/update/native", `{"value":"eA==","revision":"1"}`), 409, "WRONG_REVISION")
	u, err := c.UpdateEntry(ctx, &jetwayv1.UpdateEntryRequest{Bucket: "CFG", Key: "native", Value: []byte("n2"), Revision: rev})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "native"); err != nil || string(e.Value()) != "n2" || e.Revision() != u.GetRevision() {
		t.Errorf("native Get after update: %v %v", e, err)
	}
	// History (REST), then delete with a wrong and a right last revision.
	if r := b.Do(t, http.MethodGet, "/v1/kv/CFG/history/native", ""); r.Status != 200 || strings.Count(string(r.Body), `"key":"native"`) != 2 {
		t.Errorf("REST GetHistory: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "REST DeleteEntry wrong", b.Do(t, http.MethodDelete, "/v1/kv/CFG/entries/native?last_revision=1", ""), 409, "WRONG_REVISION")
	if r := b.Do(t, http.MethodDelete, "/v1/kv/CFG/entries/native?last_revision="+itoa(int(u.GetRevision())), ""); r.Status != 200 {
		t.Errorf("REST DeleteEntry: %d %s", r.Status, r.Body)
	}
	if _, err := kv.Get(ctx, "native"); err != jetstream.ErrKeyNotFound {
		t.Errorf("native Get deleted: %v", err)
	}
	authTWantREST(t, "REST GetEntry deleted", b.Do(t, http.MethodGet, "/v1/kv/CFG/entries/native", ""), 404, "KEY_NOT_FOUND")
	if r := b.Do(t, http.MethodPost, "/v1/kv/CFG/purge/keys", `{}`); r.Status != 200 {
		t.Errorf("REST PurgeEntry: %d %s", r.Status, r.Body)
	}
	if h, err := kv.History(ctx, "keys"); err != nil || len(h) != 1 || h[0].Operation() != jetstream.KeyValuePurge {
		t.Errorf("native History after purge: %v %v", h, err)
	}
	// Bad keys are 400 before anything else.
	for _, k := range []string{"a*", "a.>", ".a", "a..b"} {
		_, err := c.PutEntry(ctx, &jetwayv1.PutEntryRequest{Bucket: "CFG", Key: k})
		authTWantCode(t, "PutEntry "+k, err, codes.InvalidArgument, "INVALID_KEY")
	}
	// Keys: stream (REST NDJSON), compared with native.
	r := b.Do(t, http.MethodGet, "/v1/kv/CFG/keys", "")
	native, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range native {
		if !strings.Contains(string(r.Body), `"`+k+`"`) {
			t.Errorf("REST ListKeys %s lacks %q (native %v)", r.Body, k, native)
		}
	}
	if strings.Contains(string(r.Body), `"keys":["keys"`) || strings.Contains(string(r.Body), `"native"`) {
		t.Errorf("REST ListKeys lists a purged or deleted key: %s", r.Body)
	}
	// Bucket delete.
	if r := b.Do(t, http.MethodDelete, "/v1/kv/REST", ""); r.Status != 200 {
		t.Errorf("REST DeleteBucket: %d %s", r.Status, r.Body)
	}
	if _, err := b.JS.KeyValue(ctx, "REST"); err != jetstream.ErrBucketNotFound {
		t.Errorf("native REST after delete: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestKVWatch: a watch over gRPC and over SSE sees initial values, the
// initialized marker and then native puts and deletes, with revisions as
// event ids.
func TestKVWatch(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "W"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a.one", []byte("1")); err != nil {
		t.Fatal(err)
	}
	c := jetwayv1.NewKVServiceClient(b.Conn)
	st, err := c.WatchBucket(ctx, &jetwayv1.WatchBucketRequest{Bucket: "W", Keys: []string{"a.>"}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := st.Recv()
	if err != nil || ev.GetEntry().GetKey() != "a.one" || string(ev.GetEntry().GetValue()) != "1" {
		t.Fatalf("first event %v %v", ev, err)
	}
	if ev, err := st.Recv(); err != nil || ev.GetInitialized() == nil {
		t.Fatalf("second event %v %v, want initialized", ev, err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.BaseURL+"/v1/kv/W/watch?keys=a.>", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("SSE ended before %q", want)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q", want)
			}
		}
	}
	expect("id: 1")
	expect("event: entry")
	expect("event: initialized")
	rev, err := kv.Put(ctx, "a.two", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "b.other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "a.one"); err != nil {
		t.Fatal(err)
	}
	expect("id: " + itoa(int(rev)))
	expect(`"key":"a.two"`)
	expect(`"operation":"KV_OPERATION_DELETE"`)
	for _, want := range []struct {
		key string
		op  jetwayv1.KVOperation
	}{{"a.two", jetwayv1.KVOperation_KV_OPERATION_PUT}, {"a.one", jetwayv1.KVOperation_KV_OPERATION_DELETE}} {
		ev, err := st.Recv()
		if err != nil || ev.GetEntry().GetKey() != want.key || ev.GetEntry().GetOperation() != want.op {
			t.Fatalf("gRPC watch %v %v, want %s %v", ev, err, want.key, want.op)
		}
	}
}

// TestKVTenantsStayApart: a tenant with grants for bucket A cannot read,
// write, watch, list or delete bucket B, nor escape with wildcards.
func TestKVTenantsStayApart(t *testing.T) {
	t.Parallel()
	keyA := "kv-tenant-a-key-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{
		Identities: []auth.IdentityConfig{
			{Name: "admin", APIKeyHashes: []string{auth.HashAPIKey("kv-admin-key-0123456789abcdef")}, Grant: auth.Grant{
				Publish: &perm.Set{Allow: []string{">"}}, Consume: &auth.ConsumeGrant{Streams: []string{">"}, Subjects: &perm.Set{Allow: []string{">"}}},
				Admin: &auth.AdminGrant{Write: true},
			}},
			{Name: "tenant-a", APIKeyHashes: []string{auth.HashAPIKey(keyA)}, Grant: auth.Grant{
				Publish: &perm.Set{Allow: []string{"$KV.A.>"}},
				Consume: &auth.ConsumeGrant{Streams: []string{"KV_A"}, Subjects: &perm.Set{Allow: []string{"$KV.A.>"}}},
				Admin:   &auth.AdminGrant{Streams: []string{"KV_A"}, Write: true, Subjects: &perm.Set{Allow: []string{"$KV.A.>"}}},
			}},
		},
	})
	b := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 60*time.Second)
	for _, name := range []string{"B"} {
		if _, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name}); err != nil {
			t.Fatal(err)
		}
	}
	kvB, _ := b.JS.KeyValue(ctx, "B")
	if _, err := kvB.Put(ctx, "secret", []byte("s")); err != nil {
		t.Fatal(err)
	}
	h := []string{"Authorization", "ApiKey " + keyA}
	// Its own bucket works.
	if r := b.Do(t, http.MethodPost, "/v1/kv", `{"bucket":"A"}`, h...); r.Status != 200 {
		t.Fatalf("tenant CreateBucket A: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodPut, "/v1/kv/A/entries/x", `{"value":"eA=="}`, h...); r.Status != 200 {
		t.Fatalf("tenant PutEntry A: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodGet, "/v1/kv/A/entries/x", "", h...); r.Status != 200 {
		t.Fatalf("tenant GetEntry A: %d %s", r.Status, r.Body)
	}
	// Bucket B, every way.
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/kv", `{"bucket":"B2"}`},
		{http.MethodGet, "/v1/kv/B", ""},
		{http.MethodPut, "/v1/kv/B", `{"bucket":"B"}`},
		{http.MethodDelete, "/v1/kv/B", ""},
		{http.MethodGet, "/v1/kv/B/entries/secret", ""},
		{http.MethodPut, "/v1/kv/B/entries/secret", `{"value":"eA=="}`},
		{http.MethodPost, "/v1/kv/B/entries/new", `{"value":"eA=="}`},
		{http.MethodPost, "/v1/kv/B/update/secret", `{"value":"eA==","revision":"1"}`},
		{http.MethodDelete, "/v1/kv/B/entries/secret", ""},
		{http.MethodPost, "/v1/kv/B/purge/secret", `{}`},
		{http.MethodGet, "/v1/kv/B/history/secret", ""},
		{http.MethodGet, "/v1/kv/B/keys", ""},
		{http.MethodGet, "/v1/kv/B/watch", ""},
		{http.MethodGet, "/v1/kv/B/watch?keys=>", ""},
	} {
		authTWantREST(t, tc.method+" "+tc.path, b.Do(t, tc.method, tc.path, tc.body, h...), 403, "NOT_PERMITTED")
	}
	// Names like A's: another case, a KV_ prefix, a suffix are other
	// buckets (other streams), refused whether they exist or not.
	if _, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "a"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/kv", `{"bucket":"a"}`},
		{http.MethodPost, "/v1/kv", `{"bucket":"KV_A"}`},
		{http.MethodPost, "/v1/kv", `{"bucket":"A_"}`},
		{http.MethodGet, "/v1/kv/a/entries/x", ""},
		{http.MethodPut, "/v1/kv/a/entries/x", `{"value":"eA=="}`},
		{http.MethodDelete, "/v1/kv/a", ""},
		{http.MethodGet, "/v1/kv/KV_A/entries/x", ""},
		{http.MethodPut, "/v1/kv/KV_A/entries/x", `{"value":"eA=="}`},
		{http.MethodGet, "/v1/kv/A_/watch", ""},
	} {
		authTWantREST(t, tc.method+" "+tc.path, b.Do(t, tc.method, tc.path, tc.body, h...), 403, "NOT_PERMITTED")
	}
	for _, name := range []string{"KV_A", "A_"} {
		if _, err := b.JS.KeyValue(ctx, name); err != jetstream.ErrBucketNotFound {
			t.Errorf("bucket %s: %v", name, err)
		}
	}
	if kva, err := b.JS.KeyValue(ctx, "a"); err != nil {
		t.Error(err)
	} else if keys, err := kva.Keys(ctx); err != jetstream.ErrNoKeysFound {
		t.Errorf("bucket a: keys %v %v", keys, err)
	}
	// Wildcards cannot widen a check: refused as keys before authorization.
	for _, p := range []string{"/v1/kv/A/entries/*", "/v1/kv/A/entries/>"} {
		authTWantREST(t, "GET "+p, b.Do(t, http.MethodGet, p, "", h...), 400, "INVALID_KEY")
	}
	authTWantREST(t, "bucket wildcard", b.Do(t, http.MethodGet, "/v1/kv/*/entries/x", "", h...), 400, "INVALID_BUCKET")
	// Listing shows only A.
	if r := b.Do(t, http.MethodGet, "/v1/kv", "", h...); r.Status != 200 || strings.Contains(string(r.Body), `"bucket":"B"`) || !strings.Contains(string(r.Body), `"bucket":"A"`) {
		t.Errorf("tenant ListBuckets: %d %s", r.Status, r.Body)
	}
	// B is untouched.
	if e, err := kvB.Get(ctx, "secret"); err != nil || string(e.Value()) != "s" || e.Revision() != 1 {
		t.Errorf("native B secret: %v %v", e, err)
	}
	if _, err := b.JS.KeyValue(ctx, "B2"); err != jetstream.ErrBucketNotFound {
		t.Errorf("B2: %v", err)
	}
}
