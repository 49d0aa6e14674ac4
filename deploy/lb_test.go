package deploy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// haproxyConfig is what haproxy/haproxy.cfg says about the traffic: its
// frontends' binds and default backends, and its backends' servers and
// health checks. Only the keywords the tests read are interpreted; haproxy
// -c checks the rest (TestHAProxyCheck).
type haproxyConfig struct {
	frontends map[string]*haproxyFrontend
	backends  map[string]*haproxyBackend
	resolvers []string
}

type haproxyFrontend struct {
	binds          []haproxyBind
	defaultBackend string
	// promExporter: the frontend serves HAProxy's Prometheus exporter.
	promExporter bool
}

type haproxyBind struct {
	host, port string
	h2         bool // proto h2: HTTP/2 without TLS
}

type haproxyBackend struct {
	servers  []haproxyServer
	checkURI string // http-check send … uri
}

type haproxyServer struct {
	name, host, port string
	h2               bool
	checkPort        string // check port N, or the server's port
}

func parseHAProxy(path string) (haproxyConfig, error) {
	c := haproxyConfig{frontends: map[string]*haproxyFrontend{}, backends: map[string]*haproxyBackend{}}
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer func() { _ = f.Close() }()
	var fe *haproxyFrontend
	var be *haproxyBackend
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		w := strings.Fields(line)
		if len(w) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n)
		if line[0] != ' ' && line[0] != '\t' {
			fe, be = nil, nil
			switch w[0] {
			case "global", "defaults":
			case "frontend":
				fe = &haproxyFrontend{}
				c.frontends[w[1]] = fe
			case "backend":
				be = &haproxyBackend{}
				c.backends[w[1]] = be
			case "resolvers":
				c.resolvers = append(c.resolvers, w[1])
			default:
				return c, fmt.Errorf("%s: section %q is not read by the tests (listen: use a frontend and a backend)", where, w[0])
			}
			continue
		}
		switch {
		case fe != nil && w[0] == "bind":
			host, port, err := net.SplitHostPort(w[1])
			if err != nil {
				return c, fmt.Errorf("%s: bind %q: %w", where, w[1], err)
			}
			b := haproxyBind{host: host, port: port}
			for i := 2; i < len(w); i++ {
				if w[i] == "proto" && i+1 < len(w) && w[i+1] == "h2" {
					b.h2 = true
				}
			}
			fe.binds = append(fe.binds, b)
		case fe != nil && w[0] == "default_backend":
			fe.defaultBackend = w[1]
		case fe != nil && w[0] == "use_backend":
			return c, fmt.Errorf("%s: use_backend is not read by the tests", where)
		case fe != nil && slices.Contains(w, "prometheus-exporter"):
			fe.promExporter = true
		case be != nil && w[0] == "server":
			host, port, err := net.SplitHostPort(w[2])
			if err != nil {
				return c, fmt.Errorf("%s: server %q: %w", where, w[2], err)
			}
			s := haproxyServer{name: w[1], host: host, port: port, checkPort: port}
			for i := 3; i < len(w); i++ {
				switch {
				case w[i] == "proto" && i+1 < len(w) && w[i+1] == "h2":
					s.h2 = true
				case w[i] == "port" && i+1 < len(w):
					s.checkPort = w[i+1]
				}
			}
			be.servers = append(be.servers, s)
		case be != nil && len(w) > 2 && w[0] == "http-check" && w[1] == "send":
			for i := 2; i+1 < len(w); i++ {
				if w[i] == "uri" {
					be.checkURI = w[i+1]
				}
			}
		}
	}
	return c, sc.Err()
}

// prometheusConfig is the part of prometheus.yml compose's Prometheus
// reads, decoded strictly.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval string `json:"scrape_interval"`
		ScrapeTimeout  string `json:"scrape_timeout"`
	} `json:"global"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		MetricsPath   string `json:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

func readPrometheus(t *testing.T) prometheusConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	var p prometheusConfig
	if err := strictJSON(js, &p); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	return p
}

// composeKind sorts compose.yaml's services by what they run.
func composeKind(s composeService) string {
	switch {
	case strings.HasPrefix(s.Image, "nats:"):
		return "nats"
	case s.Build != nil:
		return "bridge"
	case strings.HasPrefix(s.Image, "haproxy:"):
		return "lb"
	case strings.HasPrefix(s.Image, "prom/prometheus:"):
		return "prometheus"
	}
	return ""
}

// bindMountOf is the host file (relative to compose.yaml) a service mounts
// at target.
func bindMountOf(t *testing.T, s composeService, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		vol, err := parseVolume(v)
		if err != nil {
			t.Fatal(err)
		}
		if vol.bind && vol.target == target {
			return vol.source
		}
	}
	return ""
}

// haproxyPath is where the official image reads its configuration.
const haproxyPath = "/usr/local/etc/haproxy/haproxy.cfg"

// TestComposeLoadBalancer checks haproxy.cfg against compose.yaml: the LB
// mounts it; its gRPC frontend (HTTP/2) and its REST frontend are the
// ports it publishes, on loopback; each sends to every bridge, gRPC over
// HTTP/2 to the bridges' gRPC port and REST to their HTTP port, with a
// health check of /readyz on the HTTP port; it waits for healthy bridges.
// And prometheus.yml: it scrapes every bridge on its JETWAY_METRICS_LISTEN
// port and HAProxy's exporter, and names only compose services.
func TestComposeLoadBalancer(t *testing.T) {
	f, err := parseCompose("compose.yaml", map[string]string{"BRIDGE_NKEY": "UDUMMY"})
	if err != nil {
		t.Fatal(err)
	}
	d := readDockerfile(t)
	byKind := map[string][]string{}
	for _, name := range slices.Sorted(mapsKeys(f.Services)) {
		byKind[composeKind(f.Services[name])] = append(byKind[composeKind(f.Services[name])], name)
	}
	if len(byKind["lb"]) != 1 || len(byKind["prometheus"]) != 1 {
		t.Fatalf("services %v: want one HAProxy and one Prometheus", byKind)
	}
	lbName, lb := byKind["lb"][0], f.Services[byKind["lb"][0]]
	src := bindMountOf(t, lb, haproxyPath)
	if filepath.Clean(src) != filepath.Join("haproxy", "haproxy.cfg") {
		t.Fatalf("%s mounts %q at %s, want ./haproxy/haproxy.cfg", lbName, src, haproxyPath)
	}
	cfg, err := parseHAProxy(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range byKind["bridge"] {
		if lb.DependsOn[b].Condition != "service_healthy" {
			t.Errorf("%s does not wait for %s to be healthy", lbName, b)
		}
	}
	published := map[string]bool{}
	for _, p := range lb.Ports {
		ip, _, port, err := parsePort(p)
		if err != nil {
			t.Fatal(err)
		}
		if ip != "127.0.0.1" {
			t.Errorf("%s: port %s published beyond loopback (plain text; put TLS in front first)", lbName, p)
		}
		published[port] = true
	}
	grpcPort := listenPort(t, mustEnv(t, d.image.env, "JETWAY_GRPC_LISTEN"))
	httpPort := listenPort(t, mustEnv(t, d.image.env, "JETWAY_HTTP_LISTEN"))
	var grpcFE, restFE, promFE int
	for name, fe := range cfg.frontends {
		if fe.promExporter {
			promFE++
			continue
		}
		be := cfg.backends[fe.defaultBackend]
		if be == nil || len(fe.binds) != 1 {
			t.Errorf("frontend %s: want one bind and a default_backend that exists", name)
			continue
		}
		bind := fe.binds[0]
		if !published[bind.port] {
			t.Errorf("frontend %s: port %s is not published by %s (%v)", name, bind.port, lbName, lb.Ports)
		}
		want := httpPort
		if bind.h2 {
			grpcFE++
			want = grpcPort
		} else {
			restFE++
		}
		var servers []string
		for _, s := range be.servers {
			servers = append(servers, s.host)
			if composeKind(f.Services[s.host]) != "bridge" || s.port != want || s.h2 != bind.h2 {
				t.Errorf("backend %s: server %s %s:%s (h2 %v): want a bridge service on port %s, HTTP/2 as the frontend (%v)",
					fe.defaultBackend, s.name, s.host, s.port, s.h2, want, bind.h2)
			}
			if s.checkPort != httpPort {
				t.Errorf("backend %s: server %s is checked on port %s, want the bridge's HTTP port %s", fe.defaultBackend, s.name, s.checkPort, httpPort)
			}
		}
		if slices.Sort(servers); !slices.Equal(servers, byKind["bridge"]) {
			t.Errorf("backend %s: servers %v, want every bridge %v", fe.defaultBackend, servers, byKind["bridge"])
		}
		if be.checkURI != "/readyz" {
			t.Errorf("backend %s: health check %q, want /readyz (a bridge that cannot reach NATS leaves the pool)", fe.defaultBackend, be.checkURI)
		}
	}
	if grpcFE != 1 || restFE != 1 || promFE != 1 {
		t.Errorf("frontends: %d gRPC (proto h2), %d REST, %d exporter; want one each", grpcFE, restFE, promFE)
	}
	if len(published) != 2 {
		t.Errorf("%s publishes %v: want the gRPC and the REST port only", lbName, lb.Ports)
	}

	promName, prom := byKind["prometheus"][0], f.Services[byKind["prometheus"][0]]
	if src := bindMountOf(t, prom, "/etc/prometheus/prometheus.yml"); filepath.Clean(src) != filepath.Join("prometheus", "prometheus.yml") {
		t.Errorf("%s mounts %q at /etc/prometheus/prometheus.yml, want ./prometheus/prometheus.yml", promName, src)
	}
	p := readPrometheus(t)
	targets := map[string]bool{}
	for _, sc := range p.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %s, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				host, _, err := net.SplitHostPort(tg)
				if err != nil {
					t.Errorf("job %s: target %q: %v", sc.JobName, tg, err)
				} else if _, ok := f.Services[host]; !ok {
					t.Errorf("job %s: target %s is no compose service", sc.JobName, tg)
				}
				targets[tg] = true
			}
		}
	}
	for _, b := range byKind["bridge"] {
		addr, ok := envValue(overlay(d.image.env, envList(f.Services[b].Environment)...), "JETWAY_METRICS_LISTEN")
		if !ok || !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("%s: JETWAY_METRICS_LISTEN %q: want 0.0.0.0:port, for Prometheus", b, addr)
			continue
		}
		if tg := net.JoinHostPort(b, listenPort(t, addr)); !targets[tg] {
			t.Errorf("prometheus.yml does not scrape %s (targets %v)", tg, slices.Sorted(mapsKeys(targets)))
		}
		for _, pt := range f.Services[b].Ports {
			if _, _, port, _ := parsePort(pt); port == listenPort(t, addr) {
				t.Errorf("%s publishes its metrics port %s: /metrics is unauthenticated", b, pt)
			}
		}
	}
	for name, fe := range cfg.frontends {
		if fe.promExporter {
			if tg := net.JoinHostPort(lbName, fe.binds[0].port); !targets[tg] {
				t.Errorf("prometheus.yml does not scrape HAProxy's exporter %s (frontend %s)", tg, name)
			}
			if published[fe.binds[0].port] {
				t.Errorf("%s publishes its exporter's port %s", lbName, fe.binds[0].port)
			}
		}
	}
}

// TestHAProxyCheck validates haproxy.cfg with HAProxy's own checker
// (haproxy -c), when HAProxy is installed (.ci/run installs it as root).
// Outside compose the bridges' names do not resolve: that warning, and
// only that one, is expected.
func TestHAProxyCheck(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (apt-get install haproxy): its checker did not run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-c", "-f", filepath.Join("haproxy", "haproxy.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if (strings.Contains(l, "[WARNING]") || strings.Contains(l, "[ALERT]")) && !strings.Contains(l, "could not resolve address") {
			t.Errorf("haproxy -c: %s", l)
		}
	}
	if first, _, _ := strings.Cut(string(out), "\n"); testing.Verbose() {
		t.Logf("haproxy -c: valid (%s)", strings.TrimSpace(first))
	}
}
