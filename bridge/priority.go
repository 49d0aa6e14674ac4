package bridge

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// pinIDHeader is the header of the messages a pinned client gets: its pin
// id, to be sent back in its next pulls.
const pinIDHeader = "Nats-Pin-Id"

// pullPriority is the priority-group part of a pull request (nats-server's
// PriorityGroup, inlined in its JSApiConsumerGetNextRequest).
type pullPriority struct {
	Group         string `json:"group,omitempty"`
	MinPending    int64  `json:"min_pending,omitempty"`
	MinAckPending int64  `json:"min_ack_pending,omitempty"`
	ID            string `json:"id,omitempty"`
	Priority      int    `json:"priority,omitempty"`
}

// priorityFrom validates a request's PullPriority. nats-server checks the
// group against the consumer's own (refusing the pull); the bridge checks
// what it can alone: the form of each field.
func priorityFrom(field string, p *jetwayv1.PullPriority) (pullPriority, error) {
	if p == nil {
		return pullPriority{}, nil
	}
	out := pullPriority{
		Group: p.GetGroup(), MinPending: p.GetMinPending(), MinAckPending: p.GetMinAckPending(),
		ID: p.GetPinId(), Priority: int(p.GetPriority()),
	}
	if out.Group == "" {
		return out, fieldErr(field+".group", ErrInvalidArgument, "required with any other priority field")
	}
	if !validGroupName(out.Group) {
		return out, fieldErr(field+".group", ErrInvalidArgument, "1 to 16 characters of A-Z, a-z, 0-9, - _ / = ) +")
	}
	if out.MinPending < 0 {
		return out, fieldErr(field+".min_pending", ErrInvalidArgument, "must not be negative")
	}
	if out.MinAckPending < 0 {
		return out, fieldErr(field+".min_ack_pending", ErrInvalidArgument, "must not be negative")
	}
	if out.Priority < 0 || out.Priority > 9 {
		return out, fieldErr(field+".priority", ErrInvalidArgument, "must be between 0 and 9")
	}
	if !validPinID(out.ID) {
		return out, fieldErr(field+".pin_id", ErrInvalidArgument, "at most 64 letters and digits (as the Nats-Pin-Id header gave it)")
	}
	return out, nil
}

// validGroupName is nats-server's rule for priority group names.
func validGroupName(g string) bool {
	if len(g) == 0 || len(g) > 16 {
		return false
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '/', c == '=', c == ')', c == '+':
		default:
			return false
		}
	}
	return true
}

// validPinID accepts what nats-server hands out (a NUID: 22 letters and
// digits), with room to spare; empty is no pin id.
func validPinID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// fields is the priority's fields as they follow the rest of a pull
// request's JSON object: "" without a group, else `,"group":…`.
func (p pullPriority) fields() []byte {
	if p.Group == "" {
		return nil
	}
	b, _ := json.Marshal(p) // strings and numbers only: cannot fail
	b[0] = ','
	return b[:len(b)-1]
}

// needsGroup refuses, before any pull, a stream or Fetch without a
// priority group on a consumer that has a priority policy: JetStream
// would refuse every pull ("Priority Group missing").
func needsGroup(field string, cfg jetstream.ConsumerConfig, p pullPriority) error {
	if cfg.PriorityPolicy == jetstream.PriorityPolicyNone || p.Group != "" {
		return nil
	}
	return fieldErr(field+".group", ErrPullRefused, "the consumer has a priority policy: pull for one of its priority groups %q", cfg.PriorityGroups)
}

// pinOf is the pin id a delivered message carries, "" for none.
func pinOf(h nats.Header) string {
	if h == nil {
		return ""
	}
	return h.Get(pinIDHeader)
}

// pinMismatch is the error of a pull refused for its pin id.
func pinMismatch(desc, what string) error {
	return fmt.Errorf("%w: %s: JetStream answered 423 %q: another client is pinned, or the pin moved on (unpinned, timed out); pull without priority.pin_id to be pinned anew", ErrPinIDMismatch, what, desc)
}
