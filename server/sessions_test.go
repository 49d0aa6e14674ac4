package server_test

// The session views: ListSessions and GetBridgeInfo gather what every
// replica on the NATS account holds, over core NATS, and show each caller
// only the streams it may admin-read.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// sessionsFleet runs two bridges, named r-a and r-b, on one JetStream
// server, each changed by opts too.
func sessionsFleet(t *testing.T, opts ...jetwaytest.Option) (a, b *jetwaytest.Bridge) {
	t.Helper()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir()})
	start := func(name string) *jetwaytest.Bridge {
		return jetwaytest.Start(t, append([]jetwaytest.Option{func(c *config.Config) {
			c.NATS.URLs, c.Server.ReplicaName = ns.ClientURL(), name
		}}, opts...)...)
	}
	return start("r-a"), start("r-b")
}

// sessionsFind is the session of kind on consumer, or nil.
func sessionsFind(ss []*jetwayv1.Session, kind jetwayv1.SessionKind, consumer string) *jetwayv1.Session {
	for _, s := range ss {
		if s.GetKind() == kind && s.GetConsumer() == consumer {
			return s
		}
	}
	return nil
}

// sessionsRecvMessages reads n messages from a stream's events (recv),
// skipping the others.
func sessionsRecvMessages[T interface{ GetMessage() *jetwayv1.Message }](t *testing.T, n int, recv func() (T, error)) []*jetwayv1.Message {
	t.Helper()
	var out []*jetwayv1.Message
	for len(out) < n {
		ev, err := recv()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		if m := ev.GetMessage(); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// TestSessionsAcrossReplicas: a Subscribe on one replica, a Consume and a
// waiting Fetch on the other; ListSessions on either shows all three, with
// their replica, consumer, window and counts, over gRPC and REST; a
// stopped replica no longer answers, and its sessions are gone.
func TestSessionsAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := sessionsFleet(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	if _, err := a.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "S", Subjects: []string{"s.>"}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*jetwayv1.ConsumerConfig{{Name: "sub"}, {Name: "con"}, {Name: "fet", FilterSubjects: []string{"s.never"}}} {
		if _, err := a.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "S", Config: c}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := a.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "s.x", Payload: &jetwayv1.PublishRequest_Text{Text: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}

	sctx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	sub, err := a.Messages.Subscribe(sctx, &jetwayv1.SubscribeRequest{Stream: "S", Consumer: "sub", MaxInFlight: 64})
	if err != nil {
		t.Fatal(err)
	}
	sessionsRecvMessages(t, 10, sub.Recv)

	cctx, stopCon := context.WithCancel(ctx)
	defer stopCon()
	con, err := b.Messages.Consume(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: &jetwayv1.SubscribeRequest{Stream: "S", Consumer: "con", MaxInFlight: 32}}}); err != nil {
		t.Fatal(err)
	}
	msgs := sessionsRecvMessages(t, 10, con.Recv)
	kinds := []jetwayv1.AckKind{jetwayv1.AckKind_ACK_KIND_ACK, jetwayv1.AckKind_ACK_KIND_ACK, jetwayv1.AckKind_ACK_KIND_ACK, jetwayv1.AckKind_ACK_KIND_TERM}
	for i, k := range kinds {
		if err := con.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Ack{Ack: &jetwayv1.AckOperation{Token: msgs[i].GetAckToken(), Kind: k}}}); err != nil {
			t.Fatal(err)
		}
	}

	// A Fetch that waits: its filter matches nothing.
	fctx, stopFetch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = b.Messages.Fetch(fctx, &jetwayv1.FetchRequest{Stream: "S", Consumer: "fet", Batch: 5, Wait: durationpb.New(30 * time.Second)})
	}()
	defer wg.Wait()
	defer stopFetch()

	var got *jetwayv1.ListSessionsResponse
	jetwaytest.Eventually(t, 10*time.Second, "ListSessions on r-a shows the three sessions", func() error {
		var err error
		if got, err = a.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{}); err != nil {
			return err
		}
		c := sessionsFind(got.GetSessions(), jetwayv1.SessionKind_SESSION_KIND_CONSUME, "con")
		switch {
		case len(got.GetSessions()) != 3:
			return fmt.Errorf("%d sessions: %v", len(got.GetSessions()), got.GetSessions())
		case c.GetAcked() != 3 || c.GetTermed() != 1 || c.GetInFlight() != 6:
			return fmt.Errorf("consume session %v: want acked 3, termed 1, in flight 6", c)
		}
		return nil
	})
	if want := []string{"r-a", "r-b"}; !slices.Equal(got.GetReplicasAnswered(), want) || got.GetPartial() {
		t.Errorf("replicas_answered %v partial %t, want %v and not partial", got.GetReplicasAnswered(), got.GetPartial(), want)
	}
	s := sessionsFind(got.GetSessions(), jetwayv1.SessionKind_SESSION_KIND_SUBSCRIBE, "sub")
	if s.GetReplica() != "r-a" || s.GetStream() != "S" || s.GetDelivered() != 10 || s.GetMaxInFlight() != 64 || s.GetPeer() == "" || s.GetSince() == nil {
		t.Errorf("subscribe session %v: want on r-a, stream S, 10 delivered, window 64, a peer and a since", s)
	}
	c := sessionsFind(got.GetSessions(), jetwayv1.SessionKind_SESSION_KIND_CONSUME, "con")
	if c.GetReplica() != "r-b" || c.GetDelivered() != 10 || c.GetMaxInFlight() != 32 || c.GetInFlightBytes() <= 0 {
		t.Errorf("consume session %v: want on r-b, 10 delivered, window 32, bytes in flight", c)
	}
	f := sessionsFind(got.GetSessions(), jetwayv1.SessionKind_SESSION_KIND_FETCH, "fet")
	if f.GetReplica() != "r-b" || f.GetMaxInFlight() != 5 || f.GetDelivered() != 0 {
		t.Errorf("fetch session %v: want on r-b, batch 5", f)
	}

	// Filters, and REST on the other replica.
	only, err := b.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{Consumer: "sub"})
	if err != nil || len(only.GetSessions()) != 1 || only.GetSessions()[0].GetReplica() != "r-a" {
		t.Errorf("ListSessions consumer=sub on r-b: %v, %v; want the one on r-a", only, err)
	}
	if want := []string{"r-b", "r-a"}; !slices.Equal(only.GetReplicasAnswered(), want) {
		t.Errorf("replicas_answered on r-b %v, want %v (the serving one first)", only.GetReplicasAnswered(), want)
	}
	r := b.Do(t, http.MethodGet, "/v1/sessions?stream=S", "")
	var rest struct {
		Sessions []struct {
			Replica, Kind, Stream, Consumer, Delivered, Acked string
		} `json:"sessions"`
		ReplicasAnswered []string `json:"replicas_answered"`
	}
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/sessions: HTTP %d %s", r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, &rest); err != nil {
		t.Fatalf("GET /v1/sessions: %v: %s", err, r.Body)
	}
	if len(rest.Sessions) != 3 || len(rest.ReplicasAnswered) != 2 {
		t.Errorf("GET /v1/sessions: %s; want 3 sessions from 2 replicas", r.Body)
	}
	for _, s := range rest.Sessions {
		if s.Kind == "SESSION_KIND_CONSUME" && (s.Replica != "r-b" || s.Delivered != "10" || s.Acked != "3") {
			t.Errorf("GET /v1/sessions: consume session %+v", s)
		}
	}
	if r := b.Do(t, http.MethodGet, "/v1/sessions?stream=no.such", ""); r.Status != http.StatusBadRequest {
		t.Errorf("GET /v1/sessions?stream=no.such: HTTP %d %s, want 400", r.Status, r.Body)
	}

	// The summary, of one replica and of the fleet.
	info, err := a.Admin.GetBridgeInfo(ctx, &jetwayv1.GetBridgeInfoRequest{Fleet: true})
	if err != nil {
		t.Fatal(err)
	}
	if br := info.GetBridge(); br.GetReplica() != "r-a" || br.GetNats().GetState() != "CONNECTED" || br.GetNats().GetServerId() == "" || br.GetSubscribeStreams() != 1 || br.GetUptime().AsDuration() <= 0 {
		t.Errorf("GetBridgeInfo r-a: %v", br)
	}
	if len(info.GetFleet()) != 2 || info.GetFleet()[1].GetReplica() != "r-b" || info.GetFleet()[1].GetConsumeStreams() != 1 || info.GetFleet()[1].GetInFlight() != 6 {
		t.Errorf("GetBridgeInfo fleet: %v", info.GetFleet())
	}
	r = a.Do(t, http.MethodGet, "/v1/bridge", "")
	var br struct {
		Bridge struct {
			Replica string `json:"replica"`
			NATS    struct {
				State string `json:"state"`
			} `json:"nats"`
		} `json:"bridge"`
	}
	if err := json.Unmarshal(r.Body, &br); err != nil || r.Status != http.StatusOK || br.Bridge.Replica != "r-a" || br.Bridge.NATS.State != "CONNECTED" {
		t.Errorf("GET /v1/bridge: HTTP %d %s (%v)", r.Status, r.Body, err)
	}

	// r-b stops: its streams end, and it answers no more.
	stopFetch()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	after, err := a.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.GetReplicasAnswered(), []string{"r-a"}) || len(after.GetSessions()) != 1 || after.GetSessions()[0].GetKind() != jetwayv1.SessionKind_SESSION_KIND_SUBSCRIBE {
		t.Errorf("after r-b stopped: %v", after)
	}
	stopSub()
	jetwaytest.Eventually(t, 10*time.Second, "the Subscribe ends", func() error {
		l, err := a.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
		if err != nil {
			return err
		}
		if n := len(l.GetSessions()); n != 0 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
}

// TestSessionsTenantsApart: a tenant sees the sessions of the streams it
// may admin-read, on every replica, and nothing of another tenant's, not
// even its identity names; naming another's stream is refused; the
// summary needs an admin of every stream.
func TestSessionsTenantsApart(t *testing.T) {
	t.Parallel()
	keys := map[string]string{"tenant-a": "tenant-a-key-0123456789abcdef", "tenant-b": "tenant-b-key-0123456789abcdef", "ops": "ops-key-0123456789abcdef", "worker": "worker-key-0123456789abcdef"}
	hash := func(n string) []string { return []string{auth.HashAPIKey(keys[n])} }
	path := authTWriteConfig(t, auth.File{Identities: []auth.IdentityConfig{
		{Name: "tenant-a", APIKeyHashes: hash("tenant-a"), Grant: auth.Grant{
			Consume: &auth.ConsumeGrant{Streams: []string{"A", "A.*"}},
			Admin:   &auth.AdminGrant{Streams: []string{"A"}},
		}},
		{Name: "tenant-b", APIKeyHashes: hash("tenant-b"), Grant: auth.Grant{
			Consume: &auth.ConsumeGrant{Streams: []string{"B.*"}},
			Admin:   &auth.AdminGrant{Streams: []string{"B"}},
		}},
		{Name: "worker", APIKeyHashes: hash("worker"), Grant: auth.Grant{Consume: &auth.ConsumeGrant{Streams: []string{"B.*"}}}},
		{Name: "ops", APIKeyHashes: hash("ops"), Grant: auth.Grant{Admin: &auth.AdminGrant{Write: true}}},
	}})
	a, b := sessionsFleet(t, func(c *config.Config) { c.Auth.ConfigFile = path })
	as := func(name string) context.Context {
		return authTWith(jetwaytest.Context(t, 60*time.Second), "ApiKey "+keys[name])
	}
	ops := as("ops")
	for _, s := range []string{"A", "B"} {
		if _, err := a.Admin.CreateStream(ops, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: s, Subjects: []string{string(rune('a'+s[0]-'A')) + ".>"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Admin.CreateConsumer(ops, &jetwayv1.CreateConsumerRequest{Stream: "B", Config: &jetwayv1.ConsumerConfig{Name: "work"}}); err != nil {
		t.Fatal(err)
	}
	// tenant-a's ephemeral Subscribe on r-a; tenant-b's and worker's
	// Consume streams on r-b.
	sctx, stop := context.WithCancel(as("tenant-a"))
	defer stop()
	sub, err := a.Messages.Subscribe(sctx, &jetwayv1.SubscribeRequest{Stream: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Recv(); err != nil || ev.GetSubscribed() == nil {
		t.Fatalf("tenant-a Subscribe A: %v, %v", ev, err)
	}
	for _, who := range []string{"tenant-b", "worker"} {
		cctx, stop := context.WithCancel(as(who))
		defer stop()
		con, err := b.Messages.Consume(cctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := con.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: &jetwayv1.SubscribeRequest{Stream: "B", Consumer: "work"}}}); err != nil {
			t.Fatal(err)
		}
		if ev, err := con.Recv(); err != nil || ev.GetSubscribed() == nil {
			t.Fatalf("%s Consume B/work: %v, %v", who, ev, err)
		}
	}

	identities := func(ss []*jetwayv1.Session) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.GetStream()+":"+s.GetIdentity()+"@"+s.GetReplica())
		}
		slices.Sort(out)
		return out
	}
	want := map[string][]string{
		"ops":      {"A:tenant-a@r-a", "B:tenant-b@r-b", "B:worker@r-b"},
		"tenant-a": {"A:tenant-a@r-a"},
		"tenant-b": {"B:tenant-b@r-b", "B:worker@r-b"},
	}
	jetwaytest.Eventually(t, 10*time.Second, "ops sees the three sessions", func() error {
		l, err := a.Admin.ListSessions(as("ops"), &jetwayv1.ListSessionsRequest{})
		if err != nil {
			return err
		}
		if got := identities(l.GetSessions()); !slices.Equal(got, want["ops"]) {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	// Each ask is retried: a replica slower than the gather's 100 ms quiet
	// window (a loaded machine) is missing from one answer, not from all.
	for who, w := range want {
		for _, br := range []*jetwaytest.Bridge{a, b} {
			jetwaytest.Eventually(t, 10*time.Second, who+" ListSessions on "+br.BaseURL, func() error {
				l, err := br.Admin.ListSessions(as(who), &jetwayv1.ListSessionsRequest{})
				if err != nil {
					return err
				}
				if got := identities(l.GetSessions()); !slices.Equal(got, w) {
					return fmt.Errorf("%v, want %v", got, w)
				}
				if len(l.GetReplicasAnswered()) != 2 {
					return fmt.Errorf("replicas %v, want both", l.GetReplicasAnswered())
				}
				return nil
			})
		}
	}
	// Filtering by the other's identity finds nothing, naming the other's
	// stream is refused.
	if l, err := a.Admin.ListSessions(as("tenant-a"), &jetwayv1.ListSessionsRequest{Identity: "worker"}); err != nil || len(l.GetSessions()) != 0 {
		t.Errorf("tenant-a ListSessions identity=worker: %v, %v; want none", l, err)
	}
	_, err = a.Admin.ListSessions(as("tenant-a"), &jetwayv1.ListSessionsRequest{Stream: "B"})
	authTWantCode(t, "tenant-a ListSessions stream=B", err, codes.PermissionDenied, "NOT_PERMITTED")
	authTWantREST(t, "REST tenant-a GET /v1/sessions?stream=B", a.Do(t, http.MethodGet, "/v1/sessions?stream=B", "", "Authorization", "ApiKey "+keys["tenant-a"]), http.StatusForbidden, "NOT_PERMITTED")
	// No admin grant at all: refused, as ListStreams is.
	_, err = a.Admin.ListSessions(as("worker"), &jetwayv1.ListSessionsRequest{})
	authTWantCode(t, "worker ListSessions", err, codes.PermissionDenied, "NOT_PERMITTED")
	authTWantREST(t, "REST no credential GET /v1/sessions", a.Do(t, http.MethodGet, "/v1/sessions", ""), http.StatusUnauthorized, "UNAUTHENTICATED")
	// The summary covers every tenant.
	for _, who := range []string{"tenant-a", "tenant-b"} {
		_, err := a.Admin.GetBridgeInfo(as(who), &jetwayv1.GetBridgeInfoRequest{})
		authTWantCode(t, who+" GetBridgeInfo", err, codes.PermissionDenied, "NOT_PERMITTED")
		authTWantREST(t, "REST "+who+" GET /v1/bridge", a.Do(t, http.MethodGet, "/v1/bridge", "", "Authorization", "ApiKey "+keys[who]), http.StatusForbidden, "NOT_PERMITTED")
	}
	info, err := b.Admin.GetBridgeInfo(as("ops"), &jetwayv1.GetBridgeInfoRequest{Fleet: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetBridge().GetConsumeStreams() != 2 || len(info.GetFleet()) != 2 {
		t.Errorf("ops GetBridgeInfo on r-b: %v", info)
	}
}

// TestSessionsGatherIsBounded: a responder that keeps answering (here a
// native NATS client, one answer per instance id every 20 ms) cannot hold
// ListSessions past its 1 s cap, which marks the answer partial.
func TestSessionsGatherIsBounded(t *testing.T) {
	t.Parallel()
	b := jetwaytest.Start(t, func(c *config.Config) { c.Server.ReplicaName = "only" })
	ctx := jetwaytest.Context(t, 30*time.Second)
	nc := b.JS.Conn()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sub, err := nc.Subscribe("_JETWAY.v1.sessions", func(m *nats.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				data, _ := proto.Marshal(&jetwayv1.ListSessionsResponse{ReplicasAnswered: []string{fmt.Sprintf("chatty-%03d", i)}})
				_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Data: data, Header: nats.Header{"Jetway-Instance": []string{fmt.Sprint(i)}}})
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe(); close(stop); wg.Wait() })
	start := time.Now()
	l, err := b.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !l.GetPartial() || took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("ListSessions took %v, partial %t; want about 1 s, partial", took, l.GetPartial())
	}
	if n := len(l.GetReplicasAnswered()); n < 10 || l.GetReplicasAnswered()[0] != "only" {
		t.Errorf("replicas_answered %v: want the serving one first, then the chatty ones", l.GetReplicasAnswered())
	}
	// Alone, it answers after the quiet time.
	_ = sub.Unsubscribe()
	start = time.Now()
	if l, err = b.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); l.GetPartial() || took > 800*time.Millisecond || !slices.Equal(l.GetReplicasAnswered(), []string{"only"}) {
		t.Errorf("alone: took %v, %v", took, l)
	}
}

// TestSessionsWaitForKnownReplicas: a replica that announced itself is
// waited for (up to the 1 s cap) when it answers past the 100 ms quiet
// time; one that announced itself and does not answer is reported missing
// and the answer partial; once it says goodbye it is not waited for. The
// other replica here is a native NATS client speaking the fleet's
// protocol, slow on purpose; r-b is a real bridge, announced too.
func TestSessionsWaitForKnownReplicas(t *testing.T) {
	t.Parallel()
	a, b := sessionsFleet(t)
	ctx := jetwaytest.Context(t, 60*time.Second)
	nc := a.JS.Conn()
	const slowID = "slow-instance-0001"
	announce := func(kind string) {
		t.Helper()
		if err := nc.PublishMsg(&nats.Msg{Subject: "_JETWAY.v1.presence", Data: []byte("r-slow"),
			Header: nats.Header{"Jetway-Instance": []string{slowID}, "Jetway-Presence": []string{kind}}}); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var answering sync.WaitGroup
	t.Cleanup(answering.Wait)
	answer := func(m *nats.Msg, v proto.Message) {
		answering.Add(1)
		go func() {
			defer answering.Done()
			time.Sleep(400 * time.Millisecond) // the slow replica: past the quiet time
			data, _ := proto.Marshal(v)
			_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Data: data, Header: nats.Header{"Jetway-Instance": []string{slowID}}})
		}()
	}
	sub, err := nc.Subscribe("_JETWAY.v1.*", func(m *nats.Msg) {
		switch {
		case m.Header.Get("Jetway-Instance") == slowID:
		case m.Subject == "_JETWAY.v1.sessions":
			answer(m, &jetwayv1.ListSessionsResponse{ReplicasAnswered: []string{"r-slow"}})
		case m.Subject == "_JETWAY.v1.bridges":
			answer(m, &jetwayv1.BridgeInfo{Replica: "r-slow"})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	announce("hello")

	// Waited for: every call has it (the announcement is taken as soon as
	// a replica reads it; the first call may come before).
	jetwaytest.Eventually(t, 10*time.Second, "r-a waits for r-slow", func() error {
		l, err := a.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
		if err != nil {
			return err
		}
		if want := []string{"r-a", "r-b", "r-slow"}; !slices.Equal(l.GetReplicasAnswered(), want) || l.GetPartial() || len(l.GetReplicasMissing()) != 0 {
			return fmt.Errorf("answered %v, missing %v, partial %t; want %v", l.GetReplicasAnswered(), l.GetReplicasMissing(), l.GetPartial(), want)
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		l, err := b.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"r-b", "r-a", "r-slow"}; !slices.Equal(l.GetReplicasAnswered(), want) || l.GetPartial() {
			t.Errorf("r-b, call %d: answered %v, partial %t; want %v", i, l.GetReplicasAnswered(), l.GetPartial(), want)
		}
		info, err := a.Admin.GetBridgeInfo(ctx, &jetwayv1.GetBridgeInfoRequest{Fleet: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(info.GetFleet()) != 3 || info.GetPartial() {
			t.Errorf("GetBridgeInfo, call %d: %d replicas, partial %t, missing %v", i, len(info.GetFleet()), info.GetPartial(), info.GetReplicasMissing())
		}
	}

	// Silent, still announced: missing, partial, after the cap.
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := a.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !l.GetPartial() || !slices.Equal(l.GetReplicasMissing(), []string{"r-slow"}) || !slices.Equal(l.GetReplicasAnswered(), []string{"r-a", "r-b"}) || took < 900*time.Millisecond {
		t.Errorf("r-slow silent: took %v, answered %v, missing %v, partial %t; want about 1 s, r-slow missing, partial", took, l.GetReplicasAnswered(), l.GetReplicasMissing(), l.GetPartial())
	}
	info, err := a.Admin.GetBridgeInfo(ctx, &jetwayv1.GetBridgeInfoRequest{Fleet: true})
	if err != nil {
		t.Fatal(err)
	}
	if !info.GetPartial() || !slices.Equal(info.GetReplicasMissing(), []string{"r-slow"}) {
		t.Errorf("GetBridgeInfo with r-slow silent: partial %t, missing %v", info.GetPartial(), info.GetReplicasMissing())
	}

	// Goodbye: not waited for.
	announce("bye")
	jetwaytest.Eventually(t, 10*time.Second, "r-a forgets r-slow", func() error {
		start := time.Now()
		l, err := a.Admin.ListSessions(ctx, &jetwayv1.ListSessionsRequest{})
		if err != nil {
			return err
		}
		if took := time.Since(start); l.GetPartial() || len(l.GetReplicasMissing()) != 0 || took > 800*time.Millisecond {
			return fmt.Errorf("took %v, missing %v, partial %t", took, l.GetReplicasMissing(), l.GetPartial())
		}
		return nil
	})
}
