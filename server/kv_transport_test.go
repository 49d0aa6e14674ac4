package server_test

// The KVService calls over both transports, each result read natively
// with nats.go's jetstream.KeyValue: UpdateBucket, DeleteBucket,
// ListBuckets, DeleteEntry, PurgeEntry, ListKeys and GetHistory.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// kvTransport is the KVService over gRPC or REST; REST errors come back
// as gRPC statuses (from the google.rpc.Status JSON body), so both are
// checked alike.
type kvTransport interface {
	updateBucket(ctx context.Context, cfg *jetwayv1.BucketConfig) (*jetwayv1.UpdateBucketResponse, error)
	deleteBucket(ctx context.Context, bucket string) error
	listBuckets(ctx context.Context) (*jetwayv1.ListBucketsResponse, error)
	deleteEntry(ctx context.Context, bucket, key string, last uint64) error
	purgeEntry(ctx context.Context, bucket, key string, last uint64) error
	listKeys(ctx context.Context, bucket string, filters ...string) ([]string, error)
	getHistory(ctx context.Context, bucket, key string) (*jetwayv1.GetHistoryResponse, error)
}

type kvGRPC struct{ c jetwayv1.KVServiceClient }

func (g kvGRPC) updateBucket(ctx context.Context, cfg *jetwayv1.BucketConfig) (*jetwayv1.UpdateBucketResponse, error) {
	return g.c.UpdateBucket(ctx, &jetwayv1.UpdateBucketRequest{Config: cfg})
}

func (g kvGRPC) deleteBucket(ctx context.Context, bucket string) error {
	_, err := g.c.DeleteBucket(ctx, &jetwayv1.DeleteBucketRequest{Bucket: bucket})
	return err
}

func (g kvGRPC) listBuckets(ctx context.Context) (*jetwayv1.ListBucketsResponse, error) {
	return g.c.ListBuckets(ctx, &jetwayv1.ListBucketsRequest{})
}

func (g kvGRPC) deleteEntry(ctx context.Context, bucket, key string, last uint64) error {
	_, err := g.c.DeleteEntry(ctx, &jetwayv1.DeleteEntryRequest{Bucket: bucket, Key: key, LastRevision: last})
	return err
}

func (g kvGRPC) purgeEntry(ctx context.Context, bucket, key string, last uint64) error {
	_, err := g.c.PurgeEntry(ctx, &jetwayv1.PurgeEntryRequest{Bucket: bucket, Key: key, LastRevision: last})
	return err
}

func (g kvGRPC) listKeys(ctx context.Context, bucket string, filters ...string) ([]string, error) {
	st, err := g.c.ListKeys(ctx, &jetwayv1.ListKeysRequest{Bucket: bucket, Filters: filters})
	if err != nil {
		return nil, err
	}
	var keys []string
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return keys, nil
		}
		if err != nil {
			return keys, err
		}
		keys = append(keys, r.GetKeys()...)
	}
}

func (g kvGRPC) getHistory(ctx context.Context, bucket, key string) (*jetwayv1.GetHistoryResponse, error) {
	return g.c.GetHistory(ctx, &jetwayv1.GetHistoryRequest{Bucket: bucket, Key: key})
}

type kvREST struct{ base string }

// do sends a REST call and returns its body, or its error as a status.
func (r kvREST) do(ctx context.Context, method, path string, body proto.Message) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := protojson.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, kvRESTStatus(resp.StatusCode, data)
	}
	return data, nil
}

// kvRESTStatus turns a REST error body (google.rpc.Status JSON) into the
// status it carries, checking that the HTTP status is the code's.
func kvRESTStatus(httpStatus int, body []byte) error {
	var s spb.Status
	if err := protojson.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("HTTP %d, body not a google.rpc.Status: %v: %s", httpStatus, err, body)
	}
	want := map[codes.Code]int{codes.NotFound: 404, codes.InvalidArgument: 400, codes.Aborted: 409, codes.AlreadyExists: 409,
		codes.PermissionDenied: 403, codes.Unauthenticated: 401, codes.Unavailable: 503, codes.FailedPrecondition: 400}[codes.Code(s.GetCode())]
	if want != 0 && want != httpStatus {
		return fmt.Errorf("HTTP %d for %v, want %d: %s", httpStatus, codes.Code(s.GetCode()), want, body)
	}
	return status.FromProto(&s).Err()
}

func (r kvREST) updateBucket(ctx context.Context, cfg *jetwayv1.BucketConfig) (*jetwayv1.UpdateBucketResponse, error) {
	data, err := r.do(ctx, http.MethodPut, "/v1/kv/"+cfg.GetBucket(), cfg)
	if err != nil {
		return nil, err
	}
	out := &jetwayv1.UpdateBucketResponse{}
	return out, protojson.Unmarshal(data, out)
}

func (r kvREST) deleteBucket(ctx context.Context, bucket string) error {
	_, err := r.do(ctx, http.MethodDelete, "/v1/kv/"+bucket, nil)
	return err
}

func (r kvREST) listBuckets(ctx context.Context) (*jetwayv1.ListBucketsResponse, error) {
	data, err := r.do(ctx, http.MethodGet, "/v1/kv", nil)
	if err != nil {
		return nil, err
	}
	out := &jetwayv1.ListBucketsResponse{}
	return out, protojson.Unmarshal(data, out)
}

func (r kvREST) deleteEntry(ctx context.Context, bucket, key string, last uint64) error {
	q := ""
	if last != 0 {
		q = "?last_revision=" + strconv.FormatUint(last, 10)
	}
	_, err := r.do(ctx, http.MethodDelete, "/v1/kv/"+bucket+"/entries/"+key+q, nil)
	return err
}

func (r kvREST) purgeEntry(ctx context.Context, bucket, key string, last uint64) error {
	_, err := r.do(ctx, http.MethodPost, "/v1/kv/"+bucket+"/purge/"+key, &jetwayv1.PurgeEntryRequest{LastRevision: last})
	return err
}

// listKeys reads the NDJSON stream: {"result":{"keys":[…]}} lines, or a
// last {"error":{…}}.
func (r kvREST) listKeys(ctx context.Context, bucket string, filters ...string) ([]string, error) {
	q := url.Values{"filters": filters}
	data, err := r.do(ctx, http.MethodGet, "/v1/kv/"+bucket+"/keys?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var line struct {
			Result, Error json.RawMessage
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return keys, fmt.Errorf("NDJSON line %q: %v", sc.Bytes(), err)
		}
		if line.Error != nil {
			return keys, kvRESTStatus(http.StatusOK, line.Error)
		}
		var res jetwayv1.ListKeysResponse
		if err := protojson.Unmarshal(line.Result, &res); err != nil {
			return keys, err
		}
		keys = append(keys, res.GetKeys()...)
	}
	return keys, sc.Err()
}

func (r kvREST) getHistory(ctx context.Context, bucket, key string) (*jetwayv1.GetHistoryResponse, error) {
	data, err := r.do(ctx, http.MethodGet, "/v1/kv/"+bucket+"/history/"+key, nil)
	if err != nil {
		return nil, err
	}
	out := &jetwayv1.GetHistoryResponse{}
	return out, protojson.Unmarshal(data, out)
}

func TestKVCallsOverBothTransports(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	for _, tc := range []struct {
		name string
		tr   kvTransport
	}{
		{"grpc", kvGRPC{jetwayv1.NewKVServiceClient(b.Conn)}},
		{"rest", kvREST{b.BaseURL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := jetwaytest.Context(t, 60*time.Second)
			bucket := "T" + tc.name
			kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 5})
			if err != nil {
				t.Fatal(err)
			}
			put := func(k, v string) uint64 {
				t.Helper()
				rev, err := kv.Put(ctx, k, []byte(v))
				if err != nil {
					t.Fatal(err)
				}
				return rev
			}
			put("k1", "a")
			k1 := put("k1", "b")
			k2 := put("k2", "c")
			put("dir.k3", "d")
			put("dir/k4", "e")

			// UpdateBucket: the whole config, read back natively.
			if _, err := tc.tr.updateBucket(ctx, &jetwayv1.BucketConfig{Bucket: bucket, History: 9, Description: "updated", Metadata: map[string]string{"team": "x"}}); err != nil {
				t.Fatalf("UpdateBucket: %v", err)
			}
			st, err := kv.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.History() != 9 || st.Config().Description != "updated" || st.Metadata()["team"] != "x" {
				t.Errorf("native after UpdateBucket: history %d, description %q, metadata %v", st.History(), st.Config().Description, st.Metadata())
			}
			_, err = tc.tr.updateBucket(ctx, &jetwayv1.BucketConfig{Bucket: bucket + "NOPE"})
			authTWantCode(t, "UpdateBucket missing", err, codes.NotFound, "BUCKET_NOT_FOUND")
			_, err = tc.tr.updateBucket(ctx, &jetwayv1.BucketConfig{Bucket: bucket, History: 65})
			authTWantCode(t, "UpdateBucket history 65", err, codes.InvalidArgument, "INVALID_ARGUMENT")

			// ListBuckets: this bucket, as updated.
			lb, err := tc.tr.listBuckets(ctx)
			if err != nil {
				t.Fatalf("ListBuckets: %v", err)
			}
			i := slices.IndexFunc(lb.GetBuckets(), func(s *jetwayv1.BucketStatus) bool { return s.GetConfig().GetBucket() == bucket })
			if i < 0 || lb.GetBuckets()[i].GetConfig().GetHistory() != 9 || lb.GetBuckets()[i].GetValues() != 5 || lb.GetBuckets()[i].GetStream() != "KV_"+bucket {
				t.Errorf("ListBuckets: %v", lb)
			}

			// GetHistory: the native history, revision for revision.
			h, err := tc.tr.getHistory(ctx, bucket, "k1")
			if err != nil {
				t.Fatalf("GetHistory: %v", err)
			}
			nh, err := kv.History(ctx, "k1")
			if err != nil {
				t.Fatal(err)
			}
			if len(h.GetEntries()) != len(nh) {
				t.Fatalf("GetHistory %v, native %d entries", h, len(nh))
			}
			for i, e := range h.GetEntries() {
				if e.GetRevision() != nh[i].Revision() || string(e.GetValue()) != string(nh[i].Value()) || e.GetKey() != "k1" || e.GetBucket() != bucket {
					t.Errorf("GetHistory[%d] %v, native rev %d %q", i, e, nh[i].Revision(), nh[i].Value())
				}
			}
			_, err = tc.tr.getHistory(ctx, bucket, "never")
			authTWantCode(t, "GetHistory of a key never put", err, codes.NotFound, "KEY_NOT_FOUND")
			_, err = tc.tr.getHistory(ctx, bucket+"NOPE", "k1")
			authTWantCode(t, "GetHistory missing bucket", err, codes.NotFound, "BUCKET_NOT_FOUND")

			// ListKeys: the native keys; filtered.
			keys, err := tc.tr.listKeys(ctx, bucket)
			if err != nil {
				t.Fatalf("ListKeys: %v", err)
			}
			nk, err := kv.Keys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(keys)
			slices.Sort(nk)
			if !slices.Equal(keys, nk) {
				t.Errorf("ListKeys %v, native %v", keys, nk)
			}
			if keys, err := tc.tr.listKeys(ctx, bucket, "dir.>"); err != nil || !slices.Equal(keys, []string{"dir.k3"}) {
				t.Errorf("ListKeys dir.>: %v %v", keys, err)
			}
			keys, err = tc.tr.listKeys(ctx, bucket, "*")
			slices.Sort(keys)
			if err != nil || !slices.Equal(keys, []string{"dir/k4", "k1", "k2"}) {
				t.Errorf("ListKeys *: %v %v", keys, err)
			}
			_, err = tc.tr.listKeys(ctx, bucket, "k*")
			authTWantCode(t, "ListKeys k*", err, codes.InvalidArgument, "INVALID_KEY")
			_, err = tc.tr.listKeys(ctx, bucket+"NOPE")
			authTWantCode(t, "ListKeys missing bucket", err, codes.NotFound, "BUCKET_NOT_FOUND")

			// DeleteEntry: a wrong last revision is refused, the right one
			// leaves a delete marker.
			authTWantCode(t, "DeleteEntry wrong revision", tc.tr.deleteEntry(ctx, bucket, "k2", k2+100), codes.Aborted, "WRONG_REVISION")
			if _, err := kv.Get(ctx, "k2"); err != nil {
				t.Errorf("native k2 after a refused delete: %v", err)
			}
			if err := tc.tr.deleteEntry(ctx, bucket, "k2", k2); err != nil {
				t.Fatalf("DeleteEntry: %v", err)
			}
			if _, err := kv.Get(ctx, "k2"); err != jetstream.ErrKeyNotFound {
				t.Errorf("native k2 after delete: %v", err)
			}
			if nh, err := kv.History(ctx, "k2"); err != nil || len(nh) != 2 || nh[1].Operation() != jetstream.KeyValueDelete {
				t.Errorf("native k2 history after delete: %v %v", nh, err)
			}
			if err := tc.tr.deleteEntry(ctx, bucket, "dir/k4", 0); err != nil {
				t.Fatalf("DeleteEntry dir/k4: %v", err)
			}
			if _, err := kv.Get(ctx, "dir/k4"); err != jetstream.ErrKeyNotFound {
				t.Errorf("native dir/k4 after delete: %v", err)
			}

			// PurgeEntry: a wrong last revision is refused; then one purge
			// marker is all that is left of k1.
			authTWantCode(t, "PurgeEntry wrong revision", tc.tr.purgeEntry(ctx, bucket, "k1", k1-1), codes.Aborted, "WRONG_REVISION")
			if nh, err := kv.History(ctx, "k1"); err != nil || len(nh) != 2 {
				t.Errorf("native k1 history after a refused purge: %v %v", nh, err)
			}
			if err := tc.tr.purgeEntry(ctx, bucket, "k1", k1); err != nil {
				t.Fatalf("PurgeEntry: %v", err)
			}
			if nh, err := kv.History(ctx, "k1"); err != nil || len(nh) != 1 || nh[0].Operation() != jetstream.KeyValuePurge {
				t.Errorf("native k1 history after purge: %v %v", nh, err)
			}
			if keys, err := tc.tr.listKeys(ctx, bucket); err != nil || !slices.Equal(keys, []string{"dir.k3"}) {
				t.Errorf("ListKeys after delete and purge: %v %v", keys, err)
			}

			// DeleteBucket: gone natively; a second time is NOT_FOUND.
			if err := tc.tr.deleteBucket(ctx, bucket); err != nil {
				t.Fatalf("DeleteBucket: %v", err)
			}
			if _, err := b.JS.KeyValue(ctx, bucket); err != jetstream.ErrBucketNotFound {
				t.Errorf("native bucket after delete: %v", err)
			}
			authTWantCode(t, "DeleteBucket again", tc.tr.deleteBucket(ctx, bucket), codes.NotFound, "BUCKET_NOT_FOUND")
			lb, err = tc.tr.listBuckets(ctx)
			if err != nil || slices.ContainsFunc(lb.GetBuckets(), func(s *jetwayv1.BucketStatus) bool { return s.GetConfig().GetBucket() == bucket }) {
				t.Errorf("ListBuckets after delete: %v %v", lb, err)
			}
		})
	}
}
