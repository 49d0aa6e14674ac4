package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jetway-dev/jetway/config"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestNATSJSDomain: a bridge on a leaf node whose own JetStream is domain
// "leaf", given --nats-js-domain hub, works on the hub's JetStream across
// the leaf connection (nats-server denies $JS.API.> across it: only
// $JS.hub.API.> reaches the hub). The stream it creates is the hub's, not
// the leaf's; a publish, a fetch and a sync ack through the bridge land
// there.
func TestNATSJSDomain(t *testing.T) {
	leafPort := freePort(t)
	hub := jetwaytest.NATSServer(t, &natsserver.Options{
		ServerName: "hub", JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		LeafNode: natsserver.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort},
	})
	leaf := jetwaytest.NATSServer(t, &natsserver.Options{
		ServerName: "leaf", JetStream: true, JetStreamDomain: "leaf", StoreDir: t.TempDir(),
		LeafNode: natsserver.LeafNodeOpts{Remotes: []*natsserver.RemoteLeafOpts{{
			URLs: []*url.URL{{Scheme: "nats-leaf", Host: fmt.Sprintf("127.0.0.1:%d", leafPort)}},
		}}},
	})
	// The leaf connection is up before the bridge starts.
	waitFor(t, "the leaf node's connection to the hub", func() bool { return hub.NumLeafNodes() == 1 && leaf.NumLeafNodes() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The hub's domain is reached from the leaf only through its prefix
	// (a check of the topology: without it the test proves nothing).
	leafNC, err := nats.Connect(leaf.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer leafNC.Close()
	hubJS, err := jetstream.NewWithDomain(leafNC, "hub")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hub's JetStream from the leaf", func() bool {
		ai, err := hubJS.AccountInfo(ctx)
		return err == nil && ai.Domain == "hub"
	})
	localJS, err := jetstream.New(leafNC)
	if err != nil {
		t.Fatal(err)
	}
	if ai, err := localJS.AccountInfo(ctx); err != nil || ai.Domain != "leaf" {
		t.Fatalf("the leaf's own JetStream: %+v, %v; want domain leaf", ai, err)
	}

	b := jetwaytest.Start(t, func(c *config.Config) {
		c.NATS.URLs = leaf.ClientURL()
		c.NATS.JSDomain = "hub"
	})
	if _, err := b.Admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{Name: "DOM", Subjects: []string{"dom.>"}}}); err != nil {
		t.Fatalf("CreateStream through the bridge: %v", err)
	}
	if _, err := localJS.Stream(ctx, "DOM"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the leaf's own JetStream has the stream (%v): the bridge did not use the domain", err)
	}
	if _, err := b.Admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: "DOM", Config: &jetwayv1.ConsumerConfig{Name: "c"}}); err != nil {
		t.Fatalf("CreateConsumer through the bridge: %v", err)
	}
	pub, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "dom.1", Payload: &jetwayv1.PublishRequest_Text{Text: "x"}})
	if err != nil {
		t.Fatalf("Publish through the bridge: %v", err)
	}
	if pub.GetStream() != "DOM" || pub.GetSequence() != 1 {
		t.Errorf("publish ack %v: want stream DOM, sequence 1", pub)
	}
	f, err := b.Messages.Fetch(ctx, &jetwayv1.FetchRequest{Stream: "DOM", Consumer: "c", Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(f.GetMessages()) != 1 {
		t.Fatalf("Fetch through the bridge: %v, %v; want one message", f, err)
	}
	ack, err := b.Messages.Ack(ctx, &jetwayv1.AckRequest{Sync: true, Operations: []*jetwayv1.AckOperation{{Token: f.GetMessages()[0].GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_ACK}}})
	if err != nil || ack.GetResults()[0].GetError() != nil {
		t.Fatalf("sync Ack through the bridge: %v, %v", ack, err)
	}
	s, err := hubJS.Stream(ctx, "DOM")
	if err != nil {
		t.Fatalf("the hub's stream: %v", err)
	}
	if s.CachedInfo().State.Msgs != 1 {
		t.Errorf("hub stream state %+v: want 1 message", s.CachedInfo().State)
	}
	c, err := hubJS.Consumer(ctx, "DOM", "c")
	if err != nil {
		t.Fatal(err)
	}
	if ci := c.CachedInfo(); ci.NumAckPending != 0 || ci.AckFloor.Stream != 1 {
		t.Errorf("hub consumer %+v: want the message acked", ci)
	}
}
