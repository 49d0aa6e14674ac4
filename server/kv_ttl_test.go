package server_test

// Per-key TTLs: CreateEntry's ttl and PurgeEntry's marker_ttl on a bucket
// with limit_marker_ttl (which nats.go needs for either), read natively.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

func TestKVKeyTTLs(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	c := jetwayv1.NewKVServiceClient(b.Conn)
	// The bucket is the bridge's, with limit_marker_ttl over REST.
	if r := b.Do(t, http.MethodPost, "/v1/kv", `{"bucket":"TTL","history":5,"limit_marker_ttl":"1s"}`); r.Status != http.StatusOK {
		t.Fatalf("CreateBucket: %d %s", r.Status, r.Body)
	}
	kv, err := b.JS.KeyValue(ctx, "TTL")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(ctx); err != nil || st.LimitMarkerTTL() != time.Second {
		t.Fatalf("native limit marker TTL: %v %v", st, err)
	}
	gone := func(k string) func() error {
		return func() error {
			e, err := kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			return fmt.Errorf("native Get %s: %v %v", k, e, err)
		}
	}

	// CreateEntry with a ttl: there at once, gone within a few seconds
	// (JetStream expires messages about once a second).
	if _, err := c.CreateEntry(ctx, &jetwayv1.CreateEntryRequest{Bucket: "TTL", Key: "grpc.ttl", Value: []byte("g"), Ttl: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if r := b.Do(t, http.MethodPost, "/v1/kv/TTL/entries/rest.ttl", `{"value":"cg==","ttl":"1s"}`); r.Status != http.StatusOK {
		t.Fatalf("REST CreateEntry ttl: %d %s", r.Status, r.Body)
	}
	// A key without a ttl stays.
	if _, err := c.CreateEntry(ctx, &jetwayv1.CreateEntryRequest{Bucket: "TTL", Key: "stays", Value: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"grpc.ttl", "rest.ttl"} {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatalf("native %s at once: %v", k, err)
		}
		if got := e.Value(); len(got) != 1 {
			t.Errorf("native %s: %q", k, got)
		}
	}
	for _, k := range []string{"grpc.ttl", "rest.ttl"} {
		jetwaytest.Eventually(t, 15*time.Second, k+" expires", gone(k))
	}
	if _, err := kv.Get(ctx, "stays"); err != nil {
		t.Errorf("native stays: %v", err)
	}
	// Its key can be created again once expired.
	if _, err := c.CreateEntry(ctx, &jetwayv1.CreateEntryRequest{Bucket: "TTL", Key: "grpc.ttl", Value: []byte("again")}); err != nil {
		t.Errorf("CreateEntry after expiry: %v", err)
	}

	// PurgeEntry with a marker_ttl: the purge marker is all that is left,
	// then it goes too (History: no entries at all).
	for _, k := range []string{"p.grpc", "p.rest"} {
		if _, err := kv.Put(ctx, k, []byte("1")); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, k, []byte("2")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PurgeEntry(ctx, &jetwayv1.PurgeEntryRequest{Bucket: "TTL", Key: "p.grpc", MarkerTtl: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if r := b.Do(t, http.MethodPost, "/v1/kv/TTL/purge/p.rest", `{"marker_ttl":"1s"}`); r.Status != http.StatusOK {
		t.Fatalf("REST PurgeEntry marker_ttl: %d %s", r.Status, r.Body)
	}
	for _, k := range []string{"p.grpc", "p.rest"} {
		h, err := kv.History(ctx, k)
		if err != nil {
			// Already gone: a second has passed. Not a failure of the
			// bridge, but the marker must not come back.
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("native History %s: %v", k, err)
			}
			continue
		}
		if len(h) != 1 || h[0].Operation() != jetstream.KeyValuePurge {
			t.Fatalf("native History %s after purge: %d entries, last %v", k, len(h), h[len(h)-1].Operation())
		}
	}
	for _, k := range []string{"p.grpc", "p.rest"} {
		jetwaytest.Eventually(t, 15*time.Second, k+"'s purge marker goes", func() error {
			h, err := kv.History(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			return fmt.Errorf("native History %s: %d entries, %v", k, len(h), err)
		})
	}
	// A purge without marker_ttl keeps its marker.
	if _, err := c.PurgeEntry(ctx, &jetwayv1.PurgeEntryRequest{Bucket: "TTL", Key: "stays"}); err != nil {
		t.Fatal(err)
	}
	if h, err := kv.History(ctx, "stays"); err != nil || len(h) != 1 || h[0].Operation() != jetstream.KeyValuePurge {
		t.Errorf("native History stays after purge: %v %v", h, err)
	}

	// Bad TTLs are 400; a TTL on a bucket without limit_marker_ttl is
	// refused by JetStream as a client error, never a 5xx.
	_, err = c.CreateEntry(ctx, &jetwayv1.CreateEntryRequest{Bucket: "TTL", Key: "neg", Value: []byte("x"), Ttl: durationpb.New(-time.Second)})
	authTWantCode(t, "CreateEntry negative ttl", err, codes.InvalidArgument, "INVALID_ARGUMENT")
	authTWantREST(t, "REST PurgeEntry bad marker_ttl", b.Do(t, http.MethodPost, "/v1/kv/TTL/purge/stays", `{"marker_ttl":"-1s"}`), 400, "INVALID_ARGUMENT")
	if _, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "NOTTL"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateEntry(ctx, &jetwayv1.CreateEntryRequest{Bucket: "NOTTL", Key: "k", Value: []byte("x"), Ttl: durationpb.New(time.Second)})
	if st := authTWantCode(t, "CreateEntry ttl without limit_marker_ttl", err, codes.FailedPrecondition, "NOT_ALLOWED"); st != nil && !strings.Contains(st.Message(), "limit_marker_ttl") {
		t.Errorf("CreateEntry ttl without limit_marker_ttl: %q does not say what is missing", st.Message())
	}
	authTWantREST(t, "REST PurgeEntry marker_ttl without limit_marker_ttl", b.Do(t, http.MethodPost, "/v1/kv/NOTTL/purge/k", `{"marker_ttl":"1s"}`), 400, "NOT_ALLOWED")
	if _, err := b.JS.KeyValue(ctx, "NOTTL"); err != nil {
		t.Fatal(err)
	}
	nottl, _ := b.JS.KeyValue(ctx, "NOTTL")
	if _, err := nottl.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("native NOTTL k after a refused create: %v", err)
	}
}
