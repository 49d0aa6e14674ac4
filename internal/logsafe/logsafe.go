// Package logsafe keeps what clients send from flooding the log: Clip caps
// a client's string before it reaches a log line, and Limiter caps how
// many lines of one kind (refused credentials, timed-out bodies) are
// written per second, counting the rest.
package logsafe

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// Clip returns s when it is at most max bytes, and otherwise its first
// bytes (at most max, ending on a rune boundary) followed by a marker with
// the length of the whole: "abc…[70000 bytes]". It never returns more
// than max plus the marker's ~20 bytes.
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[" + strconv.Itoa(len(s)) + " bytes]"
}

// Limiter writes at most perSecond lines (in bursts of at most burst) of
// one kind to its logger and counts the lines it drops: the next line
// written carries that count as "suppressed", so a flood shows in the log
// as a few lines a second, each saying how many it stands for. (A flood's
// last count waits for the next line of its kind.) Safe for concurrent
// use.
type Limiter struct {
	log        *slog.Logger
	lim        *rate.Limiter
	suppressed atomic.Int64
}

// NewLimiter returns a Limiter over log (nil discards).
func NewLimiter(log *slog.Logger, perSecond float64, burst int) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{log: log, lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// Log writes the line unless the rate is spent. A line below the logger's
// level is neither written nor counted.
func (l *Limiter) Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.log.Enabled(ctx, level) {
		return
	}
	if !l.lim.Allow() {
		l.suppressed.Add(1)
		return
	}
	if n := l.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed", n))
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}
