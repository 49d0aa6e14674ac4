// Package faults is Jetway's fault-injection suite: scenarios that run a
// real nats-server (or three) and a real bridge as child processes on
// loopback, inject faults (SIGKILL, SIGSTOP, leader kills, network faults)
// while clients publish and consume through the bridge's gRPC API, and then
// check with a Jepsen-style loss checker that nothing acknowledged was lost,
// nothing was invented or stored twice, and every stored message was
// delivered. The scenarios are in the package's tests; this file is the
// checker. See docs/reliability.md.
package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// State is what a client knows of one publish.
type State int

// The states of a publish, from least to most known.
const (
	// Attempted: sent, no answer yet.
	Attempted State = iota
	// Unknown: the last answer was a timeout or UNAVAILABLE: it may or may
	// not be stored.
	Unknown
	// Failed: refused with an error that says it was not stored.
	Failed
	// Acked: Publish answered OK: it must be stored.
	Acked
)

func (s State) String() string {
	switch s {
	case Attempted:
		return "attempted"
	case Unknown:
		return "unknown"
	case Failed:
		return "failed"
	case Acked:
		return "acked"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

type record struct {
	state     State
	code      string // the last error's code (and reason)
	attempts  int
	seq       uint64 // the acked sequence
	delivered int    // deliveries seen by a consumer
	ackedBack bool   // a consumer's Ack of it answered OK
}

// Checker records what clients did and saw, then compares it with what the
// stream holds. It is safe for concurrent use.
type Checker struct {
	mu          sync.Mutex
	recs        map[string]*record
	order       []string
	errCodes    map[string]int // error code → count over all attempts
	calls       int
	lateCalls   []string // RPCs that returned later than deadline + grace
	worstOver   time.Duration
	longest     time.Duration
	faults      []fault
	permDuring  int // permanent errors answered while a fault was on
	faultActive int
}

type fault struct {
	what           string
	start, healed  time.Time
	recoveredAfter time.Duration // from healed to the first success; -1 until then
}

// NewChecker returns an empty checker.
func NewChecker() *Checker {
	return &Checker{recs: map[string]*record{}, errCodes: map[string]int{}}
}

func (c *Checker) rec(id string) *record {
	r := c.recs[id]
	if r == nil {
		r = &record{}
		c.recs[id] = r
		c.order = append(c.order, id)
	}
	return r
}

// Attempt records that a publish of id is being sent (again).
func (c *Checker) Attempt(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec(id)
	r.attempts++
}

// Acked records that a publish of id answered OK with sequence seq.
func (c *Checker) Acked(id string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec(id)
	r.state, r.seq, r.code = Acked, seq, ""
	c.successLocked(time.Now())
}

// StoredNatively records a publish of id acked with sequence seq that did
// not go through the bridge (a consumer scenario's feed): it is checked
// like any acked publish but does not count as the bridge's recovery.
func (c *Checker) StoredNatively(id string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec(id)
	r.state, r.seq, r.code = Acked, seq, ""
}

// Failed records a publish refused with code (not stored). It reports
// whether a fault was on (or had just healed): such errors are counted as
// Report.PermanentErrorsDuringFault.
func (c *Checker) Failed(id, code string) (duringFault bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec(id)
	if r.state != Acked {
		r.state, r.code = Failed, code
	}
	c.errCodes[code]++
	if c.faultActive > 0 || c.recentFaultLocked(time.Now()) {
		c.permDuring++
		return true
	}
	return false
}

// Unknown records an attempt of id that ended with code, a timeout or an
// unavailability: the message may or may not be stored.
func (c *Checker) Unknown(id, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec(id)
	if r.state != Acked {
		r.state, r.code = Unknown, code
	}
	c.errCodes[code]++
}

// Call records an RPC that took took under deadline; one that returns later
// than deadline + grace is reported as a violation.
func (c *Checker) Call(what string, took, deadline, grace time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.longest = max(c.longest, took)
	if over := took - deadline; over > c.worstOver {
		c.worstOver = over
	}
	if took > deadline+grace {
		c.lateCalls = append(c.lateCalls, fmt.Sprintf("%s took %s (deadline %s)", what, took.Round(time.Millisecond), deadline))
	}
}

// Success records a successful operation other than a publish (an ack, a
// delivery) for the recovery times.
func (c *Checker) Success() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.successLocked(time.Now())
}

func (c *Checker) successLocked(now time.Time) {
	for i := range c.faults {
		f := &c.faults[i]
		if !f.healed.IsZero() && f.recoveredAfter < 0 && now.After(f.healed) {
			f.recoveredAfter = now.Sub(f.healed)
		}
	}
}

// recentFaultLocked: a fault healed less than a second ago (its effects,
// such as an election, may still be under way).
func (c *Checker) recentFaultLocked(now time.Time) bool {
	for _, f := range c.faults {
		if !f.healed.IsZero() && (f.recoveredAfter < 0 || now.Sub(f.healed) < time.Second) {
			return true
		}
	}
	return false
}

// FaultStart records that a fault is injected; call the returned function
// once it is healed (the process restarted, the signal undone).
func (c *Checker) FaultStart(what string) (healed func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, fault{what: what, start: time.Now(), recoveredAfter: -1})
	i := len(c.faults) - 1
	c.faultActive++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.faults[i].healed = time.Now()
			c.faultActive--
		})
	}
}

// Delivered records a delivery of id by a consumer.
func (c *Checker) Delivered(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec(id).delivered++
	c.successLocked(time.Now())
}

// AckedBack records that a consumer's Ack of id answered OK.
func (c *Checker) AckedBack(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec(id).ackedBack = true
	c.successLocked(time.Now())
}

// AllAckedBack reports whether every id in ids has been acked back.
func (c *Checker) AllAckedBack(ids []string) (missing int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if r := c.recs[id]; r == nil || !r.ackedBack {
			missing++
		}
	}
	return missing
}

// UnackedDeliveries counts the ids delivered to a consumer whose Ack has
// not answered OK yet. JetStream can count an ack before its Ack call has
// returned to the client, so a scenario waits for this too before it
// stops its consumer (which would cancel the call in flight).
func (c *Checker) UnackedDeliveries() (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.recs {
		if r.delivered > 0 && !r.ackedBack {
			n++
		}
	}
	return n
}

// StoredMsg is one message read back from the stream.
type StoredMsg struct {
	Seq uint64
	ID  string // the body
}

// ReadStream reads every message of stream with an ordered consumer, up to
// the last sequence the stream reports at the start, within ctx. A fetch
// that fails (a cluster still settling: no responders, a consumer lost)
// is retried with a new ordered consumer from the next sequence.
func ReadStream(ctx context.Context, js jetstream.JetStream, stream string) ([]StoredMsg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	var out []StoredMsg
	next := uint64(1)
	var lastErr error
	for next <= last {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("read %d messages up to seq %d of %d: %w (last error: %v)", len(out), next-1, last, err, lastErr)
		}
		oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next,
		})
		if err != nil {
			lastErr = err
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		for next <= last && ctx.Err() == nil {
			batch, err := oc.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				lastErr = err
				break
			}
			for m := range batch.Messages() {
				md, err := m.Metadata()
				if err != nil {
					return out, err
				}
				out = append(out, StoredMsg{Seq: md.Sequence.Stream, ID: string(m.Data())})
				next = md.Sequence.Stream + 1
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				lastErr = err
				break
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return out, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Report is the outcome of a scenario: the figures of its FAULTS: line.
type Report struct {
	Scenario string `json:"scenario"`
	// Messages are the distinct ids attempted.
	Messages int `json:"messages"`
	// Acked, Failed, Unknown: the ids' final states as the clients saw them.
	Acked   int `json:"acked"`
	Failed  int `json:"failed"`
	Unknown int `json:"unknown"`
	// Stored is the number of messages the stream holds.
	Stored int `json:"stored"`
	// StoredFromUnknown are stored ids whose publish ended unknown.
	StoredFromUnknown int `json:"stored_from_unknown"`
	// FaultsInjected is the number of faults.
	FaultsInjected int `json:"faults_injected"`
	// Lost: acked but not stored.
	Lost int `json:"lost"`
	// Unexpected: stored but never attempted (or attempted and refused).
	Unexpected int `json:"unexpected"`
	// Duplicates: ids stored more than once.
	Duplicates int `json:"duplicates"`
	// Consumer figures (consumer scenarios only).
	Delivered           int `json:"delivered,omitempty"`
	DuplicateDeliveries int `json:"duplicate_deliveries"`
	AckedBack           int `json:"acked_back,omitempty"`
	NeverDelivered      int `json:"never_delivered"`
	// Calls is the number of RPCs timed; LateCalls those past their
	// deadline + 1 s; WorstOverDeadlineMs the worst time past a deadline.
	Calls               int   `json:"calls"`
	LateCalls           int   `json:"late_calls"`
	WorstOverDeadlineMs int64 `json:"worst_over_deadline_ms"`
	// LongestCallMs is the longest RPC.
	LongestCallMs int64 `json:"longest_call_ms"`
	// WorstRecoveryMs: the longest time from a fault's healing to the first
	// successful operation after it (-1: one never recovered).
	WorstRecoveryMs int64 `json:"worst_recovery_ms"`
	// PermanentErrorsDuringFault: permanent errors (such as NOT_FOUND)
	// answered while a fault was on or had just healed.
	PermanentErrorsDuringFault int `json:"permanent_errors_during_fault"`
	// ErrorCodes counts the errors of all attempts by code.
	ErrorCodes map[string]int `json:"error_codes,omitempty"`
	// Violations are the pass conditions that failed, with examples.
	Violations []string `json:"violations,omitempty"`
}

// Line is the machine-readable line: FAULTS: and the report as JSON.
func (r Report) Line() string {
	b, _ := json.Marshal(r)
	return "FAULTS: " + string(b)
}

// Summary is a human-readable line.
func (r Report) Summary() string {
	return fmt.Sprintf("%s: %d messages (%d acked, %d failed, %d unknown), %d stored, %d faults; lost %d, unexpected %d, duplicates %d, duplicate deliveries %d, never delivered %d; late calls %d; worst recovery %d ms",
		r.Scenario, r.Messages, r.Acked, r.Failed, r.Unknown, r.Stored, r.FaultsInjected, r.Lost, r.Unexpected, r.Duplicates, r.DuplicateDeliveries, r.NeverDelivered, r.LateCalls, r.WorstRecoveryMs)
}

// CheckOptions says which pass conditions apply.
type CheckOptions struct {
	// MsgIDs: publishes carried msg ids, so no id may be stored twice.
	MsgIDs bool
	// Consumer: a consumer read the stream; every stored message must have
	// been delivered and acked back.
	Consumer bool
}

// Check compares what the clients saw with stored, the stream's content.
func (c *Checker) Check(scenario string, stored []StoredMsg, opts CheckOptions) Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Report{Scenario: scenario, Messages: len(c.order), Stored: len(stored), FaultsInjected: len(c.faults),
		Calls: c.calls, LateCalls: len(c.lateCalls), WorstOverDeadlineMs: c.worstOver.Milliseconds(),
		LongestCallMs:              c.longest.Milliseconds(),
		PermanentErrorsDuringFault: c.permDuring, ErrorCodes: c.errCodes}
	if len(r.ErrorCodes) == 0 {
		r.ErrorCodes = nil
	}
	count := map[string]int{}
	var unexpected, dups []string
	for _, m := range stored {
		count[m.ID]++
		rec := c.recs[m.ID]
		switch {
		case rec == nil:
			unexpected = append(unexpected, fmt.Sprintf("seq %d %q", m.Seq, m.ID))
		case rec.state == Failed:
			unexpected = append(unexpected, fmt.Sprintf("seq %d %q (refused: %s)", m.Seq, m.ID, rec.code))
		}
		if count[m.ID] == 2 {
			dups = append(dups, m.ID)
		}
	}
	r.Unexpected, r.Duplicates = len(unexpected), len(dups)
	var lost, never []string
	for _, id := range c.order {
		rec := c.recs[id]
		switch rec.state {
		case Acked:
			r.Acked++
			if count[id] == 0 {
				lost = append(lost, fmt.Sprintf("%s (acked seq %d)", id, rec.seq))
			}
		case Failed:
			r.Failed++
		case Unknown, Attempted:
			r.Unknown++
			if count[id] > 0 {
				r.StoredFromUnknown++
			}
		}
		if opts.Consumer {
			if rec.delivered > 0 {
				r.Delivered++
				r.DuplicateDeliveries += rec.delivered - 1
			}
			if rec.ackedBack {
				r.AckedBack++
			}
			if count[id] > 0 && (rec.delivered == 0 || !rec.ackedBack) {
				never = append(never, fmt.Sprintf("%s (delivered %d, acked back %v)", id, rec.delivered, rec.ackedBack))
			}
		}
	}
	r.Lost, r.NeverDelivered = len(lost), len(never)
	for _, f := range c.faults {
		if f.recoveredAfter < 0 {
			r.WorstRecoveryMs = -1
			break
		}
		r.WorstRecoveryMs = max(r.WorstRecoveryMs, f.recoveredAfter.Milliseconds())
	}
	add := func(what string, list []string) {
		if len(list) > 0 {
			r.Violations = append(r.Violations, fmt.Sprintf("%s %d: %s", what, len(list), examples(list)))
		}
	}
	add("lost (acked, not stored)", lost)
	add("unexpected (stored, never attempted or refused)", unexpected)
	if opts.MsgIDs {
		add("duplicates stored despite msg ids", dups)
	}
	if opts.Consumer {
		add("stored but never delivered and acked back", never)
	}
	add("calls past deadline + 1s", c.lateCalls)
	if c.permDuring > 0 {
		// A client drops a message on a permanent error: during a fault
		// the bridge must answer UNAVAILABLE (retry) instead.
		r.Violations = append(r.Violations, fmt.Sprintf("permanent errors during a fault %d: %v", c.permDuring, c.errCodes))
	}
	return r
}

func examples(list []string) string {
	l := append([]string(nil), list...)
	sort.Strings(l)
	if len(l) > 5 {
		l = append(l[:5], "…")
	}
	return strings.Join(l, ", ")
}

// Recovered reports whether an operation succeeded after every fault
// healed.
func (c *Checker) Recovered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.faults {
		if f.healed.IsZero() || f.recoveredAfter < 0 {
			return false
		}
	}
	return true
}
