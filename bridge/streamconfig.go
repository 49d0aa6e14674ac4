package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/jetway-dev/jetway/auth/perm"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Streams (issue 18): the StreamConfig settings beyond the classic limits
// (mirrors, sources, transforms, republish, placement, the 2.11–2.14
// flags), their state in StreamInfo, their authorization, and partial
// updates by field mask.

// maxStreamSources bounds the sources of one stream and the subject
// transforms of one source.
const maxStreamSources = 1000

// streamExtrasFrom validates the issue-18 settings of c and sets them on
// cfg.
func streamExtrasFrom(field string, c *jetwayv1.StreamConfig, cfg *jetstream.StreamConfig) error {
	var err error
	if m := c.GetMirror(); m != nil {
		if cfg.Mirror, err = sourceFrom(field+".mirror", m); err != nil {
			return err
		}
	}
	if n := len(c.GetSources()); n > maxStreamSources {
		return fieldErr(field+".sources", ErrInvalidConfig, "at most %d sources, got %d", maxStreamSources, n)
	}
	for i, s := range c.GetSources() {
		src, err := sourceFrom(fmt.Sprintf("%s.sources[%d]", field, i), s)
		if err != nil {
			return err
		}
		cfg.Sources = append(cfg.Sources, src)
	}
	if t := c.GetSubjectTransform(); t != nil {
		tf, err := transformFrom(field+".subject_transform", t, true)
		if err != nil {
			return err
		}
		cfg.SubjectTransform = &tf
	}
	if r := c.GetRepublish(); r != nil {
		f := field + ".republish"
		if r.GetSource() != "" {
			if err := validateFilterSubject(f+".source", r.GetSource()); err != nil {
				return err
			}
		}
		if _, err := destinationPattern(f+".destination", r.GetDestination()); err != nil {
			return err
		}
		cfg.RePublish = &jetstream.RePublish{Source: r.GetSource(), Destination: r.GetDestination(), HeadersOnly: r.GetHeadersOnly()}
	}
	if p := c.GetPlacement(); p != nil {
		for _, tag := range p.GetTags() {
			if tag == "" {
				return fieldErr(field+".placement.tags", ErrInvalidConfig, "empty tag")
			}
		}
		cfg.Placement = &jetstream.Placement{Cluster: p.GetCluster(), Tags: p.GetTags()}
	}
	if l := c.GetConsumerLimits(); l != nil {
		if l.GetInactiveThreshold().AsDuration() < 0 {
			return fieldErr(field+".consumer_limits.inactive_threshold", ErrInvalidConfig, "must not be negative")
		}
		if l.GetMaxAckPending() < 0 {
			return fieldErr(field+".consumer_limits.max_ack_pending", ErrInvalidConfig, "must not be negative (0 is no cap)")
		}
		cfg.ConsumerLimits = jetstream.StreamConsumerLimits{
			InactiveThreshold: durationFrom(l.GetInactiveThreshold()), MaxAckPending: int(l.GetMaxAckPending()),
		}
	}
	switch c.GetPersistMode() {
	case jetwayv1.PersistMode_PERSIST_MODE_UNSPECIFIED, jetwayv1.PersistMode_PERSIST_MODE_DEFAULT:
		cfg.PersistMode = jetstream.DefaultPersistMode
	case jetwayv1.PersistMode_PERSIST_MODE_ASYNC:
		cfg.PersistMode = jetstream.AsyncPersistMode
	default:
		return fieldErr(field+".persist_mode", ErrInvalidConfig, "unknown value %d", c.GetPersistMode())
	}
	cfg.MirrorDirect = c.GetMirrorDirect()
	cfg.AllowAtomicPublish = c.GetAllowAtomic()
	cfg.AllowBatchPublish = c.GetAllowBatched()
	cfg.AllowMsgCounter = c.GetAllowMsgCounter()
	cfg.AllowMsgSchedules = c.GetAllowMsgSchedules()
	cfg.FirstSeq = c.GetFirstSequence()
	cfg.NoAck = c.GetNoAck()
	return nil
}

// sourceFrom validates a mirror or source.
func sourceFrom(field string, s *jetwayv1.StreamSource) (*jetstream.StreamSource, error) {
	if err := validateName(field+".name", s.GetName()); err != nil {
		return nil, err
	}
	out := &jetstream.StreamSource{Name: s.GetName(), OptStartSeq: s.GetOptStartSequence(), FilterSubject: s.GetFilterSubject()}
	if t := s.GetOptStartTime(); t != nil {
		if t.CheckValid() != nil {
			return nil, fieldErr(field+".opt_start_time", ErrInvalidConfig, "not a valid time")
		}
		st := t.AsTime()
		out.OptStartTime = &st
	}
	if out.FilterSubject != "" {
		if err := validateFilterSubject(field+".filter_subject", out.FilterSubject); err != nil {
			return nil, err
		}
		if len(s.GetSubjectTransforms()) > 0 {
			return nil, fieldErr(field+".filter_subject", ErrInvalidConfig, "cannot be combined with subject_transforms (give the filter as a transform's source)")
		}
	}
	if n := len(s.GetSubjectTransforms()); n > maxStreamSources {
		return nil, fieldErr(field+".subject_transforms", ErrInvalidConfig, "at most %d, got %d", maxStreamSources, n)
	}
	for i, t := range s.GetSubjectTransforms() {
		tf, err := transformFrom(fmt.Sprintf("%s.subject_transforms[%d]", field, i), t, false)
		if err != nil {
			return nil, err
		}
		out.SubjectTransforms = append(out.SubjectTransforms, tf)
	}
	if e := s.GetExternal(); e != nil {
		if s.GetDomain() != "" {
			return nil, fieldErr(field+".domain", ErrInvalidConfig, "give external or domain, not both")
		}
		if err := validateSubject(field+".external.api_prefix", e.GetApiPrefix(), false); err != nil {
			return nil, err
		}
		if e.GetDeliverPrefix() != "" {
			if err := validateSubject(field+".external.deliver_prefix", e.GetDeliverPrefix(), false); err != nil {
				return nil, err
			}
		}
		out.External = &jetstream.ExternalStream{APIPrefix: e.GetApiPrefix(), DeliverPrefix: e.GetDeliverPrefix()}
	}
	if d := s.GetDomain(); d != "" {
		if err := validateName(field+".domain", d); err != nil {
			return nil, err
		}
		// As nats.go's StreamSource.Domain does, but here, so that what is
		// authorized and compared is what JetStream stores.
		out.External = &jetstream.ExternalStream{APIPrefix: "$JS." + d + ".API"}
	}
	if c := s.GetConsumer(); c != nil {
		if c.GetName() != "" {
			if err := validateName(field+".consumer.name", c.GetName()); err != nil {
				return nil, err
			}
		}
		if c.GetDeliverSubject() != "" {
			if err := validateSubject(field+".consumer.deliver_subject", c.GetDeliverSubject(), false); err != nil {
				return nil, err
			}
		}
		out.Consumer = &jetstream.StreamConsumerSource{Name: c.GetName(), DeliverSubject: c.GetDeliverSubject()}
	}
	return out, nil
}

// transformFrom validates a subject transform; the destination is
// required for a stream's own transform, optional (unchanged subjects)
// for a source's.
func transformFrom(field string, t *jetwayv1.SubjectTransform, needDest bool) (jetstream.SubjectTransformConfig, error) {
	out := jetstream.SubjectTransformConfig{Source: t.GetSource(), Destination: t.GetDestination()}
	if out.Source != "" {
		if err := validateFilterSubject(field+".source", out.Source); err != nil {
			return out, err
		}
	}
	if out.Destination != "" || needDest {
		if _, err := destinationPattern(field+".destination", out.Destination); err != nil {
			return out, err
		}
	}
	return out, nil
}

// destinationPattern is the subject space a transform or republish
// destination can produce: each token holding a mapping function
// ({{wildcard(1)}}, {{partition(3,1)}}…) or a legacy $1 reference
// becomes '*', and one that can split into several tokens
// ({{split(…)}}, {{splitFromLeft(…)}}…) ends it with '>'. The space must
// stay clear of the reserved subject spaces: so a destination starting
// with a mapping function ("{{wildcard(1)}}.x", which could produce
// "$JS.…") is refused.
func destinationPattern(field, dest string) (string, error) {
	switch {
	case dest == "":
		return "", fieldErr(field, ErrInvalidSubject, "required")
	case len(dest) > maxSubjectLen:
		return "", fieldErr(field, ErrInvalidSubject, "longer than %d bytes", maxSubjectLen)
	}
	toks := strings.Split(dest, ".")
	pattern := make([]string, 0, len(toks))
tokens:
	for _, tok := range toks {
		switch {
		case strings.Contains(tok, "{{"):
			if !strings.Contains(tok, "}}") {
				return "", fieldErr(field, ErrInvalidSubject, "%q: a mapping function without its closing }}", dest)
			}
			if strings.Contains(strings.ToLower(tok), "split") {
				pattern = append(pattern, ">")
				break tokens
			}
			pattern = append(pattern, "*")
		case len(tok) > 1 && tok[0] == '$' && strings.Trim(tok[1:], "0123456789") == "":
			pattern = append(pattern, "*")
		default:
			pattern = append(pattern, tok)
		}
	}
	p := strings.Join(pattern, ".")
	if err := validateFilterSubject(field, p); err != nil {
		return "", err
	}
	for _, r := range reservedSpaces {
		if perm.Intersects(p, r) {
			return "", fieldErr(field, ErrInvalidSubject, "%q can produce subjects in the reserved %s subject space", dest, strings.TrimSuffix(r, ".>"))
		}
	}
	return p, nil
}

// streamExtrasTo sets the issue-18 settings of c on out.
func streamExtrasTo(c jetstream.StreamConfig, out *jetwayv1.StreamConfig) {
	out.Mirror = sourceTo(c.Mirror)
	for _, s := range c.Sources {
		if s != nil {
			out.Sources = append(out.Sources, sourceTo(s))
		}
	}
	if t := c.SubjectTransform; t != nil {
		out.SubjectTransform = &jetwayv1.SubjectTransform{Source: t.Source, Destination: t.Destination}
	}
	if r := c.RePublish; r != nil {
		out.Republish = &jetwayv1.Republish{Source: r.Source, Destination: r.Destination, HeadersOnly: r.HeadersOnly}
	}
	if p := c.Placement; p != nil && (p.Cluster != "" || len(p.Tags) > 0) {
		out.Placement = &jetwayv1.Placement{Cluster: p.Cluster, Tags: p.Tags}
	}
	if l := c.ConsumerLimits; l != (jetstream.StreamConsumerLimits{}) {
		out.ConsumerLimits = &jetwayv1.StreamConsumerLimits{InactiveThreshold: durationTo(l.InactiveThreshold), MaxAckPending: int32(l.MaxAckPending)}
	}
	out.PersistMode = jetwayv1.PersistMode_PERSIST_MODE_DEFAULT
	if c.PersistMode == jetstream.AsyncPersistMode {
		out.PersistMode = jetwayv1.PersistMode_PERSIST_MODE_ASYNC
	}
	out.MirrorDirect = c.MirrorDirect
	out.AllowAtomic = c.AllowAtomicPublish
	out.AllowBatched = c.AllowBatchPublish
	out.AllowMsgCounter = c.AllowMsgCounter
	out.AllowMsgSchedules = c.AllowMsgSchedules
	out.FirstSequence = c.FirstSeq
	out.NoAck = c.NoAck
}

func transformsTo(ts []jetstream.SubjectTransformConfig) []*jetwayv1.SubjectTransform {
	var out []*jetwayv1.SubjectTransform
	for _, t := range ts {
		out = append(out, &jetwayv1.SubjectTransform{Source: t.Source, Destination: t.Destination})
	}
	return out
}

func externalTo(e *jetstream.ExternalStream) *jetwayv1.ExternalStream {
	if e == nil {
		return nil
	}
	return &jetwayv1.ExternalStream{ApiPrefix: e.APIPrefix, DeliverPrefix: e.DeliverPrefix}
}

func sourceTo(s *jetstream.StreamSource) *jetwayv1.StreamSource {
	if s == nil {
		return nil
	}
	out := &jetwayv1.StreamSource{
		Name: s.Name, OptStartSequence: s.OptStartSeq, OptStartTime: timePtrTo(s.OptStartTime),
		FilterSubject: s.FilterSubject, SubjectTransforms: transformsTo(s.SubjectTransforms), External: externalTo(s.External),
	}
	if s.Domain != "" && s.External == nil {
		out.Domain = s.Domain
	}
	if c := s.Consumer; c != nil {
		out.Consumer = &jetwayv1.SourceConsumer{Name: c.Name, DeliverSubject: c.DeliverSubject}
	}
	return out
}

func sourceInfoTo(s *jetstream.StreamSourceInfo) *jetwayv1.StreamSourceInfo {
	if s == nil {
		return nil
	}
	out := &jetwayv1.StreamSourceInfo{
		Name: s.Name, External: externalTo(s.External), Lag: s.Lag, FilterSubject: s.FilterSubject,
		SubjectTransforms: transformsTo(s.SubjectTransforms),
	}
	// JetStream gives -1 for "never heard from".
	if s.Active >= 0 {
		out.Active = durationTo(s.Active)
	}
	if e := s.Error; e != nil {
		out.Error = &jetwayv1.StreamSourceError{Code: int32(e.Code), ErrorCode: uint32(e.ErrorCode), Description: e.Description}
	}
	return out
}

// streamInfoExtrasTo sets the mirror and source state and the domain.
func streamInfoExtrasTo(info *jetstream.StreamInfo, out *jetwayv1.StreamInfo) {
	out.Mirror = sourceInfoTo(info.Mirror)
	for _, s := range info.Sources {
		if s != nil {
			out.Sources = append(out.Sources, sourceInfoTo(s))
		}
	}
	out.Domain = info.Domain
}

// sameSource reports whether two sources copy the same way (JetStream's
// stored form against the request's).
func sameSource(a, b *jetstream.StreamSource) bool {
	norm := func(s *jetstream.StreamSource) string {
		if s == nil {
			return ""
		}
		c := *s
		if c.OptStartTime != nil {
			t := c.OptStartTime.UTC()
			c.OptStartTime = &t
		}
		data, _ := json.Marshal(c)
		return string(data)
	}
	return norm(a) == norm(b)
}

// authorizeStreamExtras checks what a stream configuration takes in from
// elsewhere and sends elsewhere, against the caller's grants; cur is the
// current configuration on update (nil on create), whose settings (given
// by whoever set the stream up) are not checked again:
//   - a mirror or a source of a stream in this account needs admin read on
//     that stream, so that a tenant cannot copy another's stream into its
//     own; one in another domain or account (external, domain), or copied
//     by a named consumer, needs account-wide admin (CanReadAccount);
//   - the destinations of the subject transforms (the stream's and its
//     sources') and of republish are subjects the stream stores or
//     publishes to: within the caller's admin subjects.
func (s *adminService) authorizeStreamExtras(ctx context.Context, field string, cfg jetstream.StreamConfig, cur *jetstream.StreamConfig) error {
	var was jetstream.StreamConfig
	if cur != nil {
		was = *cur
	}
	if cfg.Mirror != nil && !sameSource(cfg.Mirror, was.Mirror) {
		if err := s.authorizeSource(ctx, field+".mirror", cfg.Mirror); err != nil {
			return err
		}
	}
	for i, src := range cfg.Sources {
		known := false
		for _, w := range was.Sources {
			if sameSource(src, w) {
				known = true
				break
			}
		}
		if !known {
			if err := s.authorizeSource(ctx, fmt.Sprintf("%s.sources[%d]", field, i), src); err != nil {
				return err
			}
		}
	}
	if t := cfg.SubjectTransform; t != nil && (was.SubjectTransform == nil || *t != *was.SubjectTransform) {
		if err := s.authorizeDestination(ctx, field+".subject_transform.destination", t.Destination); err != nil {
			return err
		}
	}
	if r := cfg.RePublish; r != nil && (was.RePublish == nil || *r != *was.RePublish) {
		if err := s.authorizeDestination(ctx, field+".republish.destination", r.Destination); err != nil {
			return err
		}
	}
	return nil
}

func (s *adminService) authorizeSource(ctx context.Context, field string, src *jetstream.StreamSource) error {
	if src.External != nil || src.Domain != "" || src.Consumer != nil {
		if err := s.authz.CanReadAccount(ctx); err != nil {
			return fmt.Errorf("%s: a mirror or source in another domain or account, or copied by a named consumer: %w", field, err)
		}
	} else if err := s.authz.CanAdmin(ctx, src.Name, false); err != nil {
		return fmt.Errorf("%s: copying stream %q needs admin read on it: %w", field, src.Name, err)
	}
	for i, t := range src.SubjectTransforms {
		if t.Destination == "" {
			continue
		}
		if err := s.authorizeDestination(ctx, fmt.Sprintf("%s.subject_transforms[%d].destination", field, i), t.Destination); err != nil {
			return err
		}
	}
	return nil
}

func (s *adminService) authorizeDestination(ctx context.Context, field, dest string) error {
	p, err := destinationPattern(field, dest)
	if err != nil {
		return err
	}
	return s.authz.CanAdminSubjects(ctx, field, []string{p})
}

// keepUnset carries into a full update the current value of the settings
// JetStream refuses to change, where the request leaves them at their
// zero ("not given"): first_sequence and persist_mode.
func keepUnset(cfg *jetstream.StreamConfig, c *jetwayv1.StreamConfig, cur jetstream.StreamConfig) {
	if c.GetFirstSequence() == 0 {
		cfg.FirstSeq = cur.FirstSeq
	}
	if c.GetPersistMode() == jetwayv1.PersistMode_PERSIST_MODE_UNSPECIFIED {
		cfg.PersistMode = cur.PersistMode
	}
}

// applyUpdateMask returns the current configuration (as the API shows it)
// with the fields the mask names taken from the request: a path names a
// field of StreamConfig, or a field within one of its message fields
// ("consumer_limits.max_ack_pending"), never within a repeated or map
// field; a field the request leaves unset is cleared. "name" selects the
// stream and changes nothing.
func applyUpdateMask(mask *fieldmaskpb.FieldMask, req, cur *jetwayv1.StreamConfig) (*jetwayv1.StreamConfig, error) {
	out := cur
	desc := out.ProtoReflect().Descriptor()
	for i, p := range mask.GetPaths() {
		field := fmt.Sprintf("update_mask.paths[%d]", i)
		parts := strings.Split(p, ".")
		md := desc
		var fds []protoreflect.FieldDescriptor
		for j, part := range parts {
			if md == nil {
				return nil, fieldErr(field, ErrInvalidArgument, "%q: %q is not a message field, it has no fields", p, strings.Join(parts[:j], "."))
			}
			fd := md.Fields().ByName(protoreflect.Name(part))
			if fd == nil {
				return nil, fieldErr(field, ErrInvalidArgument, "%q: StreamConfig has no field %q", p, strings.Join(parts[:j+1], "."))
			}
			fds = append(fds, fd)
			md = nil
			if fd.Message() != nil && !fd.IsList() && !fd.IsMap() && !isWellKnown(fd.Message()) {
				md = fd.Message()
			}
		}
		if p == "name" {
			continue
		}
		copyPath(out.ProtoReflect(), req.ProtoReflect(), fds)
	}
	return out, nil
}

// isWellKnown: Duration and Timestamp are set whole.
func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// copyPath sets dst's field at path to src's (clearing it when src has
// none).
func copyPath(dst, src protoreflect.Message, path []protoreflect.FieldDescriptor) {
	fd := path[0]
	if len(path) == 1 {
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
		return
	}
	if !src.Has(fd) && !dst.Has(fd) {
		return
	}
	copyPath(dst.Mutable(fd).Message(), src.Get(fd).Message(), path[1:])
}
