package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"sigs.k8s.io/yaml"

	"github.com/jetway-dev/jetway/auth"
	"github.com/jetway-dev/jetway/auth/perm"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
)

// The environment of the tests that run the deployment: JETWAY_TEST_DEPLOY
// opts in; the child process in the network namespace gets the scenario
// and the directory of the built binaries.
const (
	envOptIn    = "JETWAY_TEST_DEPLOY"
	envScenario = "JETWAY_TEST_DEPLOY_SCENARIO"
	envBin      = "JETWAY_TEST_DEPLOY_BIN"
)

// TestInNamespaces builds the image's binary as the Dockerfile does (and
// nats-server the same way, from go.mod's version) and runs each scenario
// in a child test process in a fresh network namespace (unshare -n), as a
// container runtime would: nothing else on the machine reaches it, and it
// reaches nothing else.
func TestInNamespaces(t *testing.T) {
	if os.Getenv(envOptIn) != "1" {
		t.Skipf("set %s=1 (make test-deploy) to build the image's binary and run the image, compose and Kubernetes deployments in network namespaces (as root)", envOptIn)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, chroot and the image's user")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux, iproute2): %v", tool, err)
		}
	}
	if out, err := exec.Command("unshare", "--net", "--", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here (unshare --net: %v): %s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	start := time.Now()
	var log bytes.Buffer
	d := readDockerfile(t)
	env, flags := buildImage(t, d, filepath.Join(bin, "out"), &log)
	// nats-server from go.mod (the version compose's image tag names,
	// TestComposeFile checks), static as well, built with the same flags
	// so that it shares their build cache.
	c := exec.Command("go", append(append([]string{"build"}, flags...), "-o", filepath.Join(bin, "nats-server"), "github.com/nats-io/nats-server/v2")...)
	c.Dir, c.Env, c.Stdout, c.Stderr = "..", append(os.Environ(), env...), &log, &log
	if err := c.Run(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, log.String())
	}
	t.Logf("built in %s:\n%s", time.Since(start).Round(time.Millisecond), log.String())
	// nats-server -t on the shipped configs, with the binary itself
	// (TestNATSConfigs makes the same check through its library).
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	confs, _ := filepath.Glob(filepath.Join("nats", "*.conf"))
	for _, conf := range confs {
		c := exec.Command(filepath.Join(bin, "nats-server"), "-t", "-c", conf)
		c.Env = append(os.Environ(), "BRIDGE_NKEY="+pub)
		if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "is valid") {
			t.Fatalf("nats-server -t -c %s: %v\n%s", conf, err, out)
		}
	}

	for _, name := range []string{"image", "compose", "kubernetes"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			child := exec.CommandContext(ctx, "unshare", "--net", "--", self,
				"-test.run=^TestNamespaceChild$", "-test.v", "-test.count=1", "-test.timeout=150s")
			child.Env = append(os.Environ(), envScenario+"="+name, envBin+"="+bin)
			var out bytes.Buffer
			child.Stdout, child.Stderr = &out, &out
			start := time.Now()
			err := child.Run()
			t.Logf("%s in a network namespace (%s):\n%s", name, time.Since(start).Round(time.Millisecond), out.String())
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !strings.Contains(out.String(), "--- PASS: TestNamespaceChild") {
				t.Fatalf("%s: the child test did not pass", name)
			}
		})
	}
}

// TestNamespaceChild is TestInNamespaces' child: it runs one scenario,
// inside the network namespace unshare made, whose loopback it brings up.
func TestNamespaceChild(t *testing.T) {
	name := os.Getenv(envScenario)
	if name == "" {
		t.Skip("run by TestInNamespaces in a network namespace")
	}
	var scenario func(t *testing.T, bin string)
	switch name {
	case "image":
		scenario = imageScenario
	case "compose":
		scenario = composeScenario
	case "kubernetes":
		scenario = kubernetesScenario
	default:
		t.Fatalf("no scenario %q", name)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	scenario(t, os.Getenv(envBin))
}

// container is one process as a container runtime would start it: in a
// root filesystem of its own (root, a directory standing for /), as a
// user, with exactly env.
type container struct {
	name    string
	root    string
	env     []string
	uid     uint32
	gid     uint32
	groups  []uint32
	workdir string
	logs    *jetwaytest.LogBuffer
}

// newImageContainer lays out the Dockerfile's image under a new directory
// standing for /: the base image's few files (distroless static nonroot:
// /etc/passwd, /etc/group, /tmp, /home/nonroot), the runtime's /etc/hosts
// (hosts: name → IP) and every COPY from the build stage, outDir standing
// for /out. Its user, working directory and environment are the image's.
func newImageContainer(t *testing.T, name string, d dockerfile, outDir string, hosts map[string]string) *container {
	t.Helper()
	uid, gid, err := numericUser(d.image.user)
	if err != nil {
		t.Fatal(err)
	}
	c := newContainer(t, name, hosts)
	c.uid, c.gid, c.workdir, c.env = uid, gid, d.image.workdir, slices.Clone(d.image.env)
	c.write(t, "/etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n", 0o644, 0, 0)
	c.write(t, "/etc/group", "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n", 0o644, 0, 0)
	c.mkdir(t, "/home/nonroot", 0o700, 65532, 65532)
	for _, cp := range d.image.copies {
		src := filepath.Join(outDir, strings.TrimPrefix(cp.src, "/out/"))
		owner := [2]int{0, 0}
		if cp.chown != "" {
			u, g, err := numericUser(cp.chown)
			if err != nil {
				t.Fatalf("COPY --chown: %v", err)
			}
			owner = [2]int{int(u), int(g)}
		}
		copyTree(t, src, c.path(cp.dst), owner)
	}
	if c.workdir == "" {
		c.workdir = "/"
	}
	// Docker sets these for the process unless the image does.
	c.env = overlay([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=" + name, "HOME=/home/nonroot"}, c.env...)
	return c
}

// newContainer is an empty root filesystem with /tmp, /etc/hosts and
// /etc/nsswitch.conf, run as root.
func newContainer(t *testing.T, name string, hosts map[string]string) *container {
	t.Helper()
	root := t.TempDir()
	// t.TempDir is 0700: the image's user must be able to enter its /.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &container{name: name, root: root, logs: &jetwaytest.LogBuffer{}, workdir: "/"}
	c.mkdir(t, "/tmp", 0o1777, 0, 0)
	var h strings.Builder
	h.WriteString("127.0.0.1\tlocalhost\n")
	for _, n := range slices.Sorted(mapsKeys(hosts)) {
		fmt.Fprintf(&h, "%s\t%s\n", hosts[n], n)
	}
	c.write(t, "/etc/hosts", h.String(), 0o644, 0, 0)
	c.write(t, "/etc/nsswitch.conf", "hosts: files dns\n", 0o644, 0, 0)
	return c
}

// path is the host path of a path inside the container.
func (c *container) path(p string) string { return filepath.Join(c.root, filepath.FromSlash(p)) }

// mkdir makes a directory inside the container (and its parents, root's).
func (c *container) mkdir(t *testing.T, p string, mode fs.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(c.path(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(c.path(p), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(c.path(p), uid, gid); err != nil {
		t.Fatal(err)
	}
}

// write makes a file inside the container, as a mount (a bind mount, a
// secret, a ConfigMap) would show it: content, mode and owner.
func (c *container) write(t *testing.T, p, content string, mode fs.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(c.path(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.path(p), []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(c.path(p), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(c.path(p), uid, gid); err != nil {
		t.Fatal(err)
	}
}

// mount shows the host file src at p inside the container, with its mode
// and an owner, as a bind mount of it would.
func (c *container) mount(t *testing.T, src, p string, uid, gid int) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	c.write(t, p, string(data), fi.Mode().Perm(), uid, gid)
}

// command is argv run inside the container: chrooted, as its user, in its
// working directory, with exactly its environment, killed if the test
// process dies.
func (c *container) command(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = slices.Clone(c.env), c.workdir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     c.root,
		Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: slices.Clone(c.groups)},
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// process is a container's main process.
type process struct {
	c    *container
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// start runs argv as the container's main process; the test's cleanup
// stops it (SIGTERM, then SIGKILL after 20s) and logs its output if the
// test failed.
func (c *container) start(t *testing.T, argv ...string) *process {
	t.Helper()
	cmd := c.command(context.Background(), argv...)
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %q: %v", c.name, argv, err)
	}
	p := &process{c: c, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", c.name, c.logs.String())
		}
	})
	return p
}

// stop ends the process as a runtime does (SIGTERM, SIGKILL 20s later)
// and returns an error unless it exited 0 after the SIGTERM. Calling it
// again returns the same.
func (p *process) stop() error {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			return errors.New("did not stop within 20s of SIGTERM")
		}
	}
	return p.err
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// exec runs argv in the running container, as docker exec or a
// HEALTHCHECK would, and returns its exit code and output.
func (c *container) exec(t *testing.T, argv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.command(ctx, argv...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("%s: exec %q: %v", c.name, argv, err)
	}
	return 0, string(out)
}

// copyTree copies a file or a directory tree to dst (the directory's
// content into dst, as COPY does), every created entry owned by owner.
func copyTree(t *testing.T, src, dst string, owner [2]int) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if e.IsDir() {
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
		} else {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
				return err
			}
		}
		if err := os.Chmod(to, fi.Mode().Perm()); err != nil {
			return err
		}
		return os.Chown(to, owner[0], owner[1])
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// operatorFiles are what an operator writes before the first start
// (README.md, "Deployment"): the ack-token key, the bridges' NATS NKey and
// the auth config. The auth config is deploy/examples/auth.yaml with one
// more identity, the tests' client, holding apiKey.
type operatorFiles struct {
	ackKeys, nkeySeed, nkeyPublic, authConfig string
	apiKey                                    string
}

// newOperatorFiles makes them under dir, with the modes README.md gives.
func newOperatorFiles(t *testing.T, dir string) operatorFiles {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	apiKey := make([]byte, 24)
	_, _ = rand.Read(apiKey)
	f := operatorFiles{
		ackKeys: filepath.Join(dir, "ack-keys"), nkeySeed: filepath.Join(dir, "nats.nk"),
		nkeyPublic: pub, authConfig: filepath.Join(dir, "auth.yaml"),
		apiKey: base64.RawURLEncoding.EncodeToString(apiKey),
	}
	example, err := os.ReadFile(filepath.Join("examples", "auth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ac auth.File
	if err := yaml.UnmarshalStrict(example, &ac); err != nil {
		t.Fatalf("examples/auth.yaml: %v", err)
	}
	ac.Identities = append(ac.Identities, auth.IdentityConfig{
		Name:         "deploy-test",
		APIKeyHashes: []string{auth.HashAPIKey(f.apiKey)},
		Grant: auth.Grant{
			Publish: &perm.Set{Allow: []string{"test.>"}},
			Consume: &auth.ConsumeGrant{Streams: []string{"TEST.*"}},
			Admin:   &auth.AdminGrant{Streams: []string{"TEST"}, Write: true, Subjects: &perm.Set{Allow: []string{"test.>"}}},
		},
	})
	acYAML, err := yaml.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	// install -d -m 0700 secrets; …; chmod 0644 secrets/*
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{
		f.ackKeys:    base64.StdEncoding.EncodeToString(key) + "\n",
		f.nkeySeed:   string(seed) + "\n" + pub + "\n",
		f.authConfig: string(acYAML),
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// client is a REST client of one bridge, authenticated with an API key.
type client struct {
	base, apiKey string
	http         *http.Client
}

func newClient(base, apiKey string) client {
	return client{base: base, apiKey: apiKey, http: &http.Client{Timeout: 15 * time.Second}}
}

// do sends a JSON request and decodes the JSON answer into out (when not
// nil); it returns the HTTP status.
func (c client) do(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "ApiKey "+c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// waitOK polls url until it answers 200, for up to d; the processes are
// watched so that one that ended fails the wait at once.
func waitOK(t *testing.T, url string, d time.Duration, watch ...*process) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range watch {
			if done, err := p.exited(); done {
				t.Fatalf("%s exited while waiting for %s: %v\n%s", p.c.name, url, err, p.c.logs.String())
			}
		}
		resp, err := hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not 200 within %s: %s", url, d, last)
}

// publishFetchAck is the round trip every scenario checks over REST: no
// credential is 401; the test identity creates stream TEST (replicas)
// and a durable consumer through pub, publishes through pub, fetches
// through sub, acks through pub (the ack keys are shared), and the
// consumer then has nothing pending.
func publishFetchAck(t *testing.T, pub, sub client, replicas int) {
	t.Helper()
	resp, err := pub.http.Get(pub.base + "/v1/streams")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credential: %d, want 401", resp.StatusCode)
	}
	if s := pub.do(t, http.MethodPost, "/v1/streams", map[string]any{"name": "TEST", "subjects": []string{"test.>"}, "replicas": replicas}, nil); s != http.StatusOK {
		t.Fatalf("create stream: %d", s)
	}
	if s := pub.do(t, http.MethodPost, "/v1/streams/TEST/consumers", map[string]any{"name": "worker", "ack_wait": "30s"}, nil); s != http.StatusOK {
		t.Fatalf("create consumer: %d", s)
	}
	var ack struct {
		Stream   string `json:"stream"`
		Sequence string `json:"sequence"`
	}
	if s := pub.do(t, http.MethodPost, "/v1/subjects/test.hello:publish", map[string]any{"text": "hello from the deploy test"}, &ack); s != http.StatusOK || ack.Stream != "TEST" || ack.Sequence != "1" {
		t.Fatalf("publish: %d %+v", s, ack)
	}
	var fetched struct {
		Messages []struct {
			Subject  string `json:"subject"`
			Text     string `json:"text"`
			AckToken string `json:"ack_token"`
		} `json:"messages"`
	}
	if s := sub.do(t, http.MethodPost, "/v1/streams/TEST/consumers/worker:fetch", map[string]any{"batch": 10, "wait": "5s", "format": "PAYLOAD_FORMAT_TEXT"}, &fetched); s != http.StatusOK ||
		len(fetched.Messages) != 1 || fetched.Messages[0].Text != "hello from the deploy test" {
		t.Fatalf("fetch: %d %+v", s, fetched)
	}
	if n := ackPending(t, sub); n != "1" {
		t.Errorf("num_ack_pending after the fetch = %q, want 1", n)
	}
	ops := map[string]any{"operations": []any{map[string]any{"token": fetched.Messages[0].AckToken, "kind": "ACK_KIND_ACK"}}, "sync": true}
	var acked struct {
		Results []struct {
			Error any `json:"error"`
		} `json:"results"`
	}
	if s := pub.do(t, http.MethodPost, "/v1/acks", ops, &acked); s != http.StatusOK || len(acked.Results) != 1 || acked.Results[0].Error != nil {
		t.Fatalf("ack through the other bridge: %d %+v", s, acked)
	}
	if n := ackPending(t, sub); n != "0" {
		t.Errorf("num_ack_pending after the ack = %q, want 0", n)
	}
}

// ackPending is consumer TEST/worker's num_ack_pending (an int64: a JSON
// string, absent when 0).
func ackPending(t *testing.T, c client) string {
	t.Helper()
	var info struct {
		Consumer struct {
			NumAckPending string `json:"num_ack_pending"`
		} `json:"consumer"`
	}
	if s := c.do(t, http.MethodGet, "/v1/streams/TEST/consumers/worker", nil, &info); s != http.StatusOK {
		t.Fatalf("get consumer: %d", s)
	}
	if info.Consumer.NumAckPending == "" {
		return "0"
	}
	return info.Consumer.NumAckPending
}
