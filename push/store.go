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
const Bucket = "JETWAY_PUSH"

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

// bucket opens the bucket, creating it when it is missing.
func (s *Service) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	js, err := s.js(ctx)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      Bucket,
			Description: "Jetway push subscriptions (issue 19): one key per subscription",
			History:     1,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another replica made it first.
			kv, err = js.KeyValue(ctx, Bucket)
		}
	}
	if err != nil {
		return nil, bridge.JetStreamError(err, "push subscriptions bucket "+Bucket)
	}
	return kv, nil
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
