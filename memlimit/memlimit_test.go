package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestLimit: the limit is what the process holds plus the allocation in
// MinInterval or in the time one collection's CPU takes at MaxGCCPU,
// whichever is longer, at least MinHeadroom, under the ceiling.
func TestLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name string
		u    Usage
		ceil uint64
		want uint64
	}{
		{"idle: the minimum headroom", Usage{Live: 57 * mib, Other: 100 * mib, Rate: 0.5 * mib, CycleCPU: 0.1}, math.MaxInt64, 157*mib + MinHeadroom},
		// 50 MB/s for 0.25 s / 0.05 = 5 s: one collection every 5 s.
		{"busy large heap: 5 % of a core", Usage{Live: 384 * mib, Other: 20 * mib, Rate: 50 * mib, CycleCPU: 0.25}, math.MaxInt64, 404*mib + 250*mib},
		{"busy small heap: 2 s of allocation", Usage{Live: 10 * mib, Other: 20 * mib, Rate: 200 * mib, CycleCPU: 0.005}, math.MaxInt64, 30*mib + 400*mib},
		{"under the operator's ceiling", Usage{Live: 57 * mib, Other: 100 * mib}, 160 * mib, 160 * mib},
	} {
		if got := Limit(c.u, c.ceil); got != c.want {
			t.Errorf("%s: Limit = %d MiB, want %d MiB", c.name, got/mib, c.want/mib)
		}
	}
}

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
