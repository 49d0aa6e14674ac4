package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// deployTools builds helm and kubeconform from tools/deploy/go.mod (pinned
// there, apart from buf's tools/go.mod) into the user's cache, under a key
// of that go.mod and go.sum: the first run builds (about 3 minutes cold),
// the next ones find the binaries.
func deployTools(t *testing.T) (helm, kubeconform string) {
	t.Helper()
	mod := filepath.Join("..", "tools", "deploy")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(mod, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "jetway-deploy-tools", hex.EncodeToString(h.Sum(nil))[:16])
	helm, kubeconform = filepath.Join(dir, "helm"), filepath.Join(dir, "kubeconform")
	if _, err := os.Stat(kubeconform); err == nil {
		if _, err := os.Stat(helm); err == nil {
			return helm, kubeconform
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "build-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(dir), "build-"); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	start := time.Now()
	c := exec.CommandContext(ctx, "go", "build", "-o", tmp+string(filepath.Separator),
		"helm.sh/helm/v4/cmd/helm", "github.com/yannh/kubeconform/cmd/kubeconform")
	c.Dir, c.Env = mod, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build helm, kubeconform (tools/deploy): %v\n%s", err, out)
	}
	// Renamed into place whole, so that a build cut short is never taken.
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(kubeconform); statErr != nil {
			t.Fatalf("%v", err)
		}
	}
	t.Logf("built helm and kubeconform in %s (cached in %s)", time.Since(start).Round(time.Second), dir)
	return helm, kubeconform
}

// run runs a tool with a deadline and returns its output.
func run(t *testing.T, d time.Duration, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out bytes.Buffer
	c := exec.CommandContext(ctx, name, args...)
	c.Dir, c.Stdout, c.Stderr = dir, &out, &out
	err := c.Run()
	return out.String(), err
}

// kubernetesSchemas writes JSON schemas kubeconform reads offline, one per
// kind, for the kinds of the rendered manifests: from Kubernetes' own
// OpenAPI v3 documents (api/openapi-spec/v3 of the k8s.io/kubernetes
// module, from the module proxy, at the release of tools/deploy's
// k8s.io/api: what helm is built with), and for the ServiceMonitor from the
// prometheus-operator CRD. Each schema is the document's components with a
// $ref to the kind's, every object with properties closed
// (additionalProperties: false, what kubeconform's -strict schemas are),
// apiVersion and kind pinned.
func kubernetesSchemas(t *testing.T, dir string, kinds map[[3]string]bool) {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join("..", "tools", "deploy", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/api v0\.(\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("tools/deploy/go.mod requires no k8s.io/api")
	}
	k8s := moduleDir(t, "k8s.io/kubernetes@v1."+string(m[1]))
	for gvk := range kinds {
		group, version, kind := gvk[0], gvk[1], gvk[2]
		file := "api__v1_openapi.json"
		if group != "" {
			file = fmt.Sprintf("apis__%s__%s_openapi.json", group, version)
		}
		if group == "monitoring.coreos.com" {
			writeSchema(t, dir, gvk, crdSchema(t, kind, version))
			continue
		}
		data, err := os.ReadFile(filepath.Join(k8s, "api", "openapi-spec", "v3", file))
		if err != nil {
			t.Fatalf("%s/%s %s: %v", group, version, kind, err)
		}
		var doc struct {
			Components struct {
				Schemas map[string]map[string]any `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		name := ""
		for n, s := range doc.Components.Schemas {
			gvks, _ := s["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				g, _ := g.(map[string]any)
				if g["group"] == group && g["version"] == version && g["kind"] == kind {
					name = n
				}
			}
		}
		if name == "" {
			t.Fatalf("%s: no schema for %s/%s %s", file, group, version, kind)
		}
		schemas := map[string]any{}
		for n, s := range doc.Components.Schemas {
			schemas[n] = closeObjects(s)
		}
		root := map[string]any{
			"$ref":       "#/components/schemas/" + name,
			"components": map[string]any{"schemas": schemas},
		}
		writeSchema(t, dir, gvk, root)
	}
}

// crdSchema is the openAPIV3Schema of a prometheus-operator CRD, from the
// prometheus-operator module (its example/prometheus-operator-crd).
func crdSchema(t *testing.T, kind, version string) map[string]any {
	t.Helper()
	po := moduleDir(t, "github.com/prometheus-operator/prometheus-operator@v0.85.0")
	data, err := os.ReadFile(filepath.Join(po, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+strings.ToLower(kind)+"s.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == version {
			return closeObjects(v.Schema.OpenAPIV3Schema).(map[string]any)
		}
	}
	t.Fatalf("CRD %s has no version %s", kind, version)
	return nil
}

// writeSchema writes a kind's schema where -schema-location finds it, with
// its apiVersion and kind pinned.
func writeSchema(t *testing.T, dir string, gvk [3]string, schema map[string]any) {
	t.Helper()
	apiVersion := gvk[1]
	if gvk[0] != "" {
		apiVersion = gvk[0] + "/" + gvk[1]
	}
	schema["allOf"] = []any{map[string]any{
		"properties": map[string]any{"apiVersion": map[string]any{"enum": []any{apiVersion}}, "kind": map[string]any{"enum": []any{gvk[2]}}},
		"required":   []any{"apiVersion", "kind"},
	}}
	b, err := json.Marshal(schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, schemaFile(gvk)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// schemaFile is the file of a kind's schema; kubeconformLocation the
// template kubeconform fills in to find it.
func schemaFile(gvk [3]string) string {
	group := gvk[0]
	if group == "" {
		group = gvk[1] // kubeconform's .Group of apiVersion v1
	}
	return strings.ToLower(gvk[2]) + "_" + group + "_" + gvk[1] + ".json"
}

const kubeconformLocation = "{{ .ResourceKind }}_{{ .Group }}_{{ .ResourceAPIVersion }}.json"

// closeObjects sets additionalProperties: false on every schema with
// properties that leaves it open and keeps no unknown fields.
func closeObjects(v any) any {
	switch s := v.(type) {
	case map[string]any:
		for k, c := range s {
			s[k] = closeObjects(c)
		}
		_, has := s["properties"]
		_, open := s["additionalProperties"]
		_, keep := s["x-kubernetes-preserve-unknown-fields"]
		if has && !open && !keep {
			s["additionalProperties"] = false
		}
	case []any:
		for i := range s {
			s[i] = closeObjects(s[i])
		}
	}
	return v
}

// moduleDir downloads a module from the module proxy (go mod download:
// the module cache, checksums checked) and returns its directory.
func moduleDir(t *testing.T, modVersion string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	c.Dir, c.Env = t.TempDir(), append(os.Environ(), "GOFLAGS=")
	out, err := c.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); err != nil || jerr != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %v %s %s", modVersion, err, info.Error, out)
	}
	return info.Dir
}

// helmDocs splits rendered manifests into objects (JSON), skipping empty
// documents.
func helmDocs(t *testing.T, manifests string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(manifests, -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if string(js) == "null" {
			continue
		}
		var o map[string]any
		if err := json.Unmarshal(js, &o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

// TestHelmChart lints deploy/helm/jetway (helm lint --strict) and renders
// it (helm template) with an auth config and with every option on
// (ci/all-on-values.yaml), then validates every rendered object with
// kubeconform -strict against the schemas of kubernetesSchemas, offline.
// A manifest with a misspelt field must fail the same validation (the
// schemas are closed). It checks what the chart promises besides: the
// default objects; the image's user, a read-only root filesystem, probes
// on /readyz and /healthz; the ack keys and NATS credential from the
// named Secrets; no replicas field under an HPA; the chart refusing to
// render without an auth config. `go test -short` skips it.
func TestHelmChart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds helm and kubeconform (minutes, once)")
	}
	helm, kubeconform := deployTools(t)
	chart := filepath.Join("helm", "jetway")
	authSet := "auth.config=audience: jetway"
	if out, err := run(t, time.Minute, ".", helm, "lint", "--strict", chart, "--set-string", authSet); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	if out, err := run(t, time.Minute, ".", helm, "lint", "--strict", chart, "-f", filepath.Join(chart, "ci", "all-on-values.yaml")); err != nil {
		t.Fatalf("helm lint (all on): %v\n%s", err, out)
	}
	if out, err := run(t, time.Minute, ".", helm, "template", "t", chart); err == nil || !strings.Contains(out, "auth.config") {
		t.Errorf("helm template without an auth config: %v, want refused naming auth.config:\n%s", err, out)
	}
	render := func(args ...string) string {
		out, err := run(t, time.Minute, ".", helm, append([]string{"template", "jetway", chart, "--namespace", "apps"}, args...)...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", args, err, out)
		}
		return out
	}
	defaults := render("--set-string", authSet)
	allOn := render("-f", filepath.Join(chart, "ci", "all-on-values.yaml"))

	dir := t.TempDir()
	kinds := map[[3]string]bool{}
	for _, o := range append(helmDocs(t, defaults), helmDocs(t, allOn)...) {
		group, version, ok := strings.Cut(o["apiVersion"].(string), "/")
		if !ok {
			group, version = "", group
		}
		kinds[[3]string{group, version, o["kind"].(string)}] = true
	}
	kubernetesSchemas(t, dir, kinds)
	validate := func(name, manifests string) (string, error) {
		f := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(f, []byte(manifests), 0o644); err != nil {
			t.Fatal(err)
		}
		return run(t, time.Minute, ".", kubeconform, "-strict", "-summary", "-output", "text",
			"-schema-location", filepath.Join(dir, kubeconformLocation), f)
	}
	for name, manifests := range map[string]string{"defaults": defaults, "all-on": allOn} {
		out, err := validate(name, manifests)
		if err != nil {
			t.Errorf("kubeconform (%s): %v\n%s", name, err, out)
		} else {
			t.Logf("kubeconform (%s): %s", name, strings.TrimSpace(out))
		}
	}
	broken := strings.Replace(defaults, "readinessProbe:", "readinessprobe:", 1)
	if out, err := validate("broken", broken); err == nil || !strings.Contains(out, "readinessprobe") {
		t.Errorf("kubeconform took a misspelt field (readinessprobe): %v\n%s", err, out)
	}

	byKind := map[string]map[string]any{}
	for _, o := range helmDocs(t, allOn) {
		byKind[o["kind"].(string)] = o
	}
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "ConfigMap"} {
		if byKind[k] == nil {
			t.Errorf("all on: no %s rendered", k)
		}
	}
	var kinds2 []string
	for _, o := range helmDocs(t, defaults) {
		kinds2 = append(kinds2, o["kind"].(string))
	}
	if strings.Contains(strings.Join(kinds2, " "), "ServiceMonitor") {
		t.Errorf("defaults render a ServiceMonitor (off by default): %v", kinds2)
	}
	var dep struct {
		Spec struct {
			Replicas *int `json:"replicas"`
			Template struct {
				Spec k8sPodSpec `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	b, _ := json.Marshal(byKind["Deployment"])
	if err := json.Unmarshal(b, &dep); err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas != nil {
		t.Error("Deployment sets replicas under an HPA: every upgrade would reset the HPA's count")
	}
	pod := dep.Spec.Template.Spec
	d := readDockerfile(t)
	uid, gid, err := numericUser(d.image.user)
	if err != nil {
		t.Fatal(err)
	}
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.FSGroup == nil || *sc.FSGroup != gid {
		t.Errorf("pod securityContext %+v: want runAsNonRoot as the image's user %s, fsGroup %d", sc, d.image.user, gid)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if csc := c.SecurityContext; csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("container: want readOnlyRootFilesystem and no privilege escalation")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes: want readiness on /readyz and liveness on /healthz")
	}
	m := k8sManifest{}
	m.pod.Template.Spec = pod
	known := flagEnv(t)
	for _, e := range c.Env {
		switch {
		case !strings.HasPrefix(e.Name, "JETWAY_"):
		case !known[e.Name]:
			t.Errorf("env %s: the bridge has no such flag", e.Name)
		case secretEnv(e.Name):
			t.Errorf("env %s holds a secret", e.Name)
		case fileEnv(e.Name) && e.Value != "":
			v, _, ok := m.mountedFile(c, e.Value)
			if !ok && !strings.HasPrefix(e.Value, "/run/secrets/jetway/nats-tls/") {
				t.Errorf("env %s=%s is no mounted ConfigMap or Secret item", e.Name, e.Value)
			} else if ok && v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
				t.Errorf("secret volume %s readable by others", v.Name)
			}
		}
	}
	for _, want := range []string{"jetway-ack-keys", "jetway-nats", "jetway-nats-tls"} {
		if !strings.Contains(string(b), `"secretName":"`+want+`"`) {
			t.Errorf("Deployment mounts no Secret %s (the existingSecret values)", want)
		}
	}
}
