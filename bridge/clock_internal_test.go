package bridge

import (
	"testing"
	"time"
)

// TestGridSteps: a time's step is the first grid instant at or after it,
// on the monotonic clock from the clock's epoch.
func TestGridSteps(t *testing.T) {
	g := newGridClock()
	for _, d := range []time.Duration{0, time.Nanosecond, beatGrid - 1, beatGrid, beatGrid + 1, 5*time.Second + 3*time.Millisecond, 5 * time.Minute} {
		at := g.epoch.Add(d)
		st := g.stepTime(g.stepOf(at))
		if st.Before(at) || !st.Before(at.Add(beatGrid)) {
			t.Errorf("epoch+%v: step at epoch+%v, want the first grid instant at or after it", d, st.Sub(g.epoch))
		}
		if off := st.Sub(g.epoch) % beatGrid; off != 0 {
			t.Errorf("epoch+%v: step %v off the grid", d, off)
		}
	}
}

// TestGridClock: streams due in the same step share its channel, which
// closes at the step's instant; a step already past is closed at once.
func TestGridClock(t *testing.T) {
	g := newGridClock()
	now := time.Now()
	s := g.stepOf(now.Add(300 * time.Millisecond))
	a, b := g.at(s), g.at(s)
	if a != b {
		t.Fatal("two waits for one step got different channels")
	}
	if at := g.stepTime(s); at.Before(now.Add(300*time.Millisecond)) || !at.Before(now.Add(300*time.Millisecond+beatGrid)) {
		t.Fatalf("step at %v, want the first grid instant after %v", at, now.Add(300*time.Millisecond))
	}
	select {
	case <-a:
		if time.Now().Before(g.stepTime(s)) {
			t.Errorf("closed %v before its step", g.stepTime(s).Sub(time.Now()))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the step's channel did not close")
	}
	select {
	case <-g.at(s - 3):
	default:
		t.Error("a step already past is not closed")
	}
	if len(g.steps) != 0 {
		t.Errorf("%d steps kept after they fired", len(g.steps))
	}
}

// TestStreamClock: a stream wakes at its puller's due time when that
// comes first (not a heartbeat), then at the heartbeat; a send moves the
// heartbeat on, and the stream keeps waiting for the earlier step.
func TestStreamClock(t *testing.T) {
	g := newGridClock()
	start := time.Now()
	due := start.Add(50 * time.Millisecond)
	c := newStreamClock(g, time.Second, due)
	wait := func(what string) (time.Time, bool) {
		t.Helper()
		select {
		case <-c.ch:
			return c.woke()
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no wake", what)
			return time.Time{}, false
		}
	}
	at, beat := wait("due")
	if at.Before(due) || beat {
		t.Fatalf("woke for %v after start (heartbeat: %v), want the due time %v, not a heartbeat", at.Sub(start), beat, due.Sub(start))
	}
	c.rearm(time.Time{}) // the puller wants nothing
	at, beat = wait("heartbeat")
	if !beat || at.Before(start.Add(time.Second)) {
		t.Fatalf("woke for %v after start (heartbeat: %v), want the heartbeat after 1s", at.Sub(start), beat)
	}
	now := time.Now()
	c.sent(now)
	c.rearm(time.Time{})
	waiting := c.waiting
	c.sent(now.Add(100 * time.Millisecond)) // a send: the heartbeat moves on
	c.rearm(time.Time{})
	if c.waiting != waiting {
		t.Errorf("rearm after a send moved the wait from step %d to %d; it waits for the earlier one", waiting, c.waiting)
	}
	if d := g.stepTime(c.beat).Sub(now); d < time.Second || d >= time.Second+100*time.Millisecond+beatGrid {
		t.Errorf("after a send, the next heartbeat is %v away, want about the interval", d)
	}
}

// TestPullExpiryOnGrid: a puller's request ends on a step of the grid, at
// most a step before its full expiry; a limit too short to shorten (the
// consumer's max_expires) is kept whole, and without a grid nothing moves.
func TestPullExpiryOnGrid(t *testing.T) {
	g := newGridClock()
	p := &puller{expires: pullExpires, grid: g}
	for _, d := range []time.Duration{0, time.Nanosecond, 3 * time.Millisecond, beatGrid - 1, beatGrid, 7*time.Second + 123*time.Microsecond} {
		now := g.epoch.Add(d)
		e := p.expiry(now)
		if e > pullExpires || e <= pullExpires-beatGrid {
			t.Errorf("epoch+%v: expiry %v, want within a step below %v", d, e, pullExpires)
		}
		if off := now.Add(e).Sub(g.epoch) % beatGrid; off != 0 {
			t.Errorf("epoch+%v: request ends %v off the grid", d, off)
		}
	}
	short := &puller{expires: 300 * time.Millisecond, grid: g}
	if e := short.expiry(g.epoch.Add(100 * time.Millisecond)); e != 300*time.Millisecond {
		t.Errorf("max_expires 300ms at a step's 100ms: expiry %v, want it whole", e)
	}
	if e := (&puller{expires: pullExpires}).expiry(time.Now()); e != pullExpires {
		t.Errorf("no grid: expiry %v, want %v", e, pullExpires)
	}
}
