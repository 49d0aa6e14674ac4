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
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bridge:", err)
		}
		os.Exit(2)
	}
}

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
// hash-key (print an API key's configuration hash) or, by default, the
// bridge, which stops at the first signal on sigs.
func dispatch(ctx context.Context, sigs <-chan os.Signal, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "hash-key":
			return runHashKey(stdin, stdout)
		case "serve":
			args = args[1:]
		}
	}
	return run(ctx, sigs, args, getenv, stderr)
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
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	// SIGHUP re-reads NATS credential files (rotation without restart).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
