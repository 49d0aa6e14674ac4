package bridge

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// This file converts between the jetway.v1 messages and nats.go's jetstream
// types. The API uses 0 for "unlimited" where JetStream uses -1, and
// UNSPECIFIED enums for JetStream's defaults.

// unlimited maps the API's 0 to JetStream's -1.
func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// limited maps JetStream's -1 back to the API's 0.
func limited(n int64) int64 {
	if n < 0 {
		return 0
	}
	return n
}

func durationFrom(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func durationTo(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func timeTo(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timePtrTo(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timeTo(*t)
}

// streamConfigFrom validates an API stream configuration and converts it.
func streamConfigFrom(field string, c *jetwayv1.StreamConfig) (jetstream.StreamConfig, error) {
	if c == nil {
		return jetstream.StreamConfig{}, fieldErr(field, ErrInvalidArgument, "required")
	}
	if err := validateName(field+".name", c.GetName()); err != nil {
		return jetstream.StreamConfig{}, err
	}
	for _, s := range c.GetSubjects() {
		if err := validateStreamSubject(field+".subjects", s); err != nil {
			return jetstream.StreamConfig{}, err
		}
	}
	if c.GetReplicas() < 0 || c.GetReplicas() > 5 {
		return jetstream.StreamConfig{}, fieldErr(field+".replicas", ErrInvalidConfig, "must be between 1 and 5")
	}
	for name, n := range map[string]int64{
		"max_msgs": c.GetMaxMsgs(), "max_bytes": c.GetMaxBytes(), "max_msgs_per_subject": c.GetMaxMsgsPerSubject(),
		"max_msg_size": int64(c.GetMaxMsgSize()), "max_consumers": int64(c.GetMaxConsumers()),
	} {
		if n < 0 {
			return jetstream.StreamConfig{}, fieldErr(field+"."+name, ErrInvalidConfig, "must not be negative (0 is unlimited)")
		}
	}
	for name, d := range map[string]*durationpb.Duration{
		"max_age": c.GetMaxAge(), "duplicate_window": c.GetDuplicateWindow(), "subject_delete_marker_ttl": c.GetSubjectDeleteMarkerTtl(),
	} {
		if d.AsDuration() < 0 {
			return jetstream.StreamConfig{}, fieldErr(field+"."+name, ErrInvalidConfig, "must not be negative")
		}
	}
	cfg := jetstream.StreamConfig{
		Name:                   c.GetName(),
		Description:            c.GetDescription(),
		Subjects:               c.GetSubjects(),
		MaxConsumers:           int(unlimited(int64(c.GetMaxConsumers()))),
		MaxMsgs:                unlimited(c.GetMaxMsgs()),
		MaxBytes:               unlimited(c.GetMaxBytes()),
		DiscardNewPerSubject:   c.GetDiscardNewPerSubject(),
		MaxAge:                 durationFrom(c.GetMaxAge()),
		MaxMsgsPerSubject:      unlimited(c.GetMaxMsgsPerSubject()),
		MaxMsgSize:             int32(unlimited(int64(c.GetMaxMsgSize()))),
		Replicas:               max(int(c.GetReplicas()), 1),
		Duplicates:             durationFrom(c.GetDuplicateWindow()),
		Sealed:                 c.GetSealed(),
		DenyDelete:             c.GetDenyDelete(),
		DenyPurge:              c.GetDenyPurge(),
		AllowRollup:            c.GetAllowRollup(),
		AllowDirect:            c.GetAllowDirect(),
		AllowMsgTTL:            c.GetAllowMsgTtl(),
		SubjectDeleteMarkerTTL: durationFrom(c.GetSubjectDeleteMarkerTtl()),
		Metadata:               userMetadata(c.GetMetadata()),
	}
	switch c.GetRetention() {
	case jetwayv1.RetentionPolicy_RETENTION_POLICY_UNSPECIFIED, jetwayv1.RetentionPolicy_RETENTION_POLICY_LIMITS:
		cfg.Retention = jetstream.LimitsPolicy
	case jetwayv1.RetentionPolicy_RETENTION_POLICY_INTEREST:
		cfg.Retention = jetstream.InterestPolicy
	case jetwayv1.RetentionPolicy_RETENTION_POLICY_WORK_QUEUE:
		cfg.Retention = jetstream.WorkQueuePolicy
	default:
		return cfg, fieldErr(field+".retention", ErrInvalidConfig, "unknown value %d", c.GetRetention())
	}
	switch c.GetStorage() {
	case jetwayv1.StorageType_STORAGE_TYPE_UNSPECIFIED, jetwayv1.StorageType_STORAGE_TYPE_FILE:
		cfg.Storage = jetstream.FileStorage
	case jetwayv1.StorageType_STORAGE_TYPE_MEMORY:
		cfg.Storage = jetstream.MemoryStorage
	default:
		return cfg, fieldErr(field+".storage", ErrInvalidConfig, "unknown value %d", c.GetStorage())
	}
	switch c.GetDiscard() {
	case jetwayv1.DiscardPolicy_DISCARD_POLICY_UNSPECIFIED, jetwayv1.DiscardPolicy_DISCARD_POLICY_OLD:
		cfg.Discard = jetstream.DiscardOld
	case jetwayv1.DiscardPolicy_DISCARD_POLICY_NEW:
		cfg.Discard = jetstream.DiscardNew
	default:
		return cfg, fieldErr(field+".discard", ErrInvalidConfig, "unknown value %d", c.GetDiscard())
	}
	switch c.GetCompression() {
	case jetwayv1.Compression_COMPRESSION_UNSPECIFIED, jetwayv1.Compression_COMPRESSION_NONE:
		cfg.Compression = jetstream.NoCompression
	case jetwayv1.Compression_COMPRESSION_S2:
		cfg.Compression = jetstream.S2Compression
	default:
		return cfg, fieldErr(field+".compression", ErrInvalidConfig, "unknown value %d", c.GetCompression())
	}
	if err := streamExtrasFrom(field, c, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// userMetadata drops the keys JetStream reserves for itself ("_nats…"): the
// server sets them, returns them, and they must not make a configuration
// read back from GetStream fail when it is sent again.
func userMetadata(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, "_nats") {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(m))
		}
		out[k] = v
	}
	return out
}

// DeadLetterSubjectKey is the consumer metadata key holding its
// dead_letter_subject (issue 19): the typed field is stored there, so that
// every replica, and the dead-letter worker, read it from JetStream.
const DeadLetterSubjectKey = "jetway.dead_letter.subject"

// deadLetterMetaPrefix is the bridge's space of consumer metadata keys:
// the metadata field may not set them (a tenant would otherwise name a
// dead-letter subject unchecked).
const deadLetterMetaPrefix = "jetway.dead_letter."

// withoutDeadLetter is a consumer's metadata as the API shows it: the
// bridge's keys are typed fields.
func withoutDeadLetter(m map[string]string) map[string]string {
	if _, ok := m[DeadLetterSubjectKey]; !ok {
		return m
	}
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, deadLetterMetaPrefix) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(m))
		}
		out[k] = v
	}
	return out
}

// streamConfigTo converts a JetStream stream configuration to the API's.
func streamConfigTo(c jetstream.StreamConfig) *jetwayv1.StreamConfig {
	out := &jetwayv1.StreamConfig{
		Name:                   c.Name,
		Description:            c.Description,
		Subjects:               c.Subjects,
		Replicas:               int32(c.Replicas),
		MaxMsgs:                limited(c.MaxMsgs),
		MaxBytes:               limited(c.MaxBytes),
		MaxAge:                 durationTo(c.MaxAge),
		MaxMsgSize:             int32(limited(int64(c.MaxMsgSize))),
		MaxMsgsPerSubject:      limited(c.MaxMsgsPerSubject),
		MaxConsumers:           int32(limited(int64(c.MaxConsumers))),
		DiscardNewPerSubject:   c.DiscardNewPerSubject,
		DuplicateWindow:        durationTo(c.Duplicates),
		DenyDelete:             c.DenyDelete,
		DenyPurge:              c.DenyPurge,
		AllowRollup:            c.AllowRollup,
		AllowDirect:            c.AllowDirect,
		AllowMsgTtl:            c.AllowMsgTTL,
		Metadata:               c.Metadata,
		SubjectDeleteMarkerTtl: durationTo(c.SubjectDeleteMarkerTTL),
		Sealed:                 c.Sealed,
	}
	switch c.Retention {
	case jetstream.InterestPolicy:
		out.Retention = jetwayv1.RetentionPolicy_RETENTION_POLICY_INTEREST
	case jetstream.WorkQueuePolicy:
		out.Retention = jetwayv1.RetentionPolicy_RETENTION_POLICY_WORK_QUEUE
	default:
		out.Retention = jetwayv1.RetentionPolicy_RETENTION_POLICY_LIMITS
	}
	if c.Storage == jetstream.MemoryStorage {
		out.Storage = jetwayv1.StorageType_STORAGE_TYPE_MEMORY
	} else {
		out.Storage = jetwayv1.StorageType_STORAGE_TYPE_FILE
	}
	if c.Discard == jetstream.DiscardNew {
		out.Discard = jetwayv1.DiscardPolicy_DISCARD_POLICY_NEW
	} else {
		out.Discard = jetwayv1.DiscardPolicy_DISCARD_POLICY_OLD
	}
	if c.Compression == jetstream.S2Compression {
		out.Compression = jetwayv1.Compression_COMPRESSION_S2
	} else {
		out.Compression = jetwayv1.Compression_COMPRESSION_NONE
	}
	streamExtrasTo(c, out)
	return out
}

func clusterTo(c *jetstream.ClusterInfo) *jetwayv1.ClusterInfo {
	if c == nil {
		return nil
	}
	out := &jetwayv1.ClusterInfo{Name: c.Name, Leader: c.Leader, LeaderSince: timePtrTo(c.LeaderSince)}
	for _, p := range c.Replicas {
		if p == nil {
			continue
		}
		out.Replicas = append(out.Replicas, &jetwayv1.PeerInfo{
			Name: p.Name, Current: p.Current, Offline: p.Offline, Active: durationTo(p.Active), Lag: p.Lag,
		})
	}
	return out
}

func streamInfoTo(info *jetstream.StreamInfo) *jetwayv1.StreamInfo {
	s := info.State
	out := &jetwayv1.StreamInfo{
		Config: streamConfigTo(info.Config),
		State: &jetwayv1.StreamState{
			Messages:      s.Msgs,
			Bytes:         s.Bytes,
			FirstSequence: s.FirstSeq,
			FirstTime:     timeTo(s.FirstTime),
			LastSequence:  s.LastSeq,
			LastTime:      timeTo(s.LastTime),
			ConsumerCount: int64(s.Consumers),
			NumSubjects:   s.NumSubjects,
			NumDeleted:    int64(s.NumDeleted),
		},
		Cluster: clusterTo(info.Cluster),
		Created: timeTo(info.Created),
	}
	streamInfoExtrasTo(info, out)
	return out
}

// consumerConfigFrom validates an API consumer configuration and converts
// it to a durable pull consumer's.
func consumerConfigFrom(field string, c *jetwayv1.ConsumerConfig) (jetstream.ConsumerConfig, error) {
	if c == nil {
		return jetstream.ConsumerConfig{}, fieldErr(field, ErrInvalidArgument, "required")
	}
	if err := validateName(field+".name", c.GetName()); err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	for _, s := range c.GetFilterSubjects() {
		if err := validateFilterSubject(field+".filter_subjects", s); err != nil {
			return jetstream.ConsumerConfig{}, err
		}
	}
	for name, n := range map[string]int32{
		"max_deliver": c.GetMaxDeliver(), "max_ack_pending": c.GetMaxAckPending(), "max_waiting": c.GetMaxWaiting(),
		"max_batch": c.GetMaxBatch(), "max_bytes": c.GetMaxBytes(), "replicas": c.GetReplicas(),
	} {
		if n < 0 {
			return jetstream.ConsumerConfig{}, fieldErr(field+"."+name, ErrInvalidConfig, "must not be negative")
		}
	}
	for name, d := range map[string]*durationpb.Duration{
		"ack_wait": c.GetAckWait(), "max_expires": c.GetMaxExpires(), "inactive_threshold": c.GetInactiveThreshold(),
		"priority_timeout": c.GetPriorityTimeout(),
	} {
		if d.AsDuration() < 0 {
			return jetstream.ConsumerConfig{}, fieldErr(field+"."+name, ErrInvalidConfig, "must not be negative")
		}
	}
	for k := range c.GetMetadata() {
		if strings.HasPrefix(k, deadLetterMetaPrefix) {
			return jetstream.ConsumerConfig{}, fieldErr(field+".metadata", ErrInvalidConfig, "key %q is the bridge's: set dead_letter_subject instead", k)
		}
	}
	if d := c.GetDeadLetterSubject(); d != "" {
		if err := validatePublishSubject(field+".dead_letter_subject", d); err != nil {
			return jetstream.ConsumerConfig{}, err
		}
	}
	cfg := jetstream.ConsumerConfig{
		Durable:            c.GetName(),
		Description:        c.GetDescription(),
		OptStartSeq:        c.GetOptStartSequence(),
		AckWait:            durationFrom(c.GetAckWait()),
		MaxDeliver:         int(unlimited(int64(c.GetMaxDeliver()))),
		MaxAckPending:      int(c.GetMaxAckPending()),
		MaxWaiting:         int(c.GetMaxWaiting()),
		HeadersOnly:        c.GetHeadersOnly(),
		MaxRequestBatch:    int(c.GetMaxBatch()),
		MaxRequestExpires:  durationFrom(c.GetMaxExpires()),
		MaxRequestMaxBytes: int(c.GetMaxBytes()),
		InactiveThreshold:  durationFrom(c.GetInactiveThreshold()),
		Replicas:           int(c.GetReplicas()),
		MemoryStorage:      c.GetMemoryStorage(),
		Metadata:           userMetadata(c.GetMetadata()),
		PriorityGroups:     c.GetPriorityGroups(),
		PinnedTTL:          durationFrom(c.GetPriorityTimeout()),
	}
	if d := c.GetDeadLetterSubject(); d != "" {
		if cfg.Metadata == nil {
			cfg.Metadata = map[string]string{}
		}
		cfg.Metadata[DeadLetterSubjectKey] = d
	}
	if t := c.GetPauseUntil(); t != nil {
		if err := t.CheckValid(); err != nil {
			return cfg, fieldErr(field+".pause_until", ErrInvalidConfig, "not a valid time")
		}
		pu := t.AsTime()
		cfg.PauseUntil = &pu
	}
	switch c.GetPriorityPolicy() {
	case jetwayv1.PriorityPolicy_PRIORITY_POLICY_UNSPECIFIED, jetwayv1.PriorityPolicy_PRIORITY_POLICY_NONE:
		cfg.PriorityPolicy = jetstream.PriorityPolicyNone
	case jetwayv1.PriorityPolicy_PRIORITY_POLICY_PINNED_CLIENT:
		cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
	case jetwayv1.PriorityPolicy_PRIORITY_POLICY_OVERFLOW:
		cfg.PriorityPolicy = jetstream.PriorityPolicyOverflow
	case jetwayv1.PriorityPolicy_PRIORITY_POLICY_PRIORITIZED:
		cfg.PriorityPolicy = jetstream.PriorityPolicyPrioritized
	default:
		return cfg, fieldErr(field+".priority_policy", ErrInvalidConfig, "unknown value %d", c.GetPriorityPolicy())
	}
	// One filter goes in FilterSubject so that servers without multi-filter
	// support still accept it.
	switch fs := c.GetFilterSubjects(); len(fs) {
	case 0:
	case 1:
		cfg.FilterSubject = fs[0]
	default:
		cfg.FilterSubjects = fs
	}
	for _, b := range c.GetBackoff() {
		if b.AsDuration() <= 0 {
			return cfg, fieldErr(field+".backoff", ErrInvalidConfig, "durations must be positive")
		}
		cfg.BackOff = append(cfg.BackOff, b.AsDuration())
	}
	if t := c.GetOptStartTime(); t != nil {
		st := t.AsTime()
		cfg.OptStartTime = &st
	}
	switch c.GetDeliverPolicy() {
	case jetwayv1.DeliverPolicy_DELIVER_POLICY_UNSPECIFIED, jetwayv1.DeliverPolicy_DELIVER_POLICY_ALL:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST:
		cfg.DeliverPolicy = jetstream.DeliverLastPolicy
	case jetwayv1.DeliverPolicy_DELIVER_POLICY_NEW:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_SEQUENCE:
		if cfg.OptStartSeq == 0 {
			return cfg, fieldErr(field+".opt_start_sequence", ErrInvalidConfig, "required with DELIVER_POLICY_BY_START_SEQUENCE")
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	case jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_TIME:
		if cfg.OptStartTime == nil {
			return cfg, fieldErr(field+".opt_start_time", ErrInvalidConfig, "required with DELIVER_POLICY_BY_START_TIME")
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
	case jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT:
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	default:
		return cfg, fieldErr(field+".deliver_policy", ErrInvalidConfig, "unknown value %d", c.GetDeliverPolicy())
	}
	switch c.GetAckPolicy() {
	case jetwayv1.AckPolicy_ACK_POLICY_UNSPECIFIED, jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT:
		cfg.AckPolicy = jetstream.AckExplicitPolicy
	case jetwayv1.AckPolicy_ACK_POLICY_ALL:
		cfg.AckPolicy = jetstream.AckAllPolicy
	case jetwayv1.AckPolicy_ACK_POLICY_NONE:
		cfg.AckPolicy = jetstream.AckNonePolicy
	default:
		return cfg, fieldErr(field+".ack_policy", ErrInvalidConfig, "unknown value %d", c.GetAckPolicy())
	}
	return cfg, nil
}

func consumerConfigTo(c jetstream.ConsumerConfig) *jetwayv1.ConsumerConfig {
	name := c.Durable
	if name == "" {
		name = c.Name
	}
	out := &jetwayv1.ConsumerConfig{
		Name:              name,
		Description:       c.Description,
		FilterSubjects:    c.FilterSubjects,
		OptStartSequence:  c.OptStartSeq,
		OptStartTime:      timePtrTo(c.OptStartTime),
		AckWait:           durationTo(c.AckWait),
		MaxDeliver:        int32(limited(int64(c.MaxDeliver))),
		MaxAckPending:     int32(c.MaxAckPending),
		MaxWaiting:        int32(c.MaxWaiting),
		MaxBatch:          int32(c.MaxRequestBatch),
		MaxBytes:          int32(c.MaxRequestMaxBytes),
		MaxExpires:        durationTo(c.MaxRequestExpires),
		InactiveThreshold: durationTo(c.InactiveThreshold),
		HeadersOnly:       c.HeadersOnly,
		Replicas:          int32(c.Replicas),
		MemoryStorage:     c.MemoryStorage,
		Metadata:          withoutDeadLetter(c.Metadata),
		PriorityGroups:    c.PriorityGroups,
		DeadLetterSubject: c.Metadata[DeadLetterSubjectKey],
		PriorityTimeout:   durationTo(c.PinnedTTL),
		PauseUntil:        timePtrTo(c.PauseUntil),
	}
	switch c.PriorityPolicy {
	case jetstream.PriorityPolicyPinned:
		out.PriorityPolicy = jetwayv1.PriorityPolicy_PRIORITY_POLICY_PINNED_CLIENT
	case jetstream.PriorityPolicyOverflow:
		out.PriorityPolicy = jetwayv1.PriorityPolicy_PRIORITY_POLICY_OVERFLOW
	case jetstream.PriorityPolicyPrioritized:
		out.PriorityPolicy = jetwayv1.PriorityPolicy_PRIORITY_POLICY_PRIORITIZED
	}
	// PriorityPolicyNone stays unset: a consumer without priority groups
	// reads as it did before they existed.
	if c.FilterSubject != "" {
		out.FilterSubjects = []string{c.FilterSubject}
	}
	for _, b := range c.BackOff {
		out.Backoff = append(out.Backoff, durationpb.New(b))
	}
	switch c.DeliverPolicy {
	case jetstream.DeliverLastPolicy:
		out.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST
	case jetstream.DeliverNewPolicy:
		out.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_NEW
	case jetstream.DeliverByStartSequencePolicy:
		out.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_SEQUENCE
	case jetstream.DeliverByStartTimePolicy:
		out.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_BY_START_TIME
	case jetstream.DeliverLastPerSubjectPolicy:
		out.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_LAST_PER_SUBJECT
	default:
		out.DeliverPolicy = jetwayv1.DeliverPolicy_DELIVER_POLICY_ALL
	}
	switch c.AckPolicy {
	case jetstream.AckAllPolicy:
		out.AckPolicy = jetwayv1.AckPolicy_ACK_POLICY_ALL
	case jetstream.AckNonePolicy:
		out.AckPolicy = jetwayv1.AckPolicy_ACK_POLICY_NONE
	default:
		out.AckPolicy = jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT
	}
	return out
}

func sequenceTo(s jetstream.SequenceInfo) *jetwayv1.SequenceInfo {
	return &jetwayv1.SequenceInfo{ConsumerSequence: s.Consumer, StreamSequence: s.Stream, LastActive: timePtrTo(s.Last)}
}

func consumerInfoTo(info *jetstream.ConsumerInfo) *jetwayv1.ConsumerInfo {
	var groups []*jetwayv1.PriorityGroupState
	for _, g := range info.PriorityGroups {
		groups = append(groups, &jetwayv1.PriorityGroupState{Group: g.Group, PinnedClientId: g.PinnedClientID, PinnedTime: timeTo(g.PinnedTS)})
	}
	return &jetwayv1.ConsumerInfo{
		Paused:         info.Paused,
		PauseRemaining: durationTo(info.PauseRemaining),
		PriorityGroups: groups,
		Stream:         info.Stream,
		Name:           info.Name,
		Config:         consumerConfigTo(info.Config),
		Created:        timeTo(info.Created),
		Delivered:      sequenceTo(info.Delivered),
		AckFloor:       sequenceTo(info.AckFloor),
		NumAckPending:  int64(info.NumAckPending),
		NumRedelivered: int64(info.NumRedelivered),
		NumWaiting:     int64(info.NumWaiting),
		NumPending:     info.NumPending,
		Cluster:        clusterTo(info.Cluster),
	}
}

// headersTo converts NATS headers to the API's, leaving out none: clients
// see JetStream's own Nats-* headers on stored messages.
func headersTo(h nats.Header) map[string]*jetwayv1.HeaderValues {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]*jetwayv1.HeaderValues, len(h))
	for k, v := range h {
		out[k] = &jetwayv1.HeaderValues{Values: v}
	}
	return out
}

// storedMessageTo converts a stored message, its payload in the format
// asked (as a delivered message's, see payloadIn). Every RPC that returns
// stored messages uses it.
func storedMessageTo(m *jetstream.RawStreamMsg, format jetwayv1.PayloadFormat) *jetwayv1.StoredMessage {
	out := &jetwayv1.StoredMessage{
		Subject:  m.Subject,
		Sequence: m.Sequence,
		Headers:  headersTo(m.Header),
		Time:     timeTo(m.Time),
	}
	switch js, text, kind := payloadIn(m.Data, format); kind {
	case jetwayv1.PayloadFormat_PAYLOAD_FORMAT_JSON:
		out.Json = js
	case jetwayv1.PayloadFormat_PAYLOAD_FORMAT_TEXT:
		out.Text = text
	default:
		out.Data = m.Data
	}
	return out
}

func accountInfoTo(a *jetstream.AccountInfo) *jetwayv1.GetAccountInfoResponse {
	l := a.Limits
	return &jetwayv1.GetAccountInfoResponse{
		Memory:    a.Memory,
		Storage:   a.Store,
		Streams:   int64(a.Streams),
		Consumers: int64(a.Consumers),
		Domain:    a.Domain,
		ApiTotal:  a.API.Total,
		ApiErrors: a.API.Errors,
		Limits: &jetwayv1.AccountLimits{
			MaxMemory:             l.MaxMemory,
			MaxStorage:            l.MaxStore,
			MaxStreams:            int64(l.MaxStreams),
			MaxConsumers:          int64(l.MaxConsumers),
			MaxAckPending:         int64(l.MaxAckPending),
			MemoryMaxStreamBytes:  l.MemoryMaxStreamBytes,
			StorageMaxStreamBytes: l.StoreMaxStreamBytes,
			MaxBytesRequired:      l.MaxBytesRequired,
		},
	}
}
