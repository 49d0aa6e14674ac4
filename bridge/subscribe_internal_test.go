package bridge

import (
	"strconv"
	"testing"
	"time"
)

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
