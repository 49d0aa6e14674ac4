package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Metric keys of CPU accounting: the messages a throughput run completed,
// and the CPU time per message of each process, in microseconds.
const (
	mMsgs      = "msgs"
	mCPUClient = "cpu.client" // the bench process: load generator
	mCPUBridge = "cpu.bridge"
	mCPUEcho   = "cpu.echo" // the gRPC echo process, while one runs
	mCPUNATS   = "cpu.nats"
	mCPUTotal  = "cpu.total"
	mCores     = "cores" // CPU time of all the processes over the run's wall time
)

// meterKey carries the env whose processes a run's CPU is read from.
type meterKey struct{}

// withMeter lets the runs under ctx read the CPU of e's processes.
func withMeter(ctx context.Context, e *env) context.Context {
	return context.WithValue(ctx, meterKey{}, e)
}

// window is one measured run, from startWindow to throughput: its wall
// time and, when ctx has a meter, the CPU each process used in it. Only
// the measured part of a run is billed, not its setup or teardown.
type window struct {
	t0   time.Time
	e    *env
	cpu0 cpuSample
}

func startWindow(ctx context.Context) window {
	w := window{t0: time.Now()}
	if e, ok := ctx.Value(meterKey{}).(*env); ok {
		if s, err := e.cpuNow(); err == nil {
			w.e, w.cpu0 = e, s
		}
	}
	return w
}

// throughput ends the window: n messages completed in it.
func (w window) throughput(n int64) measurement {
	m := measurement{mRate: rate(n, time.Since(w.t0)), mMsgs: float64(n)}
	if w.e != nil {
		if s, err := w.e.cpuNow(); err == nil {
			m.addCPU(s.since(w.cpu0))
		}
	}
	return m
}

// cpuSample is the CPU time used so far by each process, and the wall
// clock when read.
type cpuSample struct {
	client, bridge, nats, echo time.Duration
	at                         time.Time
}

// cpuUse is the CPU time each process used over wall.
type cpuUse struct {
	client, bridge, nats, echo, wall time.Duration
}

// since is the CPU used from b to a.
func (a cpuSample) since(b cpuSample) cpuUse {
	return cpuUse{client: a.client - b.client, bridge: a.bridge - b.bridge, nats: a.nats - b.nats, echo: a.echo - b.echo, wall: a.at.Sub(b.at)}
}

// cpuNow reads the CPU time of the bench process, the bridge, nats-server
// and the echo process when one runs.
func (e *env) cpuNow() (cpuSample, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuSample{}, fmt.Errorf("getrusage: %w", os.NewSyscallError("getrusage", err))
	}
	s := cpuSample{client: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), at: time.Now()}
	var err error
	if s.bridge, err = cpuTime(e.bridgeProc.pid()); err != nil {
		return s, err
	}
	if s.nats, err = cpuTime(e.natsProc.pid()); err != nil {
		return s, err
	}
	if p := e.echoProc.Load(); p != nil {
		if s.echo, err = cpuTime(p.pid()); err != nil {
			return s, err
		}
	}
	return s, nil
}

// addCPU records d, the CPU used during the run, per message of m; a run
// that counted no messages gets none.
func (m measurement) addCPU(d cpuUse) {
	n := m[mMsgs]
	if n <= 0 {
		return
	}
	us := func(t time.Duration) float64 { return float64(t) / float64(time.Microsecond) / n }
	all := d.client + d.bridge + d.nats + d.echo
	m[mCPUClient], m[mCPUBridge], m[mCPUNATS], m[mCPUEcho] = us(d.client), us(d.bridge), us(d.nats), us(d.echo)
	m[mCPUTotal] = us(all)
	if d.wall > 0 {
		m[mCores] = float64(all) / float64(d.wall)
	}
}

// cpuSplit is the median CPU per message of one side, by process.
type cpuSplit struct {
	Client float64 `json:"client_us"`
	Bridge float64 `json:"bridge_us"`
	NATS   float64 `json:"nats_us"`
	Echo   float64 `json:"echo_us,omitempty"` // the echo side's server
	Total  float64 `json:"total_us"`
	Cores  float64 `json:"cores"` // all the processes, over the run
}

// cpuOf summarizes one side's CPU keys over the rounds; nil without them.
func cpuOf(got map[string][]float64) *cpuSplit {
	med := func(k string) float64 {
		if s := summarize(got[k]); s != nil {
			return s.Median
		}
		return 0
	}
	if len(got[mCPUTotal]) == 0 {
		return nil
	}
	return &cpuSplit{Client: med(mCPUClient), Bridge: med(mCPUBridge), NATS: med(mCPUNATS), Echo: med(mCPUEcho), Total: med(mCPUTotal), Cores: med(mCores)}
}
