package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// targetKind is how a row's target is judged.
type targetKind int

const (
	noTarget     targetKind = iota
	ratioAtLeast            // bridge/baseline medians ≥ value
	addedAtMost             // bridge − baseline medians ≤ value (latency)
	valueAtMost             // bridge median ≤ value (no baseline)
)

// target is a goal shown next to a row; the bench never enforces it.
type target struct {
	kind  targetKind
	value float64
}

func (t target) String(unit string) string {
	switch t.kind {
	case ratioAtLeast:
		return fmt.Sprintf("ratio ≥ %.2f", t.value)
	case addedAtMost:
		return fmt.Sprintf("added ≤ %s", formatValue(t.value, unit))
	case valueAtMost:
		return fmt.Sprintf("≤ %s", formatValue(t.value, unit))
	}
	return ""
}

// Row is one line of the result table.
type Row struct {
	Scenario int      `json:"scenario"`
	Name     string   `json:"name"`
	Payload  string   `json:"payload"`
	Metric   string   `json:"metric"`
	Unit     string   `json:"unit"`
	Bridge   *summary `json:"bridge,omitempty"`
	// Baseline names what the bridge is compared with: native (nats.go),
	// grpc-echo (a bare gRPC unary call), grpc-unary (the bridge's own
	// unary Publish), or "" for none.
	Baseline     string   `json:"baseline,omitempty"`
	BaselineStat *summary `json:"baseline_stat,omitempty"`
	Ratio        *float64 `json:"ratio,omitempty"` // bridge/baseline medians
	Added        *float64 `json:"added,omitempty"` // bridge − baseline medians
	Target       string   `json:"target,omitempty"`
	Verdict      string   `json:"verdict,omitempty"` // PASS, MISS or ""
	// Status is ok, skipped (not implemented or not selected) or an error.
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
	// CPU and BaselineCPU are the CPU time per message of each process on
	// the bridge's side and the baseline's (throughput rows only).
	CPU         *cpuSplit `json:"cpu,omitempty"`
	BaselineCPU *cpuSplit `json:"baseline_cpu,omitempty"`
}

// report is the whole result, as written by -json.
type report struct {
	Started   time.Time `json:"started"`
	WallTime  string    `json:"wall_time"`
	Quick     bool      `json:"quick"`
	Auth      bool      `json:"auth"`
	Rounds    int       `json:"rounds"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	// LoadStart and LoadEnd are the host's 1-minute load average: other
	// work on the machine makes the numbers noisy.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
	Rows      []Row   `json:"rows"`
}

// judge fills ratio, added and verdict from the summaries.
func (r *Row) judge(t target) {
	r.Target = t.String(r.Unit)
	if r.Bridge == nil {
		return
	}
	if r.BaselineStat != nil && r.BaselineStat.Median != 0 {
		ratio := r.Bridge.Median / r.BaselineStat.Median
		r.Ratio = &ratio
		if r.Unit == "ms" { // latency: what the bridge adds
			added := r.Bridge.Median - r.BaselineStat.Median
			r.Added = &added
		}
	}
	pass := false
	switch t.kind {
	case noTarget:
		return
	case ratioAtLeast:
		if r.Ratio == nil {
			return
		}
		pass = *r.Ratio >= t.value
	case addedAtMost:
		if r.Added == nil {
			return
		}
		pass = *r.Added <= t.value
	case valueAtMost:
		pass = r.Bridge.Median <= t.value
	}
	r.Verdict = "MISS"
	if pass {
		r.Verdict = "PASS"
	}
}

// printTable writes the rows as an aligned table.
func printTable(w io.Writer, rep report) error {
	fmt.Fprintf(w, "jetway bench: quick=%v auth=%v rounds=%d cpus=%d %s, wall time %s, host load %.2f at start, %.2f at end\n\n",
		rep.Quick, rep.Auth, rep.Rounds, rep.CPUs, rep.GoVersion, rep.WallTime, rep.LoadStart, rep.LoadEnd)
	if rep.Quick {
		fmt.Fprintf(w, "quick mode is a smoke test: throughput runs of %s (full: %s), which a side's warm-up weighs on; %d idle streams (full: %d), over which the bridge's fixed memory is spread, and read right after opening (full: after %s idle, in their steady state); the targets are for the full run\n\n",
			quickBudget.runTime, fullBudget.runTime, quickBudget.idleStreams, fullBudget.idleStreams, idleSettle+fullBudget.idleSteady+fullBudget.idleWindow)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tscenario\tpayload\tmetric\tbridge\tvs\tbaseline\tbridge spread\tbaseline spread\tratio\tadded\ttarget\t")
	for _, r := range rep.Rows {
		if r.Status != "ok" {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\t\t\t\t\t\t\t\n", r.Scenario, r.Name, r.Payload, r.Metric, r.Status)
			continue
		}
		base, baseSpread, ratio, added := "—", "", "", ""
		if r.BaselineStat != nil {
			base = formatValue(r.BaselineStat.Median, r.Unit)
			baseSpread = formatSpread(r.BaselineStat, r.Unit)
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		if r.Added != nil {
			added = fmt.Sprintf("%+.3f ms", *r.Added)
		}
		tgt := r.Target
		if r.Verdict != "" {
			tgt += " " + r.Verdict
		}
		vs := r.Baseline
		if vs == "" {
			vs = "—"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, r.Name, r.Payload, r.Metric,
			formatValue(r.Bridge.Median, r.Unit), vs, base,
			formatSpread(r.Bridge, r.Unit), baseSpread, ratio, added, tgt)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	if err := printCPU(w, rep); err != nil {
		return err
	}
	var notes []string
	for _, r := range rep.Rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("  %d %s %s %s: %s", r.Scenario, r.Name, r.Payload, r.Metric, r.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

func formatSpread(s *summary, unit string) string {
	return formatValue(s.Min, unit) + "–" + formatValue(s.Max, unit)
}

// formatValue prints a value in its unit, compactly.
func formatValue(v float64, unit string) string {
	switch unit {
	case "msgs/s":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM/s", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1fk/s", v/1e3)
		}
		return fmt.Sprintf("%.0f/s", v)
	case "ms":
		if math.Abs(v) < 10 {
			return fmt.Sprintf("%.3f ms", v)
		}
		return fmt.Sprintf("%.1f ms", v)
	case "KiB":
		return fmt.Sprintf("%.1f KiB", v)
	case "%":
		return fmt.Sprintf("%.2f%%", v)
	case "s":
		return fmt.Sprintf("%.2f s", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

// writeJSON writes the report to path.
func writeJSON(path string, rep report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// printCPU writes the CPU per message of the throughput rows: where each
// side's time goes, and the rate that CPU cost allows when every core of
// the machine works on it (cores ÷ CPU per message).
func printCPU(w io.Writer, rep report) error {
	var any bool
	for _, r := range rep.Rows {
		any = any || r.CPU != nil
	}
	if !any {
		return nil
	}
	fmt.Fprintf(w, "\nCPU per message (µs, medians; client is the bench process), and the rate it allows on %d cores:\n", rep.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tscenario\tpayload\tmetric\tside\tclient\tbridge\tnats-server\techo\ttotal\tcores busy\tCPU bound\t")
	line := func(r Row, side string, c *cpuSplit) {
		bound := ""
		if c.Total > 0 {
			bound = formatValue(float64(rep.CPUs)*1e6/c.Total, "msgs/s")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%s\t\n",
			r.Scenario, r.Name, r.Payload, r.Metric, side, c.Client, c.Bridge, c.NATS, c.Echo, c.Total, c.Cores, bound)
	}
	for _, r := range rep.Rows {
		if r.CPU == nil {
			continue
		}
		line(r, "bridge", r.CPU)
		if r.BaselineCPU != nil {
			line(r, r.Baseline, r.BaselineCPU)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print cpu: %w", err)
	}
	return nil
}
