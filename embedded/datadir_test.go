package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetway-dev/jetway/embedded"
)

// failFast bounds how long a refused start may take: the checks answer at
// once (the old wait for readiness took 10 s), with room for a loaded
// machine running the race detector.
const failFast = 2 * time.Second

// TestSecondServerOnDataDirRefused: while one server holds a data dir, a
// second Start on it fails at once with ErrDataDirLocked, naming the
// holder's PID and listen addresses; the first keeps serving; once it has
// shut down the dir is free again.
func TestSecondServerOnDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	lock, err := embedded.Lock(dir, map[string]string{"grpc": "127.0.0.1:19090", "http": "127.0.0.1:18080"})
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	first, err := embedded.Start(embedded.Config{DataDir: dir, Lock: lock})
	if err != nil {
		t.Fatalf("first Start: %v", err)
	}
	defer first.Shutdown()

	began := time.Now()
	second, err := embedded.Start(embedded.Config{DataDir: dir})
	if err == nil {
		second.Shutdown()
		t.Fatal("second Start on the same data dir: started")
	}
	if d := time.Since(began); d > failFast {
		t.Errorf("second Start took %s to refuse, want under %s", d, failFast)
	}
	if !errors.Is(err, embedded.ErrDataDirLocked) {
		t.Errorf("second Start: %v, want ErrDataDirLocked", err)
	}
	var locked *embedded.LockedError
	if !errors.As(err, &locked) || locked.Holder == nil || locked.Holder.PID != os.Getpid() {
		t.Errorf("second Start: %#v, want a LockedError naming pid %d", err, os.Getpid())
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "grpc 127.0.0.1:19090", "http 127.0.0.1:18080"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	nc, err := dial(t, "", first.ConnectOptions()...)
	if err != nil {
		t.Fatalf("the first server after the refusal: %v", err)
	}
	if _, err := nc.Request("$JS.API.STREAM.NAMES", nil, 5*time.Second); err != nil {
		t.Errorf("the first server's JetStream after the refusal: %v", err)
	}
	nc.Close()

	first.Shutdown()
	again, err := embedded.Start(embedded.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Start after the holder shut down: %v", err)
	}
	again.Shutdown()
}

// TestLockReleaseIsIdempotent: a lock released twice (by its owner and by
// a cleanup) is released once; a lock handed to a Start that fails is
// released by it.
func TestLockReleaseIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	l, err := embedded.Lock(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	l.Release()
	l, err = embedded.Lock(dir, nil)
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	if _, err := embedded.Start(embedded.Config{DataDir: dir, Lock: l, Listen: "127.0.0.1:-1"}); !errors.Is(err, embedded.ErrNoCredentials) {
		t.Fatalf("Start without credentials: %v, want ErrNoCredentials", err)
	}
	l, err = embedded.Lock(dir, nil)
	if err != nil {
		t.Fatalf("Lock after a failed Start: %v", err)
	}
	l.Release()
}

// lockChildEnv names the data dir a re-executed test binary holds (see
// TestLockHelperProcess).
const lockChildEnv = "JETWAY_TEST_LOCK_CHILD_DIR"

// TestLockHelperProcess is not a test: run by TestLockFreedWhenHolderKilled
// as a child process, it starts an embedded server on the dir its
// environment names, stores a message, prints "ready" and holds on until
// its stdin closes (so it never outlives the test) or it is killed.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockChildEnv)
	if dir == "" {
		t.Skip("helper process for TestLockFreedWhenHolderKilled")
	}
	lock, err := embedded.Lock(dir, map[string]string{"grpc": "127.0.0.1:29090"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	s, err := embedded.Start(embedded.Config{DataDir: dir, Lock: lock})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	nc, err := nats.Connect("", s.ConnectOptions()...)
	if err == nil {
		err = storeOne(nc)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	// The server, and so the lock's open file, must stay reachable until
	// here: a collected *os.File is closed by its finalizer, which drops
	// the flock while the process still runs.
	runtime.KeepAlive(s)
	os.Exit(0)
}

// storeOne creates the file stream KILL and stores one message in it.
func storeOne(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KILL", Subjects: []string{"kill.>"}}); err != nil {
		return err
	}
	_, err = js.Publish(ctx, "kill.one", []byte("stored before the kill"))
	return err
}

// TestLockFreedWhenHolderKilled: a child process holding the data dir is
// SIGKILLed, leaving its lock file behind (its PID in it); the next Start
// on the dir works at once with no cleanup, and finds what the child
// stored.
func TestLockFreedWhenHolderKilled(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-exited
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); l == "ready" || strings.HasPrefix(l, "error:") {
				lines <- l
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	select {
	case l, ok := <-lines:
		if l != "ready" {
			t.Fatalf("child: %q (open %t), want ready", l, ok)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child not ready within 30s")
	}

	_, err = embedded.Start(embedded.Config{DataDir: dir})
	if !errors.Is(err, embedded.ErrDataDirLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("Start while the child holds the dir: %v, want ErrDataDirLocked naming pid %d", err, cmd.Process.Pid)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		exited <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("child not gone within 10s of SIGKILL")
	}
	stale, err := os.ReadFile(filepath.Join(dir, embedded.LockFileName))
	if err != nil || !strings.Contains(string(stale), strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("lock file after the kill: %q, %v; want the dead holder's pid left in it", stale, err)
	}

	began := time.Now()
	s, err := embedded.Start(embedded.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Start after the holder was killed: %v", err)
	}
	defer s.Shutdown()
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("Start after the kill took %s", d)
	}
	nc, err := dial(t, "", s.ConnectOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KILL")
	if err != nil {
		t.Fatalf("the stream the killed holder stored: %v", err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream KILL holds %d messages after the restart, want 1", n)
	}
}

// TestStartUnwritableDataDir: a data dir that cannot be used fails Start
// at once, with the cause, and never waits for readiness.
func TestStartUnwritableDataDir(t *testing.T) {
	root := os.Geteuid() == 0
	tests := []struct {
		name string
		// dir makes the data dir to give Start.
		dir  func(t *testing.T) string
		want string
		// permissions is set when only permission bits stop the writes,
		// which do not stop root.
		permissions bool
	}{
		{
			name: "path is a file",
			dir: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "file")
				writeFile(t, p)
				return p
			},
			want: "is not a directory",
		},
		{
			name: "path under a file",
			dir: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "file")
				writeFile(t, p)
				return filepath.Join(p, "data")
			},
			want: "not a directory",
		},
		{
			name: "jetstream store is a file",
			dir: func(t *testing.T) string {
				d := t.TempDir()
				writeFile(t, filepath.Join(d, "jetstream"))
				return d
			},
			want: "jetstream",
		},
		{
			name: "read-only dir",
			dir: func(t *testing.T) string {
				return chmodDir(t, 0o500)
			},
			want:        "permission denied",
			permissions: true,
		},
		{
			name: "dir without permission",
			dir: func(t *testing.T) string {
				return chmodDir(t, 0)
			},
			want:        "permission denied",
			permissions: true,
		},
		{
			name: "read-only parent of a missing dir",
			dir: func(t *testing.T) string {
				return filepath.Join(chmodDir(t, 0o500), "data")
			},
			want:        "permission denied",
			permissions: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.permissions && root {
				t.Skip("running as root, whom permission bits do not stop: the file-in-the-way cases cover the same up-front check; run the tests as another user to cover this one")
			}
			dir := tt.dir(t)
			began := time.Now()
			s, err := embedded.Start(embedded.Config{DataDir: dir})
			if err == nil {
				s.Shutdown()
				t.Fatalf("Start on %s: started", dir)
			}
			if d := time.Since(began); d > failFast {
				t.Errorf("Start took %s to fail, want under %s", d, failFast)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start: %v, want the cause (%q)", err, tt.want)
			}
			if strings.Contains(err.Error(), "not ready") {
				t.Errorf("Start: %v: waited for readiness instead of naming the cause", err)
			}
		})
	}
}

// TestStartNATSPortInUse: a nats-server start-up error (here its client
// port taken) ends Start at once with the cause, instead of a wait for
// readiness.
func TestStartNATSPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	began := time.Now()
	s, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Listen: l.Addr().String(), User: "jetway", Password: "pw"})
	if err == nil {
		s.Shutdown()
		t.Fatal("Start on a taken port: started")
	}
	if d := time.Since(began); d > failFast {
		t.Errorf("Start took %s to fail, want under %s", d, failFast)
	}
	if !strings.Contains(err.Error(), l.Addr().String()) || strings.Contains(err.Error(), "not ready") {
		t.Errorf("Start: %v, want nats-server's listen error naming %s", err, l.Addr())
	}
}

// writeFile creates a small regular file at p.
func writeFile(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("in the way\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// chmodDir is a new dir with mode perm, given back its permissions at the
// end of the test so that it can be removed.
func chmodDir(t *testing.T, perm os.FileMode) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "dir")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, perm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(d, 0o700) })
	return d
}
