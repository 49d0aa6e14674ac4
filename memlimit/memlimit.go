// Package memlimit bounds how far the Go heap grows between collections
// when it is large and collecting it is cheap.
//
// With GOGC=100 the collector lets the heap grow by as much as the live
// heap plus every goroutine stack before it collects, and the runtime keeps
// those pages. A bridge holding 10,000 idle streams has 57 MB of live heap
// and 88 MB of stacks, and its idle streams make garbage (heartbeats, pull
// renewals) at about 0.5 MB/s: its RSS climbed from 15 to 22 KiB per stream
// over a few minutes, all of it garbage waiting for a collection.
//
// After every collection, Start sets the runtime's soft memory limit to
// the memory the process holds then plus a headroom, plus the margin the
// runtime keeps under any limit (see Limit). What it holds is everything
// but the heap's free pages: the live heap, the free slots inside the
// heap's spans (fragmentation: the runtime counts them as held, and a
// limit that did not would sit under what the heap holds and make it
// collect without pause) and everything outside the heap. The limit is
// set as the collection's finalizer runs, which is usually before the
// sweep ends: the dead objects not yet swept are counted as held then,
// which errs toward a larger headroom, and the limit is set again once
// the sweep is done (polled every 20 ms), from the free slots as they
// then are. Free pages not yet returned to the OS count against the limit
// in the runtime: when there are more than the headroom, the limit keeps
// the heap's room and sits under what is mapped by half the excess, which
// the scavenger returns (FreeRoom). The headroom is what the process
// allocates in
// MinInterval, or in the time one collection's CPU takes at MaxGCCPU of a
// core if that is longer, and at least MinHeadroom: collecting at the
// limit's pace comes at most every 2 s and is sized for 5 % of a core.
// A busy process with a small heap gets a headroom above what GOGC allows
// and collects at GOGC's pace as before. A large heap collects once it
// has grown by the headroom: when it is mostly idle state, at a fraction
// of the memory GOGC would let it take; when it is also busy, at up to
// about 5 % of a core spent to keep it smaller. The runtime returns pages
// to the OS to stay under the limit. A limit the operator set (GOMEMLIMIT) stays
// the ceiling.
package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// MinHeadroom is the least the heap may grow between collections.
	MinHeadroom = 24 << 20
	// MinInterval and MaxGCCPU bound the limit's pace: the headroom is
	// widened until collecting at it comes no more often than every
	// MinInterval and costs no more than MaxGCCPU of one core.
	MinInterval = 2 * time.Second
	MaxGCCPU    = 0.05
)

// Usage is what the process held at its last collection and what
// collecting it costs.
type Usage struct {
	Live uint64 // live heap found by the collection
	// Other is the rest of the memory held: free slots inside the heap's
	// spans and everything outside the heap. Free pages are not counted
	// here: the scavenger returns them, and FreeRoom keeps them from
	// eating the heap's room meanwhile.
	Other uint64
	// Rate is the bytes allocated a second since the previous collection.
	Rate float64
	// CycleCPU is the CPU seconds the last collection cost (the runtime's
	// estimate, idle mark workers and pauses included).
	CycleCPU float64
}

// Limit is the memory limit for a process in the state u: what it holds
// plus the headroom, under ceiling. The headroom is what the process
// allocates between two collections at the pace MinInterval and MaxGCCPU
// allow, at least MinHeadroom.
//
// The runtime does not let the heap reach the limit: its heap goal is the
// limit less the memory outside heap objects, less 3 % of what is left
// (at least 1 MiB; runtime/mgcpacer.go, memoryLimitHeapGoal). The limit
// adds that margin back, so that the goal is the live heap plus the
// headroom whatever the heap's size: without it a live heap of 32 times
// the headroom had no room left and collected without pause.
func Limit(u Usage, ceiling uint64) uint64 {
	goal := u.Live + Headroom(u)
	margin := max(goal*3/97+1, 1<<20)
	return min(u.Other+goal+margin, ceiling)
}

// FreeRoom raises limit so that free pages not yet returned to the OS do
// not eat the heap's room. The runtime counts them against the limit
// (mapped) and takes what is over it from the heap goal, in full; the
// headroom above what is held, room, absorbs free pages up to its own
// size. Beyond that the limit keeps the goal's room while sitting under
// mapped by half the excess, so the scavenger still returns it.
func FreeRoom(limit, room, mapped, free uint64) uint64 {
	if free <= room {
		return limit
	}
	excess := (free - room) / 2
	if mapped > excess {
		return max(limit, mapped-excess)
	}
	return limit
}

// Headroom is how far the heap may grow past its live bytes before the
// next collection, in the state u.
func Headroom(u Usage) uint64 {
	interval := max(MinInterval.Seconds(), u.CycleCPU/MaxGCCPU)
	return max(uint64(MinHeadroom), uint64(u.Rate*interval))
}

var samples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/gc/heap/allocs:bytes"},
	{Name: "/gc/cycles/total:gc-cycles"},
	{Name: "/cpu/classes/gc/total:cpu-seconds"},
	{Name: "/memory/classes/heap/objects:bytes"},
}

// counters are the cumulative figures Usage takes differences of, and
// what the sweep's progress is judged by.
type counters struct {
	allocs, cycles uint64
	gcCPU          float64
	at             time.Time
	// unswept is an estimate of the dead bytes not yet swept: heap
	// objects less the live heap and what was allocated since the
	// previous read of the same cycle.
	unswept uint64
	// sweptOther is Other once the sweep is done: everything held but the
	// heap objects (free slots and memory outside the heap).
	sweptOther uint64
	// mapped is the memory the runtime counts against the limit (all but
	// released pages), free the heap's free pages not yet returned.
	mapped, free uint64
}

// read fills u from the runtime's metrics, with the rate and cycle cost
// since prev, and returns the counters for the next read.
func read(s []metrics.Sample, prev counters) (u Usage, now counters) {
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	u.Live = v(0)
	now = counters{allocs: v(4), cycles: v(5), at: time.Now(), free: v(2)}
	if s[6].Value.Kind() == metrics.KindFloat64 {
		now.gcCPU = s[6].Value.Float64()
	}
	objects := v(7)
	if v(1) > v(3) {
		now.mapped = v(1) - v(3)
	}
	// held is everything but free and released pages. Beyond the live
	// heap, that counts the dead objects not yet swept (read is called
	// before the sweep ends): those in spans that stay in use become free
	// slots, which the runtime counts as held, and only those in spans
	// freed whole are counted in excess (a headroom larger by at most the
	// garbage of one cycle).
	held := now.mapped - min(now.free, now.mapped)
	if held > u.Live {
		u.Other = held - u.Live
	}
	if held > objects {
		now.sweptOther = held - objects
	}
	since := uint64(0)
	if prev.cycles == now.cycles && now.allocs >= prev.allocs {
		since = now.allocs - prev.allocs // a re-read within the cycle
	}
	if objects > u.Live+since {
		now.unswept = objects - u.Live - since
	}
	if prev.at.IsZero() {
		return u, now
	}
	if d := now.at.Sub(prev.at).Seconds(); d > 0 && now.allocs >= prev.allocs {
		u.Rate = float64(now.allocs-prev.allocs) / d
	}
	if now.cycles > prev.cycles && now.gcCPU >= prev.gcCPU {
		u.CycleCPU = (now.gcCPU - prev.gcCPU) / float64(now.cycles-prev.cycles)
	}
	return u, now
}

type controller struct {
	mu      sync.Mutex
	ceiling uint64
	stopped atomic.Bool
	samples []metrics.Sample
	last    counters // at the previous collection
	used    Usage    // the state the limit was last set from
	// refine re-reads the heap until its sweep is done (see update).
	refine  *time.Timer
	tries   int
	unswept uint64 // the last re-read's estimate
}

const (
	// sweepPoll is how often the limit is re-read while the sweep of the
	// last collection's garbage runs, at most sweepTries times.
	sweepPoll  = 20 * time.Millisecond
	sweepTries = 50
	// sweptEnough is the unswept estimate below which the sweep is done.
	sweptEnough = 1 << 20
)

// Start keeps the memory limit following the live heap until stop is
// called, which restores the limit found at Start. Only one may run.
func Start() (stop func()) {
	_, stop = start()
	return stop
}

func start() (*controller, func()) {
	ceiling := debug.SetMemoryLimit(-1)
	c := &controller{ceiling: uint64(ceiling), samples: append([]metrics.Sample(nil), samples...)}
	if ceiling <= 0 {
		c.ceiling = math.MaxInt64
	}
	c.arm()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.stopped.Store(true)
			if c.refine != nil {
				c.refine.Stop()
			}
			debug.SetMemoryLimit(ceiling)
		})
	}
}

// sentinel is garbage from the moment it is made: its finalizer runs
// after the next collection, updates the limit and makes the next one.
type sentinel struct{ c *controller }

func (c *controller) arm() {
	runtime.SetFinalizer(&sentinel{c}, func(s *sentinel) {
		if s.c.stopped.Load() {
			return
		}
		s.c.update()
		s.c.arm()
	})
}

func (c *controller) update() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped.Load() {
		return
	}
	var u Usage
	u, c.last = read(c.samples, c.last)
	if u.Live == 0 || u.Other == 0 {
		c.used = Usage{} // a pending re-read has nothing to refine
		return
	}
	c.used = u
	c.set(u, c.last)
	// The finalizer runs when its own span is swept, usually before the
	// sweep ends, so u counts the unswept garbage as held, which errs
	// toward a larger headroom. Once the sweep is done the limit is set
	// again from what the heap then holds (its free slots included).
	c.tries = 0
	c.scheduleRefine()
}

// scheduleRefine re-reads the heap after sweepPoll. c.mu is held.
func (c *controller) scheduleRefine() {
	if c.refine == nil {
		c.refine = time.AfterFunc(sweepPoll, c.refined)
	} else {
		c.refine.Reset(sweepPoll)
	}
}

// refined sets the limit again once the last collection's sweep is done:
// from the same live heap and headroom, and what is held beyond the live
// heap now that every dead object is a free slot or a free page.
func (c *controller) refined() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped.Load() || c.used.Live == 0 {
		return
	}
	_, now := read(c.samples, c.last)
	if now.cycles != c.last.cycles {
		return // a newer collection's finalizer takes over
	}
	c.tries++
	// Done when the estimate is small or has stopped falling (it includes
	// what was allocated between the collection and the finalizer).
	progress := c.tries == 1 || now.unswept < c.unswept
	c.unswept = now.unswept
	if now.unswept > sweptEnough && progress && c.tries < sweepTries {
		c.scheduleRefine()
		return
	}
	u := c.used
	u.Other = now.sweptOther + now.unswept
	c.set(u, now)
}

// set sets the runtime's limit for the state u, with what n read of the
// free pages. c.mu is held.
func (c *controller) set(u Usage, n counters) {
	limit := Limit(u, math.MaxUint64)
	limit = FreeRoom(limit, limit-u.Other-u.Live, n.mapped, n.free)
	debug.SetMemoryLimit(int64(min(limit, c.ceiling, math.MaxInt64)))
}
