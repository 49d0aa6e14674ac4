package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
)

// bins are the child binaries, built once by TestMain into one directory
// (with nk, which deploy/loopback/up.sh takes from there too).
var bins struct{ bridge, nats string }

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "jetway-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	bins.bridge, bins.nats = filepath.Join(dir, "bridge"), filepath.Join(dir, "nats-server")
	// The children are built without -race: the race detector is for the
	// test process only.
	var wg sync.WaitGroup
	builds := [][2]string{{bins.bridge, "./cmd/bridge"}, {bins.nats, "github.com/nats-io/nats-server/v2"}, {filepath.Join(dir, "nk"), "github.com/nats-io/nkeys/nk"}}
	errs := make([]error, len(builds))
	for i, b := range builds {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", b[0], b[1])
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return m.Run()
}

// scenarios is the number of scenarios that share FAULTS_DURATION.
const scenarios = 7

// duration is how long a scenario injects faults: short for CI, or its
// share of FAULTS_DURATION (the whole suite's fault time, e.g. 30m for a
// soak: about 4 minutes per scenario).
func duration(t testing.TB, short time.Duration) time.Duration {
	v := os.Getenv("FAULTS_DURATION")
	if v == "" {
		return short
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("FAULTS_DURATION=%q: a positive duration such as 30m", v)
	}
	return max(short, d/scenarios)
}

// samplePeriod is how often the bridge's RSS and goroutines are sampled:
// FAULTS_SAMPLE, or about 20 samples over the scenario (at least 1 s).
func samplePeriod(t testing.TB, d time.Duration) time.Duration {
	if v := os.Getenv("FAULTS_SAMPLE"); v != "" {
		p, err := time.ParseDuration(v)
		if err != nil || p <= 0 {
			t.Fatalf("FAULTS_SAMPLE=%q: a positive duration such as 10s", v)
		}
		return p
	}
	return max(time.Second, d/20)
}

// proc is a child process that a test starts, kills, stops and restarts on
// the same arguments. Its output goes to one log file across restarts; the
// tail is shown when the test fails. It is killed at the end of the test.
type proc struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func newProc(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: bin, args: args, logPath: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- %s log (%s), last lines:\n%s", name, p.logPath, p.LogTail(80))
		}
	})
	return p
}

// Start starts the process (it must not be running).
func (p *proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running", p.name)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== %s start %s %s\n", time.Now().Format("15:04:05.000"), p.name, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, and SIGKILL should the test process die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.log = cmd, done, f
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== %s exit %s: %v\n", time.Now().Format("15:04:05.000"), p.name, err)
		_ = f.Close()
		close(done)
	}()
	return nil
}

// Pid is the running process's id (0 when none was started).
func (p *proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) note(format string, args ...any) {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		fmt.Fprintf(f, "=== %s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		_ = f.Close()
	}
}

// Kill SIGKILLs the process and waits (at most 10 s) for it to be gone.
func (p *proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	p.note("SIGKILL %s", p.name)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s (pid %d) still running 10s after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// Signal sends sig (SIGSTOP, SIGCONT) to the running process.
func (p *proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not started", p.name)
	}
	p.note("%s %s", sig, p.name)
	return p.cmd.Process.Signal(sig)
}

// Exited reports an error when the process has exited.
func (p *proc) Exited() error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s: not started", p.name)
	}
	select {
	case <-done:
		return fmt.Errorf("%s exited; log tail:\n%s", p.name, p.LogTail(30))
	default:
		return nil
	}
}

// LogTail is the last n lines of the process's log.
func (p *proc) LogTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogLines are the log lines that contain s.
func (p *proc) LogLines(s string) []string {
	data, _ := os.ReadFile(p.logPath)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor polls cond every 50 ms until it holds or limit passes; it fails
// early when p exits.
func waitFor(ctx context.Context, limit time.Duration, p *proc, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if p != nil {
			if err := p.Exited(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s", what, limit)
		case <-tick.C:
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsNode is one nats-server child with JetStream, on fixed ports and a
// store that survive restarts.
type natsNode struct {
	*proc
	name  string
	port  int
	mport int // monitoring
	url   string
}

// startNATS starts a standalone JetStream server and waits until JetStream
// answers.
func startNATS(t testing.TB, name string) *natsNode {
	t.Helper()
	port, mport := freePort(t), freePort(t)
	n := &natsNode{name: name, port: port, mport: mport, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	n.proc = newProc(t, name, bins.nats, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"-m", strconv.Itoa(mport), "-n", name)
	n.restart(t)
	return n
}

// startCluster starts three clustered JetStream servers (routes reserved
// up front, as JetStream clustering needs) and waits until each is healthy.
func startCluster(t testing.TB) []*natsNode {
	t.Helper()
	const n = 3
	var nodes []*natsNode
	var routes []string
	cports := make([]int, n)
	for i := range n {
		cports[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cports[i]))
	}
	for i := range n {
		port, mport := freePort(t), freePort(t)
		name := fmt.Sprintf("n%d", i+1)
		node := &natsNode{name: name, port: port, mport: mport, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
		node.proc = newProc(t, name, bins.nats, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port),
			"-m", strconv.Itoa(mport), "-n", name, "--cluster_name", "jetway-faults",
			"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", cports[i]), "--routes", strings.Join(routes, ","))
		if err := node.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		if err := node.waitHealthy(context.Background(), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// restart (re)starts the server on its store and ports and waits until
// JetStream answers.
func (n *natsNode) restart(t testing.TB) {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.waitHealthy(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

var httpClient = &http.Client{Timeout: time.Second}

// waitHealthy polls the server's /healthz (JetStream enabled, its streams
// and consumers current) until it answers 200.
func (n *natsNode) waitHealthy(ctx context.Context, limit time.Duration) error {
	return waitFor(ctx, limit, n.proc, n.name+" healthy", func() bool {
		resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.mport))
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// nodeStreamState is one node's local copy of a stream, from its /jsz.
type nodeStreamState struct {
	Found   bool
	Msgs    uint64
	LastSeq uint64
	Leader  string
}

func (n *natsNode) streamState(stream string) (nodeStreamState, error) {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?streams=true", n.mport))
	if err != nil {
		return nodeStreamState{}, err
	}
	defer resp.Body.Close()
	var jsz struct {
		AccountDetails []struct {
			Streams []struct {
				Name    string `json:"name"`
				Cluster *struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
				State struct {
					Msgs    uint64 `json:"messages"`
					LastSeq uint64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nodeStreamState{}, err
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == stream {
				st := nodeStreamState{Found: true, Msgs: s.State.Msgs, LastSeq: s.State.LastSeq}
				if s.Cluster != nil {
					st.Leader = s.Cluster.Leader
				}
				return st, nil
			}
		}
	}
	return nodeStreamState{}, nil
}

// nativeJS connects natively (nats.go) to urls, for reading streams back
// and for stream info; closed at the end of the test.
func nativeJS(t testing.TB, urls string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
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

// testAckKeys is a fixed ack-token key (32 bytes, base64), so that a
// restarted bridge verifies the tokens the previous one issued, as every
// replica of a deployment does.
const testAckKeys = "amV0d2F5LWZhdWx0cy1hY2sta2V5LTAxMjM0NTY3ODk="

// bridgeProc is the bridge child on fixed ports, and a gRPC client to it
// that outlives restarts.
type bridgeProc struct {
	*proc
	grpcAddr, httpAddr, pprofAddr string
	conn                          *grpc.ClientConn
	admin                         jetwayv1.AdminServiceClient
	msgs                          jetwayv1.MessageServiceClient
}

// startBridge starts the bridge against natsURLs and waits for /readyz.
func startBridge(t testing.TB, natsURLs string, extra ...string) *bridgeProc {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "ack-keys")
	if err := os.WriteFile(keys, []byte(testAckKeys+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &bridgeProc{
		grpcAddr:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		pprofAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	args := append([]string{
		"--nats-url", natsURLs,
		"--grpc-listen", b.grpcAddr,
		"--http-listen", b.httpAddr,
		"--pprof-listen", b.pprofAddr,
		"--auth-mode", "none",
		"--ack-keys-file", keys,
		"--nats-reconnect-wait", "250ms",
		"--shutdown-timeout", "2s",
	}, extra...)
	b.proc = newProc(t, "bridge", bins.bridge, args...)
	b.restart(t)
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly to a restarted bridge: the default backoff
		// grows to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	b.conn, b.admin, b.msgs = conn, jetwayv1.NewAdminServiceClient(conn), jetwayv1.NewMessageServiceClient(conn)
	return b
}

// restart (re)starts the bridge on its ports and waits for /readyz.
func (b *bridgeProc) restart(t testing.TB) {
	t.Helper()
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.waitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func (b *bridgeProc) waitReady(ctx context.Context, limit time.Duration) error {
	return waitFor(ctx, limit, b.proc, "bridge ready", func() bool {
		resp, err := httpClient.Get("http://" + b.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// sample is one reading of the bridge's resources.
type sample struct {
	at         time.Duration
	rssKB      int64
	goroutines int
}

// sampler reads the bridge's RSS (/proc/<pid>/status) and goroutine count
// (/debug/pprof/goroutine) every period until stopped; the trend is logged.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func (b *bridgeProc) sample(t testing.TB, period time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			if sm, ok := b.read(); ok {
				sm.at = time.Since(start).Round(time.Second)
				s.mu.Lock()
				s.samples = append(s.samples, sm)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (b *bridgeProc) read() (sample, bool) {
	pid := b.Pid()
	if pid == 0 {
		return sample{}, false
	}
	var sm sample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sample{}, false
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			if fields := strings.Fields(rest); len(fields) == 2 {
				sm.rssKB, _ = strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	_ = f.Close()
	resp, err := httpClient.Get("http://" + b.pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return sample{}, false
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n') // "goroutine profile: total N"
	if _, after, ok := strings.Cut(line, "total "); ok {
		sm.goroutines, _ = strconv.Atoi(strings.TrimSpace(after))
	}
	return sm, sm.rssKB > 0
}

// Stop ends the sampling and logs the trend (once).
func (s *sampler) Stop(t testing.TB) {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return
	}
	var b strings.Builder
	step := max(1, len(s.samples)/20)
	for i := 0; i < len(s.samples); i += step {
		sm := s.samples[i]
		fmt.Fprintf(&b, " %s:%dMiB/%dg", sm.at, sm.rssKB/1024, sm.goroutines)
	}
	// The drift is measured from a tenth of the way in (at least the
	// second sample): the first is taken before the bridge warmed up.
	first, last := s.samples[min(max(1, len(s.samples)/10), len(s.samples)-1)], s.samples[len(s.samples)-1]
	var maxRSS int64
	var maxG int
	for _, sm := range s.samples {
		maxRSS, maxG = max(maxRSS, sm.rssKB), max(maxG, sm.goroutines)
	}
	t.Logf("bridge resource trend (time:RSS/goroutines):%s; last %s:%dMiB/%dg; max %dMiB/%dg; drift from %s: RSS %+d KiB, goroutines %+d",
		b.String(), last.at, last.rssKB/1024, last.goroutines, maxRSS/1024, maxG, first.at, last.rssKB-first.rssKB, last.goroutines-first.goroutines)
}
