// Command bench compares Jetway with the native nats.go JetStream client,
// side by side, against one nats-server.
//
//	go run ./cmd/bench [-quick] [-json out.json] [-auth] [-scenarios 1,2,...]
//
// It builds nats-server (the version pinned in go.mod) and the bridge,
// runs each as a separate process on loopback ports, and for every
// scenario runs the bridge client and the native client back to back,
// alternating who goes first, for several rounds bounded in count and
// time. It prints the medians, their spread and the bridge/native ratio
// next to a target (shown, never enforced).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == echoArg {
		if err := serveEcho(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	quick     bool
	auth      bool
	jsonPath  string
	pprof     bool
	scenarios []int
	rounds    int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "small counts and 2 rounds (under a minute)")
	fs.BoolVar(&o.auth, "auth", false, "run the bridge with --auth-config; clients send an API key")
	fs.StringVar(&o.jsonPath, "json", "", "also write the table as JSON to this file")
	fs.BoolVar(&o.pprof, "pprof", false, "run the bridge with --pprof-listen on a free loopback port (its address is printed at start)")
	list := fs.String("scenarios", "", "comma-separated scenario numbers (default all: 1-8)")
	fs.IntVar(&o.rounds, "rounds", 0, "override the number of rounds (default 2 quick, 5 full)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.rounds < 0 || o.rounds > 100 {
		return o, fmt.Errorf("-rounds %d: want 1 to 100", o.rounds)
	}
	for _, f := range strings.FieldsFunc(*list, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > len(scenarios) {
			return o, fmt.Errorf("-scenarios: %q is not a scenario (1-%d)", f, len(scenarios))
		}
		if !slices.Contains(o.scenarios, n) {
			o.scenarios = append(o.scenarios, n)
		}
	}
	return o, nil
}

// run starts the processes, runs the selected scenarios and prints the
// table. Every child process is stopped and the temporary directory
// removed before it returns, on success, error or interrupt.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	started := time.Now()
	loadStart := loadAverage()
	if loadStart > 0.5*float64(runtime.NumCPU()) {
		fmt.Fprintf(stderr, "bench: warning: host load average is %.2f on %d CPUs before start: other work will make the numbers noisy\n", loadStart, runtime.NumCPU())
	}
	b := fullBudget
	if opts.quick {
		b = quickBudget
	}
	if opts.rounds > 0 {
		b.rounds, b.idleRounds = opts.rounds, opts.rounds
	}

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "jetway-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()

	fmt.Fprintln(stderr, "bench: building nats-server and the bridge")
	natsBin, bridgeBin, err := buildBinaries(ctx, root, dir)
	if err != nil {
		return err
	}
	natsProc, natsURL, err := startNATS(ctx, natsBin, dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, natsProc.stop()) }()
	authPath := ""
	if opts.auth {
		if authPath, err = writeAuthConfig(dir); err != nil {
			return err
		}
	}
	spec, err := newBridgeSpec(bridgeBin, dir, natsURL, authPath)
	if err != nil {
		return err
	}
	if opts.pprof {
		port, err := freePort()
		if err != nil {
			return err
		}
		spec.pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	e := &env{budget: b, auth: opts.auth, natsProc: natsProc, bridge: spec}
	if e.bridgeProc, err = startBridge(ctx, spec); err != nil {
		return err
	}
	// e.bridgeProc changes when scenario 8 restarts the bridge.
	defer func() { err = errors.Join(err, e.bridgeProc.stop()) }()
	if err := e.connectClients(natsURL); err != nil {
		e.close()
		return err
	}
	defer e.close()
	defer e.removeFilled()

	fmt.Fprintf(stderr, "bench: nats-server pid %d at %s, bridge pid %d at grpc %s http %s (auth %v)\n",
		natsProc.pid(), natsURL, e.bridgeProc.pid(), spec.grpcAddr, spec.httpAddr, opts.auth)
	if spec.pprofAddr != "" {
		fmt.Fprintf(stderr, "bench: bridge profiles at http://%s/debug/pprof/\n", spec.pprofAddr)
	}
	rows, runErr := runAll(ctx, e, opts.scenarios, stderr)

	rep := report{
		Started: started, WallTime: time.Since(started).Round(100 * time.Millisecond).String(),
		Quick: opts.quick, Auth: opts.auth, Rounds: b.rounds,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Rows: rows,
		LoadStart: loadStart, LoadEnd: loadAverage(),
	}
	if perr := printTable(stdout, rep); perr != nil {
		return errors.Join(runErr, perr)
	}
	if opts.jsonPath != "" {
		if jerr := writeJSON(opts.jsonPath, rep); jerr != nil {
			return errors.Join(runErr, jerr)
		}
	}
	if runErr != nil {
		return runErr
	}
	var failed []string
	for _, r := range rows {
		if strings.HasPrefix(r.Status, "error") {
			failed = append(failed, fmt.Sprintf("%d/%s/%s", r.Scenario, r.Payload, r.Metric))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d rows failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// runAll runs the selected scenarios (all when none are) in order.
func runAll(ctx context.Context, e *env, selected []int, progress io.Writer) ([]Row, error) {
	var rows []Row
	for _, sc := range scenarios {
		if len(selected) > 0 && !slices.Contains(selected, sc.id) {
			continue
		}
		fmt.Fprintf(progress, "bench: scenario %d: %s\n", sc.id, sc.name)
		t0 := time.Now()
		r, err := runScenario(ctx, e, sc, progress)
		rows = append(rows, r...)
		if err != nil {
			return rows, fmt.Errorf("scenario %d: %w", sc.id, err)
		}
		fmt.Fprintf(progress, "bench: scenario %d took %s\n", sc.id, time.Since(t0).Round(100*time.Millisecond))
	}
	return rows, nil
}
