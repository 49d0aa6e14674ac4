package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jetway-dev/jetway/bridge"
)

// Action is what Ensure did with an entry (or, in a dry run, would do).
type Action string

// The actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Failed    Action = "failed"
)

// Result is what became of one entry.
type Result struct {
	// Kind is "stream" or "consumer".
	Kind string `json:"kind"`
	// Stream is the stream (the consumer's, for a consumer).
	Stream string `json:"stream"`
	// Name is the stream's or the consumer's name.
	Name   string `json:"name"`
	Action Action `json:"action"`
	// Changes are the fields that differ (updated, and failed with a
	// conflict).
	Changes []Change `json:"changes,omitempty"`
	// Err is why the entry failed (Action Failed only).
	Err error `json:"-"`
	// Note is a warning about an entry that did not fail.
	Note string `json:"note,omitempty"`
}

// Entry names the entry: `stream "ORDERS"`, `consumer "billing" on
// stream "ORDERS"`.
func (r Result) Entry() string {
	if r.Kind == "consumer" {
		return fmt.Sprintf("consumer %q on stream %q", r.Name, r.Stream)
	}
	return fmt.Sprintf("stream %q", r.Name)
}

// Retryable reports whether err is a failure that may pass by itself:
// JetStream unavailable, or not answering in time. Conflicts, refused
// configurations, permission denied and missing streams are not.
func Retryable(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) &&
		(errors.Is(err, bridge.ErrUnavailable) || errors.Is(err, bridge.ErrTimeout) || errors.Is(err, context.DeadlineExceeded))
}

// Report is what Ensure did, entry by entry.
type Report struct {
	DryRun  bool
	Results []Result
}

// Err is nil when no entry failed, else an error naming each failed
// entry and why.
func (r *Report) Err() error {
	var errs []error
	for _, res := range r.Results {
		if res.Action == Failed {
			errs = append(errs, fmt.Errorf("%s: %w", res.Entry(), res.Err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("bootstrap: %d of %d entries failed: %w", len(errs), len(r.Results), errors.Join(errs...))
}

// Retryable reports whether entries failed and every failure is
// retryable.
func (r *Report) Retryable() bool {
	failed := false
	for _, res := range r.Results {
		if res.Action == Failed {
			if !Retryable(res.Err) {
				return false
			}
			failed = true
		}
	}
	return failed
}

// Count is how many entries had the action.
func (r *Report) Count(a Action) int {
	n := 0
	for _, res := range r.Results {
		if res.Action == a {
			n++
		}
	}
	return n
}

// verb is the action as a dry run says it.
func (r *Report) verb(a Action) string {
	if !r.DryRun {
		return string(a)
	}
	switch a {
	case Created:
		return "would create"
	case Updated:
		return "would update"
	case Failed:
		return "would fail"
	}
	return string(a)
}

// WriteText writes the report for people: a line per entry, a line per
// changed field below it, and a summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results {
		fmt.Fprintf(&b, "%s: %s", res.Entry(), r.verb(res.Action))
		if res.Action == Failed {
			fmt.Fprintf(&b, ": %v", res.Err)
		}
		b.WriteString("\n")
		for _, c := range res.Changes {
			fmt.Fprintf(&b, "    %s\n", c)
		}
		if res.Note != "" {
			fmt.Fprintf(&b, "    note: %s\n", res.Note)
		}
	}
	fmt.Fprintf(&b, "%d %s, %d %s, %d unchanged, %d %s\n",
		r.Count(Created), r.verb(Created), r.Count(Updated), r.verb(Updated), r.Count(Unchanged), r.Count(Failed), r.verb(Failed))
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON document: {"dry_run":…,
// "results":[{"kind","stream","name","action","changes","error","note"}]}.
func (r *Report) WriteJSON(w io.Writer) error {
	type result struct {
		Result
		Error string `json:"error,omitempty"`
	}
	out := struct {
		DryRun  bool     `json:"dry_run"`
		Results []result `json:"results"`
	}{DryRun: r.DryRun, Results: []result{}}
	for _, res := range r.Results {
		e := ""
		if res.Err != nil {
			e = res.Err.Error()
		}
		out.Results = append(out.Results, result{Result: res, Error: e})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// Log writes a line per entry: failures at error level, the rest at
// info; unchanged entries only when all is true.
func (r *Report) Log(log *slog.Logger, all bool) {
	for _, res := range r.Results {
		attrs := []any{slog.String("kind", res.Kind), slog.String("stream", res.Stream)}
		if res.Kind == "consumer" {
			attrs = append(attrs, slog.String("consumer", res.Name))
		}
		if len(res.Changes) > 0 {
			changes := make([]string, len(res.Changes))
			for i, c := range res.Changes {
				changes[i] = c.String()
			}
			attrs = append(attrs, slog.Any("changes", changes))
		}
		if res.Note != "" {
			attrs = append(attrs, slog.String("note", res.Note))
		}
		switch res.Action {
		case Failed:
			log.Error("bootstrap: "+res.Kind+" failed", append(attrs, slog.Any("error", res.Err), slog.Bool("retryable", Retryable(res.Err)))...)
		case Unchanged:
			if all {
				log.Info("bootstrap: "+res.Kind+" unchanged", attrs...)
			}
		default:
			log.Info("bootstrap: "+res.Kind+" "+string(res.Action), attrs...)
		}
	}
}
