package bridge

import (
	"testing"
	"time"
)

// TestNextBeat: the next heartbeat is due no sooner than the interval and
// less than one grid step later, on the grid, so that streams of any
// phase beat together.
func TestNextBeat(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 5 * time.Minute} {
		for range 50 {
			before := time.Now()
			d := nextBeat(interval)
			at := before.Add(d)
			if d < interval-time.Millisecond || d >= interval+beatGrid {
				t.Fatalf("interval %v: next beat in %v, want within [%v, %v)", interval, d, interval, interval+beatGrid)
			}
			// On the grid, give or take the time between the two clock
			// readings.
			if off := time.Duration(at.UnixNano() % int64(beatGrid)); off > time.Millisecond && off < beatGrid-time.Millisecond {
				t.Fatalf("interval %v: beat at %v is %v off the %v grid", interval, at, off, beatGrid)
			}
			time.Sleep(time.Duration(before.UnixNano()%7) * time.Millisecond) // vary the phase
		}
	}
}
