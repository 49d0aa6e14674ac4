package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// startCluster runs n clustered JetStream servers on loopback and returns
// them; they stop at the end of the test. JetStream clustering needs every
// node's routes configured up front, so the route ports are reserved first.
func startCluster(t *testing.T, n int) []*natsserver.Server {
	t.Helper()
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var servers []*natsserver.Server
	for i := range n {
		ns, err := natsserver.NewServer(&natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			Cluster:    natsserver.ClusterOpts{Name: "jetway-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		})
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		servers = append(servers, ns)
	}
	for i, ns := range servers {
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatalf("node %d not ready", i+1)
		}
	}
	return servers
}

// TestTwoBridgesOnAClusterWithR3 is the deploy/compose.yaml topology on
// loopback: a 3-node JetStream cluster and two stateless bridges. A stream
// created through one bridge is served by the other, and survives the loss
// of a node.
func TestTwoBridgesOnAClusterWithR3(t *testing.T) {
	nodes := startCluster(t, 3)
	var urls []string
	for _, ns := range nodes {
		urls = append(urls, ns.ClientURL())
	}
	external := func(c *config.Config) { c.NATS.URLs = strings.Join(urls, ",") }
	a := jetwaytest.Start(t, external)
	b := jetwaytest.Start(t, external)
	ctx := jetwaytest.Context(t, 60*time.Second)

	// The JetStream meta leader is elected after the routes form: retry
	// until the R3 stream can be created.
	create := &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Before the election JetStream drops API requests unanswered,
		// so each attempt gets a short deadline.
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := a.Admin.CreateStream(actx, create)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create R3 stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	publish := func(ctx context.Context, i int) (*jetwayv1.PublishResponse, error) {
		return b.Messages.Publish(ctx, &jetwayv1.PublishRequest{
			Subject: "r3.x", Payload: &jetwayv1.PublishRequest_Text{Text: fmt.Sprint(i)}, MsgId: fmt.Sprint("m", i),
		})
	}
	for i := 1; i <= 10; i++ {
		if _, err := publish(ctx, i); err != nil {
			t.Fatalf("publish %d via bridge B: %v", i, err)
		}
	}
	got, err := a.Admin.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "R3"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetStream().GetState().GetMessages() != 10 {
		t.Fatalf("bridge A sees %d messages, want 10", got.GetStream().GetState().GetMessages())
	}
	cl := got.GetStream().GetCluster()
	if cl.GetName() != "jetway-test" || cl.GetLeader() == "" || len(cl.GetReplicas()) != 2 {
		t.Fatalf("cluster info %v, want a leader and 2 replicas", cl)
	}

	// Lose the stream leader: JetStream elects another and both bridges
	// go on (publishes may fail during the election; a retried publish
	// carries the same msg_id, so nothing is stored twice).
	for _, ns := range nodes {
		if ns.Name() == cl.GetLeader() {
			ns.Shutdown()
		}
	}
	for i := 11; i <= 20; i++ {
		deadline := time.Now().Add(30 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := publish(pctx, i)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %d after losing the leader: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got, err = a.Admin.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "R3"})
	if err != nil {
		t.Fatal(err)
	}
	if n := got.GetStream().GetState().GetMessages(); n != 20 {
		t.Fatalf("after failover %d messages, want 20", n)
	}
	if got.GetStream().GetCluster().GetLeader() == cl.GetLeader() {
		t.Errorf("leader still %s after it stopped", cl.GetLeader())
	}
}

// TestReadinessOutlastsMetaLeaderLoss: when the JetStream meta leader's
// node is lost, account info (which only the meta leader answers) goes
// unanswered until a new one is elected; a bridge connected to a surviving
// node stays ready throughout, rather than every replica turning unready
// at once.
func TestReadinessOutlastsMetaLeaderLoss(t *testing.T) {
	nodes := startCluster(t, 3)
	var leader *natsserver.Server
	jetwaytest.Eventually(t, 30*time.Second, "a JetStream meta leader", func() error {
		for _, ns := range nodes {
			if ns.JetStreamIsLeader() {
				leader = ns
				return nil
			}
		}
		return errors.New("none yet")
	})
	var urls []string
	for _, ns := range nodes {
		if ns != leader {
			urls = append(urls, ns.ClientURL())
		}
	}
	b := jetwaytest.Start(t, func(c *config.Config) { c.NATS.URLs = strings.Join(urls, ",") })
	ready := func() int {
		resp, err := http.Get(b.BaseURL + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	jetwaytest.Eventually(t, 20*time.Second, "ready", func() error {
		if code := ready(); code != http.StatusOK {
			return fmt.Errorf("readyz %d", code)
		}
		return nil
	})
	leader.Shutdown()
	killed := time.Now()
	probes := 0
	for {
		elected := false
		for _, ns := range nodes {
			elected = elected || (ns != leader && ns.JetStreamIsLeader())
		}
		if code := ready(); code != http.StatusOK {
			t.Fatalf("readyz %d %s after the meta leader's node was lost (probe %d)", code, time.Since(killed).Round(time.Millisecond), probes)
		}
		probes++
		if elected && probes > 1 {
			break
		}
		if time.Since(killed) > 25*time.Second {
			t.Fatal("no new meta leader within 25s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ready through %d probes; a new meta leader after %s", probes, time.Since(killed).Round(time.Millisecond))
}
