package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The Kubernetes objects as far as kubernetes/bridge.yaml uses them. Their
// specs are decoded strictly: a misspelt or misplaced field (a probe one
// level too deep, readinessprobe) fails the tests instead of being dropped
// by the API server.
type k8sObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

type k8sDeploymentSpec struct {
	Replicas int         `json:"replicas"`
	Selector k8sSelector `json:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec k8sPodSpec `json:"spec"`
	} `json:"template"`
}

type k8sSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type k8sPodSpec struct {
	TerminationGracePeriodSeconds int   `json:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  *bool `json:"automountServiceAccountToken"`
	EnableServiceLinks            *bool `json:"enableServiceLinks"`
	SecurityContext               struct {
		RunAsNonRoot   *bool   `json:"runAsNonRoot"`
		RunAsUser      *uint32 `json:"runAsUser"`
		RunAsGroup     *uint32 `json:"runAsGroup"`
		FSGroup        *uint32 `json:"fsGroup"`
		SeccompProfile struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	} `json:"securityContext"`
	Containers []k8sContainer `json:"containers"`
	Volumes    []k8sVolume    `json:"volumes"`
}

type k8sContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	Env   []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
	Ports          []k8sPort `json:"ports"`
	StartupProbe   *k8sProbe `json:"startupProbe"`
	ReadinessProbe *k8sProbe `json:"readinessProbe"`
	LivenessProbe  *k8sProbe `json:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"volumeMounts"`
}

type k8sPort struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port string `json:"port"` // a named port
	} `json:"httpGet"`
	InitialDelaySeconds int `json:"initialDelaySeconds"`
	PeriodSeconds       int `json:"periodSeconds"`
	FailureThreshold    int `json:"failureThreshold"`
}

type k8sVolume struct {
	Name      string `json:"name"`
	ConfigMap *struct {
		Name  string       `json:"name"`
		Items []k8sKeyPath `json:"items"`
	} `json:"configMap"`
	Secret *struct {
		SecretName  string       `json:"secretName"`
		DefaultMode *int         `json:"defaultMode"`
		Items       []k8sKeyPath `json:"items"`
	} `json:"secret"`
}

type k8sKeyPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
}

type k8sServiceSpec struct {
	Selector map[string]string `json:"selector"`
	Ports    []struct {
		Name        string `json:"name"`
		Port        int    `json:"port"`
		TargetPort  string `json:"targetPort"`
		AppProtocol string `json:"appProtocol"`
	} `json:"ports"`
}

type k8sPDBSpec struct {
	MinAvailable int         `json:"minAvailable"`
	Selector     k8sSelector `json:"selector"`
}

// k8sManifest is kubernetes/bridge.yaml decoded.
type k8sManifest struct {
	deployment k8sObject
	pod        k8sDeploymentSpec
	service    k8sServiceSpec
	pdb        k8sPDBSpec
}

// strictJSON decodes data into v, refusing unknown fields.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// parseK8s reads a multi-document manifest: YAML without duplicate keys,
// every object with an apiVersion, kind and name, and the one Deployment,
// Service and PodDisruptionBudget bridge.yaml holds.
func parseK8s(file string) (k8sManifest, error) {
	var m k8sManifest
	data, err := os.ReadFile(file)
	if err != nil {
		return m, err
	}
	seen := map[string]bool{}
	for i, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return m, fmt.Errorf("document %d: %w", i+1, err)
		}
		if string(js) == "null" {
			continue
		}
		var o k8sObject
		if err := strictJSON(js, &o); err != nil {
			return m, fmt.Errorf("document %d: %w", i+1, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			return m, fmt.Errorf("document %d: apiVersion, kind and metadata.name are required", i+1)
		}
		key := o.APIVersion + " " + o.Kind
		if seen[key] {
			return m, fmt.Errorf("document %d: a second %s", i+1, key)
		}
		seen[key] = true
		switch key {
		case "apps/v1 Deployment":
			m.deployment = o
			err = strictJSON(o.Spec, &m.pod)
		case "v1 Service":
			err = strictJSON(o.Spec, &m.service)
		case "policy/v1 PodDisruptionBudget":
			err = strictJSON(o.Spec, &m.pdb)
		default:
			err = fmt.Errorf("%s is not checked by the tests", key)
		}
		if err != nil {
			return m, fmt.Errorf("document %d (%s %s): %w", i+1, o.Kind, o.Metadata.Name, err)
		}
	}
	if len(seen) != 3 {
		return m, fmt.Errorf("objects %v: want a Deployment, a Service and a PodDisruptionBudget", seen)
	}
	return m, nil
}

func readK8s(t *testing.T) k8sManifest {
	t.Helper()
	m, err := parseK8s(filepath.Join("kubernetes", "bridge.yaml"))
	if err != nil {
		t.Fatalf("kubernetes/bridge.yaml: %v", err)
	}
	return m
}

// bridgeContainer is the Deployment's one container and its environment
// over the image's.
func (m k8sManifest) bridgeContainer(t *testing.T, d dockerfile) (k8sContainer, []string) {
	t.Helper()
	if n := len(m.pod.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c := m.pod.Template.Spec.Containers[0]
	env := slices.Clone(d.image.env)
	for _, e := range c.Env {
		env = overlay(env, e.Name+"="+e.Value)
	}
	return c, env
}

// mountedFile finds the volume item a path inside the container is: the
// volume, and the item's key.
func (m k8sManifest) mountedFile(c k8sContainer, p string) (k8sVolume, string, bool) {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range m.pod.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			var items []k8sKeyPath
			switch {
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
			case v.Secret != nil:
				items = v.Secret.Items
			}
			for _, it := range items {
				if it.Path == rel {
					return v, it.Key, true
				}
			}
		}
	}
	return k8sVolume{}, "", false
}

// portNamed is the container port of a name.
func (c k8sContainer) portNamed(name string) (int, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// bytesOf parses a quantity as Kubernetes (Mi, Gi) or Go (MiB, GiB) write it.
func bytesOf(q string) (int64, error) {
	units := []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(q, u.suffix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n * u.n, err
		}
	}
	return strconv.ParseInt(q, 10, 64)
}

// TestKubernetesManifests checks kubernetes/bridge.yaml without a cluster:
// valid YAML of known fields; selectors that select the pods; the
// image's ports, user and environment; every file variable pointing at a
// mounted ConfigMap or Secret item; no secret in the environment; probes
// on /readyz and /healthz by named ports; limits with GOMEMLIMIT under
// the memory limit; a grace period longer than the shutdown timeout.
func TestKubernetesManifests(t *testing.T) {
	m := readK8s(t)
	d := readDockerfile(t)
	pod := m.pod.Template.Spec
	labels := m.pod.Template.Metadata.Labels
	for what, sel := range map[string]map[string]string{
		"Deployment": m.pod.Selector.MatchLabels, "Service": m.service.Selector, "PodDisruptionBudget": m.pdb.Selector.MatchLabels,
	} {
		if len(sel) == 0 {
			t.Errorf("%s selects every pod", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s's selector %s=%s does not select the pods (labels %v)", what, k, v, labels)
			}
		}
	}
	if m.pdb.MinAvailable < 1 || m.pdb.MinAvailable >= m.pod.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %d with %d replicas", m.pdb.MinAvailable, m.pod.Replicas)
	}
	c, env := m.bridgeContainer(t, d)
	known := flagEnv(t)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case !strings.HasPrefix(k, "JETWAY_"):
		case !known[k]:
			t.Errorf("env %s: the bridge has no such flag", k)
		case secretEnv(k):
			t.Errorf("env %s holds a secret in the environment: mount it and give the file", k)
		case fileEnv(k):
			if _, _, ok := m.mountedFile(c, v); !ok {
				t.Errorf("env %s=%s is no mounted ConfigMap or Secret item", k, v)
			}
		}
	}
	for _, k := range []string{"JETWAY_GRPC_LISTEN", "JETWAY_HTTP_LISTEN"} {
		addr, _ := envValue(env, k)
		port, err := strconv.Atoi(listenPort(t, addr))
		if err != nil || !slices.ContainsFunc(c.Ports, func(p k8sPort) bool { return p.ContainerPort == port }) {
			t.Errorf("%s=%s is not a container port (%v)", k, addr, c.Ports)
		}
	}
	for _, p := range m.service.Ports {
		if _, ok := c.portNamed(p.TargetPort); !ok {
			t.Errorf("Service port %s: targetPort %q names no container port", p.Name, p.TargetPort)
		}
	}
	for _, pr := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"startupProbe", c.StartupProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != pr.path {
			t.Errorf("%s: want an httpGet of %s", pr.name, pr.path)
			continue
		}
		if port, ok := c.portNamed(pr.probe.HTTPGet.Port); !ok || strconv.Itoa(port) != listenPort(t, mustEnv(t, env, "JETWAY_HTTP_LISTEN")) {
			t.Errorf("%s: port %q is not the HTTP listener's", pr.name, pr.probe.HTTPGet.Port)
		}
	}
	uid, gid, err := numericUser(d.image.user)
	if err != nil {
		t.Fatal(err)
	}
	sc := pod.SecurityContext
	switch {
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot is not set")
	case sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid:
		t.Errorf("runAsUser/runAsGroup are not the image's user %s", d.image.user)
	case sc.FSGroup == nil || *sc.FSGroup != gid:
		t.Errorf("fsGroup is not %d: the mounted secrets (mode 0440) would be unreadable", gid)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
			t.Errorf("secret volume %s: want a defaultMode others cannot read", v.Name)
		}
	}
	if csc := c.SecurityContext; csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Error("the container's securityContext: want readOnlyRootFilesystem, no privilege escalation, capabilities dropped")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks: want false, or Services inject JETWAY_* variables")
	}
	limit, err1 := bytesOf(c.Resources.Limits["memory"])
	goLimit, err2 := bytesOf(mustEnv(t, env, "GOMEMLIMIT"))
	if err1 != nil || err2 != nil || goLimit >= limit || c.Resources.Limits["cpu"] == "" {
		t.Errorf("limits %v, GOMEMLIMIT %d: want cpu and memory limits, GOMEMLIMIT under the memory", c.Resources.Limits, goLimit)
	}
	shutdown, err := time.ParseDuration(mustEnv(t, env, "JETWAY_SHUTDOWN_TIMEOUT"))
	if err != nil || shutdown >= time.Duration(pod.TerminationGracePeriodSeconds)*time.Second {
		t.Errorf("JETWAY_SHUTDOWN_TIMEOUT %s: want under terminationGracePeriodSeconds %d", shutdown, pod.TerminationGracePeriodSeconds)
	}
}

func mustEnv(t *testing.T, env []string, k string) string {
	t.Helper()
	v, ok := envValue(env, k)
	if !ok {
		t.Fatalf("no %s", k)
	}
	return v
}

// kubernetesScenario runs the Deployment's pod as the kubelet would: the
// image with the container's environment over its own, the ConfigMap and
// Secret (made as README.md's kubectl commands make them) mounted at their
// paths with their modes, the pod's user, group and fsGroup, a read-only
// root filesystem, and the NATS Service's name resolving to a NATS server
// that wants the bridge's NKey. The probes are asked as the kubelet asks
// them, at the pod's address; a publish, fetch and ack go through the
// Service's HTTP port; SIGTERM ends the bridge within the grace period.
func kubernetesScenario(t *testing.T, bin string) {
	m := readK8s(t)
	d := readDockerfile(t)
	spec, env := m.bridgeContainer(t, d)
	files := newOperatorFiles(t, t.TempDir())
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// kubectl create configmap jetway-auth --from-file=auth.yaml=auth.yaml
	// kubectl create secret generic jetway --from-file=ack-keys=… --from-file=nats.nk=…
	configMaps := map[string]map[string]string{"jetway-auth": {"auth.yaml": read(files.authConfig)}}
	secrets := map[string]map[string]string{"jetway": {"ack-keys": read(files.ackKeys), "nats.nk": read(files.nkeySeed)}}

	natsURL, err := url.Parse(mustEnv(t, env, "JETWAY_NATS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	const natsIP, podIP = "127.0.0.10", "127.0.0.20"
	hosts := map[string]string{natsURL.Hostname(): natsIP}

	// The NATS Helm chart's server, with the bridge's user.
	ns := newContainer(t, "nats", hosts)
	copyTree(t, filepath.Join(bin, "nats-server"), ns.path("/nats-server"), [2]int{0, 0})
	ns.write(t, "/etc/nats/nats.conf", fmt.Sprintf("listen: %s\njetstream {store_dir: /data}\nauthorization {users: [{nkey: %s}]}\n",
		net.JoinHostPort(natsIP, natsURL.Port()), files.nkeyPublic), 0o644, 0, 0)
	nsProc := ns.start(t, "/nats-server", "-c", "/etc/nats/nats.conf")

	c := newImageContainer(t, "jetway-pod", d, filepath.Join(bin, "out"), hosts)
	c.env = overlay(c.env, env...)
	sc := m.pod.Template.Spec.SecurityContext
	c.uid, c.gid, c.groups = *sc.RunAsUser, *sc.RunAsGroup, []uint32{*sc.FSGroup}
	if spec.SecurityContext.ReadOnlyRootFilesystem != nil && *spec.SecurityContext.ReadOnlyRootFilesystem {
		// Nothing of the image is writable, not even /data or /tmp.
		c.mkdir(t, "/data", 0o755, 0, 0)
		c.mkdir(t, "/tmp", 0o755, 0, 0)
	}
	for _, vm := range spec.VolumeMounts {
		for _, v := range m.pod.Template.Spec.Volumes {
			switch {
			case v.Name != vm.Name:
			case v.ConfigMap != nil:
				for _, it := range v.ConfigMap.Items {
					data, ok := configMaps[v.ConfigMap.Name][it.Key]
					if !ok {
						t.Fatalf("ConfigMap %s has no key %s", v.ConfigMap.Name, it.Key)
					}
					c.write(t, path.Join(vm.MountPath, it.Path), data, 0o644, 0, int(*sc.FSGroup))
				}
			case v.Secret != nil:
				for _, it := range v.Secret.Items {
					data, ok := secrets[v.Secret.SecretName][it.Key]
					if !ok {
						t.Fatalf("Secret %s has no key %s", v.Secret.SecretName, it.Key)
					}
					mode := 0o644
					if v.Secret.DefaultMode != nil {
						mode = *v.Secret.DefaultMode
					}
					c.write(t, path.Join(vm.MountPath, it.Path), data, os.FileMode(mode), 0, int(*sc.FSGroup))
				}
			default:
				t.Fatalf("volume %s: only ConfigMaps and Secrets are emulated", v.Name)
			}
		}
	}
	p := c.start(t, append(slices.Clone(d.image.entrypoint), d.image.cmd...)...)
	probe := func(pr *k8sProbe, within time.Duration) {
		t.Helper()
		port, _ := spec.portNamed(pr.HTTPGet.Port)
		waitOK(t, fmt.Sprintf("http://%s:%d%s", podIP, port, pr.HTTPGet.Path), within, p, nsProc)
	}
	probe(spec.StartupProbe, time.Duration(spec.StartupProbe.PeriodSeconds*spec.StartupProbe.FailureThreshold)*time.Second)
	probe(spec.ReadinessProbe, 30*time.Second)
	probe(spec.LivenessProbe, time.Second)
	var httpPort int
	for _, sp := range m.service.Ports {
		if sp.Name == "http" {
			httpPort, _ = spec.portNamed(sp.TargetPort)
		}
	}
	cl := newClient(fmt.Sprintf("http://%s:%d", podIP, httpPort), files.apiKey)
	publishFetchAck(t, cl, cl, 1)

	start := time.Now()
	if err := p.stop(); err != nil {
		t.Fatalf("SIGTERM: %v, want exit 0", err)
	}
	if grace := time.Duration(m.pod.Template.Spec.TerminationGracePeriodSeconds) * time.Second; time.Since(start) > grace {
		t.Errorf("stopped in %s, over the grace period %s", time.Since(start), grace)
	}
}
