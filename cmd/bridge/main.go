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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bridge:", err)
		}
		stop()
		os.Exit(2)
	}
}

// dispatch runs a subcommand: token (mint an NKey-signed token),
// hash-key (print an API key's configuration hash) or, by default, the
// bridge.
func dispatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
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
	return run(ctx, args, getenv, stderr)
}

// run parses the configuration, starts the bridge and waits until ctx ends
// and the bridge has shut down.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
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
