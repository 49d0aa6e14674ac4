package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
)

// Bucket is the JetStream key-value bucket holding the push
// subscriptions, one key per subscription name. Every replica watches it.
const Bucket = bridge.PushBucket

// Content modes as stored.
const (
	modeRaw         = "raw"
	modeCloudEvents = "cloudevents-binary"
)

// record is a subscription as stored in the bucket (JSON). The secret is
// in it: whoever may read the bucket's stream natively (KV_JETWAY_PUSH)
// can sign as the bridge.
type record struct {
	Name        string        `json:"name"`
	Stream      string        `json:"stream"`
	Consumer    string        `json:"consumer"`
	Endpoint    string        `json:"endpoint"`
	Concurrency int           `json:"concurrency"`
	Timeout     time.Duration `json:"timeout"`
	ContentMode string        `json:"content_mode"`
	Paused      bool          `json:"paused,omitempty"`
	Description string        `json:"description,omitempty"`
	Secret      string        `json:"secret"`
	Identity    string        `json:"identity,omitempty"`
	Created     time.Time     `json:"created"`
	Updated     time.Time     `json:"updated"`
}

// decodeRecord parses a stored record, checking what delivery relies on.
func decodeRecord(data []byte) (record, *url.URL, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return record{}, nil, fmt.Errorf("push: stored subscription: %w", err)
	}
	u, err := parseEndpoint("endpoint", r.Endpoint)
	if err != nil {
		return record{}, nil, fmt.Errorf("push: stored subscription %q: %w", r.Name, err)
	}
	if _, err := secretKey(r.Secret); err != nil {
		return record{}, nil, fmt.Errorf("push: stored subscription %q: %w", r.Name, err)
	}
	if r.Concurrency < 1 || r.Concurrency > MaxConcurrency {
		r.Concurrency = DefaultConcurrency
	}
	if r.Timeout <= 0 || r.Timeout > MaxTimeout {
		r.Timeout = DefaultTimeout
	}
	return r, u, nil
}

// jsReplicasNotSupported is JetStream's JSStreamReplicasNotSupportedErr:
// more than one replica asked of a server that is not clustered.
const jsReplicasNotSupported jetstream.ErrorCode = 10074

// errNoBucket is the bucket not there yet: no subscription was ever made.
var errNoBucket = errors.New("push: no subscriptions bucket yet")

// bucket opens the bucket; with create it makes it when it is missing
// (the first CreatePushSubscription), else a missing bucket is
// errNoBucket. The bucket is made only when needed: a bridge whose users
// never push adds no stream to their account.
func (s *Service) bucket(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	js, err := s.js(ctx)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if !create {
			return nil, errNoBucket
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      Bucket,
			Description: "Jetway push subscriptions (issue 19): one key per subscription",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    s.replicas,
		})
		var apiErr *jetstream.APIError
		switch {
		case errors.Is(err, jetstream.ErrBucketExists):
			// Another replica made it first.
			kv, err = js.KeyValue(ctx, Bucket)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jsReplicasNotSupported:
			// The operator's --push-replicas, not the caller's request.
			return nil, fmt.Errorf("push subscriptions bucket %s: %w: this bridge makes it with %d replicas (--push-replicas) and NATS is not clustered: start the bridge with --push-replicas 1", Bucket, bridge.ErrInvalidConfig, s.replicas)
		}
		if err == nil {
			s.poke()
		}
	}
	if err != nil {
		return nil, bridge.JetStreamError(err, "push subscriptions bucket "+Bucket)
	}
	return kv, nil
}

// bucketExists asks whether the bucket's stream is there by listing
// stream names (no API error when it is not, unlike a stream info).
func bucketExists(ctx context.Context, js jetstream.JetStream) (bool, error) {
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject("$KV."+Bucket+".>"))
	found := false
	for n := range names.Name() {
		if n == "KV_"+Bucket {
			found = true
		}
	}
	if err := names.Err(); err != nil {
		return false, bridge.JetStreamError(err, "list streams")
	}
	return found, nil
}

// load reads subscription name and its revision.
func (s *Service) load(ctx context.Context, kv jetstream.KeyValue, name string) (record, uint64, error) {
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return record{}, 0, fmt.Errorf("push subscription %q: %w", name, bridge.ErrPushSubscriptionNotFound)
	}
	if err != nil {
		return record{}, 0, bridge.JetStreamError(err, fmt.Sprintf("push subscription %q", name))
	}
	r, _, err := decodeRecord(e.Value())
	if err != nil {
		return record{}, 0, err
	}
	return r, e.Revision(), nil
}
