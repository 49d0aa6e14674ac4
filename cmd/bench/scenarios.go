package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// budget bounds every run in count and in time.
type budget struct {
	rounds      int
	runTime     time.Duration // one throughput run (scenarios 1, 2, 3)
	maxOps      int           // count bound of one throughput run
	consumeN    int           // messages queued for one consume run (4, 5)
	consumeTime time.Duration // time bound of one consume run
	fillTime    time.Duration // time bound of queuing consumeN messages
	fetchIters  int           // Fetch round trips of one run (6)
	fetchTime   time.Duration // time bound of one Fetch run
	e2eTime     time.Duration // one end-to-end latency run (7)
	idleStreams int           // idle Subscribe streams (8)
	idleWindow  time.Duration // CPU sampling window (8)
	idleSteady  time.Duration // wait after opening, before the window (8)
	idleRounds  int           // rounds of scenario 8 (a fresh bridge each)
	singles     bool          // also measure one message per request/event (1, 4, 5)
}

var (
	quickBudget = budget{
		rounds: 2, runTime: 400 * time.Millisecond, maxOps: 1_000_000,
		consumeN: 60_000, consumeTime: time.Second, fillTime: 10 * time.Second,
		fetchIters: 40, fetchTime: 1500 * time.Millisecond,
		e2eTime:     600 * time.Millisecond,
		idleStreams: 1000, idleWindow: 4 * time.Second, idleRounds: 1,
	}
	fullBudget = budget{
		rounds: 5, runTime: 1500 * time.Millisecond, maxOps: 5_000_000,
		consumeN: 1_000_000, consumeTime: 3 * time.Second, fillTime: 30 * time.Second,
		fetchIters: 200, fetchTime: 3 * time.Second,
		e2eTime:     3 * time.Second,
		idleStreams: 10_000, idleWindow: idlePullCycle, idleSteady: idlePullCycle, idleRounds: 1,
		singles: true,
	}
)

// idlePullCycle is how often an idle stream renews its pull request (the
// bridge's pull expiry, 30 s). The full run measures the idle streams in
// their steady state: it waits one cycle after opening them (their first
// renewals are spread over the opening, which took nats-server 20 s), then
// reads CPU over one whole cycle, in which every stream renews exactly once,
// and RSS at its end. A 5 s window right after the opening saw no renewal
// and a heap that had not yet grown with the idle streams' garbage: it read
// idle CPU about 1 point and RSS about 2 KiB per stream low.
const idlePullCycle = 30 * time.Second

// payloadSizes are the payloads every per-payload scenario runs with.
var payloadSizes = []int{128, 1024}

func sizeLabel(size int) string {
	if size >= 1024 && size%1024 == 0 {
		return fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("%dB", size)
}

// makePayload is size bytes of a fixed pattern.
func makePayload(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// measurement is one side's metrics of one run, by metric key.
type measurement map[string]float64

// Metric keys.
const (
	mRate = "msgs/s"
	mP50  = "p50"
	mP99  = "p99"
)

// params is what one round of a scenario gets.
type params struct {
	size    int
	payload []byte
	round   int
	b       budget
	notes   *notebook // remarks for the table's notes
}

// names derives fresh stream and subject names for one run.
func (p params) names(scenario int, side string) (stream, subject string) {
	stream = fmt.Sprintf("BENCH%d_%s_R%d_%s", scenario, sizeLabel(p.size), p.round, strings.ToUpper(side))
	return stream, strings.ToLower(stream)
}

// rowSpec says how one table row is built from the sides' measurements.
type rowSpec struct {
	metric string // measurement key
	label  string // metric column
	unit   string
	side   string // normally "bridge"
	base   string // side compared against; "" none
	tgt    target
	// singles: only when the budget measures one message per
	// request/event (the full run).
	singles bool
}

// scenario is one comparison.
type scenario struct {
	id         int
	name       string
	perPayload bool // runs once per payload size; otherwise once per round
	rows       []rowSpec
	// round runs every side once, in the order alternate gives. nil:
	// not implemented (shown as skipped).
	round func(ctx context.Context, e *env, p params) (map[string]measurement, error)
}

// baselineName is how a side shows in the table's vs column.
var baselineName = map[string]string{"native": "native", "echo": "grpc-echo", "grpc": "grpc-unary"}

var scenarios = []scenario{
	{id: 1, name: "PublishStream (4096 in flight)", perPayload: true, round: publishStreamRound, rows: []rowSpec{
		{metric: mRate, label: "msgs/s", unit: "msgs/s", side: "bridge", base: "native", tgt: target{ratioAtLeast, 0.80}},
		{metric: mRate, label: "msgs/s 1/request", unit: "msgs/s", side: "single", base: "native", singles: true},
	}},
	{id: 2, name: "unary Publish ×64", perPayload: true, round: unaryRound, rows: []rowSpec{
		{metric: mRate, label: "msgs/s", unit: "msgs/s", side: "bridge", base: "echo", tgt: target{ratioAtLeast, 0.70}},
		{metric: mRate, label: "msgs/s", unit: "msgs/s", side: "bridge", base: "native"},
		{metric: mP50, label: "p50", unit: "ms", side: "bridge", base: "native"},
		{metric: mP99, label: "p99", unit: "ms", side: "bridge", base: "native"},
		{metric: mP50, label: "p50", unit: "ms", side: "bridge", base: "echo"},
	}},
	{id: 3, name: "REST publish ×64 (HTTP/1.1)", perPayload: true, round: restRound, rows: []rowSpec{
		{metric: mRate, label: "msgs/s", unit: "msgs/s", side: "bridge", base: "grpc", tgt: target{ratioAtLeast, 0.50}},
		{metric: mP50, label: "p50", unit: "ms", side: "bridge", base: "grpc"},
		{metric: mP99, label: "p99", unit: "ms", side: "bridge", base: "grpc"},
	}},
	{id: 4, name: "Consume, inline acks", perPayload: true, round: consumeRound, rows: []rowSpec{
		{metric: mRate, label: "msgs/s", unit: "msgs/s", side: "bridge", base: "native", tgt: target{ratioAtLeast, 0.80}},
		{metric: mRate, label: "msgs/s 1/event", unit: "msgs/s", side: "single", base: "native", singles: true},
	}},
	{id: 5, name: "Subscribe + Ack×100", perPayload: true, round: subscribeAckRound, rows: []rowSpec{
		{metric: mRate, label: "msgs/s", unit: "msgs/s", side: "bridge", base: "native", tgt: target{ratioAtLeast, 0.50}},
		{metric: mRate, label: "msgs/s 1/event", unit: "msgs/s", side: "single", base: "native", singles: true},
	}},
	{id: 6, name: "Fetch batch 100", perPayload: true, round: fetchRound, rows: []rowSpec{
		{metric: mP50, label: "p50", unit: "ms", side: "bridge", base: "native", tgt: target{addedAtMost, 0.5}},
		{metric: mP99, label: "p99", unit: "ms", side: "bridge", base: "native"},
		{metric: mP50, label: "p50", unit: "ms", side: "bridge", base: "echo"},
	}},
	{id: 7, name: "end-to-end @1000 msg/s", perPayload: true, round: e2eRound, rows: []rowSpec{
		{metric: mP50, label: "p50", unit: "ms", side: "bridge", base: "native"},
		{metric: mP99, label: "p99", unit: "ms", side: "bridge", base: "native", tgt: target{addedAtMost, 1.0}},
		{metric: mP50, label: "gRPC echo round trip p50", unit: "ms", side: "echo"},
		{metric: mP99, label: "gRPC echo round trip p99", unit: "ms", side: "echo"},
	}},
	{id: 8, name: "idle Subscribe streams", perPayload: false, round: idleRound, rows: []rowSpec{
		{metric: "rss", label: "RSS/stream", unit: "KiB", side: "bridge", tgt: target{valueAtMost, 16}},
		{metric: "rss.open", label: "RSS/stream just opened", unit: "KiB", side: "bridge"},
		{metric: "cpu", label: "idle CPU", unit: "%", side: "bridge", tgt: target{valueAtMost, 5}},
		{metric: "open", label: "open all", unit: "s", side: "bridge"},
	}},
	{id: 9, name: "push to a local HTTP receiver", perPayload: true, round: pushRound, rows: []rowSpec{
		{metric: mP50, label: "publish→endpoint p50 @1000 msg/s", unit: "ms", side: "bridge"},
		{metric: mP99, label: "publish→endpoint p99 @1000 msg/s", unit: "ms", side: "bridge"},
		{metric: mRate, label: "msgs/s (concurrency 64)", unit: "msgs/s", side: "bridge"},
	}},
}
