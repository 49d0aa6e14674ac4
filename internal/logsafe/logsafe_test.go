package logsafe_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jetway-dev/jetway/internal/logsafe"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"short", "abc", 8, "abc"},
		{"exact", "abcdefgh", 8, "abcdefgh"},
		{"long", "abcdefghij", 4, "abcd…[10 bytes]"},
		{"rune boundary", "aé€x", 3, "aé…[7 bytes]"},
		{"zero", "abc", 0, "…[3 bytes]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := logsafe.Clip(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Clip(%q, %d) = %q: not UTF-8", tt.in, tt.max, got)
			}
		})
	}
	if got := logsafe.Clip(strings.Repeat("x", 1<<20), 64); len(got) > 64+24 {
		t.Errorf("Clip of 1 MiB to 64 is %d bytes", len(got))
	}
}

// TestLimiter: a burst passes and the rest is dropped; lines below the
// level are neither written nor counted.
func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// A rate so low that no token comes back during the test.
	l := logsafe.NewLimiter(log, 1e-9, 3)
	ctx := context.Background()
	for range 5 {
		l.Log(ctx, slog.LevelDebug, "below the level")
	}
	for range 10 {
		l.Log(ctx, slog.LevelInfo, "refused")
	}
	if n := strings.Count(buf.String(), "refused"); n != 3 {
		t.Fatalf("%d lines of 10 with a burst of 3:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), "below the level") || strings.Contains(buf.String(), "suppressed") {
		t.Fatalf("unexpected line:\n%s", buf.String())
	}
}

// TestLimiterReportsSuppressed: the first line after dropped ones says how
// many were dropped, once.
func TestLimiterReportsSuppressed(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := logsafe.NewLimiter(log, 20, 1) // a token every 50 ms
	ctx := context.Background()
	calls := 0
	refuse := func() {
		calls++
		l.Log(ctx, slog.LevelInfo, "refused")
	}
	for range 1000 { // far faster than 50 ms a line: most are dropped
		refuse()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "suppressed=") {
		if time.Now().After(deadline) {
			t.Fatalf("no line reported the suppressed ones within 5s:\n%s", buf.String())
		}
		refuse()
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var total int64
	for _, line := range lines {
		if _, n, ok := strings.Cut(line, "suppressed="); ok {
			k, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			total += k
		}
	}
	// Every call was written or counted, and the line that stopped the
	// loop reported every drop before it.
	if int64(len(lines))+total != int64(calls) || total < 900 {
		t.Errorf("%d calls: %d lines, %d suppressed:\n%s", calls, len(lines), total, buf.String())
	}
}
