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
			at := nextBeat(before, interval)
			if d := at.Sub(before); d < interval || d >= interval+beatGrid {
				t.Fatalf("interval %v: next beat in %v, want within [%v, %v)", interval, d, interval, interval+beatGrid)
			}
			if off := time.Duration(at.UnixNano() % int64(beatGrid)); off != 0 {
				t.Fatalf("interval %v: beat at %v is %v off the %v grid", interval, at, off, beatGrid)
			}
			time.Sleep(time.Duration(before.UnixNano()%7) * time.Millisecond) // vary the phase
		}
	}
}

// TestStreamTimer: a stream's one timer goes off at the puller's due time
// when that comes first (not a heartbeat), then at the heartbeat; a send
// moves the heartbeat on.
func TestStreamTimer(t *testing.T) {
	start := time.Now()
	due := start.Add(50 * time.Millisecond)
	c := newStreamTimer(time.Second, due)
	defer c.t.Stop()
	wait := func(what string) time.Time {
		t.Helper()
		select {
		case now := <-c.t.C:
			return now
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the timer did not go off", what)
			return time.Time{}
		}
	}
	now := wait("due")
	if now.Before(due) || c.fired(now) {
		t.Fatalf("went off %v after start, heartbeat due %v: want the due time, not a heartbeat", now.Sub(start), c.beat.Sub(start))
	}
	c.rearm(time.Time{}) // the puller wants no tick
	now = wait("heartbeat")
	if !c.fired(now) {
		t.Fatalf("went off %v after start, heartbeat due %v: want the heartbeat", now.Sub(start), c.beat.Sub(start))
	}
	c.sent(now)
	if d := c.beat.Sub(now); d < time.Second || d >= time.Second+beatGrid {
		t.Errorf("after a send, the next heartbeat is %v away, want about the interval", d)
	}
	c.rearm(time.Time{})
	c.rearm(time.Time{}) // set already: no change
	if !c.set.Equal(c.beat) {
		t.Errorf("set for %v, want the heartbeat %v", c.set, c.beat)
	}
}
