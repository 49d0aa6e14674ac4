package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestLimit: the headroom is the allocation in MinInterval or in the time
// one collection's CPU takes at MaxGCCPU, whichever is longer, at least
// MinHeadroom; and the runtime's heap goal under the limit is the live
// heap plus that headroom, whatever the heap's size, under the ceiling.
func TestLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name     string
		u        Usage
		headroom uint64
	}{
		{"idle: the minimum headroom", Usage{Live: 57 * mib, Other: 100 * mib, Rate: 0.5 * mib, CycleCPU: 0.1}, MinHeadroom},
		// 50 MB/s for 0.25 s / 0.05 = 5 s: one collection every 5 s.
		{"busy large heap: 5 % of a core", Usage{Live: 384 * mib, Other: 20 * mib, Rate: 50 * mib, CycleCPU: 0.25}, 250 * mib},
		{"busy small heap: 2 s of allocation", Usage{Live: 10 * mib, Other: 20 * mib, Rate: 200 * mib, CycleCPU: 0.005}, 400 * mib},
		// 32 times the headroom: the runtime's 3 % margin alone is more.
		{"large idle heap", Usage{Live: 800 * mib, Other: 100 * mib}, MinHeadroom},
		{"small idle heap", Usage{Live: 1 * mib, Other: 1 * mib}, MinHeadroom},
	} {
		if got := Headroom(c.u); got != c.headroom {
			t.Errorf("%s: headroom %d MiB, want %d MiB", c.name, got/mib, c.headroom/mib)
		}
		goal := runtimeGoal(Limit(c.u, math.MaxInt64), c.u.Other)
		if want := c.u.Live + c.headroom; goal < want || goal > want+mib {
			t.Errorf("%s: the runtime's heap goal is %.1f MiB, want live + headroom, %d MiB", c.name, float64(goal)/mib, want/mib)
		}
	}
	if got := Limit(Usage{Live: 57 * mib, Other: 100 * mib}, 160*mib); got != 160*mib {
		t.Errorf("under the operator's ceiling of 160 MiB: Limit = %d MiB", got/mib)
	}
}

// runtimeGoal is the heap goal the runtime derives from a memory limit
// when other bytes are held outside heap objects (runtime/mgcpacer.go,
// memoryLimitHeapGoal).
func runtimeGoal(limit, other uint64) uint64 {
	goal := limit - other
	margin := max(goal/100*3, 1<<20)
	return goal - margin
}

// TestFreeRoom: free pages not yet returned to the OS count against the
// limit in the runtime, which takes what is over it from the heap goal.
// However many there are, the goal keeps the headroom, and the limit stays
// under what is mapped, so the scavenger returns them.
func TestFreeRoom(t *testing.T) {
	const mib = 1 << 20
	u := Usage{Live: 100 * mib, Other: 50 * mib}
	h := Headroom(u)
	limit := Limit(u, math.MaxInt64)
	room := limit - u.Other - u.Live
	for _, free := range []uint64{0, room / 2, room, 4 * room, 20 * room} {
		mapped := u.Live + u.Other + free
		got := FreeRoom(limit, room, mapped, free)
		if goal := runtimeGoalMapped(got, u.Other, mapped); goal+mib < u.Live+h {
			t.Errorf("%d MiB free: limit %d MiB, heap goal %d MiB, want the live heap plus the headroom, %d MiB",
				free/mib, got/mib, goal/mib, (u.Live+h)/mib)
		}
		if free > room && got >= mapped {
			t.Errorf("%d MiB free: limit %d MiB, not under the %d MiB mapped: nothing would be returned", free/mib, got/mib, mapped/mib)
		}
	}
}

// runtimeGoalMapped is the runtime's heap goal under a limit when mapped
// bytes are counted against it, nonHeap of them outside heap objects and
// free pages (runtime/mgcpacer.go, memoryLimitHeapGoal).
func runtimeGoalMapped(limit, nonHeap, mapped uint64) uint64 {
	var over uint64
	if mapped > limit {
		over = mapped - limit
	}
	if nonHeap+over >= limit {
		return 0
	}
	goal := limit - nonHeap - over
	return goal - max(goal/100*3, 1<<20)
}

// TestGoalLeavesHeadroom: with the limit set after a collection of a
// 128 MiB live heap, the runtime's own heap goal (GOGC off, so the limit
// alone sets it) leaves the headroom the limit was computed for. Without
// the margin Limit adds, it left 3 % of the heap less.
func TestGoalLeavesHeadroom(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	ballast = make([]byte, 128<<20)
	defer func() { ballast = nil }()
	debug.FreeOSMemory() // earlier tests' garbage
	c, stop := start()
	defer stop()
	var used Usage
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		runtime.GC() // the finalizer that updates the limit runs after it
		runtime.Gosched()
		c.mu.Lock()
		used = c.used
		c.mu.Unlock()
		if used.Live >= 128<<20 {
			break
		}
	}
	if used.Live < 128<<20 {
		t.Fatalf("no limit set from the 128 MiB heap: %+v", used)
	}
	goal, live := sample("/gc/heap/goal:bytes"), sample("/gc/heap/live:bytes")
	if h := Headroom(used); goal < live+h-h/16 {
		t.Errorf("heap goal %d MiB over a live heap of %d MiB: %d MiB of room, want the headroom, %d MiB",
			goal>>20, live>>20, (goal-live)>>20, h>>20)
	}
}

// ballast is TestGoalLeavesHeadroom's live heap.
var ballast []byte

// TestStartFollowsCollections: after a collection the runtime's limit is
// set from the live heap (finite, above what is in use), and stop restores
// the limit found at Start.
func TestStartFollowsCollections(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	stop := Start()
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) == before && time.Now().Before(deadline) {
		runtime.GC() // the finalizer that updates the limit runs after it
		time.Sleep(10 * time.Millisecond)
	}
	got := debug.SetMemoryLimit(-1)
	if got == before {
		t.Fatalf("limit still %d after collections", got)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if got < int64(ms.HeapAlloc) || got > int64(ms.Sys)+2*MinHeadroom+1<<30 {
		t.Errorf("limit %d MiB; heap in use %d MiB, runtime total %d MiB", got>>20, ms.HeapAlloc>>20, ms.Sys>>20)
	}
	stop()
	if after := debug.SetMemoryLimit(-1); after != before {
		t.Errorf("after stop the limit is %d, want %d back", after, before)
	}
}

// fragments is a heap of many small objects of which one in eight is
// kept: the spans stay in use, mostly empty.
var fragments []*[64]byte

// TestFragmentedHeap: the free slots inside a fragmented heap's spans are
// memory the process holds, not room to grow into. Counted as room, they
// put the limit under what the heap held, and the runtime collected
// without pause: 315 collections and 2.5 s of GC CPU in 4 s of allocating
// 8 MB/s, against one collection without the limit.
func TestFragmentedHeap(t *testing.T) {
	fragments = make([]*[64]byte, 1_500_000)
	for i := range fragments {
		fragments[i] = new([64]byte)
	}
	for i := range fragments {
		if i%8 != 0 {
			fragments[i] = nil
		}
	}
	defer func() { fragments = nil }()
	runtime.GC() // returns once every span is swept

	m := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(m)
	unused := m[1].Value.Uint64()
	// What the process holds: all but the heap's free pages.
	held := m[0].Value.Uint64() - m[2].Value.Uint64() - m[3].Value.Uint64()
	if unused < 2*MinHeadroom {
		t.Fatalf("the heap has %d MiB free inside its spans, want at least %d to test with", unused>>20, 2*MinHeadroom>>20)
	}
	u, _ := read(append([]metrics.Sample(nil), samples...), counters{})
	if got := Limit(u, math.MaxInt64); got < held+MinHeadroom/2 {
		t.Errorf("limit %d MiB, under what the process holds (%d MiB, %d of it free slots) plus room to grow", got>>20, held>>20, unused>>20)
	}
}

func sample(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestUnsweptEstimate: once a collection's sweep is done, the estimate of
// unswept garbage is near zero, and allocating since does not raise it
// (the allocation is counted against the headroom, not as garbage).
func TestUnsweptEstimate(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection in between
	runtime.GC()                                     // returns once every span is swept
	s := append([]metrics.Sample(nil), samples...)
	_, first := read(s, counters{})
	for range 512 {
		garbage = append(garbage, make([]byte, 16<<10)) // 8 MiB, kept
	}
	defer func() { garbage = nil }()
	_, now := read(s, first)
	if now.cycles != first.cycles {
		t.Fatalf("a collection ran in between (%d, %d)", first.cycles, now.cycles)
	}
	if first.unswept > sweptEnough || now.unswept > sweptEnough {
		t.Errorf("unswept estimate %d KiB after the sweep, %d KiB after allocating 8 MiB; want under %d KiB",
			first.unswept>>10, now.unswept>>10, sweptEnough>>10)
	}
}

// garbage is TestUnsweptEstimate's allocation.
var garbage [][]byte
