// Package browsertest runs the browser tests' scripts: node with
// playwright-core (tools/browser, installed by scripts/install-browser.sh)
// driving Debian's chromium at /usr/bin/chromium, headless, with a fresh
// profile. A script gets its parameters as JSON in the environment
// (JETWAY_BROWSER_PARAMS) and reports what it saw as JSON lines on stdout,
// one object per step, which Run decodes for the test to assert on.
//
// Without chromium, node or tools/browser/node_modules the tests skip,
// unless JETWAY_REQUIRE_TOOLS=1 (CI), where that is a failure.
package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Chromium is where Debian's chromium package installs the browser.
const Chromium = "/usr/bin/chromium"

// Event is one JSON line of a script: its "step" names what it did or
// saw; the other fields are the step's own.
type Event map[string]any

// Step is the event's step name.
func (e Event) Step() string { s, _ := e["step"].(string); return s }

// String is the field k as a string ("" when missing; numbers in their
// JSON form).
func (e Event) String(k string) string {
	switch v := e[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// Events is a script's output.
type Events []Event

// First is the first event of step, or fails the test.
func (es Events) First(t testing.TB, step string) Event {
	t.Helper()
	for _, e := range es {
		if e.Step() == step {
			return e
		}
	}
	t.Fatalf("the browser script reported no %q step; it reported: %s", step, es)
	return nil
}

// NoPageErrorsBefore fails the test for each page error (a console error
// or an uncaught exception) the script reported before its first until
// step: what follows until may be expected errors (a refusal the browser
// logs as a failed resource).
func (es Events) NoPageErrorsBefore(t testing.TB, until string) {
	t.Helper()
	for _, e := range es {
		if e.Step() == until {
			return
		}
		if e.Step() == "page_error" {
			t.Errorf("page error before %s: %s %s (%s)", until, e.String("kind"), e.String("text"), e.String("url"))
		}
	}
}

func (es Events) String() string {
	var b strings.Builder
	for _, e := range es {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// Require skips the test when the browser tools are missing (failing it
// instead with JETWAY_REQUIRE_TOOLS=1) and returns the tools/browser
// directory.
func Require(t testing.TB) string {
	t.Helper()
	dir, err := toolsDir()
	if err == nil {
		err = present(dir)
	}
	if err != nil {
		if os.Getenv("JETWAY_REQUIRE_TOOLS") == "1" {
			t.Fatalf("browser tools missing with JETWAY_REQUIRE_TOOLS=1: %v (run scripts/install-browser.sh)", err)
		}
		t.Skipf("browser tools missing: %v (run scripts/install-browser.sh)", err)
	}
	return dir
}

func present(dir string) error {
	if _, err := os.Stat(Chromium); err != nil {
		return fmt.Errorf("chromium: %w", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		return fmt.Errorf("playwright-core: %w", err)
	}
	return nil
}

// toolsDir finds tools/browser from the test's working directory (its
// package directory) by walking up to go.mod.
func toolsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "tools", "browser"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ScreenshotPath is where a test saves its screenshot, name.png: in
// $JETWAY_SCREENSHOT_DIR, else the system's temporary directory (kept
// after the test, so that a person can look at it; the same name is
// overwritten by the next run).
func ScreenshotPath(name string) string {
	dir := os.Getenv("JETWAY_SCREENSHOT_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, name+".png")
}

// Run runs tools/browser/script with params and returns its events. The
// script, its browser and everything they started are killed when
// timeout passes or the test ends. A script that exits non-zero, or
// prints a line that is not a JSON object, fails the test with its
// output. The browser profile is a fresh directory of the test's.
func Run(t testing.TB, script string, timeout time.Duration, params map[string]any) Events {
	t.Helper()
	dir := Require(t)
	p := map[string]any{"chromium": Chromium, "userDataDir": t.TempDir()}
	for k, v := range params {
		p[k] = v
	}
	pj, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("browser params: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, script))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "JETWAY_BROWSER_PARAMS="+string(pj))
	killGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	reapGroup(cmd)
	var events Events
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var bad []string
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil || e.Step() == "" {
			bad = append(bad, string(line))
			continue
		}
		events = append(events, e)
	}
	t.Logf("browser script %s ran %v: %d events", script, time.Since(start).Round(time.Millisecond), len(events))
	if runErr != nil || len(bad) > 0 {
		if ctx.Err() != nil {
			runErr = fmt.Errorf("%w (not done within %v)", runErr, timeout)
		}
		t.Fatalf("browser script %s: %v\nevents:\n%s\nother stdout: %q\nstderr:\n%s", script, runErr, events, bad, stderr.String())
	}
	return events
}
