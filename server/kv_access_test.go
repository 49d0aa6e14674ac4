package server_test

// Access tokens on KVService: a token narrowed to bucket A's stream and
// subjects reaches A and nothing else; a consume-only token cannot write;
// the watch route takes the token in its URL, no other KV route does; no
// token administers buckets.

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
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

// kvTMint mints an access token with an API key over REST.
func kvTMint(t *testing.T, b *jetwaytest.Bridge, key, body string) string {
	t.Helper()
	r := b.Do(t, http.MethodPost, "/v1/access-tokens", body, "Authorization", "ApiKey "+key)
	if r.Status != http.StatusOK {
		t.Fatalf("mint %s: %d %s", body, r.Status, r.Body)
	}
	tok, _ := r.JSON(t)["token"].(string)
	if !strings.HasPrefix(tok, "jwy_") {
		t.Fatalf("mint %s: %s", body, r.Body)
	}
	return tok
}

// kvTSSE opens a watch over SSE and returns its lines.
func kvTSSE(t *testing.T, ctx context.Context, rawURL string, header ...string) (*http.Response, <-chan string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return resp, lines
}

// kvTExpect reads lines until one contains want.
func kvTExpect(t *testing.T, ctx context.Context, lines <-chan string, want string) {
	t.Helper()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before %q", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %q in time", want)
		}
	}
}

func TestKVAccessTokens(t *testing.T) {
	t.Parallel()
	key := "kv-token-minter-key-0123456789abcdef"
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "kv-owner", APIKeyHashes: []string{auth.HashAPIKey(key)}, Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"$KV.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{">"}, Subjects: &perm.Set{Allow: []string{"$KV.>"}}},
			Admin:   &auth.AdminGrant{Write: true},
		}},
	}})
	b := jetwaytest.Start(t, func(c *config.Config) { c.Auth.ConfigFile = path })
	ctx := jetwaytest.Context(t, 60*time.Second)
	kvA, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "A"})
	if err != nil {
		t.Fatal(err)
	}
	kvB, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "B"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvA.Put(ctx, "x", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := kvB.Put(ctx, "x", []byte("b")); err != nil {
		t.Fatal(err)
	}
	// The identity itself may administer buckets (so what tokens are
	// refused below is the token's narrowing, not the identity's grant).
	owner := []string{"Authorization", "ApiKey " + key}
	if r := b.Do(t, http.MethodPost, "/v1/kv", `{"bucket":"OWNED"}`, owner...); r.Status != http.StatusOK {
		t.Fatalf("owner CreateBucket: %d %s", r.Status, r.Body)
	}

	rw := kvTMint(t, b, key, `{"operations":["OPERATION_CONSUME","OPERATION_PUBLISH"],"streams":["KV_A"],"subjects":["$KV.A.>"],"ttl":"120s"}`)
	ro := kvTMint(t, b, key, `{"operations":["OPERATION_CONSUME"],"streams":["KV_A"],"subjects":["$KV.A.>"],"ttl":"120s"}`)
	read := kvTMint(t, b, key, `{"operations":["OPERATION_READ"],"streams":["KV_A"],"ttl":"120s"}`)
	narrow := kvTMint(t, b, key, `{"operations":["OPERATION_CONSUME","OPERATION_PUBLISH"],"streams":["KV_A"],"subjects":["$KV.A.pub.>"],"ttl":"120s"}`)
	all := kvTMint(t, b, key, `{"operations":["OPERATION_CONSUME","OPERATION_PUBLISH","OPERATION_READ","OPERATION_ACK"],"streams":["*"],"ttl":"120s"}`)
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	// The consume+publish token: get, put, watch A.
	if r := b.Do(t, http.MethodGet, "/v1/kv/A/entries/x", "", bearer(rw)...); r.Status != http.StatusOK {
		t.Errorf("rw GetEntry A: %d %s", r.Status, r.Body)
	}
	if r := b.Do(t, http.MethodPut, "/v1/kv/A/entries/y", `{"value":"eQ=="}`, bearer(rw)...); r.Status != http.StatusOK {
		t.Errorf("rw PutEntry A: %d %s", r.Status, r.Body)
	}
	if e, err := kvA.Get(ctx, "y"); err != nil || string(e.Value()) != "y" {
		t.Errorf("native A y: %v %v", e, err)
	}
	c := jetwayv1.NewKVServiceClient(b.Conn)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := c.WatchBucket(authTWith(wctx, "Bearer "+rw), &jetwayv1.WatchBucketRequest{Bucket: "A"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"x", "y"} {
		if ev, err := w.Recv(); err != nil || ev.GetEntry().GetKey() != want {
			t.Fatalf("rw gRPC watch A: %v %v, want %s", ev, err, want)
		}
	}
	wcancel()

	// Over SSE with the token in the URL, as a browser's EventSource.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	resp, lines := kvTSSE(t, sctx, b.BaseURL+"/v1/kv/A/watch?"+url.Values{"access_token": {rw}, "keys": {"z"}}.Encode())
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("SSE watch with a URL token: %d, Referrer-Policy %q", resp.StatusCode, resp.Header.Get("Referrer-Policy"))
	}
	kvTExpect(t, sctx, lines, "event: initialized")
	if _, err := kvA.Put(ctx, "z", []byte("z")); err != nil {
		t.Fatal(err)
	}
	kvTExpect(t, sctx, lines, `"key":"z"`)
	scancel()
	// The token does not lift the cross-site rule, and a refused URL token
	// is an ordinary error response before any event.
	authTWantREST(t, "URL-token watch of B", b.Do(t, http.MethodGet, "/v1/kv/B/watch?access_token="+rw, ""), http.StatusForbidden, "NOT_PERMITTED")

	// Bucket B, every way, with the A token.
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/kv/B/entries/x", ""},
		{http.MethodPut, "/v1/kv/B/entries/x", `{"value":"eA=="}`},
		{http.MethodPost, "/v1/kv/B/entries/new", `{"value":"eA=="}`},
		{http.MethodPost, "/v1/kv/B/update/x", `{"value":"eA==","revision":"1"}`},
		{http.MethodDelete, "/v1/kv/B/entries/x", ""},
		{http.MethodPost, "/v1/kv/B/purge/x", `{}`},
		{http.MethodGet, "/v1/kv/B/history/x", ""},
		{http.MethodGet, "/v1/kv/B/keys", ""},
		{http.MethodGet, "/v1/kv/B/watch", ""},
		{http.MethodGet, "/v1/kv/B", ""},
	} {
		authTWantREST(t, "rw "+tc.method+" "+tc.path, b.Do(t, tc.method, tc.path, tc.body, bearer(rw)...), http.StatusForbidden, "NOT_PERMITTED")
	}
	_, err = c.PutEntry(authTWith(ctx, "Bearer "+rw), &jetwayv1.PutEntryRequest{Bucket: "B", Key: "x", Value: []byte("x")})
	authTWantCode(t, "rw gRPC PutEntry B", err, codes.PermissionDenied, "NOT_PERMITTED")
	if e, err := kvB.Get(ctx, "x"); err != nil || string(e.Value()) != "b" || e.Revision() != 1 {
		t.Errorf("native B x: %v %v (revision 1: untouched)", e, err)
	}

	// The consume-only token reads A and cannot write it.
	if r := b.Do(t, http.MethodGet, "/v1/kv/A/history/x", "", bearer(ro)...); r.Status != http.StatusOK {
		t.Errorf("ro GetHistory A: %d %s", r.Status, r.Body)
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPut, "/v1/kv/A/entries/x", `{"value":"eA=="}`},
		{http.MethodPost, "/v1/kv/A/entries/new", `{"value":"eA=="}`},
		{http.MethodPost, "/v1/kv/A/update/x", `{"value":"eA==","revision":"1"}`},
		{http.MethodDelete, "/v1/kv/A/entries/x", ""},
		{http.MethodPost, "/v1/kv/A/purge/x", `{}`},
		{http.MethodGet, "/v1/kv/A", ""}, // GetBucket is OPERATION_READ
	} {
		authTWantREST(t, "ro "+tc.method+" "+tc.path, b.Do(t, tc.method, tc.path, tc.body, bearer(ro)...), http.StatusForbidden, "NOT_PERMITTED")
	}
	if e, err := kvA.Get(ctx, "x"); err != nil || string(e.Value()) != "a" {
		t.Errorf("native A x after the ro token's writes: %v %v", e, err)
	}

	// A token narrowed to $KV.A.pub.>: those keys only; an unfiltered
	// watch needs $KV.A.>.
	if r := b.Do(t, http.MethodPut, "/v1/kv/A/entries/pub.1", `{"value":"eA=="}`, bearer(narrow)...); r.Status != http.StatusOK {
		t.Errorf("narrow PutEntry pub.1: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "narrow PutEntry x", b.Do(t, http.MethodPut, "/v1/kv/A/entries/x", `{"value":"eA=="}`, bearer(narrow)...), http.StatusForbidden, "NOT_PERMITTED")
	authTWantREST(t, "narrow GetEntry x", b.Do(t, http.MethodGet, "/v1/kv/A/entries/x", "", bearer(narrow)...), http.StatusForbidden, "NOT_PERMITTED")
	authTWantREST(t, "narrow watch all", b.Do(t, http.MethodGet, "/v1/kv/A/watch?access_token="+narrow, ""), http.StatusForbidden, "NOT_PERMITTED")
	authTWantREST(t, "narrow watch pub.* and x", b.Do(t, http.MethodGet, "/v1/kv/A/watch?keys=pub.*&keys=x", "", bearer(narrow)...), http.StatusForbidden, "NOT_PERMITTED")

	// The read token: GetBucket and ListBuckets of A only.
	if r := b.Do(t, http.MethodGet, "/v1/kv/A", "", bearer(read)...); r.Status != http.StatusOK {
		t.Errorf("read GetBucket A: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "read GetBucket B", b.Do(t, http.MethodGet, "/v1/kv/B", "", bearer(read)...), http.StatusForbidden, "NOT_PERMITTED")
	if r := b.Do(t, http.MethodGet, "/v1/kv", "", bearer(read)...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"bucket":"A"`) ||
		strings.Contains(string(r.Body), `"bucket":"B"`) || strings.Contains(string(r.Body), `"bucket":"OWNED"`) {
		t.Errorf("read ListBuckets: %d %s", r.Status, r.Body)
	}
	authTWantREST(t, "read GetEntry", b.Do(t, http.MethodGet, "/v1/kv/A/entries/x", "", bearer(read)...), http.StatusForbidden, "NOT_PERMITTED")

	// The URL token: the watch route only.
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/kv/A/entries/x", ""},
		{http.MethodPut, "/v1/kv/A/entries/x", `{"value":"eA=="}`},
		{http.MethodGet, "/v1/kv/A/history/x", ""},
		{http.MethodGet, "/v1/kv/A/keys", ""},
		{http.MethodGet, "/v1/kv/A", ""},
		{http.MethodGet, "/v1/kv", ""},
		{http.MethodPost, "/v1/kv", `{"bucket":"C"}`},
		{http.MethodDelete, "/v1/kv/A", ""},
		{http.MethodPost, "/v1/kv/A/purge/x", `{}`},
	} {
		sep := "?"
		if strings.Contains(tc.path, "?") {
			sep = "&"
		}
		authTWantREST(t, "URL token "+tc.method+" "+tc.path, b.Do(t, tc.method, tc.path+sep+"access_token="+all, tc.body), http.StatusBadRequest, "ACCESS_TOKEN_IN_QUERY")
	}
	// An API key in the watch URL is refused too.
	authTWantREST(t, "API key in the watch URL", b.Do(t, http.MethodGet, "/v1/kv/A/watch?access_token="+key, ""), http.StatusBadRequest, "ACCESS_TOKEN_IN_QUERY")

	// Bucket admin writes: refused to every token, whatever it holds.
	for _, tok := range []string{rw, all} {
		for _, tc := range []struct{ method, path, body string }{
			{http.MethodPost, "/v1/kv", `{"bucket":"A2"}`},
			{http.MethodPut, "/v1/kv/A", `{"bucket":"A","history":3}`},
			{http.MethodDelete, "/v1/kv/A", ""},
			{http.MethodDelete, "/v1/kv/OWNED", ""},
		} {
			authTWantREST(t, "token "+tc.method+" "+tc.path, b.Do(t, tc.method, tc.path, tc.body, bearer(tok)...), http.StatusForbidden, "NOT_PERMITTED")
		}
		_, err := c.DeleteBucket(authTWith(ctx, "Bearer "+tok), &jetwayv1.DeleteBucketRequest{Bucket: "A"})
		authTWantCode(t, "token gRPC DeleteBucket", err, codes.PermissionDenied, "NOT_PERMITTED")
	}
	for _, name := range []string{"A", "OWNED"} {
		if _, err := b.JS.KeyValue(ctx, name); err != nil {
			t.Errorf("native bucket %s after the tokens' deletes: %v", name, err)
		}
	}
	if _, err := b.JS.KeyValue(ctx, "A2"); err != jetstream.ErrBucketNotFound {
		t.Errorf("native A2: %v", err)
	}
	if st, err := kvA.Status(ctx); err != nil || st.History() != 1 {
		t.Errorf("native A history after a token's update: %v %v", st, err)
	}
}
