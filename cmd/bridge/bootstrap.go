package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/bootstrap"
	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/refusal"
)

// errBootstrapFailed is runBootstrap's error when an entry failed (the
// report, printed, says which and why).
var errBootstrapFailed = errors.New("bootstrap failed")

// runBootstrap is `bridge bootstrap [--dry-run] [--json] [NATS flags]
// FILE`: it connects to NATS as the bridge does (the same flags and
// JETWAY_* variables), ensures the file's entries once (no retries) or,
// with --dry-run, only reads and compares, and prints the report. Any
// failed entry is an error (exit code 2).
func runBootstrap(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var dryRun, asJSON bool
	n, rest, err := config.ParseNATSClient("bridge bootstrap", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&dryRun, "dry-run", false, "print what would be done, change nothing")
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), "Usage: bridge bootstrap [--dry-run] [--json] [--nats-url URLS] [NATS flags] FILE")
			fs.PrintDefaults()
		}
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("bootstrap: want one FILE after the flags, got %d arguments", len(rest))
	}
	f, err := bootstrap.Load(rest[0])
	if err != nil {
		return err
	}
	creds, err := n.Credentials.Options()
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	nc, err := nats.Connect(n.URLs, append([]nats.Option{
		nats.Name("jetway-bootstrap"),
		nats.Timeout(n.ConnectTimeout),
		// A refused JetStream request fails at once (package refusal).
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) { refusal.Record(nc, err) }),
	}, creds...)...)
	if err != nil {
		return fmt.Errorf("bootstrap: connect to %s: %w", config.RedactURLs(n.URLs), err)
	}
	defer nc.Close()
	js, err := auth.NewJetStream(nc, n.JSDomain, jetstream.WithDefaultTimeout(n.RequestTimeout))
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	r := f.Ensure(ctx, js, bootstrap.Options{DryRun: dryRun, CallTimeout: n.RequestTimeout})
	if asJSON {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bootstrap: %w", ctx.Err())
	}
	if r.Count(bootstrap.Failed) > 0 {
		return fmt.Errorf("%w: %d of %d entries (see above)", errBootstrapFailed, r.Count(bootstrap.Failed), len(r.Results))
	}
	return nil
}
