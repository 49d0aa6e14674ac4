package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

const (
	maxNameLen        = 64
	maxDescriptionLen = 256
)

func invalid(field string, sentinel error, format string, args ...any) error {
	return &bridge.FieldError{Field: field, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}

// validateSubName checks a subscription name: letters, digits, '-' and
// '_' (a key of the bucket, and a word in the TERM reason).
func validateSubName(field, name string) error {
	if name == "" {
		return invalid(field, bridge.ErrInvalidName, "required")
	}
	if len(name) > maxNameLen {
		return invalid(field, bridge.ErrInvalidName, "longer than %d characters", maxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return invalid(field, bridge.ErrInvalidName, "%q: letters, digits, '-' and '_' only", name)
		}
	}
	return nil
}

// settings validates the settings of a subscription given by a client
// into r (stored is the record it replaces, nil at create: an endpoint
// sent back as Get showed it, redacted, keeps the stored one).
func (s *Service) settings(ctx context.Context, p *jetwayv1.PushSubscription, r *record, stored *record) error {
	const f = "subscription."
	endpoint := p.GetEndpoint()
	if stored != nil {
		if su, err := url.Parse(stored.Endpoint); err == nil && endpoint == redact(su) {
			endpoint = stored.Endpoint
		}
	}
	u, err := parseEndpoint(f+"endpoint", endpoint)
	if err != nil {
		return err
	}
	if !s.allowPriv {
		if err := checkHost(ctx, f+"endpoint", u); err != nil {
			return err
		}
	}
	c := int(p.GetConcurrency())
	switch {
	case c == 0:
		c = DefaultConcurrency
	case c < 0 || c > MaxConcurrency:
		return invalid(f+"concurrency", bridge.ErrInvalidArgument, "1 to %d (0: %d)", MaxConcurrency, DefaultConcurrency)
	}
	timeout := DefaultTimeout
	if t := p.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return invalid(f+"timeout", bridge.ErrInvalidArgument, "not a duration")
		}
		switch d := t.AsDuration(); {
		case d == 0:
		case d < time.Millisecond || d > MaxTimeout:
			return invalid(f+"timeout", bridge.ErrInvalidArgument, "1ms to %s (0: %s)", MaxTimeout, DefaultTimeout)
		default:
			timeout = d
		}
	}
	mode := modeRaw
	switch p.GetContentMode() {
	case jetwayv1.PushContentMode_PUSH_CONTENT_MODE_UNSPECIFIED, jetwayv1.PushContentMode_PUSH_CONTENT_MODE_RAW:
	case jetwayv1.PushContentMode_PUSH_CONTENT_MODE_CLOUDEVENTS_BINARY:
		mode = modeCloudEvents
	default:
		return invalid(f+"content_mode", bridge.ErrInvalidArgument, "raw or CloudEvents binary")
	}
	if d := p.GetDescription(); len(d) > maxDescriptionLen || !utf8.ValidString(d) {
		return invalid(f+"description", bridge.ErrInvalidArgument, "at most %d bytes of UTF-8", maxDescriptionLen)
	}
	r.Endpoint, r.Concurrency, r.Timeout, r.ContentMode = endpoint, c, timeout, mode
	r.Paused, r.Description = p.GetPaused(), p.GetDescription()
	return nil
}

// canWrite: creating, changing or deleting a subscription administers its
// stream and consumes its consumer (the endpoint gets its messages).
func (s *Service) canWrite(ctx context.Context, stream, consumer string) error {
	if err := s.authz.CanAdmin(ctx, stream, true); err != nil {
		return err
	}
	return s.authz.CanConsume(ctx, stream, consumer)
}

// checkConsumer: the consumer must exist and be a durable pull consumer
// with explicit acks.
func (s *Service) checkConsumer(ctx context.Context, stream, consumer string) error {
	js, err := s.js(ctx)
	if err != nil {
		return err
	}
	c, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return bridge.JetStreamError(err, fmt.Sprintf("consumer %q on stream %q", consumer, stream))
	}
	cfg := c.CachedInfo().Config
	switch {
	case cfg.Durable == "" && cfg.InactiveThreshold > 0:
		return invalid("subscription.consumer", bridge.ErrInvalidArgument, "consumer %q is ephemeral: push needs a durable", consumer)
	case cfg.DeliverSubject != "":
		return invalid("subscription.consumer", bridge.ErrInvalidArgument, "consumer %q is a push consumer: push needs a pull consumer", consumer)
	case cfg.AckPolicy != jetstream.AckExplicitPolicy:
		return invalid("subscription.consumer", bridge.ErrInvalidArgument, "consumer %q does not use explicit acks", consumer)
	case len(cfg.PriorityGroups) > 0:
		return invalid("subscription.consumer", bridge.ErrInvalidArgument, "consumer %q has priority groups: push pulls without a group", consumer)
	}
	return nil
}

// visible loads subscription name for a caller who may see its stream; a
// caller who may not gets NOT_FOUND, as for a name that is not there.
func (s *Service) visible(ctx context.Context, kv jetstream.KeyValue, name string) (record, uint64, error) {
	r, rev, err := s.load(ctx, kv, name)
	if err != nil {
		return record{}, 0, err
	}
	if !s.authz.CanSee(ctx, r.Stream) {
		return record{}, 0, fmt.Errorf("push subscription %q: %w", name, bridge.ErrPushSubscriptionNotFound)
	}
	return r, rev, nil
}

// CreatePushSubscription creates a subscription and answers its secret.
func (s *Service) CreatePushSubscription(ctx context.Context, req *jetwayv1.CreatePushSubscriptionRequest) (*jetwayv1.CreatePushSubscriptionResponse, error) {
	p := req.GetSubscription()
	if p == nil {
		return nil, invalid("subscription", bridge.ErrInvalidArgument, "required")
	}
	if err := validateSubName("subscription.name", p.GetName()); err != nil {
		return nil, err
	}
	if err := bridge.ValidateName("subscription.stream", p.GetStream()); err != nil {
		return nil, err
	}
	if err := bridge.ValidateName("subscription.consumer", p.GetConsumer()); err != nil {
		return nil, err
	}
	r := record{Name: p.GetName(), Stream: p.GetStream(), Consumer: p.GetConsumer()}
	if err := s.settings(ctx, p, &r, nil); err != nil {
		return nil, err
	}
	if err := s.canWrite(ctx, r.Stream, r.Consumer); err != nil {
		return nil, err
	}
	if err := s.checkConsumer(ctx, r.Stream, r.Consumer); err != nil {
		return nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	r.Secret, r.Identity, r.Created, r.Updated = secret, s.authz.Identity(ctx), now, now
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("push: encode: %w", err)
	}
	kv, err := s.bucket(ctx, true)
	if err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, r.Name, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("push subscription %q: %w", r.Name, bridge.ErrPushSubscriptionExists)
		}
		return nil, bridge.JetStreamError(err, fmt.Sprintf("create push subscription %q", r.Name))
	}
	s.log.InfoContext(ctx, "push subscription created", "subscription", r.Name, "stream", r.Stream, "consumer", r.Consumer, "endpoint", origin(mustParse(r.Endpoint)))
	return &jetwayv1.CreatePushSubscriptionResponse{Subscription: toProto(r, nil), Secret: secret}, nil
}

// GetPushSubscription returns a subscription and the fleet's state of it.
func (s *Service) GetPushSubscription(ctx context.Context, req *jetwayv1.GetPushSubscriptionRequest) (*jetwayv1.GetPushSubscriptionResponse, error) {
	if err := validateSubName("name", req.GetName()); err != nil {
		return nil, err
	}
	kv, err := s.openBucket(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	r, _, err := s.visible(ctx, kv, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, r.Stream, false); err != nil {
		return nil, err
	}
	fs := s.gatherStates(ctx, []string{r.Name})
	return &jetwayv1.GetPushSubscriptionResponse{Subscription: fs.withStates(toProto(r, nil)), Partial: fs.partial, ReplicasMissing: fs.replicasMissing}, nil
}

// ListPushSubscriptions returns the subscriptions on streams the caller
// may see, each with the fleet's state of it.
func (s *Service) ListPushSubscriptions(ctx context.Context, req *jetwayv1.ListPushSubscriptionsRequest) (*jetwayv1.ListPushSubscriptionsResponse, error) {
	if st := req.GetStream(); st != "" {
		if err := bridge.ValidateName("stream", st); err != nil {
			return nil, err
		}
	}
	kv, err := s.bucket(ctx, false)
	if errors.Is(err, errNoBucket) {
		return &jetwayv1.ListPushSubscriptionsResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, bridge.JetStreamError(err, "list push subscriptions")
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	slices.Sort(names)
	out := &jetwayv1.ListPushSubscriptionsResponse{}
	for _, name := range names {
		r, _, err := s.load(ctx, kv, name)
		if errors.Is(err, bridge.ErrPushSubscriptionNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if (req.GetStream() != "" && r.Stream != req.GetStream()) || !s.authz.CanSee(ctx, r.Stream) {
			continue
		}
		out.Subscriptions = append(out.Subscriptions, toProto(r, nil))
	}
	if len(out.Subscriptions) == 0 {
		return out, nil // nothing to ask the fleet about
	}
	shown := make([]string, len(out.Subscriptions))
	for i, p := range out.Subscriptions {
		shown[i] = p.GetName()
	}
	fs := s.gatherStates(ctx, shown)
	for _, p := range out.Subscriptions {
		fs.withStates(p)
	}
	out.Partial, out.ReplicasMissing = fs.partial, fs.replicasMissing
	return out, nil
}

// UpdatePushSubscription replaces a subscription's settings.
func (s *Service) UpdatePushSubscription(ctx context.Context, req *jetwayv1.UpdatePushSubscriptionRequest) (*jetwayv1.UpdatePushSubscriptionResponse, error) {
	p := req.GetSubscription()
	if p == nil {
		return nil, invalid("subscription", bridge.ErrInvalidArgument, "required")
	}
	if err := validateSubName("subscription.name", p.GetName()); err != nil {
		return nil, err
	}
	kv, err := s.openBucket(ctx, p.GetName())
	if err != nil {
		return nil, err
	}
	stored, rev, err := s.visible(ctx, kv, p.GetName())
	if err != nil {
		return nil, err
	}
	if p.GetStream() != "" && p.GetStream() != stored.Stream {
		return nil, invalid("subscription.stream", bridge.ErrInvalidArgument, "is %q and cannot change: delete the subscription and create another", stored.Stream)
	}
	if p.GetConsumer() != "" && p.GetConsumer() != stored.Consumer {
		return nil, invalid("subscription.consumer", bridge.ErrInvalidArgument, "is %q and cannot change: delete the subscription and create another", stored.Consumer)
	}
	if err := s.canWrite(ctx, stored.Stream, stored.Consumer); err != nil {
		return nil, err
	}
	r := stored
	if err := s.settings(ctx, p, &r, &stored); err != nil {
		return nil, err
	}
	var secret string
	if req.GetRotateSecret() {
		if secret, err = newSecret(); err != nil {
			return nil, err
		}
		r.Secret = secret
	}
	r.Identity, r.Updated = s.authz.Identity(ctx), time.Now().UTC()
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("push: encode: %w", err)
	}
	if _, err := kv.Update(ctx, r.Name, data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("push subscription %q changed meanwhile: %w; read it again and retry", r.Name, bridge.ErrWrongRevision)
		}
		return nil, bridge.JetStreamError(err, fmt.Sprintf("update push subscription %q", r.Name))
	}
	s.log.InfoContext(ctx, "push subscription updated", "subscription", r.Name, "endpoint", origin(mustParse(r.Endpoint)), "paused", r.Paused, "secret_rotated", secret != "")
	return &jetwayv1.UpdatePushSubscriptionResponse{Subscription: toProto(r, nil), Secret: secret}, nil
}

// DeletePushSubscription deletes a subscription.
func (s *Service) DeletePushSubscription(ctx context.Context, req *jetwayv1.DeletePushSubscriptionRequest) (*jetwayv1.DeletePushSubscriptionResponse, error) {
	if err := validateSubName("name", req.GetName()); err != nil {
		return nil, err
	}
	kv, err := s.openBucket(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	r, rev, err := s.visible(ctx, kv, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.canWrite(ctx, r.Stream, r.Consumer); err != nil {
		return nil, err
	}
	if err := kv.Delete(ctx, r.Name, jetstream.LastRevision(rev)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("push subscription %q changed meanwhile: %w; read it again and retry", r.Name, bridge.ErrWrongRevision)
		}
		return nil, bridge.JetStreamError(err, fmt.Sprintf("delete push subscription %q", r.Name))
	}
	s.log.InfoContext(ctx, "push subscription deleted", "subscription", r.Name)
	return &jetwayv1.DeletePushSubscriptionResponse{}, nil
}

// openBucket opens the bucket for a call on a named subscription: none
// yet means no such subscription.
func (s *Service) openBucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	kv, err := s.bucket(ctx, false)
	if errors.Is(err, errNoBucket) {
		return nil, fmt.Errorf("push subscription %q: %w", name, bridge.ErrPushSubscriptionNotFound)
	}
	return kv, err
}

func mustParse(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// toProto is a record as clients see it: no secret, the endpoint redacted.
func toProto(r record, st *jetwayv1.PushSubscriptionState) *jetwayv1.PushSubscription {
	mode := jetwayv1.PushContentMode_PUSH_CONTENT_MODE_RAW
	if r.ContentMode == modeCloudEvents {
		mode = jetwayv1.PushContentMode_PUSH_CONTENT_MODE_CLOUDEVENTS_BINARY
	}
	endpoint := redact(mustParse(r.Endpoint))
	if !strings.Contains(endpoint, "…") {
		endpoint = r.Endpoint
	}
	return &jetwayv1.PushSubscription{
		Name: r.Name, Stream: r.Stream, Consumer: r.Consumer, Endpoint: endpoint,
		Concurrency: int32(r.Concurrency), Timeout: durationpb.New(r.Timeout), ContentMode: mode,
		Paused: r.Paused, Description: r.Description, Identity: r.Identity,
		Created: timestamppb.New(r.Created), Updated: timestamppb.New(r.Updated), State: st,
	}
}
