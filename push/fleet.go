package push

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/bridge"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// Fleet is how the service reaches the other replicas of its fleet
// (*bridge.Bridge is one): it answers their requests for its states and
// gathers theirs, so that Get and List show the fleet's.
type Fleet interface {
	// ReplicaName is this replica's name.
	ReplicaName() string
	// HandleFleet answers the other replicas' requests named name.
	HandleFleet(name string, h bridge.FleetHandler) error
	// GatherFleet asks the other replicas and gathers their answers.
	GatherFleet(ctx context.Context, name string, req []byte) (bridge.FleetGathering, error)
}

var _ Fleet = (*bridge.Bridge)(nil)

// stateRequest is the fleet request of states: a PushFleetStateRequest,
// answered with a PushFleetStateAnswer (_JETWAY.v1.push.state).
const stateRequest = "push.state"

// answerState answers another replica's PushFleetStateRequest with this
// replica's states, cut (and marked partial) to fit maxAnswer.
func (s *Service) answerState(req []byte, maxAnswer int64) ([]byte, error) {
	var r jetwayv1.PushFleetStateRequest
	if err := proto.Unmarshal(req, &r); err != nil {
		return nil, fmt.Errorf("push: unreadable state request: %w", err)
	}
	ans := &jetwayv1.PushFleetStateAnswer{States: s.states(r.GetNames())}
	for {
		data, err := proto.Marshal(ans)
		if err != nil || maxAnswer <= 0 || int64(len(data)) <= maxAnswer || len(ans.States) == 0 {
			return data, err
		}
		// Keep the first half by name (a map has no order of its own).
		names := make([]string, 0, len(ans.States))
		for name := range ans.States {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names[len(names)/2:] {
			delete(ans.States, name)
		}
		ans.Partial = true
	}
}

// states is this replica's state of each subscription named that it has a
// deliverer for (no names: of every one).
func (s *Service) states(names []string) map[string]*jetwayv1.PushSubscriptionState {
	s.mu.Lock()
	ds := make(map[string]*deliverer, len(s.deliverers))
	if len(names) == 0 {
		for name, d := range s.deliverers {
			ds[name] = d
		}
	} else {
		for _, name := range names {
			if d := s.deliverers[name]; d != nil {
				ds[name] = d
			}
		}
	}
	s.mu.Unlock()
	out := make(map[string]*jetwayv1.PushSubscriptionState, len(ds))
	for name, d := range ds {
		out[name] = d.state()
	}
	return out
}

// fleetStates is the fleet's states of subscriptions.
type fleetStates struct {
	// each is, by subscription name, each replica's state (this one's
	// included), by replica name.
	each            map[string][]*jetwayv1.PushSubscriptionState
	partial         bool
	replicasMissing []string
}

// gatherStates asks the fleet for its states of the subscriptions named
// (at least one). Without a fleet, or without a connection, the states are
// this replica's own, partial.
func (s *Service) gatherStates(ctx context.Context, names []string) fleetStates {
	replica := ""
	if s.fleet != nil {
		replica = s.fleet.ReplicaName()
	}
	out := fleetStates{each: make(map[string][]*jetwayv1.PushSubscriptionState, len(names))}
	own := s.states(names)
	for _, name := range names {
		st := own[name]
		if st == nil {
			st = &jetwayv1.PushSubscriptionState{}
		}
		st.Replica = replica
		out.each[name] = []*jetwayv1.PushSubscriptionState{st}
	}
	if s.fleet == nil {
		out.partial = true
		return out
	}
	req, err := proto.Marshal(&jetwayv1.PushFleetStateRequest{Names: names})
	if err == nil && len(req) > maxStateRequest {
		// Too many to name: ask for every one.
		req, err = proto.Marshal(&jetwayv1.PushFleetStateRequest{})
	}
	if err != nil {
		s.log.Warn("push: encode the fleet's state request", slog.Any("error", err))
		out.partial = true
		return out
	}
	g, err := s.fleet.GatherFleet(ctx, stateRequest, req)
	if err != nil {
		s.log.Warn("push: gather the fleet's states", slog.Any("error", err))
		out.partial = true
		return out
	}
	out.partial, out.replicasMissing = g.Partial, g.Missing
	for _, a := range g.Answers {
		var ans jetwayv1.PushFleetStateAnswer
		if err := proto.Unmarshal(a.Data, &ans); err != nil {
			s.log.Debug("push: unreadable state answer", slog.String("replica", a.Replica), slog.Any("error", err))
			out.partial = true
			continue
		}
		out.partial = out.partial || ans.GetPartial()
		for _, name := range names {
			st := ans.GetStates()[name]
			if st == nil {
				if ans.GetPartial() {
					continue // left out: not known
				}
				st = &jetwayv1.PushSubscriptionState{} // answered: it does not deliver it
			}
			st.Replica = a.Replica // an answer speaks for its replica only
			out.each[name] = append(out.each[name], st)
		}
	}
	for _, each := range out.each {
		slices.SortStableFunc(each, func(a, b *jetwayv1.PushSubscriptionState) int { return strings.Compare(a.GetReplica(), b.GetReplica()) })
	}
	return out
}

// maxStateRequest bounds a state request naming its subscriptions; one
// naming more asks for all (well within any NATS max payload).
const maxStateRequest = 256 << 10

// sumStates is the fleet's state from each replica's: counts summed,
// active if any is, the latest success and the latest error.
func sumStates(each []*jetwayv1.PushSubscriptionState) *jetwayv1.PushSubscriptionState {
	sum := &jetwayv1.PushSubscriptionState{}
	for _, st := range each {
		sum.Active = sum.Active || st.GetActive()
		sum.InFlight += st.GetInFlight()
		sum.Delivered += st.GetDelivered()
		sum.Failed += st.GetFailed()
		if ls := st.GetLastSuccess(); ls != nil && (sum.LastSuccess == nil || ls.AsTime().After(sum.LastSuccess.AsTime())) {
			sum.LastSuccess = timestamppb.New(ls.AsTime())
		}
		if le := st.GetLastErrorTime(); le != nil && (sum.LastErrorTime == nil || le.AsTime().After(sum.LastErrorTime.AsTime())) {
			sum.LastError, sum.LastErrorTime = st.GetLastError(), timestamppb.New(le.AsTime())
		}
	}
	return sum
}

// withStates is p with the fleet's state of it and each replica's.
func (f fleetStates) withStates(p *jetwayv1.PushSubscription) *jetwayv1.PushSubscription {
	each := f.each[p.GetName()]
	p.State, p.Replicas = sumStates(each), each
	return p
}
