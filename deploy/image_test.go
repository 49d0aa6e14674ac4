package deploy

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// imageScenario runs the image alone, as README.md's docker run does:
// embedded JetStream in the /data volume, the auth config and the
// ack-keys secret mounted, the image's environment and entrypoint, its
// user. Without the auth config it stops at once, naming the file; with
// it, it serves, its HEALTHCHECK passes, a publish, fetch and ack go
// through over REST, and the stream outlives a restart in /data.
func imageScenario(t *testing.T, bin string) {
	d := readDockerfile(t)
	out := filepath.Join(bin, "out")
	files := newOperatorFiles(t, t.TempDir())
	argv := append(slices.Clone(d.image.entrypoint), d.image.cmd...)
	httpAddr, _ := envValue(d.image.env, "JETWAY_HTTP_LISTEN")
	base := "http://127.0.0.1:" + listenPort(t, httpAddr)

	t.Run("no auth config mounted", func(t *testing.T) {
		c := newImageContainer(t, "jetway-unconfigured", d, out, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		output, err := c.command(ctx, argv...).CombinedOutput()
		if ctx.Err() != nil || err == nil {
			t.Fatalf("the bridge did not stop without its auth config (%v):\n%s", err, output)
		}
		if !strings.Contains(string(output), "/etc/jetway/auth.yaml") {
			t.Errorf("the refusal does not name /etc/jetway/auth.yaml:\n%s", output)
		}
	})

	c := newImageContainer(t, "jetway", d, out, nil)
	uid := c.uid
	c.mount(t, files.authConfig, "/etc/jetway/auth.yaml", 0, 0)
	c.mount(t, files.ackKeys, "/run/secrets/ack_keys", 0, 0)
	c.env = overlay(c.env, "JETWAY_ACK_KEYS_FILE=/run/secrets/ack_keys")
	p := c.start(t, argv...)
	waitOK(t, base+"/healthz", 20*time.Second, p)
	waitOK(t, base+"/readyz", 20*time.Second, p)
	if code, output := c.exec(t, d.image.healthcheck...); code != 0 {
		t.Errorf("HEALTHCHECK %q: exit %d: %s", d.image.healthcheck, code, output)
	}
	cl := newClient(base, files.apiKey)
	publishFetchAck(t, cl, cl, 1)

	fi, err := os.Stat(c.path("/data/jetstream"))
	if err != nil {
		t.Fatalf("no JetStream store in /data: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
		t.Errorf("/data/jetstream is owned by %d, want the image's user %d", st.Uid, uid)
	}

	if err := p.stop(); err != nil {
		t.Fatalf("SIGTERM: %v, want exit 0", err)
	}
	p = c.start(t, argv...)
	waitOK(t, base+"/readyz", 20*time.Second, p)
	if s := cl.do(t, http.MethodGet, "/v1/streams/TEST/messages/1", nil, nil); s != http.StatusOK {
		t.Errorf("after a restart, message 1: %d, want 200 (kept in the /data volume)", s)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("SIGTERM: %v, want exit 0", err)
	}
	if code, output := c.exec(t, d.image.healthcheck...); code != 1 {
		t.Errorf("HEALTHCHECK of a stopped bridge: exit %d, want 1 (unhealthy): %s", code, output)
	}
}
