package bench

import (
	"fmt"
	"time"
)

// agentOps are the equivalent operations of the two agents.
type agentOps interface {
	ping() error
	pingPipeline(n, window int) error
	systemInfo() error
	networkInfo() error
	diskUsage() error
	execTrue() error
	readFile(path string) ([]byte, error)
	writeFile(path string, data []byte) error
}

// target is one running agent with its connection.
type target struct {
	name string
	proc *process
	conn *conn
	ops  agentOps
	// files the file workloads use
	readPath, writePath string
}

// sample is one round's values of a workload.
type sample map[figureKey]float64

// cpuUse is the agent CPU time a round used over its operations. Ticks of
// /proc/PID/stat are 10 ms, so CPU per operation is computed from the sums
// over all rounds rather than as a median of rounds.
type cpuUse struct {
	cpu time.Duration
	ops int
}

// workload is one equivalent pair of operations.
type workload struct {
	name    string
	ops     int       // operations per round
	warmup  int       // unmeasured operations before the first round
	cpuKey  figureKey // agent CPU per operation, over all rounds
	cpuUnit time.Duration
	run     func(t *target, n int) (sample, cpuUse, error)
}

// cpuPerOp is the agent CPU per operation of use in the workload's unit.
func (w workload) cpuPerOp(use cpuUse) float64 {
	return float64(use.cpu) / float64(w.cpuUnit) / float64(use.ops)
}

// latencyKeys are the figures a request/response workload produces; an
// empty key is not reported.
type latencyKeys struct {
	p50, p99, rps, cpu figureKey
}

// pipelineWindow is the number of requests kept in flight by the
// pipelined ping workload.
const pipelineWindow = 8

// measure runs op n times, timing each call, and returns the per-call
// latencies, the wall time and the agent's CPU time over all of them.
func measure(t *target, n int, op func() error) (lat []time.Duration, wall, cpu time.Duration, err error) {
	lat = make([]time.Duration, n)
	cpu0, err := t.proc.cpuTime()
	if err != nil {
		return nil, 0, 0, err
	}
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		if err := op(); err != nil {
			return nil, 0, 0, fmt.Errorf("%s: %w", t.name, err)
		}
		lat[i] = time.Since(t0)
	}
	wall = time.Since(start)
	cpu1, err := t.proc.cpuTime()
	if err != nil {
		return nil, 0, 0, err
	}
	return lat, wall, cpu1 - cpu0, nil
}

// latencyWorkload measures a request/response call: p50, p99, requests
// per second and agent CPU per call.
func latencyWorkload(name string, keys latencyKeys, ops, warmup int, op func(agentOps) error) workload {
	return workload{name: name, ops: ops, warmup: warmup, cpuKey: keys.cpu, cpuUnit: time.Microsecond, run: func(t *target, n int) (sample, cpuUse, error) {
		lat, wall, cpu, err := measure(t, n, func() error { return op(t.ops) })
		if err != nil {
			return nil, cpuUse{}, err
		}
		s := sample{}
		for k, v := range map[figureKey]float64{
			keys.p50: micros(percentile(lat, 50)),
			keys.p99: micros(percentile(lat, 99)),
			keys.rps: float64(n) / wall.Seconds(),
		} {
			if k != "" {
				s[k] = v
			}
		}
		return s, cpuUse{cpu, n}, nil
	}}
}

// pipelineWorkload measures pings with pipelineWindow requests in flight
// on one connection.
func pipelineWorkload(ops int) workload {
	return workload{name: "ping_pipe8", ops: ops, warmup: ops / 10, cpuKey: keyPingPipeCPU, cpuUnit: time.Microsecond, run: func(t *target, n int) (sample, cpuUse, error) {
		_, wall, cpu, err := measure(t, 1, func() error { return t.ops.pingPipeline(n, pipelineWindow) })
		if err != nil {
			return nil, cpuUse{}, err
		}
		return sample{keyPingPipeRPS: float64(n) / wall.Seconds()}, cpuUse{cpu, n}, nil
	}}
}

// fileWorkload measures reading or writing a file of size bytes: MiB/s
// and agent CPU (ms) per transfer, checking the content after the timed part.
func fileWorkload(name string, mibps, cpuKey figureKey, ops int, data []byte, write bool) workload {
	return workload{name: name, ops: ops, warmup: 1, cpuKey: cpuKey, cpuUnit: time.Millisecond, run: func(t *target, n int) (sample, cpuUse, error) {
		var got []byte
		op := func() error {
			var err error
			got, err = t.ops.readFile(t.readPath)
			return err
		}
		if write {
			op = func() error { return t.ops.writeFile(t.writePath, data) }
		}
		_, wall, cpu, err := measure(t, n, op)
		if err != nil {
			return nil, cpuUse{}, err
		}
		if write {
			got, err = readFileBytes(t.writePath)
			if err != nil {
				return nil, cpuUse{}, err
			}
		}
		if err := sameContent(got, data); err != nil {
			return nil, cpuUse{}, fmt.Errorf("%s %s: %w", t.name, name, err)
		}
		mib := float64(len(data)) / (1 << 20)
		return sample{mibps: mib * float64(n) / wall.Seconds()}, cpuUse{cpu, n}, nil
	}}
}
