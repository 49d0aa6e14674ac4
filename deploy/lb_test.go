package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	jetwayv1 "github.com/jetway-dev/jetway/gen/jetway/v1"
	"github.com/jetway-dev/jetway/internal/jetwaytest"
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
	checkH1          bool   // check-proto h1: the check in HTTP/1.1 whatever proto says
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
				case w[i] == "check-proto" && i+1 < len(w) && w[i+1] == "h1":
					s.checkH1 = true
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
			if s.h2 && !s.checkH1 {
				t.Errorf("backend %s: server %s: proto h2 without check-proto h1 checks the HTTP/1.1 port in HTTP/2 (a socket error)", fe.defaultBackend, s.name)
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

// lbScenario runs compose's HAProxy in front of the running bridges, as
// the composeScenario's last step: haproxy.cfg as shipped, but for its
// binds on the LB's own address (the services share one loopback here),
// with /etc/hosts naming the services in a mount namespace of its own.
// HAProxy is the host's (a Debian package), not chrooted: it is skipped
// when not installed. Through it: a gRPC health check, authenticated gRPC
// GetStream calls over one connection reaching both bridges (their
// Prometheus targets, as prometheus.yml names them, count them), an
// unauthenticated gRPC call refused with its status intact, and a REST
// call. Prometheus itself is not run.
func lbScenario(t *testing.T, f composeFile, lbs, bridges []string, hosts map[string]string, apiKey string) {
	t.Run("lb", func(t *testing.T) {
		bin, err := exec.LookPath("haproxy")
		if err != nil {
			t.Skip("haproxy is not installed (apt-get install haproxy): the load balancer did not run")
		}
		if len(lbs) != 1 {
			t.Fatalf("load balancers %v, want 1", lbs)
		}
		name := lbs[0]
		ip := hosts[name]
		src := bindMountOf(t, f.Services[name], haproxyPath)
		cfg, err := parseHAProxy(src)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		rebound := regexp.MustCompile(`(?m)^(\s+bind\s+):`).ReplaceAllString(string(data), "${1}"+ip+":")
		cfgPath, hostsPath := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "hosts")
		var h strings.Builder
		h.WriteString("127.0.0.1\tlocalhost\n")
		for _, n := range slices.Sorted(mapsKeys(hosts)) {
			fmt.Fprintf(&h, "%s\t%s\n", hosts[n], n)
		}
		for p, content := range map[string]string{cfgPath: rebound, hostsPath: h.String()} {
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c := &container{name: name, root: "/", workdir: "/", logs: &jetwaytest.LogBuffer{},
			env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
		// As the official image's entrypoint: haproxy -W -db -f <cfg>.
		p := c.start(t, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`mount --bind "$0" /etc/hosts && exec "$1" -W -db -f "$2"`, hostsPath, bin, cfgPath)

		var grpcAddr, restAddr, exporter string
		for _, fe := range cfg.frontends {
			switch {
			case fe.promExporter:
				exporter = "http://" + net.JoinHostPort(ip, fe.binds[0].port) + "/metrics"
			case fe.binds[0].h2:
				grpcAddr = net.JoinHostPort(ip, fe.binds[0].port)
			default:
				restAddr = net.JoinHostPort(ip, fe.binds[0].port)
			}
		}
		// Every server of every backend passed its /readyz check (HAProxy
		// starts them UP, before any check), as HAProxy's exporter says.
		waitOK(t, exporter, 20*time.Second, p)
		jetwaytest.Eventually(t, 20*time.Second, "every LB server checked ready", func() error {
			fams, err := scrape(exporter)
			if err != nil {
				return err
			}
			for bname, be := range cfg.backends {
				for _, s := range be.servers {
					l := map[string]string{"proxy": bname, "server": s.name}
					if sum(fams, "haproxy_server_check_status", with(l, "state", "L7OK")) != 1 || sum(fams, "haproxy_server_status", with(l, "state", "UP")) != 1 {
						return fmt.Errorf("%s/%s: not UP after a passed check yet", bname, s.name)
					}
				}
			}
			return nil
		})
		waitOK(t, "http://"+restAddr+"/readyz", 20*time.Second, p)
		cl := newClient("http://"+restAddr, apiKey)
		if s := cl.do(t, http.MethodGet, "/v1/streams/TEST", nil, nil); s != http.StatusOK {
			t.Errorf("REST through the LB: GET /v1/streams/TEST: %d, want 200", s)
		}

		targets := bridgeTargets(t, bridges, hosts)
		before := map[string]float64{}
		for b, u := range targets {
			before[b] = counter(t, u, "grpc_server_handled_total", map[string]string{"grpc_method": "GetStream", "grpc_code": "OK"})
		}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health through the LB: %v %v, want SERVING", hc, err)
		}
		admin := jetwayv1.NewAdminServiceClient(conn)
		if _, err := admin.GetStream(ctx, &jetwayv1.GetStreamRequest{Name: "TEST"}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC without a credential through the LB: %v, want Unauthenticated (the status in the trailers)", err)
		}
		authed := metadata.AppendToOutgoingContext(ctx, "authorization", "ApiKey "+apiKey)
		const calls = 6
		for range calls {
			resp, err := admin.GetStream(authed, &jetwayv1.GetStreamRequest{Name: "TEST"})
			if err != nil || resp.GetStream().GetConfig().GetName() != "TEST" {
				t.Fatalf("gRPC GetStream through the LB: %v %v", resp, err)
			}
		}
		var total float64
		for b, u := range targets {
			n := counter(t, u, "grpc_server_handled_total", map[string]string{"grpc_method": "GetStream", "grpc_code": "OK"}) - before[b]
			t.Logf("%s served %.0f of the %d GetStream calls sent through the LB on one connection", b, n, calls)
			if n < 1 {
				t.Errorf("%s served none of the gRPC calls: the LB does not balance per call", b)
			}
			total += n
		}
		if total != calls {
			t.Errorf("the bridges served %.0f GetStream calls, want %d", total, calls)
		}
		if err := p.stop(); err != nil {
			t.Errorf("haproxy: SIGTERM: %v, want exit 0", err)
		}
	})
}

// bridgeTargets are prometheus.yml's scrape URLs of each bridge, at the
// address its name has here.
func bridgeTargets(t *testing.T, bridges []string, hosts map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sc := range readPrometheus(t).ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				host, port, err := net.SplitHostPort(tg)
				if err == nil && slices.Contains(bridges, host) {
					out[host] = "http://" + net.JoinHostPort(hosts[host], port) + "/metrics"
				}
			}
		}
	}
	if len(out) != len(bridges) {
		t.Fatalf("prometheus.yml scrapes %v, want every bridge %v", out, bridges)
	}
	return out
}

// counter is the sum of the samples of a counter whose labels include
// want, scraped from url (0 when there is none yet).
func counter(t *testing.T, url, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	return sum(fams, name, want)
}

// scrape reads a Prometheus text exposition.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("scrape %s: %d %s", url, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return fams, nil
}

// sum adds the samples (counters or gauges) of a family whose labels
// include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var n float64
	for _, m := range fams[name].GetMetric() {
		if hasLabels(m, want) {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return n
}

// with is labels and one more.
func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for lk, lv := range labels {
		out[lk] = lv
	}
	return out
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
