package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Consumer control (issue 18): pause, resume, reset and unpin an existing
// consumer. Each is an admin write on the consumer's stream.

// consumerTarget validates the stream and consumer names of a consumer
// control request and checks the caller may administer the stream.
func (s *adminService) consumerTarget(ctx context.Context, stream, name string) (jetstream.JetStream, error) {
	js, err := s.conns.JetStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateName("stream", stream); err != nil {
		return nil, err
	}
	if err := validateName("name", name); err != nil {
		return nil, err
	}
	if err := s.authz.CanAdmin(ctx, stream, true); err != nil {
		return nil, err
	}
	return js, nil
}

// PauseConsumer pauses a consumer until a time (nats.go's PauseConsumer).
func (s *adminService) PauseConsumer(ctx context.Context, req *jetwayv1.PauseConsumerRequest) (*jetwayv1.PauseConsumerResponse, error) {
	js, err := s.consumerTarget(ctx, req.GetStream(), req.GetName())
	if err != nil {
		return nil, err
	}
	until := req.GetPauseUntil()
	if until == nil || until.CheckValid() != nil {
		return nil, fieldErr("pause_until", ErrInvalidArgument, "required: the time the consumer resumes")
	}
	if !until.AsTime().After(time.Now()) {
		return nil, fieldErr("pause_until", ErrInvalidArgument, "must be in the future (ResumeConsumer ends a pause)")
	}
	what := fmt.Sprintf("pause consumer %q on stream %q", req.GetName(), req.GetStream())
	resp, err := js.PauseConsumer(ctx, req.GetStream(), req.GetName(), until.AsTime())
	if err != nil {
		return nil, translate(err, what)
	}
	out := &jetwayv1.PauseConsumerResponse{Paused: resp.Paused, PauseRemaining: durationTo(resp.PauseRemaining)}
	if resp.Paused {
		out.PauseUntil = timeTo(resp.PauseUntil)
	}
	return out, nil
}

// ResumeConsumer ends a consumer's pause (nats.go's ResumeConsumer).
func (s *adminService) ResumeConsumer(ctx context.Context, req *jetwayv1.ResumeConsumerRequest) (*jetwayv1.ResumeConsumerResponse, error) {
	js, err := s.consumerTarget(ctx, req.GetStream(), req.GetName())
	if err != nil {
		return nil, err
	}
	resp, err := js.ResumeConsumer(ctx, req.GetStream(), req.GetName())
	if err != nil {
		return nil, translate(err, fmt.Sprintf("resume consumer %q on stream %q", req.GetName(), req.GetStream()))
	}
	return &jetwayv1.ResumeConsumerResponse{Paused: resp.Paused}, nil
}

// ResetConsumer moves a consumer to a sequence, a time or its ack floor
// (nats.go's ResetConsumerToSequence; a time is first turned into a
// sequence, see seqAtTime).
func (s *adminService) ResetConsumer(ctx context.Context, req *jetwayv1.ResetConsumerRequest) (*jetwayv1.ResetConsumerResponse, error) {
	js, err := s.consumerTarget(ctx, req.GetStream(), req.GetName())
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("reset consumer %q on stream %q", req.GetName(), req.GetStream())
	// The consumer itself serves its reset subject (not the JetStream API
	// layer): asked of a consumer that does not exist, nobody answers and
	// the call would wait out its deadline. So the consumer is looked up
	// first.
	if _, err := js.Consumer(ctx, req.GetStream(), req.GetName()); err != nil {
		return nil, translate(err, what)
	}
	seq := req.GetSequence()
	if t := req.GetTime(); t != nil {
		if seq != 0 {
			return nil, fieldErr("time", ErrInvalidArgument, "give sequence or time, not both")
		}
		if t.CheckValid() != nil {
			return nil, fieldErr("time", ErrInvalidArgument, "not a valid time")
		}
		if seq, err = seqAtTime(ctx, js, req.GetStream(), t.AsTime()); err != nil {
			return nil, translate(err, what)
		}
	}
	resp, err := js.ResetConsumerToSequence(ctx, req.GetStream(), req.GetName(), seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerInvalidReset) || isAPICode(err, jetstream.JSErrCodeConsumerInvalidReset) {
			field := "sequence"
			if req.GetTime() != nil {
				field = "time"
			}
			return nil, fieldErr(field, ErrNotAllowed, "the consumer cannot be reset there: only consumers delivering all messages, or from a start sequence or time (and not below it), can be reset (%v)", err)
		}
		return nil, translate(err, what)
	}
	out := &jetwayv1.ResetConsumerResponse{ResetSequence: resp.ResetSeq}
	if resp.ConsumerInfo != nil {
		out.Consumer = consumerInfoTo(resp.ConsumerInfo)
	}
	return out, nil
}

// isAPICode reports whether err is a JetStream API error with that code.
func isAPICode(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// msgGetByTime is nats-server's JSApiMsgGetRequest, the fields a reset by
// time uses: the first message at or after start_time, on any subject.
// nats.go's Stream.GetMsg cannot ask by time, so the bridge sends the
// JetStream API request itself ($JS.API.STREAM.MSG.GET.<stream>).
type msgGetByTime struct {
	NextFor   string    `json:"next_by_subj"`
	StartTime time.Time `json:"start_time"`
}

type msgGetReply struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Sequence uint64 `json:"seq"`
	} `json:"message,omitempty"`
}

// seqAtTime is the sequence of the first message stored at or after t; when
// there is none, the stream's next sequence (last + 1): the consumer then
// delivers only what is stored from now on.
func seqAtTime(ctx context.Context, js jetstream.JetStream, stream string, t time.Time) (uint64, error) {
	body, err := json.Marshal(msgGetByTime{NextFor: ">", StartTime: t.UTC()})
	if err != nil {
		return 0, fmt.Errorf("encode message get: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.MSG.GET."+stream, body)
	if err != nil {
		return 0, fmt.Errorf("find the sequence at %s: %w", t.UTC().Format(time.RFC3339Nano), err)
	}
	var reply msgGetReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return 0, fmt.Errorf("decode message get: %w", err)
	}
	switch {
	case reply.Error != nil && reply.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return 0, err
		}
		return st.CachedInfo().State.LastSeq + 1, nil
	case reply.Error != nil:
		return 0, reply.Error
	case reply.Message == nil:
		return 0, fmt.Errorf("message get by time: an answer without a message")
	}
	return reply.Message.Sequence, nil
}

// UnpinConsumer takes the pin from a priority group's pinned client
// (nats.go's Stream.UnpinConsumer).
func (s *adminService) UnpinConsumer(ctx context.Context, req *jetwayv1.UnpinConsumerRequest) (*jetwayv1.UnpinConsumerResponse, error) {
	if err := validateName("name", req.GetName()); err != nil {
		return nil, err
	}
	if !validGroupName(req.GetGroup()) {
		return nil, fieldErr("group", ErrInvalidArgument, "required: 1 to 16 characters of A-Z, a-z, 0-9, - _ / = ) +")
	}
	st, err := s.stream(ctx, "stream", req.GetStream(), true)
	if err != nil {
		return nil, err
	}
	if err := st.UnpinConsumer(ctx, req.GetName(), req.GetGroup()); err != nil {
		return nil, translate(err, fmt.Sprintf("unpin group %q of consumer %q on stream %q", req.GetGroup(), req.GetName(), req.GetStream()))
	}
	return &jetwayv1.UnpinConsumerResponse{}, nil
}
