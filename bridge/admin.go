package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// jetStreamAdmin is what the admin service needs of JetStream: its stream
// and consumer managers and account info (role interfaces of nats.go).
type jetStreamAdmin interface {
	jetstream.StreamManager
	jetstream.StreamConsumerManager
	AccountInfo(ctx context.Context) (*jetstream.AccountInfo, error)
}

var _ jetStreamAdmin = jetstream.JetStream(nil)

type adminService struct {
	jetwayv1.UnimplementedAdminServiceServer

	conns ConnProvider
	log   *slog.Logger
	authz Authorizer
	fleet *fleet
	// caps bounds reads of many messages (ListMessages, GetLastMessages)
	// as it bounds Fetch: MaxBytes.
	caps Caps
}

// jetstream is the JetStream the call runs on: the bridge's own, or the
// caller's (identity propagation).
func (s *adminService) jetstream(ctx context.Context) (jetStreamAdmin, error) {
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	return js, nil
}

func (s *adminService) CreateStream(ctx context.Context, req *jetwayv1.CreateStreamRequest) (*jetwayv1.CreateStreamResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := streamConfigFrom("config", req.GetConfig())
	if err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, cfg.Name, true); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdminSubjects(ctx, "config.subjects", capturedSubjects(cfg)); err != nil {
		return nil, err
	}
	if err := s.authorizeStreamExtras(ctx, "config", cfg, nil); err != nil {
		return nil, err
	}
	if cfg.Sealed {
		return nil, fieldErr("config.sealed", ErrInvalidConfig, "a stream can only be sealed by an update")
	}
	st, err := js.CreateStream(ctx, cfg)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("create stream %q", cfg.Name))
	}
	return &jetwayv1.CreateStreamResponse{Stream: streamInfoTo(st.CachedInfo())}, nil
}

// UpdateStream changes a stream. Without update_mask the request's
// configuration replaces the current one (keeping what the API does not
// model, see keepUnmodeled, and the settings JetStream refuses to change
// where the request leaves them unset, see keepUnset). With one, the
// named fields of the request are put on the current configuration as
// JetStream holds it, and the result is validated and authorized exactly
// as a full update.
func (s *adminService) UpdateStream(ctx context.Context, req *jetwayv1.UpdateStreamRequest) (*jetwayv1.UpdateStreamResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	c := req.GetConfig()
	masked := len(req.GetUpdateMask().GetPaths()) > 0
	if masked {
		if c == nil {
			return nil, fieldErr("config", ErrInvalidArgument, "required")
		}
		if err := validateName("config.name", c.GetName()); err != nil {
			return nil, err
		}
		// The paths are checked before anything is read.
		if _, err := applyUpdateMask(req.GetUpdateMask(), c, &jetwayv1.StreamConfig{}); err != nil {
			return nil, err
		}
	} else if _, err := streamConfigFrom("config", c); err != nil {
		return nil, err
	}
	name := c.GetName()
	if err := s.authz.CanAdmin(ctx, name, true); err != nil {
		return nil, err
	}
	cur, err := js.Stream(ctx, name)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("update stream %q", name))
	}
	curCfg := cur.CachedInfo().Config
	if masked {
		if c, err = applyUpdateMask(req.GetUpdateMask(), c, streamConfigTo(curCfg)); err != nil {
			return nil, err
		}
	}
	cfg, err := streamConfigFrom("config", c)
	if err != nil {
		return nil, err
	}
	// What the stream captures already was given by whoever set it up;
	// the caller's grant bounds what the update adds (so a stream admin
	// can change the limits of a stream an operator gave it).
	was := capturedSubjects(curCfg)
	var added []string
	for _, subj := range capturedSubjects(cfg) {
		if !slices.Contains(was, subj) {
			added = append(added, subj)
		}
	}
	if err := s.authz.CanAdminSubjects(ctx, "config.subjects", added); err != nil {
		return nil, err
	}
	if err := s.authorizeStreamExtras(ctx, "config", cfg, &curCfg); err != nil {
		return nil, err
	}
	keepUnset(&cfg, c, curCfg)
	keepUnmodeled(&cfg, curCfg)
	st, err := js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("update stream %q", name))
	}
	return &jetwayv1.UpdateStreamResponse{Stream: streamInfoTo(st.CachedInfo())}, nil
}

// keepUnmodeled copies into an update the settings of the stream's
// current configuration that the API does not model, so that an update
// (a GetStream, an edit, an UpdateStream) never removes what it cannot
// express. Since issue 18 the API models every setting of nats.go's
// StreamConfig but the deprecated stream template (nats-server removed
// templates in 2.11). TestKeepUnmodeledCoversStreamConfig fails when
// nats.go grows a field that is in neither list. (Read and update are two
// calls: an update made natively in between can be overwritten, as with
// any read-modify-write.)
func keepUnmodeled(cfg *jetstream.StreamConfig, cur jetstream.StreamConfig) {
	cfg.Template = cur.Template
}

// keepUnmodeledConsumer carries into a consumer update the settings of the
// current configuration the API's ConsumerConfig does not carry: its
// replay policy (JetStream refuses to change it), ack sampling
// (sample_freq, set natively for latency advisories), a push consumer's
// delivery (deliver subject and group, flow control, idle heartbeat, rate
// limit: the bridge only pulls, but an update must not turn a native push
// consumer into a pull one), and nats.go's Name (the API names a consumer
// by Durable). TestKeepUnmodeledCoversConsumerConfig fails when nats.go
// grows a field that is in neither list.
func keepUnmodeledConsumer(cfg *jetstream.ConsumerConfig, cur jetstream.ConsumerConfig) {
	cfg.Name = cur.Name
	cfg.ReplayPolicy = cur.ReplayPolicy
	cfg.SampleFrequency = cur.SampleFrequency
	cfg.RateLimit = cur.RateLimit
	cfg.DeliverSubject = cur.DeliverSubject
	cfg.DeliverGroup = cur.DeliverGroup
	cfg.FlowControl = cur.FlowControl
	cfg.IdleHeartbeat = cur.IdleHeartbeat
}

// capturedSubjects are the subjects a stream configuration makes the
// stream store: its subjects, or its name when it lists none (JetStream's
// default). What mirrors, sources, transforms and republish bring in or
// send out is authorized by authorizeStreamExtras.
func capturedSubjects(cfg jetstream.StreamConfig) []string {
	if len(cfg.Subjects) == 0 {
		return []string{cfg.Name}
	}
	return cfg.Subjects
}

// stream checks the caller's admin right on a stream (write or read) and
// looks the stream up by a validated name.
func (s *adminService) stream(ctx context.Context, field, name string, write bool) (jetstream.Stream, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateName(field, name); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, name, write); err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("stream %q", name))
	}
	return st, nil
}

func (s *adminService) GetStream(ctx context.Context, req *jetwayv1.GetStreamRequest) (*jetwayv1.GetStreamResponse, error) {
	st, err := s.stream(ctx, "name", req.GetName(), false)
	if err != nil {
		return nil, err
	}
	return &jetwayv1.GetStreamResponse{Stream: streamInfoTo(st.CachedInfo())}, nil
}

// ListStreams reads every stream (JetStream pages them 256 at a time),
// sorts them by name and returns the requested page. Page tokens are
// offsets: a stream created or deleted between pages shifts the next page.
func (s *adminService) ListStreams(ctx context.Context, req *jetwayv1.ListStreamsRequest) (*jetwayv1.ListStreamsResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pageSize("page_size", req.GetPageSize())
	if err != nil {
		return nil, err
	}
	offset, err := parsePageToken("page_token", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var opts []jetstream.StreamListOpt
	if subj := req.GetSubject(); subj != "" {
		if err := validateFilterSubject("subject", subj); err != nil {
			return nil, err
		}
		opts = append(opts, jetstream.WithStreamListSubject(subj))
	}
	if err := s.authz.CanAdmin(ctx, "", false); err != nil {
		return nil, err
	}
	lister := js.ListStreams(ctx, opts...)
	var all []*jetstream.StreamInfo
	for info := range lister.Info() {
		// Listings show only what the caller may see.
		if s.authz.CanSee(ctx, info.Config.Name) {
			all = append(all, info)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, translate(err, "list streams")
	}
	slices.SortFunc(all, func(a, b *jetstream.StreamInfo) int { return strings.Compare(a.Config.Name, b.Config.Name) })
	page, next := paginate(all, offset, size)
	resp := &jetwayv1.ListStreamsResponse{NextPageToken: next}
	for _, info := range page {
		resp.Streams = append(resp.Streams, streamInfoTo(info))
	}
	return resp, nil
}

// paginate returns items[offset:offset+size] and the token of what follows.
func paginate[T any](items []T, offset, size int) ([]T, string) {
	if offset >= len(items) {
		return nil, ""
	}
	end := min(offset+size, len(items))
	next := ""
	if end < len(items) {
		next = pageToken(end)
	}
	return items[offset:end], next
}

func (s *adminService) DeleteStream(ctx context.Context, req *jetwayv1.DeleteStreamRequest) (*jetwayv1.DeleteStreamResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, req.GetName(), true); err != nil {
		return nil, err
	}
	if err := js.DeleteStream(ctx, req.GetName()); err != nil {
		return nil, translate(err, fmt.Sprintf("delete stream %q", req.GetName()))
	}
	return &jetwayv1.DeleteStreamResponse{}, nil
}

func (s *adminService) PurgeStream(ctx context.Context, req *jetwayv1.PurgeStreamRequest) (*jetwayv1.PurgeStreamResponse, error) {
	var opts []jetstream.StreamPurgeOpt
	if subj := req.GetSubject(); subj != "" {
		if err := validateFilterSubject("subject", subj); err != nil {
			return nil, err
		}
		opts = append(opts, jetstream.WithPurgeSubject(subj))
	}
	if req.GetKeep() > 0 && req.GetSequence() > 0 {
		return nil, fieldErr("keep", ErrInvalidArgument, "cannot be combined with sequence")
	}
	if req.GetKeep() > 0 {
		opts = append(opts, jetstream.WithPurgeKeep(req.GetKeep()))
	}
	if req.GetSequence() > 0 {
		opts = append(opts, jetstream.WithPurgeSequence(req.GetSequence()))
	}
	if _, err := s.stream(ctx, "name", req.GetName(), true); err != nil {
		return nil, err
	}
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	n, err := purge(ctx, js, req.GetName(), opts)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("purge stream %q", req.GetName()))
	}
	return &jetwayv1.PurgeStreamResponse{Purged: n}, nil
}

// purgeReply is JetStream's answer to a purge (nats-server's
// JSApiStreamPurgeResponse).
type purgeReply struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Success bool                `json:"success,omitempty"`
	Purged  uint64              `json:"purged"`
}

// purge purges a stream and returns how many messages it removed.
// nats.go's Stream.Purge drops that count (it returns only an error), so
// the bridge sends the JetStream API request itself
// ($JS.API.STREAM.PURGE.<stream>), with nats.go's own request type and
// options.
func purge(ctx context.Context, js jetstream.JetStream, stream string, opts []jetstream.StreamPurgeOpt) (uint64, error) {
	var req jetstream.StreamPurgeRequest
	for _, o := range opts {
		if err := o(&req); err != nil {
			return 0, err
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("encode purge request: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.PURGE."+stream, body)
	if err != nil {
		return 0, err
	}
	var reply purgeReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return 0, fmt.Errorf("decode purge answer: %w", err)
	}
	if reply.Error != nil {
		return 0, reply.Error
	}
	return reply.Purged, nil
}

func (s *adminService) CreateConsumer(ctx context.Context, req *jetwayv1.CreateConsumerRequest) (*jetwayv1.CreateConsumerResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	info, err := s.putConsumer(ctx, "create", req.GetStream(), req.GetConfig(), js.CreateConsumer)
	if err != nil {
		return nil, err
	}
	return &jetwayv1.CreateConsumerResponse{Consumer: info}, nil
}

func (s *adminService) UpdateConsumer(ctx context.Context, req *jetwayv1.UpdateConsumerRequest) (*jetwayv1.UpdateConsumerResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	update := func(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
		// A consumer that does not exist is left to UpdateConsumer to
		// refuse; one that does keeps what the API does not carry.
		if cur, err := js.Consumer(ctx, stream, cfg.Durable); err == nil {
			keepUnmodeledConsumer(&cfg, cur.CachedInfo().Config)
		}
		return js.UpdateConsumer(ctx, stream, cfg)
	}
	info, err := s.putConsumer(ctx, "update", req.GetStream(), req.GetConfig(), update)
	if err != nil {
		return nil, err
	}
	return &jetwayv1.UpdateConsumerResponse{Consumer: info}, nil
}

// putConsumer validates a consumer configuration and creates or updates it
// with put (verb names the operation in errors).
func (s *adminService) putConsumer(ctx context.Context, verb, stream string, c *jetwayv1.ConsumerConfig,
	put func(context.Context, string, jetstream.ConsumerConfig) (jetstream.Consumer, error),
) (*jetwayv1.ConsumerInfo, error) {
	if err := validateName("stream", stream); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, stream, true); err != nil {
		return nil, err
	}
	cfg, err := consumerConfigFrom("config", c)
	if err != nil {
		return nil, err
	}
	// Without filters the consumer reads the stream, which the caller
	// administers; its filters stay within the caller's subjects.
	if err := s.authz.CanAdminSubjects(ctx, "config.filter_subjects", filtersOf(cfg)); err != nil {
		return nil, err
	}
	cons, err := put(ctx, stream, cfg)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("%s consumer %q on stream %q", verb, cfg.Durable, stream))
	}
	return consumerInfoTo(cons.CachedInfo()), nil
}

func (s *adminService) GetConsumer(ctx context.Context, req *jetwayv1.GetConsumerRequest) (*jetwayv1.GetConsumerResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateName("stream", req.GetStream()); err != nil {
		return nil, err
	}
	if err := validateName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, req.GetStream(), false); err != nil {
		return nil, err
	}
	c, err := js.Consumer(ctx, req.GetStream(), req.GetName())
	if err != nil {
		return nil, translate(err, fmt.Sprintf("consumer %q on stream %q", req.GetName(), req.GetStream()))
	}
	return &jetwayv1.GetConsumerResponse{Consumer: consumerInfoTo(c.CachedInfo())}, nil
}

// ListConsumers reads every consumer of the stream, sorts them by name and
// returns the requested page. The lister is always drained: nats.go's
// consumer lister blocks its goroutine until every page is read.
func (s *adminService) ListConsumers(ctx context.Context, req *jetwayv1.ListConsumersRequest) (*jetwayv1.ListConsumersResponse, error) {
	size, err := pageSize("page_size", req.GetPageSize())
	if err != nil {
		return nil, err
	}
	offset, err := parsePageToken("page_token", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	st, err := s.stream(ctx, "stream", req.GetStream(), false)
	if err != nil {
		return nil, err
	}
	lister := st.ListConsumers(ctx)
	var all []*jetstream.ConsumerInfo
	for info := range lister.Info() {
		all = append(all, info)
	}
	if err := lister.Err(); err != nil {
		return nil, translate(err, fmt.Sprintf("list consumers of stream %q", req.GetStream()))
	}
	slices.SortFunc(all, func(a, b *jetstream.ConsumerInfo) int { return strings.Compare(a.Name, b.Name) })
	page, next := paginate(all, offset, size)
	resp := &jetwayv1.ListConsumersResponse{NextPageToken: next}
	for _, info := range page {
		resp.Consumers = append(resp.Consumers, consumerInfoTo(info))
	}
	return resp, nil
}

func (s *adminService) DeleteConsumer(ctx context.Context, req *jetwayv1.DeleteConsumerRequest) (*jetwayv1.DeleteConsumerResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateName("stream", req.GetStream()); err != nil {
		return nil, err
	}
	if err := validateName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, req.GetStream(), true); err != nil {
		return nil, err
	}
	if err := js.DeleteConsumer(ctx, req.GetStream(), req.GetName()); err != nil {
		return nil, translate(err, fmt.Sprintf("delete consumer %q on stream %q", req.GetName(), req.GetStream()))
	}
	return &jetwayv1.DeleteConsumerResponse{}, nil
}

func (s *adminService) GetMessage(ctx context.Context, req *jetwayv1.GetMessageRequest) (*jetwayv1.GetMessageResponse, error) {
	if req.GetSequence() == 0 {
		return nil, fieldErr("sequence", ErrInvalidArgument, "must be at least 1")
	}
	st, err := s.stream(ctx, "stream", req.GetStream(), false)
	if err != nil {
		return nil, err
	}
	m, err := st.GetMsg(ctx, req.GetSequence())
	if err != nil {
		return nil, translate(err, fmt.Sprintf("message %d of stream %q", req.GetSequence(), req.GetStream()))
	}
	return &jetwayv1.GetMessageResponse{Message: storedMessageTo(m, req.GetFormat())}, nil
}

func (s *adminService) GetLastMessage(ctx context.Context, req *jetwayv1.GetLastMessageRequest) (*jetwayv1.GetLastMessageResponse, error) {
	if err := validateFilterSubject("subject", req.GetSubject()); err != nil {
		return nil, err
	}
	st, err := s.stream(ctx, "stream", req.GetStream(), false)
	if err != nil {
		return nil, err
	}
	m, err := st.GetLastMsgForSubject(ctx, req.GetSubject())
	if err != nil {
		return nil, translate(err, fmt.Sprintf("last message on %q in stream %q", req.GetSubject(), req.GetStream()))
	}
	return &jetwayv1.GetLastMessageResponse{Message: storedMessageTo(m, req.GetFormat())}, nil
}

// GetCounter reads a counter subject's total: the value of its last
// message ({"val":"<n>"}, as JetStream stores counters), "0" for none.
func (s *adminService) GetCounter(ctx context.Context, req *jetwayv1.GetCounterRequest) (*jetwayv1.GetCounterResponse, error) {
	if err := validatePublishSubject("subject", req.GetSubject()); err != nil {
		return nil, err
	}
	st, err := s.stream(ctx, "stream", req.GetStream(), false)
	if err != nil {
		return nil, err
	}
	if !st.CachedInfo().Config.AllowMsgCounter {
		return nil, fmt.Errorf("%w: stream %q does not allow counters (allow_msg_counter)", ErrNotAllowed, req.GetStream())
	}
	m, err := st.GetLastMsgForSubject(ctx, req.GetSubject())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return &jetwayv1.GetCounterResponse{Value: "0"}, nil
	}
	if err != nil {
		return nil, translate(err, fmt.Sprintf("counter %q in stream %q", req.GetSubject(), req.GetStream()))
	}
	var v struct {
		Value string `json:"val"`
	}
	if err := json.Unmarshal(m.Data, &v); err != nil || v.Value == "" {
		return nil, fmt.Errorf("%w: the last message on %q is not a counter value", ErrNotAllowed, req.GetSubject())
	}
	return &jetwayv1.GetCounterResponse{Value: v.Value, Sequence: m.Sequence}, nil
}

func (s *adminService) DeleteMessage(ctx context.Context, req *jetwayv1.DeleteMessageRequest) (*jetwayv1.DeleteMessageResponse, error) {
	if req.GetSequence() == 0 {
		return nil, fieldErr("sequence", ErrInvalidArgument, "must be at least 1")
	}
	st, err := s.stream(ctx, "stream", req.GetStream(), true)
	if err != nil {
		return nil, err
	}
	del := st.DeleteMsg
	if req.GetSecure() {
		del = st.SecureDeleteMsg
	}
	if err := del(ctx, req.GetSequence()); err != nil {
		return nil, translate(err, fmt.Sprintf("delete message %d of stream %q", req.GetSequence(), req.GetStream()))
	}
	return &jetwayv1.DeleteMessageResponse{}, nil
}

func (s *adminService) GetAccountInfo(ctx context.Context, _ *jetwayv1.GetAccountInfoRequest) (*jetwayv1.GetAccountInfoResponse, error) {
	js, err := s.jetstream(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.authz.CanReadAccount(ctx); err != nil {
		return nil, err
	}
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return nil, translate(err, "account info")
	}
	return accountInfoTo(info), nil
}
