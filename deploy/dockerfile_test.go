package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jetway-dev/jetway/config"
)

// dockerfile is what deploy/Dockerfile says: a build stage whose RUN lines
// make /out, and the image, which copies from /out.
type dockerfile struct {
	// buildRuns are the build stage's RUN commands, as shell words.
	buildRuns [][]string
	image     imageConfig
}

// imageConfig is the final stage: the image's files and configuration.
type imageConfig struct {
	base        string
	copies      []dockerCopy
	env         []string // KEY=VALUE, in order
	expose      []string
	volumes     []string
	workdir     string
	user        string
	healthcheck []string // the CMD of HEALTHCHECK
	entrypoint  []string
	cmd         []string
}

// dockerCopy is a COPY --from=<build stage> into the image.
type dockerCopy struct {
	chown, src, dst string
}

// parseDockerfile reads a Dockerfile of two stages, refusing what it does
// not know: the tests run what it parses, so nothing may be skipped.
func parseDockerfile(path string) (dockerfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return dockerfile{}, err
	}
	var d dockerfile
	stage, buildName := 0, ""
	var lines []string
	var cont strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if cont.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(t, `\`) {
			cont.WriteString(strings.TrimSuffix(t, `\`) + " ")
			continue
		}
		cont.WriteString(t)
		lines = append(lines, cont.String())
		cont.Reset()
	}
	for _, line := range lines {
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		words, err := shellWords(rest)
		if err != nil {
			return d, fmt.Errorf("%s: %w", line, err)
		}
		im := &d.image
		switch instr = strings.ToUpper(instr); {
		case instr == "FROM":
			stage++
			switch {
			case stage == 1 && len(words) == 3 && strings.EqualFold(words[1], "AS"):
				buildName = words[2]
			case stage == 2 && len(words) == 1:
				im.base = words[0]
			default:
				return d, fmt.Errorf("%q: want two stages, FROM <image> AS <name> then FROM <image>", line)
			}
		case stage == 1 && instr == "RUN":
			d.buildRuns = append(d.buildRuns, words)
		case stage == 1 && (instr == "WORKDIR" || instr == "COPY"):
			// The build stage's sources are the repository; the tests
			// build in its root.
		case stage == 2 && instr == "COPY":
			var c dockerCopy
			from := ""
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				k, v, _ := strings.Cut(strings.TrimPrefix(words[0], "--"), "=")
				switch k {
				case "from":
					from = v
				case "chown":
					c.chown = v
				default:
					return d, fmt.Errorf("%q: COPY --%s is not emulated", line, k)
				}
				words = words[1:]
			}
			if from != buildName || len(words) != 2 {
				return d, fmt.Errorf("%q: want COPY --from=%s [--chown=uid:gid] <src> <dst>", line, buildName)
			}
			c.src, c.dst = words[0], words[1]
			im.copies = append(im.copies, c)
		case stage == 2 && instr == "ENV":
			for _, w := range words {
				if !strings.Contains(w, "=") {
					return d, fmt.Errorf("%q: want ENV KEY=VALUE…", line)
				}
				im.env = append(im.env, w)
			}
		case stage == 2 && instr == "EXPOSE":
			im.expose = append(im.expose, words...)
		case stage == 2 && instr == "VOLUME":
			im.volumes = append(im.volumes, words...)
		case stage == 2 && instr == "WORKDIR" && len(words) == 1:
			im.workdir = words[0]
		case stage == 2 && instr == "USER" && len(words) == 1:
			im.user = words[0]
		case stage == 2 && instr == "HEALTHCHECK":
			_, cmd, ok := strings.Cut(rest, " CMD ")
			if !ok {
				return d, fmt.Errorf("%q: want HEALTHCHECK [options] CMD [\"…\"]", line)
			}
			if im.healthcheck, err = execForm(cmd); err != nil {
				return d, fmt.Errorf("%q: %w", line, err)
			}
		case stage == 2 && instr == "ENTRYPOINT":
			if im.entrypoint, err = execForm(rest); err != nil {
				return d, fmt.Errorf("%q: %w", line, err)
			}
		case stage == 2 && instr == "CMD":
			if im.cmd, err = execForm(rest); err != nil {
				return d, fmt.Errorf("%q: %w", line, err)
			}
		default:
			return d, fmt.Errorf("%q: not emulated by the deploy tests (keep the Dockerfile to what dockerfile_test.go parses)", line)
		}
	}
	if stage != 2 {
		return d, fmt.Errorf("%d stages, want 2", stage)
	}
	return d, nil
}

// execForm parses a JSON command (ENTRYPOINT ["/bridge"]); the shell form
// needs a shell the image does not have.
func execForm(s string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil || len(argv) == 0 {
		return nil, fmt.Errorf("want the exec form, a JSON list of strings: %q", s)
	}
	return argv, nil
}

// shellWords splits s as a POSIX shell would split simple words: blanks
// between words, single and double quotes, backslash escapes.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord, quote := false, rune(0)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case quote == '"':
			switch {
			case r == '"':
				quote = 0
			case r == '\\' && i+1 < len(rs) && strings.ContainsRune(`"\$`, rs[i+1]):
				i++
				w.WriteRune(rs[i])
			default:
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			w.WriteRune(rs[i])
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// envValue is KEY's value in a KEY=VALUE list, the last one winning.
func envValue(env []string, key string) (string, bool) {
	v, ok := "", false
	for _, kv := range env {
		if k, val, _ := strings.Cut(kv, "="); k == key {
			v, ok = val, true
		}
	}
	return v, ok
}

// overlay is base with over's variables added or replacing base's, in
// base's order then over's new ones: how a container's environment
// overrides its image's.
func overlay(base []string, over ...string) []string {
	out := slices.Clone(base)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

// numericUser parses USER uid:gid; a name could not be checked by
// Kubernetes' runAsNonRoot, and the tests need the numbers.
func numericUser(user string) (uid, gid uint32, err error) {
	u, g, ok := strings.Cut(user, ":")
	a, err1 := strconv.ParseUint(u, 10, 32)
	b, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("USER %q: want numeric uid:gid", user)
	}
	return uint32(a), uint32(b), nil
}

// flagEnv is every environment variable the bridge reads: JETWAY_ and a
// flag's name (its -help output lists them).
func flagEnv(t *testing.T) map[string]bool {
	t.Helper()
	var help bytes.Buffer
	_, _ = config.Parse([]string{"-help"}, func(string) string { return "" }, &help)
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		names[config.EnvName(m[1])] = true
	}
	if !names["JETWAY_NATS_URL"] || !names["JETWAY_ACK_KEYS_FILE"] {
		t.Fatalf("could not read the flags from -help:\n%s", help.String())
	}
	return names
}

// listenPort is the port of a host:port listen address.
func listenPort(t *testing.T, addr string) string {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("listen address %q has no port", addr)
	}
	return addr[i+1:]
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	d, err := parseDockerfile("Dockerfile")
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return d
}

// TestDockerfile checks the image against the bridge without running it:
// it listens on every interface with authentication required and the
// auth config at a fixed path, exposes its listeners' ports, runs as a
// numeric non-root user that owns /data, and its health check is the
// bridge's probe.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	im := d.image
	known := flagEnv(t)
	for _, kv := range im.env {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.EnvPrefix) && !known[k] {
			t.Errorf("ENV %s: the bridge has no such flag", k)
		}
	}
	want := map[string]string{
		"JETWAY_AUTH_MODE":   "required",
		"JETWAY_AUTH_CONFIG": "/etc/jetway/auth.yaml",
		"JETWAY_DATA_DIR":    "/data",
	}
	for k, v := range want {
		if got, _ := envValue(im.env, k); got != v {
			t.Errorf("ENV %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"JETWAY_GRPC_LISTEN", "JETWAY_HTTP_LISTEN"} {
		addr, _ := envValue(im.env, k)
		if !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("ENV %s = %q, want every interface (0.0.0.0:port)", k, addr)
		}
		if port := listenPort(t, addr); !slices.Contains(im.expose, port) {
			t.Errorf("%s port %s is not in EXPOSE %v", k, port, im.expose)
		}
	}
	for _, kv := range im.env {
		if k, _, _ := strings.Cut(kv, "="); strings.Contains(k, "ACK_KEYS") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") || strings.Contains(k, "NKEY") {
			t.Errorf("ENV %s: no secret in the image", k)
		}
	}
	uid, gid, err := numericUser(im.user)
	if err != nil {
		t.Fatal(err)
	}
	if uid == 0 {
		t.Errorf("USER %s is root", im.user)
	}
	dataDir, _ := envValue(im.env, "JETWAY_DATA_DIR")
	owned := slices.ContainsFunc(im.copies, func(c dockerCopy) bool {
		return c.dst == dataDir && c.chown == fmt.Sprintf("%d:%d", uid, gid)
	})
	if !owned || !slices.Contains(im.volumes, dataDir) {
		t.Errorf("%s is not created owned by %s and a VOLUME (copies %v, volumes %v)", dataDir, im.user, im.copies, im.volumes)
	}
	argv := append(slices.Clone(im.entrypoint), im.cmd...)
	if !slices.Equal(argv, []string{"/bridge", "serve"}) {
		t.Errorf("ENTRYPOINT and CMD run %q, want /bridge serve", argv)
	}
	if !slices.Equal(im.healthcheck, []string{"/bridge", "probe", "/readyz"}) {
		t.Errorf("HEALTHCHECK CMD %q, want the bridge's probe of /readyz", im.healthcheck)
	}
	var built bool
	for _, run := range d.buildRuns {
		if _, cmd := splitAssignments(run); slices.Equal(firstN(cmd, 2), []string{"go", "build"}) {
			built = true
			if env, _ := splitAssignments(run); !slices.Contains(env, "CGO_ENABLED=0") {
				t.Errorf("RUN %q: want CGO_ENABLED=0 (the base image has no libc)", run)
			}
		}
	}
	if !built {
		t.Error("the build stage runs no go build")
	}
	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil || !regexp.MustCompile(`(?m)^deploy/secrets$`).Match(ignore) || !regexp.MustCompile(`(?m)^\.git$`).Match(ignore) {
		t.Errorf("Dockerfile.dockerignore must keep deploy/secrets and .git out of the build context: %v", err)
	}
}

// TestShellWords pins the splitting of RUN lines.
func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{`CGO_ENABLED=0 go build -ldflags="-s -w" -o /out/bridge`, []string{"CGO_ENABLED=0", "go", "build", "-ldflags=-s -w", "-o", "/out/bridge"}, false},
		{`a 'b c' "d \"e\"" f\ g`, []string{"a", "b c", `d "e"`, "f g"}, false},
		{`''`, []string{""}, false},
		{`"open`, nil, true},
	} {
		got, err := shellWords(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// splitAssignments splits a command's leading VAR=value words from it.
func splitAssignments(words []string) (env, cmd []string) {
	for i, w := range words {
		if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(w) {
			return words[:i], words[i:]
		}
	}
	return words, nil
}

func firstN(s []string, n int) []string {
	return s[:min(n, len(s))]
}

// buildImage runs the build stage: each RUN in the repository's root with
// /out as outDir, exactly the go build command the Dockerfile gives (its
// environment and flags), and the Dockerfile's other RUN lines that the
// tests know. It returns the go build flags, for building other binaries
// the same way.
func buildImage(t *testing.T, d dockerfile, outDir string, log io.Writer) (env, flags []string) {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	toOut := func(p string) string {
		rel, ok := strings.CutPrefix(p, "/out/")
		if !ok {
			t.Fatalf("build stage path %q: the tests know only /out/…", p)
		}
		return filepath.Join(outDir, rel)
	}
	for _, run := range d.buildRuns {
		assign, cmd := splitAssignments(run)
		switch {
		case slices.Equal(cmd, []string{"go", "mod", "download"}):
			// A cache layer: go build downloads what it lacks.
		case slices.Equal(firstN(cmd, 2), []string{"go", "build"}):
			args := slices.Clone(cmd[2:])
			for i := range args {
				if args[i] == "-o" && i+1 < len(args) {
					args[i+1] = toOut(args[i+1])
					flags = append(slices.Clone(args[:i]), args[i+2:len(args)-1]...)
				}
			}
			c := exec.Command("go", append([]string{"build"}, args...)...)
			c.Dir, c.Env, c.Stdout, c.Stderr = repo, append(os.Environ(), assign...), log, log
			fmt.Fprintf(log, "build: %s go build %s\n", strings.Join(assign, " "), strings.Join(args, " "))
			if err := c.Run(); err != nil {
				t.Fatalf("RUN %q: %v", run, err)
			}
			env = assign
		case len(cmd) == 3 && slices.Equal(cmd[:2], []string{"mkdir", "-p"}):
			if err := os.MkdirAll(toOut(cmd[2]), 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("RUN %q: not emulated by the deploy tests (teach buildImage)", run)
		}
	}
	if flags == nil {
		t.Fatal("the build stage runs no go build -o …")
	}
	return env, flags
}
