package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Retry says how EnsureRetrying waits between attempts.
type Retry struct {
	// First is the first pause (default 100ms); each doubles up to Max
	// (default 5s), plus up to a fifth at random, so that replicas that
	// failed together do not retry together.
	First, Max time.Duration
	// Log hears of every attempt (nil: none).
	Log *slog.Logger
}

// EnsureRetrying runs Ensure on the JetStream js returns until no entry
// fails, retrying while every failure is Retryable (and while js itself
// fails: not connected yet). It returns the last attempt's report and
// nil once all succeeded; the report and its error at a permanent
// failure; ctx's error when ctx ends first. Each entry a retried attempt
// already created or updated reports unchanged in the next one, so the
// log, not the last report, tells what each attempt did: Log gets the
// created and updated entries of every attempt, the failures and
// unchanged entries of the last.
func (f *File) EnsureRetrying(ctx context.Context, js func(context.Context) (JetStream, error), opts Options, retry Retry) (*Report, error) {
	if retry.First <= 0 {
		retry.First = 100 * time.Millisecond
	}
	if retry.Max <= 0 {
		retry.Max = 5 * time.Second
	}
	log := retry.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := retry.First
	for attempt := 1; ; attempt++ {
		var r *Report
		var err error
		if j, jerr := js(ctx); jerr != nil {
			err = fmt.Errorf("bootstrap: %w", jerr)
			log.Warn("bootstrap: no JetStream yet; retrying", slog.Int("attempt", attempt), slog.Any("error", jerr), slog.Duration("retry_in", wait))
		} else {
			r = f.Ensure(ctx, j, opts)
			err = r.Err()
			switch {
			case ctx.Err() != nil:
				return r, ctx.Err()
			case err == nil:
				r.Log(log, true)
				log.Info("bootstrap: done", slog.Int("attempt", attempt), slog.Int("created", r.Count(Created)),
					slog.Int("updated", r.Count(Updated)), slog.Int("unchanged", r.Count(Unchanged)))
				return r, nil
			case !r.Retryable():
				r.Log(log, true)
				return r, err
			}
			// Only what this attempt changed; the failures say why in
			// the summary.
			changed := &Report{DryRun: r.DryRun}
			for _, res := range r.Results {
				if res.Action == Created || res.Action == Updated {
					changed.Results = append(changed.Results, res)
				}
			}
			changed.Log(log, false)
			log.Warn("bootstrap: incomplete; retrying", slog.Int("attempt", attempt), slog.Int("failed", r.Count(Failed)),
				slog.Any("error", err), slog.Duration("retry_in", wait))
		}
		t := time.NewTimer(wait + rand.N(wait/5+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return r, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, retry.Max)
	}
}
