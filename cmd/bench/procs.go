package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
)

// benchAckKeys is a fixed ack-token key ("jetway-bench-ack-key-0123456789!", 32
// bytes), so that runs are reproducible and a restarted bridge still
// verifies tokens issued before.
const benchAckKeys = "amV0d2F5LWJlbmNoLWFjay1rZXktMDEyMzQ1Njc4OSE="

// stopTimeout bounds a graceful stop (SIGTERM) before SIGKILL.
const stopTimeout = 5 * time.Second

// proc is a child process the bench started and must stop.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startProc starts bin with args, its output going to logPath and extra
// files inherited from descriptor 3 on. The child gets its own process
// group (a terminal's Ctrl-C reaches only the bench, which then stops it
// in order) and SIGKILL if the bench dies first.
func startProc(name, bin string, args []string, logPath string, extra ...*os.File) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the child's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports an error when the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v; log tail:\n%s", p.name, p.waitErr, p.logTail(20))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to stopTimeout, then SIGKILLs and waits.
// Safe to call more than once.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s: killed", p.name, stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s did not exit after SIGKILL", p.name)
	}
}

// logTail is the last n lines of the process's output.
func (p *proc) logTail(n int) string {
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

// logSize is the current size of the process's output file.
func (p *proc) logSize() int64 {
	fi, err := os.Stat(p.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// expectedLog are bridge log lines that say nothing about a scenario.
var expectedLog = []string{"client authentication is off"}

var (
	logMsg = regexp.MustCompile(`msg="((?:[^"\\]|\\.)*)"`)
	logErr = regexp.MustCompile(`error="((?:[^"\\]|\\.)*)"`)
)

// logSummary summarizes the log lines written after offset: each distinct
// message (and error) with its count, the expected ones left out.
func (p *proc) logSummary(offset int64) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil || int64(len(data)) <= offset {
		return ""
	}
	counts := map[string]int{}
	var order []string
lines:
	for _, line := range strings.Split(strings.TrimSpace(string(data[offset:])), "\n") {
		for _, x := range expectedLog {
			if strings.Contains(line, x) {
				continue lines
			}
		}
		key := line
		if m := logMsg.FindStringSubmatch(line); m != nil {
			key = m[1]
			if e := logErr.FindStringSubmatch(line); e != nil {
				key += ": " + e[1]
			}
		}
		if counts[key] == 0 {
			order = append(order, key)
		}
		counts[key]++
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%d× %s", counts[k], oneLine(strings.ReplaceAll(k, `\"`, `"`))))
	}
	return strings.Join(parts, ", ")
}

// buildBinaries builds nats-server (the version pinned in go.mod) and the
// bridge into dir, in parallel, from the module at root.
func buildBinaries(ctx context.Context, root, dir string) (natsBin, bridgeBin string, err error) {
	natsBin, bridgeBin = filepath.Join(dir, "nats-server"), filepath.Join(dir, "bridge")
	g, gctx := errgroup.WithContext(ctx)
	build := func(out, pkg string) func() error {
		return func() error {
			cmd := exec.CommandContext(gctx, "go", "build", "-o", out, pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
			}
			return nil
		}
	}
	g.Go(build(natsBin, "github.com/nats-io/nats-server/v2"))
	g.Go(build(bridgeBin, "./cmd/bridge"))
	return natsBin, bridgeBin, g.Wait()
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the bench inside the jetway module (go run ./cmd/bench)")
	}
	return filepath.Dir(gomod), nil
}

// freePort asks the kernel for a free loopback port. The port is released
// before the child binds it; another process could take it in between,
// which start-up then reports.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startNATS runs nats-server with JetStream on a free loopback port and
// waits until JetStream answers.
func startNATS(ctx context.Context, bin, dir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	args := []string{"-js", "-sd", filepath.Join(dir, "js"), "-a", "127.0.0.1", "-p", strconv.Itoa(port)}
	p, err := startProc("nats-server", bin, args, filepath.Join(dir, "nats-server.log"))
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	err = poll(ctx, 15*time.Second, p, func() bool {
		nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return false
		}
		defer nc.Close()
		_, err = nc.Request("$JS.API.INFO", nil, time.Second)
		return err == nil
	})
	if err != nil {
		return nil, "", errors.Join(fmt.Errorf("nats-server not ready: %w", err), p.stop())
	}
	return p, url, nil
}

// bridgeSpec is how the bridge is started (kept to restart it).
type bridgeSpec struct {
	bin, dir, natsURL string
	authConfig        string // "" for no client authentication
	grpcAddr          string
	httpAddr          string
	pprofAddr         string // "" or the loopback host:port serving /debug/pprof/
}

// newBridgeSpec picks the bridge's ports.
func newBridgeSpec(bin, dir, natsURL, authConfig string) (bridgeSpec, error) {
	gp, err := freePort()
	if err != nil {
		return bridgeSpec{}, err
	}
	hp, err := freePort()
	if err != nil {
		return bridgeSpec{}, err
	}
	return bridgeSpec{
		bin: bin, dir: dir, natsURL: natsURL, authConfig: authConfig,
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", gp), httpAddr: fmt.Sprintf("127.0.0.1:%d", hp),
	}, nil
}

// startBridge runs the bridge and waits for /readyz.
func startBridge(ctx context.Context, s bridgeSpec) (*proc, error) {
	// The key is in a file, as the README recommends for secrets: a flag
	// is visible in ps (and the bridge warns about it).
	keysFile := filepath.Join(s.dir, "ack-keys")
	if err := os.WriteFile(keysFile, []byte(benchAckKeys+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("bridge: ack keys file: %w", err)
	}
	args := []string{
		"--nats-url", s.natsURL,
		"--grpc-listen", s.grpcAddr,
		"--http-listen", s.httpAddr,
		"--log-level", "warn",
		"--ack-keys-file", keysFile,
		"--publish-window", strconv.Itoa(publishWindow),
		"--max-in-flight", "4096",
		"--shutdown-timeout", "2s",
		// Scenario 9 pushes to a receiver on loopback.
		"--push-allow-private-endpoints",
	}
	if s.authConfig != "" {
		args = append(args, "--auth-config", s.authConfig)
	}
	if s.pprofAddr != "" {
		args = append(args, "--pprof-listen", s.pprofAddr)
	}
	p, err := startProc("bridge", s.bin, args, filepath.Join(s.dir, "bridge.log"))
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	err = poll(ctx, 20*time.Second, p, func() bool {
		resp, err := client.Get("http://" + s.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bridge not ready: %w", err), p.stop())
	}
	return p, nil
}

// poll calls ready every 50 ms until it holds, p exits, or limit passes.
func poll(ctx context.Context, limit time.Duration, p *proc, ready func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := p.alive(); err != nil {
			return err
		}
		if ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w; log tail:\n%s", limit, ctx.Err(), p.logTail(20))
		case <-tick.C:
		}
	}
}

// rssBytes reads VmRSS of a process from /proc.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				kb, err := strconv.ParseInt(fields[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("read rss: %w", err)
				}
				return kb << 10, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	return 0, fmt.Errorf("read rss: no VmRSS in /proc/%d/status", pid)
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (no cgo to ask sysconf).
const clockTicks = 100

// cpuTime reads the user+system CPU time a process has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after the last ')'. utime and stime are fields 14
	// and 15, so 11 and 12 after the state (field 3).
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("read cpu: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// loadAverage is the host's 1-minute load average (0 when unknown).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
