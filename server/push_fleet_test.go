package server_test

// A push subscription's delivery state is the fleet's (issue 19): every
// replica delivers it through the shared durable, and Get and List, asked
// of any replica, gather every replica's state over core NATS (as the
// session views do), sum it and list each one's.

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// replicasOf is the replica names of a subscription's per-replica states.
func replicasOf(p *jetwayv1.PushSubscription) []string {
	var names []string
	for _, st := range p.GetReplicas() {
		names = append(names, st.GetReplica())
	}
	return names
}

// waitActive waits until b shows subscription name active on every one
// of replicas (and on them only).
func waitActive(t *testing.T, b *jetwaytest.Bridge, name string, replicas ...string) {
	t.Helper()
	jetwaytest.Eventually(t, 15*time.Second, fmt.Sprintf("%s active on %v", name, replicas), func() error {
		g, err := jetwayv1.NewPushServiceClient(b.Conn).GetPushSubscription(jetwaytest.Context(t, 5*time.Second), &jetwayv1.GetPushSubscriptionRequest{Name: name})
		if err != nil {
			return err
		}
		p := g.GetSubscription()
		if !slices.Equal(replicasOf(p), replicas) {
			return fmt.Errorf("replicas %v", replicasOf(p))
		}
		for _, st := range p.GetReplicas() {
			if !st.GetActive() {
				return fmt.Errorf("%s not active: %v", st.GetReplica(), st)
			}
		}
		return nil
	})
}

// checkFleetState checks a subscription as Get or List showed it: the
// fleet's state has delivered and failed, replicas are want with their own
// counts summing to it.
func checkFleetState(t *testing.T, who string, p *jetwayv1.PushSubscription, delivered, failed int64, want ...string) {
	t.Helper()
	st := p.GetState()
	if st.GetDelivered() != delivered || st.GetFailed() != failed || !st.GetActive() || st.GetReplica() != "" {
		t.Errorf("%s: fleet state %v; want delivered %d, failed %d, active, no replica", who, st, delivered, failed)
	}
	if st.GetLastSuccess() == nil || (failed > 0 && (st.GetLastError() != "HTTP 500" || st.GetLastErrorTime() == nil)) {
		t.Errorf("%s: last success %v, last error %q at %v", who, st.GetLastSuccess(), st.GetLastError(), st.GetLastErrorTime())
	}
	if got := replicasOf(p); !slices.Equal(got, want) {
		t.Fatalf("%s: replicas %v, want %v", who, got, want)
	}
	var d, f int64
	for _, r := range p.GetReplicas() {
		d, f = d+r.GetDelivered(), f+r.GetFailed()
		if len(want) > 1 && r.GetDelivered() == 0 {
			t.Errorf("%s: %s delivered nothing", who, r.GetReplica())
		}
		if ls := r.GetLastSuccess(); ls != nil && ls.AsTime().After(st.GetLastSuccess().AsTime()) {
			t.Errorf("%s: %s's last success %v is after the fleet's %v", who, r.GetReplica(), ls.AsTime(), st.GetLastSuccess().AsTime())
		}
	}
	if d != delivered || f != failed {
		t.Errorf("%s: the replicas' own counts sum to delivered %d, failed %d; want %d, %d", who, d, f, delivered, failed)
	}
}

// TestPushStateIsTheFleets: two replicas deliver one subscription to a
// receiver that answers 500 to the first 3 requests, then 200. Get and
// List, asked of either replica, show the same fleet state (delivered n,
// failed 3) and both replicas' own, summing to it. A replica that stops
// cleanly drops out of the list (not missing, not partial); one known to
// be up that does not answer is missing, and the answer partial.
func TestPushStateIsTheFleets(t *testing.T) {
	t.Parallel()
	bs := pushReplicas(t, 2)
	c := pushStream(t, bs[0].JS, "FLEET", jetstream.ConsumerConfig{AckWait: 30 * time.Second})
	var answered atomic.Int64
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ pushReq) int {
		if answered.Add(1) <= 3 {
			w.Header().Set("Retry-After", "0") // again at once
			return http.StatusInternalServerError
		}
		time.Sleep(5 * time.Millisecond) // both replicas get their share
		return http.StatusOK
	})
	createPush(t, bs[0], &jetwayv1.PushSubscription{Name: "fleet", Stream: "FLEET", Consumer: "hook", Endpoint: rc.URL, Concurrency: 4})
	waitActive(t, bs[0], "fleet", "bridge-0", "bridge-1")
	waitActive(t, bs[1], "fleet", "bridge-0", "bridge-1")

	const n = 100
	publishN(t, bs[0].JS, "fleet.x", 0, n)
	ackedAll(t, c, n, 30*time.Second)
	if got := len(rc.requests()); got != n+3 {
		t.Fatalf("the receiver got %d requests, want %d", got, n+3)
	}
	// The counts move after the acks: poll until the fleet has them all.
	for i, b := range bs {
		jetwaytest.Eventually(t, 10*time.Second, fmt.Sprintf("replica %d shows the fleet's %d", i, n), func() error {
			g, err := jetwayv1.NewPushServiceClient(b.Conn).GetPushSubscription(jetwaytest.Context(t, 5*time.Second), &jetwayv1.GetPushSubscriptionRequest{Name: "fleet"})
			if err != nil {
				return err
			}
			if st := g.GetSubscription().GetState(); st.GetDelivered() != n || st.GetFailed() != 3 {
				return fmt.Errorf("delivered %d, failed %d", st.GetDelivered(), st.GetFailed())
			}
			return nil
		})
	}
	ctx := jetwaytest.Context(t, 30*time.Second)
	own := map[string]int64{}
	for i, b := range bs {
		ps := jetwayv1.NewPushServiceClient(b.Conn)
		g, err := ps.GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: "fleet"})
		if err != nil {
			t.Fatal(err)
		}
		who := fmt.Sprintf("Get of replica %d", i)
		if g.GetPartial() || len(g.GetReplicasMissing()) != 0 {
			t.Errorf("%s: partial %t, missing %v", who, g.GetPartial(), g.GetReplicasMissing())
		}
		checkFleetState(t, who, g.GetSubscription(), n, 3, "bridge-0", "bridge-1")
		for _, r := range g.GetSubscription().GetReplicas() {
			own[r.GetReplica()] = r.GetDelivered()
		}
		l, err := ps.ListPushSubscriptions(ctx, &jetwayv1.ListPushSubscriptionsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		who = fmt.Sprintf("List of replica %d", i)
		if len(l.GetSubscriptions()) != 1 || l.GetPartial() || len(l.GetReplicasMissing()) != 0 {
			t.Fatalf("%s: %d subscriptions, partial %t, missing %v", who, len(l.GetSubscriptions()), l.GetPartial(), l.GetReplicasMissing())
		}
		checkFleetState(t, who, l.GetSubscriptions()[0], n, 3, "bridge-0", "bridge-1")
	}
	// REST shows the same, in the JSON names.
	r := bs[1].Do(t, http.MethodGet, "/v1/push-subscriptions/fleet", "")
	body := r.JSON(t)
	sub, _ := body["subscription"].(map[string]any)
	state, _ := sub["state"].(map[string]any)
	replicas, _ := sub["replicas"].([]any)
	if r.Status != 200 || state["delivered"] != fmt.Sprint(n) || len(replicas) != 2 || body["partial"] != false {
		t.Errorf("REST Get: %d %s", r.Status, r.Body)
	}

	// A replica known to be up that does not answer (here a native NATS
	// client announcing itself as one) is missing after the 1 s cap; the
	// state is the others', partial.
	nc := bs[0].JS.Conn()
	announce := func(kind string) {
		t.Helper()
		if err := nc.PublishMsg(&nats.Msg{Subject: "_JETWAY.v1.presence", Data: []byte("r-silent"),
			Header: nats.Header{"Jetway-Instance": []string{"silent-instance-0001"}, "Jetway-Presence": []string{kind}}}); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	announce("hello")
	jetwaytest.Eventually(t, 10*time.Second, "r-silent missing", func() error {
		start := time.Now()
		g, err := jetwayv1.NewPushServiceClient(bs[0].Conn).GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: "fleet"})
		if err != nil {
			return err
		}
		if took := time.Since(start); !g.GetPartial() || !slices.Equal(g.GetReplicasMissing(), []string{"r-silent"}) || took < 900*time.Millisecond {
			return fmt.Errorf("partial %t, missing %v, took %v", g.GetPartial(), g.GetReplicasMissing(), took)
		}
		checkFleetState(t, "Get with r-silent", g.GetSubscription(), n, 3, "bridge-0", "bridge-1")
		return nil
	})
	announce("bye")

	// Replica 1 stops cleanly (it says goodbye): the state is replica 0's
	// own, whole, at once.
	if err := bs[1].Stop(); err != nil {
		t.Fatalf("stop replica 1: %v", err)
	}
	jetwaytest.Eventually(t, 10*time.Second, "replica 1 gone from the fleet's state", func() error {
		start := time.Now()
		ps := jetwayv1.NewPushServiceClient(bs[0].Conn)
		g, err := ps.GetPushSubscription(ctx, &jetwayv1.GetPushSubscriptionRequest{Name: "fleet"})
		if err != nil {
			return err
		}
		took := time.Since(start)
		p := g.GetSubscription()
		if g.GetPartial() || len(g.GetReplicasMissing()) != 0 || !slices.Equal(replicasOf(p), []string{"bridge-0"}) || took > 900*time.Millisecond {
			return fmt.Errorf("partial %t, missing %v, replicas %v, took %v", g.GetPartial(), g.GetReplicasMissing(), replicasOf(p), took)
		}
		if d := p.GetState().GetDelivered(); d != own["bridge-0"] {
			return fmt.Errorf("delivered %d, want replica 0's own %d", d, own["bridge-0"])
		}
		l, err := ps.ListPushSubscriptions(ctx, &jetwayv1.ListPushSubscriptionsRequest{Stream: "FLEET"})
		if err != nil {
			return err
		}
		if l.GetPartial() || len(l.GetSubscriptions()) != 1 || !slices.Equal(replicasOf(l.GetSubscriptions()[0]), []string{"bridge-0"}) {
			return fmt.Errorf("List: partial %t, %v", l.GetPartial(), l.GetSubscriptions())
		}
		return nil
	})
}
