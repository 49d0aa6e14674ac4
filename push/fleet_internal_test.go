package push

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jetway-dev/jetway/bridge/acktoken"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestSumStates: counts summed, active if any, the latest success, the
// latest error with its time.
func TestSumStates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(s) * time.Second)) }
	sum := sumStates([]*jetwayv1.PushSubscriptionState{
		{Replica: "a", Active: false, InFlight: 1, Delivered: 10, Failed: 2, LastSuccess: at(5), LastError: "HTTP 503", LastErrorTime: at(9)},
		{Replica: "b", Active: true, InFlight: 3, Delivered: 7, Failed: 1, LastSuccess: at(8), LastError: "timeout after 10s", LastErrorTime: at(4)},
		{Replica: "c"},
	})
	want := &jetwayv1.PushSubscriptionState{Active: true, InFlight: 4, Delivered: 17, Failed: 3, LastSuccess: at(8), LastError: "HTTP 503", LastErrorTime: at(9)}
	if !proto.Equal(sum, want) {
		t.Errorf("sum %v, want %v", sum, want)
	}
	if got := sumStates(nil); !proto.Equal(got, &jetwayv1.PushSubscriptionState{}) {
		t.Errorf("sum of none %v", got)
	}
}

func newTestService(t *testing.T) *Service {
	t.Helper()
	key, err := acktoken.RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := acktoken.New(key)
	if err != nil {
		t.Fatal(err)
	}
	// Never started: nothing uses the connection.
	s, err := New(Options{JetStream: func(context.Context) (jetstream.JetStream, error) { return nil, errors.New("no NATS") }, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestAnswerStateIsBounded: an answer over the limit is cut, by name,
// and says so; a request it cannot read is an error.
func TestAnswerStateIsBounded(t *testing.T) {
	s := newTestService(t)
	for i := range 100 {
		name := "sub-" + strconv.Itoa(100+i)
		d := newDeliverer(s, nil, record{Name: name, Concurrency: 1}, nil, 1)
		d.stats.failed("HTTP 500: " + name)
		s.deliverers[name] = d
	}
	req, _ := proto.Marshal(&jetwayv1.PushFleetStateRequest{})
	whole, err := s.answerState(req, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ans jetwayv1.PushFleetStateAnswer
	if err := proto.Unmarshal(whole, &ans); err != nil || len(ans.GetStates()) != 100 || ans.GetPartial() {
		t.Fatalf("whole answer: %d states, partial %t, %v", len(ans.GetStates()), ans.GetPartial(), err)
	}
	limit := int64(len(whole) / 3)
	cut, err := s.answerState(req, limit)
	if err != nil {
		t.Fatal(err)
	}
	ans.Reset()
	if err := proto.Unmarshal(cut, &ans); err != nil || int64(len(cut)) > limit || !ans.GetPartial() || len(ans.GetStates()) == 0 || ans.GetStates()["sub-100"] == nil {
		t.Errorf("cut answer: %d bytes (limit %d), %d states, partial %t, %v", len(cut), limit, len(ans.GetStates()), ans.GetPartial(), err)
	}
	named, _ := proto.Marshal(&jetwayv1.PushFleetStateRequest{Names: []string{"sub-150", "nope"}})
	one, err := s.answerState(named, 0)
	ans.Reset()
	if err != nil || proto.Unmarshal(one, &ans) != nil || len(ans.GetStates()) != 1 || ans.GetStates()["sub-150"].GetFailed() != 1 {
		t.Errorf("named answer: %v, %v", ans.GetStates(), err)
	}
	if _, err := s.answerState([]byte{0xff, 0xff}, 0); err == nil {
		t.Error("an unreadable request: no error")
	}
}

// TestGatherStatesWithoutFleet: without a fleet the state is this
// replica's own, partial.
func TestGatherStatesWithoutFleet(t *testing.T) {
	s := newTestService(t)
	d := newDeliverer(s, nil, record{Name: "x", Concurrency: 1}, nil, 1)
	d.stats.succeeded()
	s.deliverers["x"] = d
	fs := s.gatherStates(context.Background(), []string{"x", "y"})
	if !fs.partial || len(fs.replicasMissing) != 0 {
		t.Errorf("partial %t, missing %v", fs.partial, fs.replicasMissing)
	}
	p := fs.withStates(&jetwayv1.PushSubscription{Name: "x"})
	if p.GetState().GetDelivered() != 1 || len(p.GetReplicas()) != 1 || p.GetReplicas()[0].GetDelivered() != 1 {
		t.Errorf("x: %v", p)
	}
	if p := fs.withStates(&jetwayv1.PushSubscription{Name: "y"}); p.GetState().GetDelivered() != 0 || len(p.GetReplicas()) != 1 {
		t.Errorf("y: %v", p)
	}
}
