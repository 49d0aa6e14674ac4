package server_test

// KVService under hostile input: escaped separators and dot segments in
// keys, keys too long for NATS's control line, too many watch patterns,
// bucket names that look like others', values over the publish cap. Each
// is a clear 4xx with an ErrorInfo reason, never a 5xx, and the bridge
// keeps serving.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

func TestKVHostileInput(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "P"})
	if err != nil {
		t.Fatal(err)
	}
	c := jetwayv1.NewKVServiceClient(b.Conn)
	// maxKey is the longest key of bucket P: $KV.P.<key> within 1024 bytes.
	maxKey := strings.Repeat("k", 1024-len("$KV.P."))

	// An escaped '/' is a '/' of the key, exactly as a native client names it.
	if r := b.Do(t, http.MethodPut, "/v1/kv/P/entries/a%2Fb", `{"value":"eA=="}`); r.Status != http.StatusOK {
		t.Fatalf("PUT a%%2Fb: %d %s", r.Status, r.Body)
	}
	if e, err := kv.Get(ctx, "a/b"); err != nil || string(e.Value()) != "x" {
		t.Errorf("native a/b: %v %v", e, err)
	}

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		reason                   string
	}{
		// Escaped dot segments are decoded and then refused as keys (no
		// "..", no leading or trailing '.'): they never reach NATS.
		{"escaped ..", http.MethodPut, "/v1/kv/P/entries/%2E%2E", `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"escaped /../", http.MethodPut, "/v1/kv/P/entries/a/%2E%2E/b", `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"escaped %2F..%2F", http.MethodGet, "/v1/kv/P/entries/a%2F..%2Fb", "", 400, "INVALID_KEY"},
		{"escaped trailing .", http.MethodDelete, "/v1/kv/P/entries/a%2E", "", 400, "INVALID_KEY"},
		{"escaped wildcard", http.MethodGet, "/v1/kv/P/entries/a.%2A", "", 400, "INVALID_KEY"},
		{"escaped >", http.MethodGet, "/v1/kv/P/history/%3E", "", 400, "INVALID_KEY"},
		{"escaped space", http.MethodPut, "/v1/kv/P/entries/a%20b", `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"escaped NUL", http.MethodPut, "/v1/kv/P/entries/a%00b", `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"escaped . in bucket", http.MethodGet, "/v1/kv/P%2EQ/entries/x", "", 400, "INVALID_BUCKET"},
		// Keys whose subject would overflow NATS's control line (4096 by
		// default: nats-server then closes the bridge's connection).
		{"4097-byte key", http.MethodPut, "/v1/kv/P/entries/" + strings.Repeat("k", 4097), `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"4096-byte key", http.MethodPut, "/v1/kv/P/entries/" + strings.Repeat("k", 4096), `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"key one over", http.MethodPut, "/v1/kv/P/entries/" + maxKey + "k", `{"value":"eA=="}`, 400, "INVALID_KEY"},
		{"long key get", http.MethodGet, "/v1/kv/P/entries/" + strings.Repeat("k", 4096), "", 400, "INVALID_KEY"},
		{"long key purge", http.MethodPost, "/v1/kv/P/purge/" + strings.Repeat("k", 4096), `{}`, 400, "INVALID_KEY"},
		{"long watch pattern", http.MethodGet, "/v1/kv/P/watch?keys=" + strings.Repeat("k", 4096) + ".>", "", 400, "INVALID_KEY"},
		{"long keys filter", http.MethodGet, "/v1/kv/P/keys?filters=" + strings.Repeat("k", 4096), "", 400, "INVALID_KEY"},
		// Patterns: at most 16.
		{"17 watch patterns", http.MethodGet, "/v1/kv/P/watch?keys=" + strings.Repeat("k&keys=", 16) + "k", "", 400, "INVALID_KEY"},
		{"17 key filters", http.MethodGet, "/v1/kv/P/keys?filters=" + strings.Repeat("k&filters=", 16) + "k", "", 400, "INVALID_KEY"},
		{"pattern a*b", http.MethodGet, "/v1/kv/P/watch?keys=a*b", "", 400, "INVALID_KEY"},
		{"pattern > not last", http.MethodGet, "/v1/kv/P/watch?keys=>.a", "", 400, "INVALID_KEY"},
		// Bucket names.
		{"bucket of 241", http.MethodPost, "/v1/kv", `{"bucket":"` + strings.Repeat("b", 241) + `"}`, 400, "INVALID_BUCKET"},
		{"bucket with .", http.MethodPost, "/v1/kv", `{"bucket":"a.b"}`, 400, "INVALID_BUCKET"},
		{"bucket with >", http.MethodGet, "/v1/kv/%3E", "", 400, "INVALID_BUCKET"},
		{"bucket empty", http.MethodPost, "/v1/kv", `{"bucket":""}`, 400, "INVALID_BUCKET"},
		// The stream's name is not the bucket's: KV_P is another bucket
		// (stream KV_KV_P), not P's stream.
		{"bucket KV_P", http.MethodGet, "/v1/kv/KV_P/entries/a%2Fb", "", 404, "BUCKET_NOT_FOUND"},
		{"bucket p", http.MethodGet, "/v1/kv/p/entries/a%2Fb", "", 404, "BUCKET_NOT_FOUND"},
		// Values over NATS's max payload (1 MiB): PAYLOAD_TOO_LARGE; a body
		// over the REST cap: 413 before it is read.
		{"value over max payload", http.MethodPut, "/v1/kv/P/entries/big", `{"value":"` + strings.Repeat("A", 1_500_000) + `"}`, 400, "PAYLOAD_TOO_LARGE"},
		{"create over max payload", http.MethodPost, "/v1/kv/P/entries/big", `{"value":"` + strings.Repeat("A", 1_500_000) + `"}`, 400, "PAYLOAD_TOO_LARGE"},
		{"update over max payload", http.MethodPost, "/v1/kv/P/update/a%2Fb", `{"revision":"1","value":"` + strings.Repeat("A", 1_500_000) + `"}`, 400, "PAYLOAD_TOO_LARGE"},
		{"body over the cap", http.MethodPut, "/v1/kv/P/entries/big", `{"value":"` + strings.Repeat("A", 3_000_000) + `"}`, 413, "BODY_TOO_LARGE"},
	} {
		authTWantREST(t, tc.name, b.Do(t, tc.method, tc.path, tc.body), tc.status, tc.reason)
	}

	// The same over gRPC.
	_, err = c.PutEntry(ctx, &jetwayv1.PutEntryRequest{Bucket: "P", Key: strings.Repeat("k", 4096), Value: []byte("x")})
	authTWantCode(t, "gRPC 4096-byte key", err, codes.InvalidArgument, "INVALID_KEY")
	_, err = c.GetHistory(ctx, &jetwayv1.GetHistoryRequest{Bucket: "P", Key: maxKey + "k"})
	authTWantCode(t, "gRPC key one over", err, codes.InvalidArgument, "INVALID_KEY")
	_, err = c.PutEntry(ctx, &jetwayv1.PutEntryRequest{Bucket: "P", Key: "big", Value: make([]byte, 2<<20)})
	authTWantCode(t, "gRPC 2 MiB value", err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE")
	w, err := c.WatchBucket(ctx, &jetwayv1.WatchBucketRequest{Bucket: "P", Keys: strings.Split(strings.Repeat("k,", 16)+"k", ",")})
	if err == nil {
		_, err = w.Recv()
	}
	authTWantCode(t, "gRPC 17 watch patterns", err, codes.InvalidArgument, "INVALID_KEY")

	// The connection survived all of it: the next call is served at once
	// (a key over the control line used to cut the bridge off NATS, and
	// this answered 503 UNAVAILABLE while it reconnected).
	if r := b.Do(t, http.MethodPut, "/v1/kv/P/entries/after", `{"value":"eA=="}`); r.Status != http.StatusOK {
		t.Fatalf("PUT after the attacks: %d %s", r.Status, r.Body)
	}
	// The longest key works, natively readable, over REST and gRPC.
	if r := b.Do(t, http.MethodPut, "/v1/kv/P/entries/"+maxKey, `{"value":"eA=="}`); r.Status != http.StatusOK {
		t.Fatalf("PUT longest key: %d %s", r.Status, r.Body)
	}
	if _, err := c.GetEntry(ctx, &jetwayv1.GetEntryRequest{Bucket: "P", Key: maxKey}); err != nil {
		t.Errorf("gRPC GetEntry longest key: %v", err)
	}
	if e, err := kv.Get(ctx, maxKey); err != nil || string(e.Value()) != "x" {
		t.Errorf("native longest key: %v %v", e, err)
	}
	// Nothing else was written.
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Errorf("native keys %d, want 3 (a/b, after, the longest)", len(keys))
	}
	if _, err := b.JS.KeyValue(ctx, "KV_P"); err != jetstream.ErrBucketNotFound {
		t.Errorf("bucket KV_P: %v", err)
	}
}
