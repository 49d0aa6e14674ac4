package kv

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// bucketConfigFrom validates a bucket configuration and converts it to
// nats.go's.
func bucketConfigFrom(field string, c *jetwayv1.BucketConfig) (jetstream.KeyValueConfig, error) {
	if c == nil {
		return jetstream.KeyValueConfig{}, &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: required", bridge.ErrInvalidArgument)}
	}
	if err := validateBucket(field+".bucket", c.GetBucket()); err != nil {
		return jetstream.KeyValueConfig{}, err
	}
	bad := func(f, what string) error {
		return &bridge.FieldError{Field: field + "." + f, Err: fmt.Errorf("%w: %s", bridge.ErrInvalidArgument, what)}
	}
	if h := c.GetHistory(); h < 0 || h > jetstream.KeyValueMaxHistory {
		return jetstream.KeyValueConfig{}, bad("history", fmt.Sprintf("1 to %d (0: 1)", jetstream.KeyValueMaxHistory))
	}
	if r := c.GetReplicas(); r < 0 || r > 5 {
		return jetstream.KeyValueConfig{}, bad("replicas", "1 to 5 (0: 1)")
	}
	if c.GetMaxValueSize() < 0 {
		return jetstream.KeyValueConfig{}, bad("max_value_size", "not negative (0: no cap)")
	}
	if c.GetMaxBytes() < 0 {
		return jetstream.KeyValueConfig{}, bad("max_bytes", "not negative (0: no cap)")
	}
	ttl, err := duration(field+".ttl", c.GetTtl())
	if err != nil {
		return jetstream.KeyValueConfig{}, err
	}
	marker, err := duration(field+".limit_marker_ttl", c.GetLimitMarkerTtl())
	if err != nil {
		return jetstream.KeyValueConfig{}, err
	}
	storage := jetstream.FileStorage
	switch c.GetStorage() {
	case jetwayv1.StorageType_STORAGE_TYPE_UNSPECIFIED, jetwayv1.StorageType_STORAGE_TYPE_FILE:
	case jetwayv1.StorageType_STORAGE_TYPE_MEMORY:
		storage = jetstream.MemoryStorage
	default:
		return jetstream.KeyValueConfig{}, bad("storage", "file or memory")
	}
	return jetstream.KeyValueConfig{
		Bucket: c.GetBucket(), Description: c.GetDescription(), MaxValueSize: c.GetMaxValueSize(),
		History: uint8(c.GetHistory()), TTL: ttl, MaxBytes: c.GetMaxBytes(), Storage: storage,
		Replicas: int(c.GetReplicas()), Compression: c.GetCompression(), LimitMarkerTTL: marker,
		Metadata: c.GetMetadata(),
	}, nil
}

func statusTo(st jetstream.KeyValueStatus) *jetwayv1.BucketStatus {
	c := st.Config()
	storage := jetwayv1.StorageType_STORAGE_TYPE_FILE
	if c.Storage == jetstream.MemoryStorage {
		storage = jetwayv1.StorageType_STORAGE_TYPE_MEMORY
	}
	maxValue, maxBytes := c.MaxValueSize, c.MaxBytes
	if maxValue < 0 {
		maxValue = 0
	}
	if maxBytes < 0 {
		maxBytes = 0
	}
	out := &jetwayv1.BucketStatus{
		Config: &jetwayv1.BucketConfig{
			Bucket: c.Bucket, Description: c.Description, History: int32(st.History()), MaxValueSize: maxValue,
			MaxBytes: maxBytes, Storage: storage, Replicas: int32(c.Replicas), Compression: st.IsCompressed(),
			Metadata: userMetadata(st.Metadata()),
		},
		Values: st.Values(), Bytes: st.Bytes(), Stream: streamOf(st.Bucket()),
	}
	if d := st.TTL(); d > 0 {
		out.Config.Ttl = durationpb.New(d)
	}
	if d := st.LimitMarkerTTL(); d > 0 {
		out.Config.LimitMarkerTtl = durationpb.New(d)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		out.Created = timestamppb.New(bs.StreamInfo().Created)
	}
	return out
}

// userMetadata leaves out the metadata nats-server adds itself
// (_nats.req.level and the like).
func userMetadata(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, "_nats.") {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

func entryTo(e jetstream.KeyValueEntry) *jetwayv1.KVEntry {
	op := jetwayv1.KVOperation_KV_OPERATION_PUT
	switch e.Operation() {
	case jetstream.KeyValueDelete:
		op = jetwayv1.KVOperation_KV_OPERATION_DELETE
	case jetstream.KeyValuePurge:
		op = jetwayv1.KVOperation_KV_OPERATION_PURGE
	}
	return &jetwayv1.KVEntry{
		Bucket: e.Bucket(), Key: e.Key(), Value: e.Value(), Revision: e.Revision(),
		Created: timestamppb.New(e.Created()), Delta: e.Delta(), Operation: op,
	}
}

// bucket opens bucket's KeyValue on the call's connection.
func (s *Service) bucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("bucket %q", bucket))
	}
	return kv, nil
}

func (s *Service) open(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	return s.bucket(ctx, js, bucket)
}

// CreateBucket creates a bucket.
func (s *Service) CreateBucket(ctx context.Context, req *jetwayv1.CreateBucketRequest) (*jetwayv1.CreateBucketResponse, error) {
	cfg, err := bucketConfigFrom("config", req.GetConfig())
	if err != nil {
		return nil, err
	}
	if err := s.canAdminBucket(ctx, "config.bucket", cfg.Bucket); err != nil {
		return nil, err
	}
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateKeyValue(ctx, cfg)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("create bucket %q", cfg.Bucket))
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("bucket %q", cfg.Bucket))
	}
	return &jetwayv1.CreateBucketResponse{Bucket: statusTo(st)}, nil
}

// UpdateBucket changes a bucket's configuration.
func (s *Service) UpdateBucket(ctx context.Context, req *jetwayv1.UpdateBucketRequest) (*jetwayv1.UpdateBucketResponse, error) {
	cfg, err := bucketConfigFrom("config", req.GetConfig())
	if err != nil {
		return nil, err
	}
	if err := s.canAdminBucket(ctx, "config.bucket", cfg.Bucket); err != nil {
		return nil, err
	}
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	kv, err := js.UpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("update bucket %q", cfg.Bucket))
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("bucket %q", cfg.Bucket))
	}
	return &jetwayv1.UpdateBucketResponse{Bucket: statusTo(st)}, nil
}

// DeleteBucket deletes a bucket.
func (s *Service) DeleteBucket(ctx context.Context, req *jetwayv1.DeleteBucketRequest) (*jetwayv1.DeleteBucketResponse, error) {
	if err := validateBucket("bucket", req.GetBucket()); err != nil {
		return nil, err
	}
	if err := s.canAdminBucket(ctx, "bucket", req.GetBucket()); err != nil {
		return nil, err
	}
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := js.DeleteKeyValue(ctx, req.GetBucket()); err != nil {
		return nil, translate(err, fmt.Sprintf("delete bucket %q", req.GetBucket()))
	}
	return &jetwayv1.DeleteBucketResponse{}, nil
}

// GetBucket returns a bucket's status.
func (s *Service) GetBucket(ctx context.Context, req *jetwayv1.GetBucketRequest) (*jetwayv1.GetBucketResponse, error) {
	if err := validateBucket("bucket", req.GetBucket()); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, streamOf(req.GetBucket()), false); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("bucket %q", req.GetBucket()))
	}
	return &jetwayv1.GetBucketResponse{Bucket: statusTo(st)}, nil
}

// ListBuckets returns the buckets the caller may see.
func (s *Service) ListBuckets(ctx context.Context, _ *jetwayv1.ListBucketsRequest) (*jetwayv1.ListBucketsResponse, error) {
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	ls := js.KeyValueStores(ctx)
	out := &jetwayv1.ListBucketsResponse{}
	for st := range ls.Status() {
		if s.authz.CanSee(ctx, streamOf(st.Bucket())) {
			out.Buckets = append(out.Buckets, statusTo(st))
		}
	}
	if err := ls.Error(); err != nil {
		return nil, translate(err, "list buckets")
	}
	slices.SortFunc(out.Buckets, func(a, b *jetwayv1.BucketStatus) int {
		return strings.Compare(a.GetConfig().GetBucket(), b.GetConfig().GetBucket())
	})
	return out, nil
}

// key validates a request's bucket and key.
func key(bucket, key string) error {
	if err := validateBucket("bucket", bucket); err != nil {
		return err
	}
	return validateKey("key", bucket, key)
}

func what(bucket, key string) string { return fmt.Sprintf("key %q in bucket %q", clip(key), bucket) }

// GetEntry reads a key.
func (s *Service) GetEntry(ctx context.Context, req *jetwayv1.GetEntryRequest) (*jetwayv1.GetEntryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.canRead(ctx, req.GetBucket(), []string{req.GetKey()}); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	var e jetstream.KeyValueEntry
	if r := req.GetRevision(); r != 0 {
		e, err = kv.GetRevision(ctx, req.GetKey(), r)
	} else {
		e, err = kv.Get(ctx, req.GetKey())
	}
	if err != nil {
		return nil, translate(err, what(req.GetBucket(), req.GetKey()))
	}
	return &jetwayv1.GetEntryResponse{Entry: entryTo(e)}, nil
}

// PutEntry stores a value.
func (s *Service) PutEntry(ctx context.Context, req *jetwayv1.PutEntryRequest) (*jetwayv1.PutEntryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.canWriteKey(ctx, req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	rev, err := kv.Put(ctx, req.GetKey(), req.GetValue())
	if err != nil {
		return nil, translate(err, "put "+what(req.GetBucket(), req.GetKey()))
	}
	return &jetwayv1.PutEntryResponse{Revision: rev}, nil
}

// CreateEntry stores a value under a key without one.
func (s *Service) CreateEntry(ctx context.Context, req *jetwayv1.CreateEntryRequest) (*jetwayv1.CreateEntryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	ttl, err := duration("ttl", req.GetTtl())
	if err != nil {
		return nil, err
	}
	if err := s.canWriteKey(ctx, req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(ttl))
	}
	rev, err := kv.Create(ctx, req.GetKey(), req.GetValue(), opts...)
	if err != nil {
		return nil, translate(err, "create "+what(req.GetBucket(), req.GetKey())+ttlHint(err))
	}
	return &jetwayv1.CreateEntryResponse{Revision: rev}, nil
}

// UpdateEntry replaces a value at an expected revision.
func (s *Service) UpdateEntry(ctx context.Context, req *jetwayv1.UpdateEntryRequest) (*jetwayv1.UpdateEntryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	if req.GetRevision() == 0 {
		return nil, &bridge.FieldError{Field: "revision", Err: fmt.Errorf("%w: required (CreateEntry stores a key without a value)", bridge.ErrInvalidArgument)}
	}
	if err := s.canWriteKey(ctx, req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	rev, err := kv.Update(ctx, req.GetKey(), req.GetValue(), req.GetRevision())
	if err != nil {
		return nil, translateCAS(err, "update "+what(req.GetBucket(), req.GetKey()))
	}
	return &jetwayv1.UpdateEntryResponse{Revision: rev}, nil
}

// DeleteEntry marks a key deleted.
func (s *Service) DeleteEntry(ctx context.Context, req *jetwayv1.DeleteEntryRequest) (*jetwayv1.DeleteEntryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.canWriteKey(ctx, req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	var opts []jetstream.KVDeleteOpt
	if r := req.GetLastRevision(); r != 0 {
		opts = append(opts, jetstream.LastRevision(r))
	}
	if err := kv.Delete(ctx, req.GetKey(), opts...); err != nil {
		return nil, translateCAS(err, "delete "+what(req.GetBucket(), req.GetKey()))
	}
	return &jetwayv1.DeleteEntryResponse{}, nil
}

// PurgeEntry purges a key.
func (s *Service) PurgeEntry(ctx context.Context, req *jetwayv1.PurgeEntryRequest) (*jetwayv1.PurgeEntryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	ttl, err := duration("marker_ttl", req.GetMarkerTtl())
	if err != nil {
		return nil, err
	}
	if err := s.canWriteKey(ctx, req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	var opts []jetstream.KVDeleteOpt
	if r := req.GetLastRevision(); r != 0 {
		opts = append(opts, jetstream.LastRevision(r))
	}
	if ttl > 0 {
		opts = append(opts, jetstream.PurgeTTL(ttl))
	}
	if err := kv.Purge(ctx, req.GetKey(), opts...); err != nil {
		return nil, translateCAS(err, "purge "+what(req.GetBucket(), req.GetKey())+ttlHint(err))
	}
	return &jetwayv1.PurgeEntryResponse{}, nil
}

// GetHistory returns a key's stored revisions.
func (s *Service) GetHistory(ctx context.Context, req *jetwayv1.GetHistoryRequest) (*jetwayv1.GetHistoryResponse, error) {
	if err := key(req.GetBucket(), req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.canRead(ctx, req.GetBucket(), []string{req.GetKey()}); err != nil {
		return nil, err
	}
	kv, err := s.open(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	es, err := kv.History(ctx, req.GetKey())
	if err != nil {
		return nil, translate(err, "history of "+what(req.GetBucket(), req.GetKey()))
	}
	out := &jetwayv1.GetHistoryResponse{Entries: make([]*jetwayv1.KVEntry, 0, len(es))}
	for _, e := range es {
		out.Entries = append(out.Entries, entryTo(e))
	}
	return out, nil
}

// keysChunk is the most keys one ListKeysResponse carries.
const keysChunk = 1000

// ListKeys streams the keys that have a value.
func (s *Service) ListKeys(req *jetwayv1.ListKeysRequest, stream jetwayv1.KVService_ListKeysServer) error {
	ctx := stream.Context()
	if err := validateBucket("bucket", req.GetBucket()); err != nil {
		return err
	}
	if err := validatePatterns("filters", req.GetBucket(), req.GetFilters()); err != nil {
		return err
	}
	if err := s.canRead(ctx, req.GetBucket(), req.GetFilters()); err != nil {
		return err
	}
	js, release, err := s.conns.Acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	kv, err := s.bucket(ctx, js, req.GetBucket())
	if err != nil {
		return err
	}
	var kl jetstream.KeyLister
	if f := req.GetFilters(); len(f) > 0 {
		kl, err = kv.ListKeysFiltered(ctx, slices.Clone(f)...)
	} else {
		kl, err = kv.ListKeys(ctx)
	}
	if err != nil {
		return translate(err, fmt.Sprintf("keys of bucket %q", req.GetBucket()))
	}
	keys := kl.Keys()
	defer stopDrain(kl.Stop, keys)
	chunk := make([]string, 0, keysChunk)
	sent := false
	flush := func() error {
		if len(chunk) == 0 && sent {
			return nil
		}
		sent = true
		err := stream.Send(&jetwayv1.ListKeysResponse{Keys: chunk})
		chunk = chunk[:0]
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.drained:
			return errDraining
		case k, ok := <-keys:
			if !ok {
				return flush()
			}
			chunk = append(chunk, k)
			if len(chunk) == keysChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
}

// stopDrain stops a watcher or key lister and takes what its channel
// still holds, for a bounded time, so that nats.go's delivery goroutine
// (blocked on a full channel) can see the subscription closed and end.
func stopDrain[T any](stop func() error, ch <-chan T) {
	_ = stop()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}

// Watch heartbeats.
const (
	defaultHeartbeat = 15 * time.Second
	minHeartbeat     = time.Second
	maxHeartbeat     = 5 * time.Minute
)

// WatchBucket streams a bucket's updates.
func (s *Service) WatchBucket(req *jetwayv1.WatchBucketRequest, stream jetwayv1.KVService_WatchBucketServer) error {
	ctx := stream.Context()
	if err := validateBucket("bucket", req.GetBucket()); err != nil {
		return err
	}
	if err := validatePatterns("keys", req.GetBucket(), req.GetKeys()); err != nil {
		return err
	}
	hb := defaultHeartbeat
	if d := req.GetHeartbeat(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < minHeartbeat || d.AsDuration() > maxHeartbeat {
			return &bridge.FieldError{Field: "heartbeat", Err: fmt.Errorf("%w: %v to %v", bridge.ErrInvalidArgument, minHeartbeat, maxHeartbeat)}
		}
		hb = d.AsDuration()
	}
	resume := req.GetResumeFromRevision()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(bridge.LastEventIDMetadata); len(v) > 0 && v[0] != "" {
			last, err := strconv.ParseUint(v[0], 10, 64)
			if err != nil || last == 0 {
				return &bridge.FieldError{Field: "Last-Event-ID", Err: fmt.Errorf("%w: a revision", bridge.ErrInvalidArgument)}
			}
			resume = last + 1
		}
	}
	if err := s.canRead(ctx, req.GetBucket(), req.GetKeys()); err != nil {
		return err
	}
	select {
	case <-s.drained:
		return errDraining
	default:
	}
	js, release, err := s.conns.Acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	kv, err := s.bucket(ctx, js, req.GetBucket())
	if err != nil {
		return err
	}
	var opts []jetstream.WatchOpt
	if req.GetIncludeHistory() {
		opts = append(opts, jetstream.IncludeHistory())
	}
	if req.GetUpdatesOnly() && resume == 0 {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	if req.GetIgnoreDeletes() {
		opts = append(opts, jetstream.IgnoreDeletes())
	}
	if req.GetMetaOnly() {
		opts = append(opts, jetstream.MetaOnly())
	}
	if resume > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(resume))
	}
	w, err := kv.WatchFiltered(ctx, slices.Clone(req.GetKeys()), opts...)
	if err != nil {
		return translate(err, fmt.Sprintf("watch bucket %q", req.GetBucket()))
	}
	updates := w.Updates()
	defer stopDrain(w.Stop, updates)
	if req.GetUpdatesOnly() && resume == 0 {
		// nats.go sends no marker for updates only: there are no initial
		// values, so the stream says so at once.
		if err := stream.Send(&jetwayv1.WatchBucketResponse{Event: &jetwayv1.WatchBucketResponse_Initialized{Initialized: &jetwayv1.WatchInitialized{}}}); err != nil {
			return err
		}
	}
	tick := time.NewTicker(hb)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.drained:
			return errDraining
		case <-tick.C:
			if err := stream.Send(&jetwayv1.WatchBucketResponse{Event: &jetwayv1.WatchBucketResponse_Heartbeat{Heartbeat: &jetwayv1.WatchHeartbeat{}}}); err != nil {
				return err
			}
		case e, ok := <-updates:
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("%w: watch of bucket %q ended (NATS connection closed); reconnect to resume", bridge.ErrUnavailable, req.GetBucket())
			}
			tick.Reset(hb)
			var ev *jetwayv1.WatchBucketResponse
			if e == nil {
				ev = &jetwayv1.WatchBucketResponse{Event: &jetwayv1.WatchBucketResponse_Initialized{Initialized: &jetwayv1.WatchInitialized{}}}
			} else {
				ev = &jetwayv1.WatchBucketResponse{Event: &jetwayv1.WatchBucketResponse_Entry{Entry: entryTo(e)}}
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
