package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/types/known/durationpb"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// TestLoopbackTopology runs deploy/loopback/up.sh (3 clustered nats-server
// requiring the bridges' NKey, 2 bridges requiring an API key) and, under a
// publish and consume load, SIGKILLs the R3 stream leader's node and then
// one bridge replica; deploy/loopback/down.sh stops the rest.
//
// The clients are what a real gRPC client of two replicas without a load
// balancer process is: one gRPC channel over both bridges with gRPC's
// round_robin policy (each Publish goes to the next ready bridge, a
// Consume stream opens on the next ready one), Publish with a msg id
// retried on UNAVAILABLE, and two Consume streams (acks inline) on one
// durable consumer that reopen when they end.
//
// It passes when:
//   - nothing acked is lost (every acked publish is in the stream, once:
//     msg ids), and every stored message is delivered; duplicate
//     deliveries are counted, not failed; the consumer ends with nothing
//     pending and nothing awaiting an ack (JetStream took every ack);
//   - readiness reflects each fault, /readyz polled every 20 ms on both
//     bridges. The node kill: a bridge whose NATS connection was on the
//     killed node logs its reconnection to a surviving node within 5 s and
//     answers 200 to every probe sent after that reconnection (it may
//     answer 503 only before it); the other bridge answers 200 to every
//     probe throughout. The killed node is chosen not to be the JetStream
//     meta leader: only the meta leader answers readiness's account info
//     (the bridge forgives its silence for 15 s after its last answer, so
//     every bridge stays ready through the election; not what this test
//     checks). Should the meta leader move onto the node before the kill
//     anyway, 200 is required only from 1 s after a surviving node names
//     a new meta leader. The bridge kill: the killed
//     bridge answers no probe sent after it is gone, the other answers
//     200 to every probe;
//   - each Consume stream that was on the killed bridge delivers a message
//     through the other bridge within 5 s of the kill.
func TestLoopbackTopology(t *testing.T) {
	lb := upLoopback(t)

	nc, js := lb.nativeJS(t)
	conn, stats := lb.clientConn(t)
	admin, msgs := jetwayv1.NewAdminServiceClient(conn), jetwayv1.NewMessageServiceClient(conn)

	// An R3 stream and a durable consumer, through the bridges' API.
	retryAdmin(t, "create stream "+lbStream, func(ctx context.Context) error {
		_, err := admin.CreateStream(ctx, &jetwayv1.CreateStreamRequest{Config: &jetwayv1.StreamConfig{
			Name: lbStream, Subjects: []string{"loop.>"}, Storage: jetwayv1.StorageType_STORAGE_TYPE_FILE, Replicas: 3,
			DuplicateWindow: durationpb.New(10 * time.Minute), AllowDirect: true,
		}})
		return err
	})
	retryAdmin(t, "create consumer "+lbConsumer, func(ctx context.Context) error {
		_, err := admin.CreateConsumer(ctx, &jetwayv1.CreateConsumerRequest{Stream: lbStream, Config: &jetwayv1.ConsumerConfig{
			Name: lbConsumer, AckPolicy: jetwayv1.AckPolicy_ACK_POLICY_EXPLICIT, AckWait: durationpb.New(3 * time.Second),
		}})
		return err
	})
	target, meta := lb.arrangeLeader(t, nc, js, admin)

	// The load: 4 publishers (one message every 4 ms each, at most
	// maxPublishes in all) and 2 Consume streams.
	const maxPublishes = 40000
	chk := NewChecker()
	pubCtx, stopPub := context.WithTimeout(context.Background(), 45*time.Second)
	defer stopPub()
	var pubWG sync.WaitGroup
	var published atomic.Int64
	p := &publisher{msgs: msgs, chk: chk, subject: "loop.x"}
	for w := range 4 {
		pubWG.Go(func() {
			for n := 0; pubCtx.Err() == nil && published.Add(1) <= maxPublishes; n++ {
				p.publish(pubCtx, fmt.Sprintf("lb-%d-%d", w, n))
				pause(pubCtx, 4*time.Millisecond)
			}
		})
	}
	conCtx, stopCon := context.WithCancel(context.Background())
	defer stopCon()
	var conWG sync.WaitGroup
	consumers := []*consumeClient{{name: "consumer-1"}, {name: "consumer-2"}}
	for _, c := range consumers {
		c.msgs, c.chk, c.logf = msgs, chk, t.Logf
		conWG.Go(func() { c.run(conCtx) })
	}
	defer func() { stopPub(); stopCon(); pubWG.Wait(); conWG.Wait() }()
	ready := lb.watchReadiness(t)
	if err := waitFor(context.Background(), 15*time.Second, nil, "both consumers receiving", func() bool {
		return consumers[0].delivered() > 0 && consumers[1].delivered() > 0
	}); err != nil {
		t.Fatal(err)
	}
	pause(context.Background(), 2*time.Second)

	// Fault 1: SIGKILL the stream leader's node.
	onTarget, others := lb.bridgesOn(target)
	metaNow := lb.metaLeader()
	if metaNow != meta {
		t.Logf("the meta leader moved from %s to %s before the kill", meta, metaNow)
	}
	healed := chk.FaultStart("SIGKILL stream leader " + target)
	killed := lb.kill(t, target)
	healed()
	var newLeader string
	if err := waitFor(context.Background(), 20*time.Second, nil, "a new stream leader", func() bool {
		newLeader = lb.streamLeaderVia(admin)
		return newLeader != "" && newLeader != target
	}); err != nil {
		t.Error(err)
	}
	elected := time.Since(killed)
	if err := waitFor(context.Background(), 20*time.Second, nil, "a publish acked after the node kill", func() bool {
		return stats.firstOKAfter(killed, "") > 0
	}); err != nil {
		t.Error(err)
	}
	for _, b := range onTarget {
		if err := waitFor(context.Background(), 5*time.Second, nil, b+" reconnected to a surviving node", func() bool {
			ev, ok := lb.lastConnEvent(b)
			return ok && ev.at.After(killed.Add(-10*time.Millisecond)) && ev.node != target
		}); err != nil {
			t.Error(err)
		}
	}
	// Readiness, as the test's doc says: from when on every probe sent
	// must be 200.
	readyFrom := map[string]time.Time{}
	for _, b := range others {
		readyFrom[b] = killed
	}
	for _, b := range onTarget {
		if ev, ok := lb.lastConnEvent(b); ok && ev.node != target {
			// The log's times are whole milliseconds: probes from the next one.
			readyFrom[b] = ev.at.Add(time.Millisecond)
		} else {
			readyFrom[b] = killed.Add(5 * time.Second)
		}
	}
	if metaNow == target {
		// Unplanned (the meta leader moved onto the node before the kill):
		// readiness's account info has no answer until a new meta leader.
		var metaAt time.Time
		if err := waitFor(context.Background(), 20*time.Second, nil, "a new meta leader", func() bool {
			m := lb.metaLeader()
			metaAt = time.Now()
			return m != "" && m != target
		}); err != nil {
			t.Error(err)
		}
		t.Logf("node kill: %s was the meta leader too: a new one after %s", target, metaAt.Sub(killed).Round(time.Millisecond))
		for b, from := range readyFrom {
			readyFrom[b] = later(from, metaAt.Add(time.Second))
		}
	}
	pause(context.Background(), 2*time.Second)
	phase1End := time.Now()
	for _, from := range readyFrom {
		phase1End = later(phase1End, from.Add(time.Second))
	}
	pause(context.Background(), time.Until(phase1End))
	t.Logf("node kill: %s (stream leader; JetStream meta leader %s) SIGKILLed; new stream leader %s after %s; longest time without an acked publish %s",
		target, metaNow, newLeader, elected.Round(time.Millisecond), stats.longestGap(killed, phase1End).Round(time.Millisecond))
	for _, c := range consumers {
		t.Logf("node kill: %s: first delivery after it %s later", c.name, c.firstDeliveryAfter(killed, "").Round(time.Millisecond))
	}
	for _, b := range bridgeNames {
		on := "was not on " + target
		if slices.Contains(onTarget, b) {
			ev, _ := lb.lastConnEvent(b)
			on = fmt.Sprintf("was on %s: disconnected %s after the kill, reconnected to %s %s after the kill",
				target, lb.disconnectedAt(b, killed), ev.node, ev.at.Sub(killed).Round(time.Millisecond))
		}
		t.Logf("node kill: %s %s; /readyz: %s; 200 required from +%s", b, on, ready[b].summary(killed, phase1End), readyFrom[b].Sub(killed).Round(time.Millisecond))
		if bad := ready[b].notOK(readyFrom[b], phase1End); len(bad) > 0 {
			t.Errorf("%s: /readyz not 200 from +%s: %v", b, readyFrom[b].Sub(killed).Round(time.Millisecond), bad)
		}
	}

	// Fault 2: SIGKILL the bridge that carries consumer-1's stream.
	var victim string
	if err := waitFor(context.Background(), 5*time.Second, nil, "consumer-1 on a bridge", func() bool {
		victim = lb.bridgeAt(consumers[0].current())
		return victim != ""
	}); err != nil {
		t.Fatal(err)
	}
	survivor := lb.other(victim)
	var moved []*consumeClient
	for _, c := range consumers {
		if lb.bridgeAt(c.current()) == victim {
			moved = append(moved, c)
		}
	}
	healed = chk.FaultStart("SIGKILL " + victim)
	killed = lb.kill(t, victim)
	gone := time.Now()
	healed()
	for _, c := range moved {
		addr := lb.env[envName(survivor)+"_GRPC"]
		if err := waitFor(context.Background(), resumeLimit, nil, c.name+" delivering through "+survivor, func() bool {
			return c.firstDeliveryAfter(killed, addr) > 0
		}); err != nil {
			t.Error(err)
		}
		t.Logf("bridge kill: %s was on %s: first message through %s %s after the kill (limit %s)",
			c.name, victim, survivor, c.firstDeliveryAfter(killed, addr).Round(time.Millisecond), resumeLimit)
	}
	if err := waitFor(context.Background(), 10*time.Second, nil, "a publish acked after the bridge kill", func() bool {
		return stats.firstOKAfter(killed, "") > 0
	}); err != nil {
		t.Error(err)
	}
	pause(context.Background(), 2*time.Second)
	phase2End := time.Now()
	t.Logf("bridge kill: %s SIGKILLed (consumers on it: %d); longest time without an acked publish %s; /readyz of %s: %s; of %s: %s",
		victim, len(moved), stats.longestGap(killed, phase2End).Round(time.Millisecond),
		victim, ready[victim].summary(gone, phase2End), survivor, ready[survivor].summary(killed, phase2End))
	if ok := ready[victim].oks(gone, phase2End); ok > 0 {
		t.Errorf("%s answered /readyz 200 %d times after it was killed", victim, ok)
	}
	if bad := ready[survivor].notOK(killed, phase2End); len(bad) > 0 {
		t.Errorf("%s (the surviving bridge): /readyz not 200: %v", survivor, bad)
	}

	// The end: stop publishing, let the consumers finish (what the killed
	// bridge held unacked comes back after the 3 s ack wait), check.
	stopPub()
	pubWG.Wait()
	if err := waitFor(context.Background(), 30*time.Second, nil, "every message delivered and acked", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		info, err := admin.GetConsumer(ctx, &jetwayv1.GetConsumerRequest{Stream: lbStream, Name: lbConsumer})
		return err == nil && info.GetConsumer().GetNumPending() == 0 && info.GetConsumer().GetNumAckPending() == 0 && chk.Recovered()
	}); err != nil {
		t.Error(err)
	}
	stopCon()
	conWG.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored, err := ReadStream(ctx, js, lbStream)
	if err != nil {
		t.Fatalf("read %s back: %v", lbStream, err)
	}
	r := finish(t, chk, "loopback-topology", stored, CheckOptions{MsgIDs: true, Consumer: true})
	var opens []string
	for _, c := range consumers {
		opens = append(opens, fmt.Sprintf("%s %d (ack errors %v)", c.name, c.opens(), c.ackErrors()))
	}
	t.Logf("publishes acked per bridge: %v; duplicate deliveries %d; Consume streams opened: %s", stats.perBridge(lb), r.DuplicateDeliveries, strings.Join(opens, ", "))

	start := time.Now()
	if err := lb.down(); err != nil {
		t.Errorf("down.sh: %v\n%s", err, lb.downOut)
	}
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "bridge-1", "bridge-2"} {
		if pid := lb.startedPid[name]; pid > 0 && !processGone(pid) {
			t.Errorf("%s (pid %d) still running after down.sh", name, pid)
		}
	}
	t.Logf("down.sh: everything stopped in %s", time.Since(start).Round(time.Millisecond))
}

const (
	lbStream   = "LOOP"
	lbConsumer = "workers"
	// resumeLimit: a consumer of a killed bridge delivers through the
	// other one within this.
	resumeLimit = 5 * time.Second
)

var (
	bridgeNames = []string{"bridge-1", "bridge-2"}
	nodeNames   = []string{"nats-1", "nats-2", "nats-3"}
)

// loopback is a topology deploy/loopback/up.sh started, read from its run
// directory.
type loopback struct {
	dir        string
	env        map[string]string
	startedPid map[string]int

	downOnce sync.Once
	downErr  error
	downOut  []byte
}

// upLoopback runs up.sh with the faults binaries (TestMain builds bridge,
// nats-server and nk) into a fresh run directory; down.sh runs at the end
// of the test.
func upLoopback(t *testing.T) *loopback {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "ps"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("deploy/loopback/up.sh needs %s: %v", tool, err)
		}
	}
	lb := &loopback{dir: filepath.Join(t.TempDir(), "run"), startedPid: map[string]int{}}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(lb.dir, "pids")); err == nil {
			if err := lb.down(); err != nil {
				t.Errorf("down.sh: %v\n%s", err, lb.downOut)
			}
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(lb.dir, "logs", "*.log"))
			for _, l := range logs {
				t.Logf("--- %s, last lines:\n%s", l, tail(l, 40))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "deploy", "loopback", "up.sh"), lb.dir)
	cmd.Env = append(os.Environ(), "JETWAY_BIN="+filepath.Dir(bins.bridge))
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("up.sh: %v\n%s", err, out)
	}
	t.Logf("up.sh: up in %s", time.Since(start).Round(time.Millisecond))
	env, err := readEnvFile(filepath.Join(lb.dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	lb.env = env
	for _, name := range append(slices.Clone(nodeNames), bridgeNames...) {
		lb.startedPid[name] = lb.pid(t, name)
	}
	return lb
}

func (lb *loopback) down() error {
	lb.downOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "deploy", "loopback", "down.sh"), lb.dir)
		cmd.WaitDelay = 5 * time.Second
		lb.downOut, lb.downErr = cmd.CombinedOutput()
	})
	return lb.downErr
}

// readEnvFile reads up.sh's env file: comments and "export NAME=value".
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return nil, fmt.Errorf("%s: not NAME=value: %q", path, line)
		}
		env[k] = v
	}
	return env, sc.Err()
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// envName is the env file's prefix of a process: bridge-1 → BRIDGE_1.
func envName(name string) string { return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) }

func (lb *loopback) pid(t *testing.T, name string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(lb.dir, "pids", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s pid file: %v", name, err)
	}
	return pid
}

// kill SIGKILLs a process of the topology and waits until it is gone; it
// returns when the signal was sent.
func (lb *loopback) kill(t *testing.T, name string) time.Time {
	t.Helper()
	pid := lb.pid(t, name)
	at := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s (pid %d): %v", name, pid, err)
	}
	if err := waitFor(context.Background(), 10*time.Second, nil, name+" gone", func() bool { return processGone(pid) }); err != nil {
		t.Fatal(err)
	}
	return at
}

// processGone: no such process, or a zombie (the topology's processes are
// not the test's children: whoever reaps them may be slow).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …: comm may hold spaces, the state follows its ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// nativeJS connects to the cluster with the bridges' NKey, for the stream
// leader's step-down and for reading the stream back.
func (lb *loopback) nativeJS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nkey, err := nats.NkeyOptionFromSeed(lb.env["NATS_NKEY_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(lb.env["NATS_URLS"], nkey, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// clientConn is one gRPC channel over both bridges with the round_robin
// policy, authenticated with the topology's API key; stats counts the
// acked publishes per bridge.
func (lb *loopback) clientConn(t *testing.T) (*grpc.ClientConn, *peerStats) {
	t.Helper()
	key, err := os.ReadFile(lb.env["JETWAY_API_KEY_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	r := manual.NewBuilderWithScheme("loopback")
	var addrs []resolver.Address
	for _, a := range strings.Split(lb.env["BRIDGE_GRPC_ADDRS"], ",") {
		addrs = append(addrs, resolver.Address{Addr: a})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	stats := &peerStats{}
	conn, err := grpc.NewClient(r.Scheme()+":///jetway",
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(apiKeyCreds(strings.TrimSpace(string(key)))),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithChainUnaryInterceptor(stats.intercept))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, stats
}

// apiKeyCreds sends the API key on every call; loopback, so no transport
// security is required.
type apiKeyCreds string

func (k apiKeyCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "ApiKey " + string(k)}, nil
}

func (apiKeyCreds) RequireTransportSecurity() bool { return false }

// peerStats records which bridge acked each publish, and when.
type peerStats struct {
	mu  sync.Mutex
	oks []okAt
}

type okAt struct {
	at   time.Time
	addr string
}

func (s *peerStats) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if err == nil && p.Addr != nil && strings.HasSuffix(method, "/Publish") {
		s.mu.Lock()
		s.oks = append(s.oks, okAt{at: time.Now(), addr: p.Addr.String()})
		s.mu.Unlock()
	}
	return err
}

// firstOKAfter is how long after from the first publish was acked (by
// addr, or any bridge for ""); 0 for none yet.
func (s *peerStats) firstOKAfter(from time.Time, addr string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.oks {
		if o.at.After(from) && (addr == "" || o.addr == addr) {
			return o.at.Sub(from)
		}
	}
	return 0
}

// longestGap is the longest time within [from, to] without an acked
// publish.
func (s *peerStats) longestGap(from, to time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, gap := from, time.Duration(0)
	for _, o := range s.oks {
		if o.at.After(from) && o.at.Before(to) {
			gap = max(gap, o.at.Sub(prev))
			prev = o.at
		}
	}
	return max(gap, to.Sub(prev))
}

func (s *peerStats) perBridge(lb *loopback) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, o := range s.oks {
		out[lb.bridgeAt(o.addr)]++
	}
	return out
}

// bridgeAt names the bridge at a gRPC address ("" for none).
func (lb *loopback) bridgeAt(addr string) string {
	for _, b := range bridgeNames {
		if addr != "" && lb.env[envName(b)+"_GRPC"] == addr {
			return b
		}
	}
	return ""
}

func (lb *loopback) other(bridge string) string {
	if bridge == bridgeNames[0] {
		return bridgeNames[1]
	}
	return bridgeNames[0]
}

// nodeAt names the NATS node at a client URL ("" for none).
func (lb *loopback) nodeAt(url string) string {
	for _, n := range nodeNames {
		if lb.env[envName(n)+"_URL"] == url {
			return n
		}
	}
	return ""
}

// connEvent is a bridge's log line of a NATS (re)connection.
type connEvent struct {
	at   time.Time
	node string
}

var (
	connectedLine    = regexp.MustCompile(`^time=(\S+) level=INFO msg="NATS (?:re)?connected" url=(\S+)`)
	disconnectedLine = regexp.MustCompile(`^time=(\S+) level=\w+ msg="NATS disconnected`)
)

// logTimes are the times of a bridge's log lines matching re, with the
// first submatch after the time.
func (lb *loopback) logTimes(bridge string, re *regexp.Regexp) (times []time.Time, subs []string) {
	data, _ := os.ReadFile(lb.env[envName(bridge)+"_LOG"])
	for _, line := range strings.Split(string(data), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		times = append(times, at)
		if len(m) > 2 {
			subs = append(subs, m[2])
		} else {
			subs = append(subs, "")
		}
	}
	return times, subs
}

// lastConnEvent is the node a bridge's NATS connection is on, as its log
// says.
func (lb *loopback) lastConnEvent(bridge string) (connEvent, bool) {
	times, urls := lb.logTimes(bridge, connectedLine)
	if len(times) == 0 {
		return connEvent{}, false
	}
	return connEvent{at: times[len(times)-1], node: lb.nodeAt(urls[len(urls)-1])}, true
}

// disconnectedAt is how long after from the bridge logged a disconnection
// ("none" when it did not).
func (lb *loopback) disconnectedAt(bridge string, from time.Time) string {
	times, _ := lb.logTimes(bridge, disconnectedLine)
	for _, at := range times {
		// The log has millisecond times.
		if !at.Before(from.Truncate(time.Millisecond)) {
			return at.Sub(from).Round(time.Millisecond).String()
		}
	}
	return "none logged"
}

// bridgesOn splits the bridges into those connected to node and the others.
func (lb *loopback) bridgesOn(node string) (on, others []string) {
	for _, b := range bridgeNames {
		if ev, ok := lb.lastConnEvent(b); ok && ev.node == node {
			on = append(on, b)
		} else {
			others = append(others, b)
		}
	}
	return on, others
}

// metaLeader is the JetStream meta leader, from the first node's /jsz that
// names one ("" when none does).
func (lb *loopback) metaLeader() string {
	for _, n := range nodeNames {
		resp, err := httpClient.Get(lb.env[envName(n)+"_MONITOR"] + "/jsz")
		if err != nil {
			continue
		}
		var jsz struct {
			Meta struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		_ = resp.Body.Close()
		if err == nil && jsz.Meta.Leader != "" {
			return jsz.Meta.Leader
		}
	}
	return ""
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// streamLeaderVia is the stream's leader as the bridges' GetStream says
// ("" when it cannot tell).
func (lb *loopback) streamLeaderVia(admin jetwayv1.AdminServiceClient) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := admin.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: lbStream})
	if err != nil {
		return ""
	}
	return info.GetStream().GetCluster().GetLeader()
}

// arrangeLeader picks the node to kill: the stream's leader, on a node
// that a bridge is connected to and that is not the JetStream meta
// leader, so that what readiness must show is known. A bridge whose
// connection is on the meta leader alongside the other is sent SIGHUP (it
// reconnects to the next server of its list); a leader elsewhere is asked
// to step down in favour of the chosen node.
func (lb *loopback) arrangeLeader(t *testing.T, nc *nats.Conn, js jetstream.JetStream, admin jetwayv1.AdminServiceClient) (target, meta string) {
	t.Helper()
	var candidates []string
	for attempt := 0; ; attempt++ {
		meta = lb.metaLeader()
		if meta == "" {
			t.Fatal("no node names a JetStream meta leader")
		}
		candidates = candidates[:0]
		for _, b := range bridgeNames {
			if ev, ok := lb.lastConnEvent(b); ok && ev.node != meta && !slices.Contains(candidates, ev.node) {
				candidates = append(candidates, ev.node)
			}
		}
		if len(candidates) > 0 {
			break
		}
		if attempt == 3 {
			t.Fatalf("both bridges stay on the meta leader %s", meta)
		}
		b := bridgeNames[0]
		before, _ := lb.logTimes(b, connectedLine)
		t.Logf("both bridges are on the meta leader %s: SIGHUP %s to move its connection", meta, b)
		if err := syscall.Kill(lb.pid(t, b), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := waitFor(context.Background(), 10*time.Second, nil, b+" reconnected", func() bool {
			after, _ := lb.logTimes(b, connectedLine)
			return len(after) > len(before)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var leader string
	if err := waitFor(context.Background(), 20*time.Second, nil, lbStream+" leader and current replicas", func() bool {
		var ok bool
		leader, ok = streamLeader(js, lbStream)
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(candidates, leader) {
		t.Logf("stream leader %s (meta leader %s) is the node to kill", leader, meta)
		return leader, meta
	}
	target = candidates[0]
	t.Logf("stream leader %s: stepping it down in favour of %s (a bridge's node; meta leader %s)", leader, target, meta)
	if err := waitFor(context.Background(), 20*time.Second, nil, "stream leader on "+target, func() bool {
		leader, ok := streamLeader(js, lbStream)
		if ok && leader == target {
			return true
		}
		if ok {
			stepDown(t, nc, target)
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if got := lb.streamLeaderVia(admin); got != target {
		t.Fatalf("the bridge's GetStream names leader %q, JetStream %q", got, target)
	}
	return target, meta
}

// stepDown asks the stream's leader to hand over to preferred.
func stepDown(t *testing.T, nc *nats.Conn, preferred string) {
	body := fmt.Sprintf(`{"placement":{"preferred":%q}}`, preferred)
	msg, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+lbStream, []byte(body), 5*time.Second)
	if err != nil {
		t.Logf("stream leader step-down: %v", err)
		return
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil || !resp.Success {
		t.Logf("stream leader step-down: %s", msg.Data)
		return
	}
	// Give the election a moment before asking again.
	pause(context.Background(), 500*time.Millisecond)
}

// retryAdmin calls f until it succeeds, for up to 30 s: a cluster still
// settling answers UNAVAILABLE.
func retryAdmin(t *testing.T, what string, f func(context.Context) error) {
	t.Helper()
	var last error
	if err := waitFor(context.Background(), 30*time.Second, nil, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
		defer cancel()
		last = f(ctx)
		if last != nil && !transient(last) {
			t.Fatalf("%s: %v", what, last)
		}
		return last == nil
	}); err != nil {
		t.Fatalf("%v: %v", err, last)
	}
}

// readySample is one /readyz probe: when it was sent and answered, and its
// status (0: no answer).
type readySample struct {
	start, end time.Time
	code       int
}

type readyWatch struct {
	mu      sync.Mutex
	samples []readySample
}

// watchReadiness probes both bridges' /readyz every 20 ms until the test
// ends.
func (lb *loopback) watchReadiness(t *testing.T) map[string]*readyWatch {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := map[string]*readyWatch{}
	for _, b := range bridgeNames {
		w := &readyWatch{}
		out[b] = w
		url := lb.env[envName(b)+"_HTTP"] + "/readyz"
		hc := &http.Client{Timeout: 3 * time.Second}
		wg.Go(func() {
			for ctx.Err() == nil {
				s := readySample{start: time.Now()}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if resp, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					s.code = resp.StatusCode
				}
				s.end = time.Now()
				if ctx.Err() == nil {
					w.mu.Lock()
					w.samples = append(w.samples, s)
					w.mu.Unlock()
				}
				pause(ctx, 20*time.Millisecond)
			}
		})
	}
	return out
}

// in are the probes sent within [from, to).
func (w *readyWatch) in(from, to time.Time) []readySample {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []readySample
	for _, s := range w.samples {
		if !s.start.Before(from) && s.start.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// notOK describes the probes sent within [from, to) that were not 200.
func (w *readyWatch) notOK(from, to time.Time) []string {
	var out []string
	for _, s := range w.in(from, to) {
		if s.code != http.StatusOK {
			out = append(out, fmt.Sprintf("%d at +%s", s.code, s.start.Sub(from).Round(time.Millisecond)))
		}
	}
	return out
}

func (w *readyWatch) oks(from, to time.Time) int {
	n := 0
	for _, s := range w.in(from, to) {
		if s.code == http.StatusOK {
			n++
		}
	}
	return n
}

// summary counts the probes of [from, to) by status, with the first and
// last that were not 200.
func (w *readyWatch) summary(from, to time.Time) string {
	counts := map[int]int{}
	var first, last time.Duration = -1, -1
	for _, s := range w.in(from, to) {
		counts[s.code]++
		if s.code != http.StatusOK {
			if first < 0 {
				first = s.start.Sub(from)
			}
			last = s.end.Sub(from)
		}
	}
	var parts []string
	for _, code := range slices.Sorted(func(yield func(int) bool) {
		for c := range counts {
			if !yield(c) {
				return
			}
		}
	}) {
		name := strconv.Itoa(code)
		if code == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", name, counts[code]))
	}
	s := strings.Join(parts, ", ")
	if first >= 0 {
		s += fmt.Sprintf(" (not 200 from +%s to +%s)", first.Round(time.Millisecond), last.Round(time.Millisecond))
	}
	return s
}

// consumeClient reads the durable consumer through Consume over the
// round_robin channel, acking each event's messages on the stream at once
// (one acks batch), and opens a new stream 50 ms after one ends; it
// records deliveries in the checker, and every stream it opened with the
// bridge that served it.
type consumeClient struct {
	name string
	msgs jetwayv1.MessageServiceClient
	chk  *Checker
	logf func(string, ...any)

	mu       sync.Mutex
	sessions []*session
	events   []okAt // every event that delivered messages, and its bridge
	ackErrs  map[string]int
}

// session is one Consume stream.
type session struct {
	via   string // the bridge's gRPC address
	ended bool
	n     int
}

func (c *consumeClient) run(ctx context.Context) {
	last, repeats := "", 0
	for ctx.Err() == nil {
		err := c.once(ctx)
		if ctx.Err() != nil {
			break
		}
		if msg := codeOf(err); msg != last {
			if repeats > 0 {
				c.logf("%s: (the previous ending %d more times)", c.name, repeats)
			}
			c.logf("%s: Consume stream ended: %v", c.name, err)
			last, repeats = msg, 0
		} else {
			repeats++
		}
		pause(ctx, 50*time.Millisecond)
	}
}

func (c *consumeClient) once(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.msgs.Consume(sctx)
	if err != nil {
		return err
	}
	if err := st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Start{Start: &jetwayv1.SubscribeRequest{
		Stream: lbStream, Consumer: lbConsumer, MaxInFlight: 64, MaxBatch: 50, Heartbeat: durationpb.New(time.Second),
	}}}); err != nil {
		_, err = st.Recv() // the stream's own error
		return err
	}
	events := make(chan struct{}, 1)
	go func() { // watchdog: a silent stream (heartbeats every second) is reopened
		t := time.NewTimer(idleLimit)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-events:
				t.Reset(idleLimit)
			case <-t.C:
				c.logf("%s: Consume stream silent for %s: reopened", c.name, idleLimit)
				cancel()
				return
			}
		}
	}()
	var s *session
	defer func() {
		if s != nil {
			c.mu.Lock()
			s.ended = true
			c.mu.Unlock()
		}
	}()
	for {
		ev, err := st.Recv()
		if err != nil {
			return err
		}
		select {
		case events <- struct{}{}:
		default:
		}
		if s == nil {
			s = &session{}
			if p, ok := peer.FromContext(st.Context()); ok {
				s.via = p.Addr.String()
			}
			c.mu.Lock()
			c.sessions = append(c.sessions, s)
			c.mu.Unlock()
		}
		if res := ev.GetAckResult(); res != nil {
			c.mu.Lock()
			if c.ackErrs == nil {
				c.ackErrs = map[string]int{}
			}
			c.ackErrs[res.GetError().GetReason()]++
			c.mu.Unlock()
			continue
		}
		var ms []*jetwayv1.Message
		if m := ev.GetMessage(); m != nil {
			ms = append(ms, m)
		}
		ms = append(ms, ev.GetBatch().GetMessages()...)
		if len(ms) == 0 {
			continue
		}
		ops := make([]*jetwayv1.AckOperation, 0, len(ms))
		for _, m := range ms {
			c.chk.Delivered(string(m.GetData()))
			ops = append(ops, &jetwayv1.AckOperation{Token: m.GetAckToken(), Kind: jetwayv1.AckKind_ACK_KIND_ACK})
		}
		c.mu.Lock()
		c.events = append(c.events, okAt{at: time.Now(), addr: s.via})
		s.n += len(ms)
		c.mu.Unlock()
		// An ack sent on the stream is as far as a Consume client knows
		// (only failures are answered); the consumer's state at the end
		// says whether JetStream took them all.
		if err := st.Send(&jetwayv1.ConsumeRequest{Request: &jetwayv1.ConsumeRequest_Acks{Acks: &jetwayv1.AckBatch{Operations: ops}}}); err == nil {
			for _, m := range ms {
				c.chk.AckedBack(string(m.GetData()))
			}
		}
	}
}

// current is the gRPC address of the bridge serving the open stream ("":
// none open).
func (c *consumeClient) current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.sessions); n > 0 && !c.sessions[n-1].ended {
		return c.sessions[n-1].via
	}
	return ""
}

func (c *consumeClient) delivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sessions {
		n += s.n
	}
	return n
}

func (c *consumeClient) opens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

func (c *consumeClient) ackErrors() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ackErrs)
}

// firstDeliveryAfter is how long after from the first message came
// (through addr, or any bridge for ""); 0 for none yet.
func (c *consumeClient) firstDeliveryAfter(from time.Time, addr string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.at.After(from) && (addr == "" || e.addr == addr) {
			return e.at.Sub(from)
		}
	}
	return 0
}
