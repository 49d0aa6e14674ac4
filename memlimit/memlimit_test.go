package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestLimit: the limit is what the process holds plus the larger of
// MinHeadroom and HeadroomTime's allocation, under the ceiling.
func TestLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name                string
		live, nonHeap, ceil uint64
		rate                float64
		want                uint64
	}{
		{"idle: the minimum headroom", 57 * mib, 100 * mib, math.MaxInt64, 0.5 * mib, 157*mib + MinHeadroom},
		{"busy: two seconds of allocation", 10 * mib, 20 * mib, math.MaxInt64, 200 * mib, 30*mib + 400*mib},
		{"under the operator's ceiling", 57 * mib, 100 * mib, 160 * mib, 0, 160 * mib},
	} {
		if got := Limit(c.live, c.nonHeap, c.rate, c.ceil); got != c.want {
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
