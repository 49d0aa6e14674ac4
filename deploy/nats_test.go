package deploy

import (
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// TestNATSConfigs is `nats-server -t -c nats/nats-N.conf` for every
// config, with go.mod's nats-server (the version compose's image tag
// names): the same ConfigureOptions call nats-server's main makes for -t,
// with BRIDGE_NKEY set as compose sets it; then the options are validated
// as a start would validate them (server.NewServer), without starting.
// Without BRIDGE_NKEY a config must be refused.
func TestNATSConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("nats", "*.conf"))
	if err != nil || len(files) != 3 {
		t.Fatalf("nats/*.conf: %v %v, want 3", files, err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	check := func(path string) (*server.Options, error) {
		fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		noop := func() {}
		return server.ConfigureOptions(fs, []string{"-t", "-c", path}, noop, noop, noop)
	}
	names := map[string]bool{}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Setenv("BRIDGE_NKEY", "")
			if _, err := check(path); err == nil {
				t.Errorf("%s without BRIDGE_NKEY: valid, want refused", path)
			}
			t.Setenv("BRIDGE_NKEY", pub)
			opts, err := check(path)
			if err != nil {
				t.Fatalf("nats-server -t -c %s: %v", path, err)
			}
			if !opts.CheckConfig {
				t.Error("-t was not taken")
			}
			if _, err := server.NewServer(opts); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(opts.Nkeys) != 1 || opts.Nkeys[0].Nkey != pub {
				t.Errorf("%s: users %v, want the bridges' NKey only", path, opts.Nkeys)
			}
			if !opts.JetStream || opts.Cluster.Name != "jetway" || len(opts.Routes) != len(files) {
				t.Errorf("%s: JetStream %v, cluster %q, %d routes; want JetStream in cluster jetway with a route to each of %d nodes",
					path, opts.JetStream, opts.Cluster.Name, len(opts.Routes), len(files))
			}
			if want := strings.TrimSuffix(filepath.Base(path), ".conf"); opts.ServerName != want || names[want] {
				t.Errorf("%s: server_name %q, want %q, once", path, opts.ServerName, want)
			}
			names[opts.ServerName] = true
		})
	}
}
