package server_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/config"
	"github.com/jetway-dev/jetway/embedded"
	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// TestSecondBridgeOnDataDirRefused is the operator's report: two bridges
// on one --data-dir both served and lost an acknowledged write. Now the
// second refuses at once, naming the first (pid and listen addresses);
// the first keeps serving; and every publish it acknowledged is still
// stored after a restart.
func TestSecondBridgeOnDataDirRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := jetwaytest.Start(t, func(c *config.Config) { c.NATS.DataDir = dir })
	ctx := jetwaytest.Context(t, 30*time.Second)
	if _, err := first.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "LOCKED", Subjects: []string{"locked.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	publish := func(b *jetwaytest.Bridge, want uint64) {
		t.Helper()
		ack, err := b.Messages.Publish(ctx, &jetwayv1.PublishRequest{Subject: "locked.x", Payload: &jetwayv1.PublishRequest_Text{Text: "m" + strconv.FormatUint(want, 10)}})
		if err != nil || ack.GetSequence() != want {
			t.Fatalf("Publish: sequence %d, %v; want %d", ack.GetSequence(), err, want)
		}
	}
	publish(first, 1)

	began := time.Now()
	second, _, err := startLogged(t, "--data-dir", dir)
	if err == nil {
		t.Fatalf("a second bridge on the same data dir started (gRPC %s)", second.GRPCAddr())
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the second bridge took %s to refuse", d)
	}
	if !errors.Is(err, embedded.ErrDataDirLocked) {
		t.Errorf("second bridge: %v, want ErrDataDirLocked", err)
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "grpc " + first.Server.GRPCAddr().String(), "http " + first.Server.HTTPAddr().String()} {
		if err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("second bridge's error %q does not name %q", err, want)
		}
	}

	publish(first, 2)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	again := jetwaytest.Start(t, func(c *config.Config) { c.NATS.DataDir = dir })
	st, err := again.JS.Stream(ctx, "LOCKED")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("after a restart the stream holds %d messages, want the 2 acknowledged", n)
	}
	publish(again, 3)
}

// TestPortInUseLeavesStoreUntouched: a bridge whose gRPC or HTTP port is
// taken fails on it before it opens (or creates) the data dir.
func TestPortInUseLeavesStoreUntouched(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, flag := range []string{"--grpc-listen", "--http-listen"} {
		t.Run(flag, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			_, _, err := startLogged(t, "--data-dir", dir, flag, taken.Addr().String())
			if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
				t.Fatalf("%s on a taken port: %v, want its listen error", flag, err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data dir exists after the refusal (%v): the store was opened", err)
			}
		})
	}
}

// TestSecondBridgeOnTakenPortLeavesLockAlone: a second bridge on the
// first's data dir and ports fails on the port, leaving the lock file as
// the first wrote it.
func TestSecondBridgeOnTakenPortLeavesLockAlone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := jetwaytest.Start(t, func(c *config.Config) { c.NATS.DataDir = dir })
	lockFile := filepath.Join(dir, embedded.LockFileName)
	before, err := os.ReadFile(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = startLogged(t, "--data-dir", dir, "--grpc-listen", first.Server.GRPCAddr().String())
	if err == nil || errors.Is(err, embedded.ErrDataDirLocked) || !strings.Contains(err.Error(), "gRPC listen") {
		t.Fatalf("second bridge on the first's gRPC port: %v, want the listen error", err)
	}
	after, err := os.ReadFile(lockFile)
	if err != nil || string(after) != string(before) {
		t.Errorf("lock file changed: %q, %v; was %q", after, err, before)
	}
}
