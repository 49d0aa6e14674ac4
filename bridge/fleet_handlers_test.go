package bridge_test

// The fleet's requests of other packages (HandleFleet, GatherFleet): real
// nats-server, real bridges answering on their own connections.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/bridge"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// oneConn is a bridge's connections: one NATS connection for everything.
type oneConn struct{ js jetstream.JetStream }

func (c oneConn) JetStream(context.Context) (jetstream.JetStream, error) { return c.js, nil }
func (c oneConn) Acquire(context.Context) (jetstream.JetStream, func(), error) {
	return c.js, func() {}, nil
}

// fleetReplica is a bridge named name on its own connection to ns,
// answering the fleet, and announcing itself until stop is called.
type fleetReplica struct {
	b    *bridge.Bridge
	stop func()
}

func startReplica(t *testing.T, ns *natsserver.Server, name string) fleetReplica {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(oneConn{js}, bridge.WithFleet(bridge.Fleet{Replica: name, Conn: func() *nats.Conn { return nc }}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Answer(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Announce(ctx)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return fleetReplica{b: b, stop: stop}
}

func TestHandleFleetNames(t *testing.T) {
	t.Parallel()
	b, err := bridge.New(oneConn{})
	if err != nil {
		t.Fatal(err)
	}
	echo := func(req []byte, _ int64) ([]byte, error) { return req, nil }
	for _, tc := range []struct {
		name    string
		wantErr bool
	}{
		{"push.state", false},
		{"a-b_c.d0", false},
		{"push.state", true}, // taken
		{"", true},
		{"sessions", true},
		{"bridges", true},
		{"presence", true},
		{"Push", true},
		{"push..state", true},
		{".push", true},
		{"push.", true},
		{"push.*", true},
		{"push.>", true},
		{"push state", true},
		{strings.Repeat("a", 65), true},
	} {
		err := b.HandleFleet(tc.name, echo)
		if (err != nil) != tc.wantErr || err != nil && !errors.Is(err, bridge.ErrInvalidOption) {
			t.Errorf("HandleFleet(%q): %v, want error %t", tc.name, err, tc.wantErr)
		}
	}
	if err := b.HandleFleet("nil.handler", nil); !errors.Is(err, bridge.ErrInvalidOption) {
		t.Errorf("nil handler: %v", err)
	}
	if _, err := b.GatherFleet(context.Background(), "sessions", nil); !errors.Is(err, bridge.ErrInvalidOption) {
		t.Errorf("GatherFleet(sessions): %v", err)
	}
	// No fleet connection: nothing gathered, partial.
	g, err := b.GatherFleet(context.Background(), "push.state", nil)
	if err != nil || !g.Partial || len(g.Answers) != 0 {
		t.Errorf("without a connection: %+v, %v; want partial, no answers", g, err)
	}
}

// TestGatherFleet: a replica's registered handler answers the others
// (with its name); a known replica that does not handle a request, or
// whose answer is over the max payload, is missing; one that stopped
// cleanly is not waited for.
func TestGatherFleet(t *testing.T) {
	t.Parallel()
	ns := jetwaytest.NATSServer(t, &natsserver.Options{JetStream: true, StoreDir: t.TempDir(), MaxPayload: 8 << 10})
	a, b := startReplica(t, ns, "r-a"), startReplica(t, ns, "r-b")
	for _, r := range []fleetReplica{a, b} {
		name := r.b.ReplicaName()
		if err := r.b.HandleFleet("test.echo", func(req []byte, maxAnswer int64) ([]byte, error) {
			if maxAnswer <= 0 || maxAnswer >= 8<<10 {
				return nil, errors.New("max answer not from the max payload")
			}
			return append([]byte(name+":"), req...), nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := r.b.HandleFleet("test.big", func(_ []byte, maxAnswer int64) ([]byte, error) {
			return make([]byte, maxAnswer+1), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := jetwaytest.Context(t, 30*time.Second)
	// Each knows the other once its hello is in.
	jetwaytest.Eventually(t, 10*time.Second, "r-b known to r-a", func() error {
		g, err := a.b.GatherFleet(ctx, "test.unhandled", nil)
		if err != nil {
			return err
		}
		if !g.Partial || !slices.Equal(g.Missing, []string{"r-b"}) || len(g.Answers) != 0 {
			return errors.New("r-b not missing yet")
		}
		return nil
	})
	g, err := a.b.GatherFleet(ctx, "test.echo", []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Partial || len(g.Missing) != 0 || len(g.Answers) != 1 || g.Answers[0].Replica != "r-b" || string(g.Answers[0].Data) != "r-b:hi" {
		t.Errorf("echo of r-a: %+v", g)
	}
	g, err = a.b.GatherFleet(ctx, "test.big", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Partial || !slices.Equal(g.Missing, []string{"r-b"}) || len(g.Answers) != 0 {
		t.Errorf("an answer over the max payload: %+v; want none, r-b missing", g)
	}
	// r-b says goodbye (a clean stop): not waited for, not missing.
	b.stop()
	jetwaytest.Eventually(t, 10*time.Second, "r-b gone", func() error {
		start := time.Now()
		g, err := a.b.GatherFleet(ctx, "test.echo", nil)
		if err != nil {
			return err
		}
		if took := time.Since(start); g.Partial || len(g.Missing) != 0 || took > 900*time.Millisecond {
			return errors.New("r-b still waited for")
		}
		return nil
	})
}
