package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"sigs.k8s.io/yaml"

	"github.com/jetway-dev/jetway/config"
)

// composeFile is the part of the compose specification compose.yaml uses.
// It is decoded strictly: a key the tests do not know fails them, so that
// nothing the runtime would do is silently left out of the emulation.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Secrets  map[string]composeSource  `json:"secrets"`
	Configs  map[string]composeSource  `json:"configs"`
	Volumes  map[string]struct{}       `json:"volumes"`
}

type composeSource struct {
	File string `json:"file"`
}

type composeService struct {
	Image       string            `json:"image"`
	Build       *composeBuild     `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	// Volumes are short-syntax mounts: ./file:/path[:ro] or name:/path.
	Volumes   []string                    `json:"volumes"`
	Secrets   []string                    `json:"secrets"`
	Configs   []composeTarget             `json:"configs"`
	DependsOn map[string]composeCondition `json:"depends_on"`
	// Ports publish container ports on the host: host-ip:host:container.
	Ports       []string `json:"ports"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Timeout  string   `json:"timeout"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
	ReadOnly        bool     `json:"read_only"`
	CapDrop         []string `json:"cap_drop"`
	SecurityOpt     []string `json:"security_opt"`
	StopGracePeriod string   `json:"stop_grace_period"`
	Restart         string   `json:"restart"`
	Deploy          struct {
		Resources struct {
			Limits struct {
				CPUs   string `json:"cpus"`
				Memory string `json:"memory"`
			} `json:"limits"`
		} `json:"resources"`
	} `json:"deploy"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

type composeTarget struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

type composeCondition struct {
	Condition string `json:"condition"`
}

// interpolation is compose's ${VAR}, ${VAR:-default} and ${VAR:?error}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}`)

// parseCompose reads a compose file with the variables of a .env file,
// refusing a variable that is required and unset as compose does.
func parseCompose(path string, dotEnv map[string]string) (composeFile, error) {
	var f composeFile
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	// Compose interpolates values, not comments: YAML first (anchors and
	// merges resolved; the strict form would take a merge's override for
	// a duplicate key), then the variables.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return f, err
	}
	var errs []string
	text := interpolation.ReplaceAllStringFunc(string(js), func(m string) string {
		g := interpolation.FindStringSubmatch(m)
		v := dotEnv[g[1]]
		switch {
		case v == "" && g[2] == "-":
			v = g[3]
		case v == "" && g[2] == "?":
			errs = append(errs, fmt.Sprintf("required variable %s is missing a value: %s", g[1], g[3]))
		}
		b, _ := json.Marshal(v)
		return string(b[1 : len(b)-1])
	})
	if len(errs) > 0 {
		return f, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	if i := strings.Index(text, "$"); i >= 0 {
		return f, fmt.Errorf("a $ the tests do not interpolate: %q", text[i:min(len(text), i+20)])
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, err
	}
	return f, nil
}

// composeVolume is a short-syntax volume: a bind mount of a host path
// (relative to the compose file) or a named volume.
type composeVolume struct {
	source, target string
	bind, readOnly bool
}

func parseVolume(v string) (composeVolume, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "ro") {
		return composeVolume{}, fmt.Errorf("volume %q: want source:target[:ro]", v)
	}
	return composeVolume{
		source: parts[0], target: parts[1], readOnly: len(parts) == 3,
		bind: strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/"),
	}, nil
}

// composePort is a published port: host IP, host port, container port.
func parsePort(p string) (hostIP, hostPort, containerPort string, err error) {
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("port %q: want host-ip:host-port:container-port", p)
	}
	return parts[0], parts[1], parts[2], nil
}

// mounts are where a service's secrets and configs appear, by the path
// inside the container: their source files, relative to the compose file.
func (f composeFile) mounts(s composeService) (map[string]string, error) {
	m := map[string]string{}
	for _, name := range s.Secrets {
		src, ok := f.Secrets[name]
		if !ok || src.File == "" {
			return nil, fmt.Errorf("secret %q: not declared with a file", name)
		}
		m["/run/secrets/"+name] = src.File
	}
	for _, c := range s.Configs {
		src, ok := f.Configs[c.Source]
		if !ok || src.File == "" || !strings.HasPrefix(c.Target, "/") {
			return nil, fmt.Errorf("config %q: not declared with a file, or no absolute target", c.Source)
		}
		m[c.Target] = src.File
	}
	return m, nil
}

// natsServerMinor is the major.minor of nats-server in go.mod.
func natsServerMinor(t *testing.T) string {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\d+\.\d+)\.\d+`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod requires no nats-server/v2")
	}
	return string(m[1])
}

// fileEnv are the variables whose value is a path the bridge reads.
func fileEnv(k string) bool {
	return strings.HasSuffix(k, "_FILE") || k == "JETWAY_NATS_CREDS" || k == "JETWAY_AUTH_CONFIG" ||
		strings.HasPrefix(k, "JETWAY_NATS_TLS_") && k != "JETWAY_NATS_TLS_SERVER_NAME" ||
		k == "JETWAY_TLS_CERT" || k == "JETWAY_TLS_KEY" || k == "JETWAY_TLS_CLIENT_CA"
}

// secretEnv are the variables that would hold a secret itself.
func secretEnv(k string) bool {
	return k == "JETWAY_ACK_KEYS" || k == "JETWAY_NATS_PASSWORD" || k == "JETWAY_NATS_TOKEN" || k == "JETWAY_NATS_NKEY"
}

// TestComposeFile checks compose.yaml without running it: it needs .env's
// BRIDGE_NKEY, the NATS image is go.mod's nats-server, the bridges are the
// Dockerfile's image with every secret by file (mounted where their
// variables point), publish only ports the image exposes and only on
// loopback, wait for healthy NATS, stop within their grace period and
// have limits.
func TestComposeFile(t *testing.T) {
	if _, err := parseCompose("compose.yaml", nil); err == nil || !strings.Contains(err.Error(), "BRIDGE_NKEY") {
		t.Errorf("compose.yaml without deploy/.env: %v, want BRIDGE_NKEY required", err)
	}
	f, err := parseCompose("compose.yaml", map[string]string{"BRIDGE_NKEY": "UDUMMY"})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	d := readDockerfile(t)
	known := flagEnv(t)
	gitignore, err := os.ReadFile(filepath.Join("..", ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"deploy/secrets/", "deploy/.env"} {
		if !slices.Contains(strings.Split(string(gitignore), "\n"), p) {
			t.Errorf(".gitignore lacks %s: operators' secrets must never be committed", p)
		}
	}
	for _, src := range f.Secrets {
		if !strings.HasPrefix(src.File, "./secrets/") {
			t.Errorf("secret file %s: keep operators' files under ./secrets/ (ignored by git and the build)", src.File)
		}
	}
	var nats, bridges []string
	for _, name := range slices.Sorted(mapsKeys(f.Services)) {
		s := f.Services[name]
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
			if tag := strings.TrimPrefix(s.Image, "nats:"); !strings.HasPrefix(tag, natsServerMinor(t)+"-") && tag != natsServerMinor(t) {
				t.Errorf("%s: image %s, but go.mod (what the tests run) has nats-server %s", name, s.Image, natsServerMinor(t))
			}
			if s.Environment["BRIDGE_NKEY"] != "UDUMMY" {
				t.Errorf("%s: BRIDGE_NKEY is not given to the server", name)
			}
			for _, v := range s.Volumes {
				vol, err := parseVolume(v)
				if err != nil {
					t.Fatal(err)
				}
				if vol.bind {
					if _, err := os.Stat(vol.source); err != nil {
						t.Errorf("%s: %v", name, err)
					}
				} else if _, ok := f.Volumes[vol.source]; !ok {
					t.Errorf("%s: volume %s is not declared", name, vol.source)
				}
			}
			if s.Healthcheck == nil || natsHealthURL(t, s) == nil {
				t.Errorf("%s: no health check: the bridges wait for it", name)
			}
		case s.Build != nil:
			bridges = append(bridges, name)
			if s.Build.Context != ".." || s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("%s: build %+v, want the repository with deploy/Dockerfile", name, s.Build)
			}
			checkBridgeService(t, f, name, s, d, known)
		case composeKind(s) == "lb" || composeKind(s) == "prometheus":
			// TestComposeLoadBalancer.
			for _, p := range s.Ports {
				if ip, _, _, err := parsePort(p); err != nil || ip != "127.0.0.1" {
					t.Errorf("%s: port %s: want 127.0.0.1:host:container", name, p)
				}
			}
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("%s: want read_only and cap_drop: [ALL]", name)
			}
		default:
			t.Errorf("service %s: neither nats, the bridge image, HAProxy nor Prometheus", name)
		}
	}
	if len(nats) != 3 || len(bridges) != 2 {
		t.Errorf("services: NATS %v, bridges %v; want 3 and 2 (README.md describes them)", nats, bridges)
	}
	for _, b := range bridges {
		for _, n := range nats {
			if f.Services[b].DependsOn[n].Condition != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", b, n)
			}
		}
	}
}

func checkBridgeService(t *testing.T, f composeFile, name string, s composeService, d dockerfile, known map[string]bool) {
	t.Helper()
	env := overlay(d.image.env, envList(s.Environment)...)
	mounts, err := f.mounts(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, config.EnvPrefix) {
			continue
		}
		switch {
		case !known[k]:
			t.Errorf("%s: %s: the bridge has no such flag", name, k)
		case secretEnv(k):
			t.Errorf("%s: %s holds a secret in the environment: give it by file", name, k)
		case fileEnv(k) && mounts[v] == "":
			t.Errorf("%s: %s=%s is not a mounted secret or config (mounts %v)", name, k, v, mounts)
		}
	}
	if v, _ := envValue(env, "JETWAY_ACK_KEYS_FILE"); v == "" {
		t.Errorf("%s: no JETWAY_ACK_KEYS_FILE: the replicas must share ack keys", name)
	}
	for _, p := range s.Ports {
		ip, _, port, err := parsePort(p)
		if err != nil {
			t.Fatal(err)
		}
		if ip != "127.0.0.1" {
			t.Errorf("%s: port %s published beyond loopback (plain-text credentials; put TLS in front first)", name, p)
		}
		if !slices.Contains(d.image.expose, port) {
			t.Errorf("%s: port %s: the image exposes %v", name, p, d.image.expose)
		}
	}
	grace, err1 := time.ParseDuration(s.StopGracePeriod)
	shutdown, err2 := time.ParseDuration(s.Environment["JETWAY_SHUTDOWN_TIMEOUT"])
	if err1 != nil || err2 != nil || shutdown >= grace {
		t.Errorf("%s: stop_grace_period %q must exceed JETWAY_SHUTDOWN_TIMEOUT %q", name, s.StopGracePeriod, s.Environment["JETWAY_SHUTDOWN_TIMEOUT"])
	}
	if s.Deploy.Resources.Limits.Memory == "" || s.Deploy.Resources.Limits.CPUs == "" || s.Environment["GOMEMLIMIT"] == "" {
		t.Errorf("%s: want cpu and memory limits and GOMEMLIMIT", name)
	}
	if !s.ReadOnly {
		t.Errorf("%s: want read_only: the bridge writes only /data", name)
	}
}

func envList(m map[string]string) []string {
	var l []string
	for _, k := range slices.Sorted(mapsKeys(m)) {
		l = append(l, k+"="+m[k])
	}
	return l
}

// natsHealthURL is the URL a NATS service's health check asks.
func natsHealthURL(t *testing.T, s composeService) *url.URL {
	t.Helper()
	for _, a := range s.Healthcheck.Test {
		if strings.HasPrefix(a, "http://") {
			u, err := url.Parse(a)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
	}
	return nil
}

// composeScenario runs compose.yaml's topology as processes, each in a
// root filesystem of its own, on the namespace's loopback: every service
// has its own address (127.0.0.1x), and /etc/hosts names them as the
// compose network's DNS would. What differs from compose: the services
// share one loopback, so the NATS servers listen on their own address
// (-a, --cluster instead of the config's 0.0.0.0) and so do the bridges
// (JETWAY_GRPC_LISTEN and JETWAY_HTTP_LISTEN); ports are not published,
// the tests ask the services' addresses. Everything else is the files':
// the NATS configs, the compose environment, the secrets and configs where
// compose mounts them, the image's user and environment.
func composeScenario(t *testing.T, bin string) {
	project := t.TempDir()
	files := newOperatorFiles(t, filepath.Join(project, "secrets"))
	natsDir := filepath.Join(project, "nats")
	copyTree(t, "nats", natsDir, [2]int{0, 0})
	f, err := parseCompose("compose.yaml", map[string]string{"BRIDGE_NKEY": files.nkeyPublic})
	if err != nil {
		t.Fatal(err)
	}
	d := readDockerfile(t)
	hosts := map[string]string{}
	for i, name := range slices.Sorted(mapsKeys(f.Services)) {
		// From .20: 127.0.0.11 is Docker's DNS server, which HAProxy's
		// resolvers ask (nothing answers it here).
		hosts[name] = fmt.Sprintf("127.0.0.%d", 20+i)
	}
	// The services nothing waits for start first, and the others once
	// those are healthy, as depends_on: service_healthy says. Prometheus
	// is not run: the test scrapes its targets itself.
	var first, then []string
	var lbs []string
	for _, name := range slices.Sorted(mapsKeys(f.Services)) {
		switch s := f.Services[name]; {
		case composeKind(s) == "prometheus":
		case composeKind(s) == "lb":
			lbs = append(lbs, name)
		case len(s.DependsOn) == 0:
			first = append(first, name)
		default:
			then = append(then, name)
		}
	}
	procs := map[string]*process{}
	var bridges []string
	for _, name := range first {
		s := f.Services[name]
		if !strings.HasPrefix(s.Image, "nats:") {
			t.Fatalf("%s: only the NATS servers start first", name)
		}
		c := newContainer(t, name, hosts)
		copyTree(t, filepath.Join(bin, "nats-server"), c.path("/nats-server"), [2]int{0, 0})
		c.env = overlay([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=" + name}, envList(s.Environment)...)
		mountVolumes(t, c, project, s)
		argv := slices.Clone(s.Command)
		// The nats image's entrypoint runs nats-server with arguments
		// that start with '-'.
		if len(argv) > 0 && strings.HasPrefix(argv[0], "-") {
			argv = append([]string{"/nats-server"}, argv...)
		}
		ip := hosts[name]
		procs[name] = c.start(t, append(argv, "-a", ip, "--cluster", "nats://"+ip+":6222")...)
	}
	for _, name := range first {
		u := natsHealthURL(t, f.Services[name])
		u.Host = net.JoinHostPort(hosts[name], u.Port()) // its own 127.0.0.1
		waitOK(t, u.String(), 30*time.Second, procs[name])
	}
	anon, err := nats.Connect("nats://"+hosts[first[0]]+":4222", nats.Timeout(2*time.Second), nats.NoReconnect())
	if err == nil {
		anon.Close()
		t.Error("an anonymous NATS client was let in")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Errorf("anonymous NATS client: %v, want an authorization violation", err)
	}

	for _, name := range then {
		s := f.Services[name]
		if s.Build == nil {
			t.Fatalf("%s: only the bridges wait", name)
		}
		for dep := range s.DependsOn {
			if _, ok := procs[dep]; !ok {
				t.Fatalf("%s depends on %s, which has not started", name, dep)
			}
		}
		c := newImageContainer(t, name, d, filepath.Join(bin, "out"), hosts)
		ip := hosts[name]
		c.env = overlay(c.env, envList(s.Environment)...)
		for _, k := range []string{"JETWAY_GRPC_LISTEN", "JETWAY_HTTP_LISTEN", "JETWAY_METRICS_LISTEN"} {
			addr, ok := envValue(c.env, k)
			if !ok {
				continue
			}
			c.env = overlay(c.env, k+"="+net.JoinHostPort(ip, listenPort(t, addr)))
		}
		mounts, err := f.mounts(s)
		if err != nil {
			t.Fatal(err)
		}
		for target, src := range mounts {
			c.mount(t, filepath.Join(project, src), target, 0, 0)
		}
		mountVolumes(t, c, project, s)
		if s.ReadOnly {
			// The root filesystem is read-only; /data is a volume.
			c.mkdir(t, "/tmp", 0o755, 0, 0)
		}
		procs[name] = c.start(t, append(slices.Clone(d.image.entrypoint), d.image.cmd...)...)
		bridges = append(bridges, name)
		defer func(c *container) {
			if t.Failed() {
				return
			}
			if code, out := c.exec(t, d.image.healthcheck...); code != 0 {
				t.Errorf("%s: HEALTHCHECK: exit %d: %s", c.name, code, out)
			}
		}(c)
	}
	var clients []client
	for _, name := range bridges {
		httpAddr, _ := envValue(d.image.env, "JETWAY_HTTP_LISTEN")
		base := "http://" + net.JoinHostPort(hosts[name], listenPort(t, httpAddr))
		waitOK(t, base+"/readyz", 30*time.Second, procs[name])
		clients = append(clients, newClient(base, files.apiKey))
	}
	if len(clients) != 2 {
		t.Fatalf("bridges %v, want 2", bridges)
	}
	publishFetchAck(t, clients[0], clients[1], len(first))
	var info struct {
		Stream struct {
			Cluster struct {
				Name     string `json:"name"`
				Leader   string `json:"leader"`
				Replicas []struct {
					Name string `json:"name"`
				} `json:"replicas"`
			} `json:"cluster"`
		} `json:"stream"`
	}
	if s := clients[1].do(t, http.MethodGet, "/v1/streams/TEST", nil, &info); s != http.StatusOK {
		t.Fatalf("get stream: %d", s)
	}
	servers := []string{info.Stream.Cluster.Leader}
	for _, r := range info.Stream.Cluster.Replicas {
		servers = append(servers, r.Name)
	}
	slices.Sort(servers)
	if info.Stream.Cluster.Name != "jetway" || !slices.Equal(servers, first) {
		t.Errorf("stream TEST is on cluster %q, servers %v; want jetway, %v", info.Stream.Cluster.Name, servers, first)
	}
	lbScenario(t, f, lbs, bridges, hosts, files.apiKey)
}

// mountVolumes shows a service's volumes in its container: a bind mount's
// file (relative to the project), or an empty named volume (its content
// from the image where the image has one).
func mountVolumes(t *testing.T, c *container, project string, s composeService) {
	t.Helper()
	for _, v := range s.Volumes {
		vol, err := parseVolume(v)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case vol.bind:
			c.mount(t, filepath.Join(project, vol.source), vol.target, 0, 0)
		default:
			if _, err := os.Stat(c.path(vol.target)); os.IsNotExist(err) {
				c.mkdir(t, vol.target, 0o755, 0, 0)
			}
		}
	}
}
