package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// sideRun is one side of a round.
type sideRun struct {
	name string
	run  func(ctx context.Context) (measurement, error)
}

// alternate runs the sides back to back, rotating who goes first by
// round, so that neither side always runs on a warmer (or more
// fragmented) server.
// Each side runs with a meter in its context: a throughput run reports the
// CPU each process used in its measured window (see startWindow).
func alternate(ctx context.Context, e *env, round int, sides ...sideRun) (map[string]measurement, error) {
	out := make(map[string]measurement, len(sides))
	for i := range sides {
		s := sides[(i+round)%len(sides)]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		runtime.GC() // do not bill one side for the other's garbage
		m, err := s.run(withMeter(ctx, e))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		out[s.name] = m
	}
	return out, nil
}

// runScenario runs all rounds of one scenario and builds its rows. A
// failure becomes the rows' status; only a dead child process or an ended
// context is returned as an error.
func runScenario(ctx context.Context, e *env, sc scenario, progress io.Writer) ([]Row, error) {
	sizes := payloadSizes
	rounds := e.budget.rounds
	if !sc.perPayload {
		sizes, rounds = []int{0}, e.budget.idleRounds
	}
	var rows []Row
	for _, size := range sizes {
		label := "—"
		if sc.perPayload {
			label = sizeLabel(size)
		}
		if sc.round == nil {
			for _, rs := range sc.rows {
				rows = append(rows, Row{Scenario: sc.id, Name: sc.name, Payload: label, Metric: rs.label, Unit: rs.unit, Status: "skipped (not implemented)"})
			}
			continue
		}
		got := map[string]map[string][]float64{} // side → metric → per round
		nb := &notebook{}
		var runErr error
		logOffset := e.bridgeProc.logSize()
		for r := range rounds {
			fmt.Fprintf(progress, "  scenario %d %s %s: round %d/%d\n", sc.id, sc.name, label, r+1, rounds)
			res, err := sc.round(ctx, e, params{size: size, payload: makePayload(size), round: r, b: e.budget, notes: nb})
			if herr := e.healthy(); herr != nil {
				return rows, herr
			}
			if err != nil {
				if ctx.Err() != nil {
					return rows, ctx.Err()
				}
				runErr = fmt.Errorf("round %d: %w", r+1, err)
				break
			}
			for side, m := range res {
				if got[side] == nil {
					got[side] = map[string][]float64{}
				}
				for k, v := range m {
					got[side][k] = append(got[side][k], v)
				}
			}
		}
		if s := e.bridgeProc.logSummary(logOffset); s != "" {
			nb.notef("bridge log: %s", s)
		}
		for i, rs := range sc.rows {
			if rs.singles && !e.budget.singles {
				continue
			}
			row := Row{Scenario: sc.id, Name: sc.name, Payload: label, Metric: rs.label, Unit: rs.unit, Status: "ok"}
			if runErr != nil {
				row.Status = "error: " + oneLine(runErr.Error())
				rows = append(rows, row)
				continue
			}
			row.Bridge = summarize(got[rs.side][rs.metric])
			if rs.base != "" {
				row.Baseline = baselineName[rs.base]
				row.BaselineStat = summarize(got[rs.base][rs.metric])
			}
			if row.Bridge == nil {
				row.Status = "error: no measurement"
			}
			if rs.metric == mRate {
				row.CPU = cpuOf(got[rs.side])
				if rs.base != "" {
					row.BaselineCPU = cpuOf(got[rs.base])
				}
			}
			row.judge(rs.tgt)
			if i == 0 {
				row.Note = nb.String()
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// notebook collects the remarks of one scenario and payload size for the
// table's notes. Safe for concurrent use.
type notebook struct {
	mu     sync.Mutex
	notes  []string
	bounds map[string][]int // side → messages done when the time bound hit
	want   int
}

// notef adds a remark (once).
func (nb *notebook) notef(format string, args ...any) {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(nb.notes, n) {
		nb.notes = append(nb.notes, n)
	}
}

// timeBound records a run that hit its time bound after done of want.
func (nb *notebook) timeBound(side string, done, want int) {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	if nb.bounds == nil {
		nb.bounds = map[string][]int{}
	}
	nb.bounds[side] = append(nb.bounds[side], done)
	nb.want = want
}

func (nb *notebook) String() string {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	var parts []string
	for _, side := range slices.Sorted(maps.Keys(nb.bounds)) {
		d := nb.bounds[side]
		parts = append(parts, fmt.Sprintf("%s hit the time bound in %d run(s), after %s–%s of %s messages",
			side, len(d), count(slices.Min(d)), count(slices.Max(d)), count(nb.want)))
	}
	return strings.Join(append(parts, nb.notes...), "; ")
}

// count prints a message count compactly (183k, 1M).
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 10_000:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// drainGrace bounds the wait for in-flight work after a run's time bound.
const drainGrace = 15 * time.Second

// closedLoop runs workers goroutines, each calling op back to back, until
// maxOps calls were started in all or dur has passed. It returns the rate
// of completed calls and their latency percentiles.
func closedLoop(ctx context.Context, workers, maxOps int, dur time.Duration, op func(context.Context) error) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+drainGrace)
	defer cancel()
	var issued atomic.Int64
	lat := make([]latencies, workers)
	g, gctx := errgroup.WithContext(ctx)
	win := startWindow(ctx)
	deadline := win.t0.Add(dur)
	for w := range workers {
		g.Go(func() error {
			l := make(latencies, 0, 4096)
			defer func() { lat[w] = l }()
			for issued.Add(1) <= int64(maxOps) && time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(gctx); err != nil {
					return err
				}
				l = append(l, time.Since(t0))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	m := win.throughput(int64(issuedDone(lat)))
	var all latencies
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return nil, errors.New("no call completed")
	}
	m[mP50], m[mP99] = all.percentileMS(50), all.percentileMS(99)
	return m, nil
}

// issuedDone counts the completed calls of all workers.
func issuedDone(lat []latencies) int {
	n := 0
	for _, l := range lat {
		n += len(l)
	}
	return n
}
