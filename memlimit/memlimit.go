// Package memlimit bounds how far the Go heap grows between collections
// when it is large.
//
// With GOGC=100 the collector lets the heap grow by as much as the live
// heap plus every goroutine stack before it collects, and the runtime keeps
// those pages. A bridge holding 10,000 idle streams has 57 MB of live heap
// and 88 MB of stacks, and its idle streams make garbage (heartbeats, pull
// renewals) at about 0.5 MB/s: its RSS climbed from 15 to 22 KiB per stream
// over a few minutes, all of it garbage waiting for a collection. After
// every collection, Start sets the runtime's soft memory limit to the
// memory in use then (live heap and everything that is not heap) plus a
// headroom: what the process allocated in the last HeadroomTime, at least
// MinHeadroom. A busy heap's headroom is far above what GOGC allows, so it
// collects at GOGC's pace as before; a large heap that is mostly idle
// state collects once it has grown by the headroom, at most every
// HeadroomTime or so, and the runtime returns the pages above the limit to
// the OS. A limit the operator set (GOMEMLIMIT) stays the ceiling.
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
	MinHeadroom = 32 << 20
	// HeadroomTime: the headroom is what the process allocates in this
	// long, when that is more than MinHeadroom, so that the limit never
	// makes a busy process collect more often than this.
	HeadroomTime = 2 * time.Second
)

var samples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/gc/heap/allocs:bytes"},
}

// Limit is the memory limit for a process whose last collection found
// live bytes of live heap, whose memory outside the heap is nonHeap, and
// which allocates rate bytes a second: what it holds plus the headroom,
// under ceiling.
func Limit(live, nonHeap uint64, rate float64, ceiling uint64) uint64 {
	headroom := max(uint64(MinHeadroom), uint64(rate*HeadroomTime.Seconds()))
	return min(live+nonHeap+headroom, ceiling)
}

type controller struct {
	mu      sync.Mutex
	ceiling uint64
	stopped atomic.Bool
	samples []metrics.Sample
	// At the previous collection: bytes allocated so far, and when.
	allocs uint64
	at     time.Time
}

// Start keeps the memory limit following the live heap until stop is
// called, which restores the limit found at Start. Only one may run.
func Start() (stop func()) {
	ceiling := debug.SetMemoryLimit(-1)
	c := &controller{ceiling: uint64(ceiling), samples: append([]metrics.Sample(nil), samples...)}
	if ceiling <= 0 {
		c.ceiling = math.MaxInt64
	}
	c.arm()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.stopped.Store(true)
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
	metrics.Read(c.samples)
	v := func(i int) uint64 {
		if c.samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return c.samples[i].Value.Uint64()
	}
	live, total := v(0), v(1)
	heap := v(2) + v(3) + v(4) + v(5)
	allocs, now := v(6), time.Now()
	var rate float64
	if !c.at.IsZero() && allocs >= c.allocs {
		if d := now.Sub(c.at).Seconds(); d > 0 {
			rate = float64(allocs-c.allocs) / d
		}
	}
	c.allocs, c.at = allocs, now
	if live == 0 || total <= heap {
		return
	}
	debug.SetMemoryLimit(int64(min(Limit(live, total-heap, rate, c.ceiling), math.MaxInt64)))
}
