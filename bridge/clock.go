package bridge

import (
	"sync"
	"time"
)

// beatGrid is the step of the grid clock: every stream's heartbeat and
// wake-up falls on a step, so the heartbeats of the streams sharing a
// connection go out together, in one write, rather than one system call
// each (10,000 idle streams at 5s cost a quarter of a core otherwise).
const beatGrid = 250 * time.Millisecond

// gridClock closes a channel at each step of the heartbeat grid that a
// stream waits for: every stream due in the same step waits on the same
// channel, so a Subscribe or Consume stream keeps no timer of its own
// (a timer is 240 B of heap; 10,000 idle streams at a 5 s heartbeat share
// about twenty channels and timers). Steps are counted in beatGrid units
// from the clock's epoch on the monotonic clock, so a jump of the wall
// clock moves nothing; a channel asked for a step already past is closed.
type gridClock struct {
	epoch time.Time // with its monotonic reading
	mu    sync.Mutex
	steps map[int64]chan struct{} // not yet closed
	last  int64                   // steps up to last are closed
	done  chan struct{}           // closed: for steps already past
}

func newGridClock() *gridClock {
	g := &gridClock{epoch: time.Now(), steps: make(map[int64]chan struct{}), done: make(chan struct{})}
	close(g.done)
	return g
}

// stepOf is the first step at or after t (a time.Now reading, or one
// derived from it).
func (g *gridClock) stepOf(t time.Time) int64 {
	d := t.Sub(g.epoch)
	s := int64(d / beatGrid)
	if d%beatGrid > 0 {
		s++
	}
	return s
}

// floor is the last step at or before t (a time.Now reading, or one
// derived from it, not before the clock's epoch).
func (g *gridClock) floor(t time.Time) time.Time {
	return g.stepTime(int64(t.Sub(g.epoch) / beatGrid))
}

// stepTime is the instant of step s.
func (g *gridClock) stepTime(s int64) time.Time { return g.epoch.Add(time.Duration(s) * beatGrid) }

// at returns the channel closed at step s.
func (g *gridClock) at(s int64) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s <= g.last {
		return g.done
	}
	ch, ok := g.steps[s]
	if !ok {
		ch = make(chan struct{})
		g.steps[s] = ch
		time.AfterFunc(time.Until(g.stepTime(s)), func() { g.fire(s) })
	}
	return ch
}

// fire closes the channels of step s and of any before it.
func (g *gridClock) fire(s int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, ch := range g.steps {
		if k <= s {
			close(ch)
			delete(g.steps, k)
		}
	}
	g.last = max(g.last, s)
}

// streamClock is when a stream next wants to wake: for its heartbeat, or
// for its puller's due time, whichever is first, in grid steps.
type streamClock struct {
	grid     *gridClock
	interval time.Duration
	beat     int64           // step of the next heartbeat
	waiting  int64           // step ch closes at
	ch       <-chan struct{} // what the stream waits on
}

func newStreamClock(grid *gridClock, interval time.Duration, due time.Time) *streamClock {
	c := &streamClock{grid: grid, interval: interval}
	c.sent(time.Now())
	c.waiting = c.first(due)
	c.ch = grid.at(c.waiting)
	return c
}

func (c *streamClock) first(due time.Time) int64 {
	if !due.IsZero() {
		return min(c.grid.stepOf(due), c.beat)
	}
	return c.beat
}

// sent moves the heartbeat to the first step an interval past now: the
// client just heard from the stream. The stream still wakes at the step
// it waits for, and then waits again.
func (c *streamClock) sent(now time.Time) { c.beat = c.grid.stepOf(now.Add(c.interval)) }

// woke is called when ch closed: it returns the step's instant, for the
// puller's tick, and whether the heartbeat is due. The caller then calls
// rearm.
func (c *streamClock) woke() (time.Time, bool) {
	s := c.waiting
	c.ch = nil
	return c.grid.stepTime(s), c.beat <= s
}

// rearm waits for the first of the heartbeat and due (zero: the puller
// wants nothing), if that is before the step waited for (or nothing is).
func (c *streamClock) rearm(due time.Time) {
	if s := c.first(due); c.ch == nil || s < c.waiting {
		c.waiting, c.ch = s, c.grid.at(s)
	}
}
