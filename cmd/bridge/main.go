// Command bridge runs Jetway: a gRPC and REST/JSON bridge to NATS JetStream.
//
// With no --nats-url it starts an embedded JetStream server, so that
// `go run ./cmd/bridge` is a working system. See README.md for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/memlimit"
	"github.com/jetway-dev/jetway/server"
)

func main() {
	// The first SIGINT or SIGTERM shuts the bridge down gracefully; a
	// second one, during the shutdown, ends the process at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	err := dispatch(context.Background(), sigs, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	var forced *forcedExit
	switch {
	case err == nil:
	case errors.As(err, &forced):
		os.Exit(forced.code()) // logged by run
	default:
		fmt.Fprintln(os.Stderr, "bridge:", err)
		if errors.Is(err, errUnhealthy) {
			os.Exit(1) // what container health checks read as unhealthy
		}
		os.Exit(2)
	}
}

// usage lists the subcommands; the flags follow it in --help.
const usage = `Usage:
  bridge serve [flags]       run the bridge (the default: bridge [flags]); embedded
                             JetStream without --nats-url
  bridge token [flags]       mint an NKey-signed token (bridge token --help)
  bridge token access [flags]
                             mint an access token for a configured identity with the
                             bridge's auth config and ack keys (bridge token access --help)
  bridge hash-key            read an API key on stdin, print its configuration hash
  bridge version             print the version
  bridge probe [/readyz]     ask a running bridge's health endpoint (container health checks)
  bridge bootstrap [--dry-run] [--json] [NATS flags] FILE
                             ensure the file's streams and consumers now (or, dry run,
                             print what would change); the NATS flags are serve's
  bridge --help              this help

Flags of serve (each also as JETWAY_<FLAG>, e.g. JETWAY_NATS_URL):
`

// forcedExit is run's error when a second signal cut the shutdown short.
type forcedExit struct{ sig os.Signal }

func (e *forcedExit) Error() string { return "shutdown cut short by a second " + e.sig.String() }

// code is the exit code: 128 + the signal's number (130 for SIGINT, 143
// for SIGTERM), as a shell reports a process killed by that signal.
func (e *forcedExit) code() int {
	if s, ok := e.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

// dispatch runs a subcommand: token (mint an NKey-signed token),
// hash-key (print an API key's configuration hash), probe (a container
// health check of the bridge's own /readyz or /healthz), bootstrap
// (ensure a bootstrap file's streams and consumers, or a dry run) or, by default,
// the bridge, which stops at the first signal on sigs.
func dispatch(ctx context.Context, sigs <-chan os.Signal, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			if len(args) > 1 && args[1] == "access" {
				return helpIsNoError(runAccessToken(args[2:], getenv, stdout, stderr))
			}
			return helpIsNoError(runToken(args[1:], stdout, stderr))
		case "hash-key":
			return helpIsNoError(runHashKey(args[1:], stdin, stdout, stderr))
		case "version", "--version", "-version":
			_, err := fmt.Fprintln(stdout, version())
			return err
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			_, err := config.Parse([]string{"--help"}, func(string) string { return "" }, stdout)
			return helpIsNoError(err)
		case "probe":
			return runProbe(ctx, args[1:], getenv, stdout)
		case "bootstrap":
			// A signal ends it (between JetStream requests).
			ctx, stop := context.WithCancel(ctx)
			defer stop()
			go func() {
				select {
				case <-sigs:
					stop()
				case <-ctx.Done():
				}
			}()
			return helpIsNoError(runBootstrap(ctx, args[1:], getenv, stdout, stderr))
		case "serve":
			args = args[1:]
		}
	}
	return helpIsNoError(run(ctx, sigs, args, getenv, stderr))
}

// helpIsNoError makes an asked-for --help (already printed) a success.
func helpIsNoError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// version is the module version and VCS revision the binary was built
// from (go build stamps them; "(devel)" and no revision under go run
// without VCS information).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "jetway bridge (unknown version)"
	}
	v := "jetway bridge " + bi.Main.Version
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " modified"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (%s %s%s)", rev, at, dirty)
	}
	return v + " " + bi.GoVersion
}

// run parses the configuration, starts the bridge and waits until ctx ends
// or a signal comes on sigs, and the bridge has shut down. A signal during
// the shutdown returns a *forcedExit at once, without waiting for it.
func run(ctx context.Context, sigs <-chan os.Signal, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	log.Info("starting jetway bridge", slog.Any("config", cfg))
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	// The heap's growth between collections follows the live heap (see
	// package memlimit): idle streams' garbage does not pile up in RSS.
	if cfg.Server.FollowLiveHeap {
		defer memlimit.Start()()
	}
	// SIGHUP makes a NATS connection attempt now with the credential
	// files read again (rotation without restart), whatever the state of
	// the connection. Caught from before the start: one sent while the
	// bridge starts is applied once it has, and does not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	for {
		select {
		case <-hup:
			srv.Reload()
		case sig := <-sigs:
			if ctx.Err() == nil {
				log.Info("signal received: shutting down; a second signal exits at once", slog.String("signal", sig.String()))
				stop()
				continue
			}
			log.Error("second signal during shutdown: exiting at once, in-flight calls cut off", slog.String("signal", sig.String()))
			return &forcedExit{sig: sig}
		case err := <-done:
			return err
		}
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		// Durations as "30s", as the flags take them, not nanoseconds.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
