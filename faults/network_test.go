package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// netProxy is an in-process toxiproxy between the bridge and nats-server.
type netProxy struct {
	proxy *toxiproxy.Proxy
	addr  string
}

func startProxy(t testing.TB, upstream string) *netProxy {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := toxiproxy.NewProxy(api, "nats", addr, upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &netProxy{proxy: p, addr: addr}
}

// add adds a toxic given as toxiproxy's JSON.
func (p *netProxy) add(t testing.TB, toxic string) {
	t.Helper()
	if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		t.Fatalf("add toxic %s: %v", toxic, err)
	}
}

func (p *netProxy) remove(t testing.TB, name string) {
	t.Helper()
	if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("remove toxic %s: %v", name, err)
	}
}

// TestPublishNetworkFaults: unary Publish from 4 clients while the
// bridge's link to nats-server, through toxiproxy, first gets 300 ms
// (± 100 ms) of latency each way for 3 s, then resets every connection
// (reset_peer) for 2 s.
func TestPublishNetworkFaults(t *testing.T) {
	d := duration(t, 5*time.Second)
	ns := startNATS(t, "nats")
	px := startProxy(t, strings.TrimPrefix(ns.url, "nats://"))
	b := startBridge(t, "nats://"+px.addr)
	b.sample(t, samplePeriod(t, d))
	createStream(t, b, "S5", 1, "s5.>")

	chk := NewChecker()
	p := &publisher{msgs: b.msgs, chk: chk, subject: "s5.x"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, "s5", 4, 0) }()

	for end := time.Now().Add(d); time.Now().Before(end); {
		pause(ctx, time.Second)
		healed := chk.FaultStart("latency 300ms ± 100ms both ways")
		px.add(t, `{"name":"lat_down","type":"latency","stream":"downstream","attributes":{"latency":300,"jitter":100}}`)
		px.add(t, `{"name":"lat_up","type":"latency","stream":"upstream","attributes":{"latency":300,"jitter":100}}`)
		pause(ctx, 3*time.Second)
		px.remove(t, "lat_down")
		px.remove(t, "lat_up")
		healed()

		pause(ctx, time.Second)
		healed = chk.FaultStart("reset_peer")
		px.add(t, `{"name":"reset","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`)
		pause(ctx, 2*time.Second)
		px.remove(t, "reset")
		healed()
	}
	stored := stopAndRead(t, chk, stop, done, ns.url, "S5")
	finish(t, chk, "publish-network-faults", stored, CheckOptions{MsgIDs: true})
}
