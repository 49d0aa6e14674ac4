package bridge

import (
	"strconv"
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

// TestHeldRing: a Subscribe's held deliveries come back oldest first; the
// expired ones go from the front, the oldest go past maxTracked, and the
// ring grows no larger than maxTracked.
func TestHeldRing(t *testing.T) {
	var h heldRing
	t0 := time.Now()
	reply := func(i int) string { return "r" + strconv.Itoa(i) }
	// 100 deliveries, each with a deadline 50 steps after it.
	for i := range 100 {
		h.add(delivery{reply: reply(i), deadline: t0.Add(time.Duration(i+50) * time.Second)}, t0.Add(time.Duration(i)*time.Second))
	}
	got := h.all()
	if len(got) != 50 || got[0].reply != reply(50) || got[49].reply != reply(99) {
		t.Fatalf("after 100 deliveries with 50s deadlines: %d held, from %q to %q; want 50, r50 to r99", len(got), got[0].reply, got[len(got)-1].reply)
	}
	// Far more than the bound, none expired.
	var b heldRing
	far := t0.Add(time.Hour)
	for i := range maxTracked + 1000 {
		b.add(delivery{reply: reply(i), deadline: far}, t0)
	}
	all := b.all()
	if len(all) != maxTracked || all[0].reply != reply(1000) || all[len(all)-1].reply != reply(maxTracked+999) || len(b.buf) != maxTracked {
		t.Fatalf("past the bound: %d held (ring of %d), from %q to %q", len(all), len(b.buf), all[0].reply, all[len(all)-1].reply)
	}
	for i, d := range all {
		if d.reply != reply(1000+i) {
			t.Fatalf("held[%d] = %q, want %q: out of order", i, d.reply, reply(1000+i))
		}
	}
}

// TestHeldRingShrinks: after a burst, a ring left a quarter full halves at
// each trim, and a quiet stream's trims give the memory back.
func TestHeldRingShrinks(t *testing.T) {
	var h heldRing
	t0 := time.Now()
	for i := range 4096 {
		h.add(delivery{reply: "r" + strconv.Itoa(i), deadline: t0.Add(time.Duration(i) * time.Millisecond)}, t0)
	}
	if len(h.buf) != 4096 {
		t.Fatalf("ring of %d after 4096 deliveries", len(h.buf))
	}
	// Later, all but the last 10 have expired: each trim halves the ring.
	later := t0.Add(4086 * time.Millisecond)
	for range 20 {
		h.trim(later, maxTracked)
	}
	got := h.all()
	if len(got) != 9 || got[0].reply != "r4087" || got[8].reply != "r4095" {
		t.Fatalf("after expiry: %d held, %v", len(got), got)
	}
	if len(h.buf) != 32 {
		t.Errorf("ring of %d for 9 deliveries, want 32 (halved while under a quarter full)", len(h.buf))
	}
}
