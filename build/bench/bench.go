// Package bench measures kvmmanager-agent side by side with the QEMU guest
// agent (qemu-ga) on the same machine in the same run: it starts both on
// unix sockets, drives them with one client holding one small codec per
// protocol, alternates rounds between them (A B A B …) and reports the
// median of each figure with the ratio ours/qemu-ga against the project's
// goals. It also measures the build (cold, warm, no-op and one-file
// rebuilds of `go tool mage iso` against a bare `go build`) and runs the
// agent's Go micro-benchmarks.
//
// The benchmark asserts nothing about speed: it reports.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/version"
)

// Options configure Run.
type Options struct {
	Root   string // module root
	Dist   string // output root; the reports go to Dist/bench
	Smoke  bool   // a few hundred operations, no build figures, no micro-benchmarks (CI)
	Rounds int    // rounds per workload and agent; default DefaultRounds, never fewer than MinRounds
	Build  bool   // measure the build figures (slow: a cold build from an empty cache)
	// BuildOnly measures the build figures alone (no agents, no
	// micro-benchmarks) into Dist/bench/report-build.*.
	BuildOnly bool
	Micro     bool      // run the agent's Go micro-benchmarks
	QemuGA    string    // qemu-ga executable; default "qemu-ga" on PATH, else /usr/sbin/qemu-ga
	Agent     string    // prebuilt agent executable; "" builds it as shipped
	Only      []string  // run only these workloads (for profiling); nil runs all
	Place     Placement // CPU placement of client and agents; default PlaceSame
	Out       io.Writer // progress; nil discards
}

// MinRounds is the least number of rounds a figure's median is taken over.
const MinRounds = 5

// DefaultRounds is the number of rounds when Options.Rounds is 0.
const DefaultRounds = 7

// Run builds the agent, benchmarks it against qemu-ga and writes
// Dist/bench/report.md and Dist/bench/report.json (report-smoke.* for a
// smoke run, so that it never replaces a real report). It returns the
// report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Rounds == 0 {
		opts.Rounds = DefaultRounds
		if opts.Smoke {
			opts.Rounds = MinRounds
		}
	}
	opts.Rounds = max(opts.Rounds, MinRounds)
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", opts.Root, err)
	}
	opts.Root = root
	if opts.Dist == "" {
		opts.Dist = filepath.Join(root, "dist")
	}
	if opts.BuildOnly {
		rep := &Report{Machine: machine(), BuildOnly: true}
		before := loadAverage()
		if rep.Build, err = measureBuild(ctx, root, opts.Out); err != nil {
			rep.Notes = append(rep.Notes, "build figures incomplete: "+err.Error())
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("load average (1, 5, 15 min) at the start: %s; at the end: %s", before, loadAverage()))
		return rep, rep.write(filepath.Join(opts.Dist, "bench"), rep.FileName())
	}
	qga, err := findQemuGA(opts.QemuGA)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "kvmbench-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	defer os.RemoveAll(work)

	rep := &Report{Machine: machine(), Smoke: opts.Smoke, Rounds: opts.Rounds}
	rep.Machine.QemuGAVersion = qemuGAVersion(qga)

	agentBin := opts.Agent
	if agentBin == "" {
		fmt.Fprintf(opts.Out, "bench: building the agent for linux/%s\n", runtime.GOARCH)
		if agentBin, err = buildAgent(ctx, root, work); err != nil {
			return nil, err
		}
	}
	if err := runAgents(ctx, opts, rep, work, agentBin, qga); err != nil {
		return nil, err
	}
	if opts.Micro && !opts.Smoke {
		fmt.Fprintln(opts.Out, "bench: go test -bench . -benchmem ./agent/...")
		rep.Micro, err = runMicro(ctx, root)
		if err != nil {
			rep.Notes = append(rep.Notes, "micro-benchmarks failed: "+err.Error())
		}
	}
	if opts.Build && !opts.Smoke {
		rep.Build, err = measureBuild(ctx, root, opts.Out)
		if err != nil {
			rep.Notes = append(rep.Notes, "build figures incomplete: "+err.Error())
		}
	}
	if err := rep.write(filepath.Join(opts.Dist, "bench"), rep.FileName()); err != nil {
		return rep, err
	}
	return rep, nil
}

// loadAverage is /proc/loadavg's first three fields, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// FileName is the base name of the report's files in Dist/bench: report,
// report-smoke for a smoke run and report-build for the build figures
// alone, so that neither replaces a full report.
func (r *Report) FileName() string {
	switch {
	case r.Smoke:
		return "report-smoke"
	case r.BuildOnly:
		return "report-build"
	}
	return "report"
}

func findQemuGA(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if p, err := exec.LookPath("qemu-ga"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/qemu-ga"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("qemu-ga not found on PATH nor at /usr/sbin/qemu-ga: install it (apt-get install qemu-guest-agent)")
}

func qemuGAVersion(path string) string {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// buildAgent builds the agent for the host architecture exactly as it is
// shipped (static, stripped, version stamped) into work.
func buildAgent(ctx context.Context, root, work string) (string, error) {
	info, err := version.Resolve(root)
	if err != nil {
		return "", err
	}
	bins, err := binaries.Build(ctx, binaries.Options{Root: root, Dist: work, Info: info, Arches: []string{runtime.GOARCH}})
	if err != nil {
		return "", err
	}
	for _, b := range bins {
		if b.Command.Name == binaries.Agent.Name {
			return b.Path, nil
		}
	}
	return "", errors.New("the agent was not built")
}

// benchConfig is the agent's configuration for the benchmark: the shipped
// config's keys, with the data directory readable and writable and room for the
// 10 MiB file workloads.
func benchConfig(dataDir string) map[string]any {
	return map[string]any{
		"allowed_read_paths":        []string{dataDir, "/etc", "/proc", "/sys"},
		"allowed_write_paths":       []string{dataDir},
		"command_whitelist_enabled": false,
		"command_whitelist":         []string{},
		"max_file_size_bytes":       fileSize + 1<<20,
		"command_timeout_seconds":   30,
		"log_level":                 "warn",
	}
}

// fileSize is the size of the file workloads.
const fileSize = 10 << 20

// counts are the operations per round of each workload.
type counts struct {
	pingSeq, pingPipe, info, exec, files int
}

func workloadCounts(smoke bool) counts {
	if smoke {
		return counts{pingSeq: 20, pingPipe: 40, info: 3, exec: 2, files: 1}
	}
	return counts{pingSeq: 3000, pingPipe: 10000, info: 200, exec: 100, files: 5}
}

// workloads are the workloads in the order they run, in two groups: the
// peak memory figure covers the second (the files) alone.
func workloads(c counts, data []byte) [2][]workload {
	return [2][]workload{{
		latencyWorkload("ping_seq", latencyKeys{p50: keyPingSeqP50, p99: keyPingSeqP99, rps: keyPingSeqRPS, cpu: keyPingSeqCPU},
			c.pingSeq, c.pingSeq/10, agentOps.ping),
		pipelineWorkload(c.pingPipe),
		latencyWorkload("system_info", latencyKeys{p50: keySystemInfoP50, cpu: keySystemInfoCPU}, c.info, 5, agentOps.systemInfo),
		latencyWorkload("network_info", latencyKeys{p50: keyNetworkInfoP50, cpu: keyNetworkInfoCPU}, c.info, 5, agentOps.networkInfo),
		latencyWorkload("disk_usage", latencyKeys{p50: keyDiskUsageP50, cpu: keyDiskUsageCPU}, c.info, 5, agentOps.diskUsage),
		latencyWorkload("exec", latencyKeys{p50: keyExecP50, cpu: keyExecCPU}, c.exec, 3, agentOps.execTrue),
	}, {
		fileWorkload("read", keyReadMiBps, keyReadCPU, c.files, data, false),
		fileWorkload("write", keyWriteMiBps, keyWriteCPU, c.files, data, true),
	}}
}

// pass is one side-by-side run of the workloads.
type pass struct {
	// qga: ours speaks its QGA dialect (--qga-listen) to the same client
	// as qemu-ga; otherwise protocol 1.0 with its own client.
	qga bool
	// loaded: a CPU hog runs on every core meanwhile, and only the
	// latency workloads of loadedWorkloads run.
	loaded bool
}

// loadedWorkloads run in the loaded pass: the tail latency of small calls.
var loadedWorkloads = []string{"ping_seq", "system_info"}

// runAgents runs the three passes: protocol 1.0 against qemu-ga (the main
// figures), the same protocol (our QGA dialect against qemu-ga with the
// identical client), and protocol 1.0 on a loaded machine.
func runAgents(ctx context.Context, opts Options, rep *Report, work, agentBin, qga string) error {
	size := fileSize
	if opts.Smoke {
		size = 1 << 20
	}
	fx, err := prepareFixtures(work, size)
	if err != nil {
		return err
	}
	for _, p := range []pass{{}, {qga: true}, {loaded: true}} {
		popts := opts
		if p.loaded {
			popts.Only = loadedWorkloads
			if opts.Only != nil {
				popts.Only = slices.DeleteFunc(slices.Clone(loadedWorkloads), func(w string) bool { return !slices.Contains(opts.Only, w) })
			}
			if len(popts.Only) == 0 {
				continue
			}
		}
		figs, err := runPass(ctx, popts, rep, fx, size, agentBin, qga, p)
		if err != nil {
			return err
		}
		switch {
		case p.qga:
			rep.SameProtocol = figs
		case p.loaded:
			rep.Loaded = figs
		default:
			rep.Figures = figs
		}
	}
	return nil
}

// runPass starts both agents, measures every figure side by side and
// returns them.
func runPass(ctx context.Context, opts Options, rep *Report, fx fixtures, size int, agentBin, qga string, p pass) ([]Figure, error) {
	switch {
	case p.qga:
		fmt.Fprintln(opts.Out, "bench: same protocol: our QGA dialect against qemu-ga, identical client")
	case p.loaded:
		fmt.Fprintf(opts.Out, "bench: loaded machine: a CPU hog on each of %d cores\n", runtime.NumCPU())
	}
	targets, stop, err := startAgents(ctx, opts, rep, fx, agentBin, qga, p.qga)
	defer stop()
	if err != nil {
		return nil, err
	}
	if p.loaded {
		stopHog, err := startCPUHog(ctx, runtime.NumCPU())
		if err != nil {
			return nil, err
		}
		defer stopHog()
	}
	// The measuring goroutine keeps this thread, bound to the client's CPU
	// by pinClient, until the agents are done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	release, err := pinClient(opts, rep, targets)
	if err != nil {
		return nil, err
	}
	defer release()

	v := newValues()
	// Idle memory: connected and synchronised, before any workload.
	time.Sleep(500 * time.Millisecond)
	if err := measureIdle(targets, v); err != nil {
		return nil, err
	}
	if err := runWorkloads(opts, rep, targets, workloads(workloadCounts(opts.Smoke), fx.data), v); err != nil {
		return nil, err
	}
	if p.qga || p.loaded {
		return figures(v, fmt.Sprintf("%d MiB", size>>20)), nil
	}
	if err := measureExecutables(rep, targets, v); err != nil {
		return nil, err
	}
	if q, ok := targets[1].ops.(*qgaAgent); ok && q.execs > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("qemu-ga exec: %.2f guest-exec-status polls per command on average", float64(q.polls)/float64(q.execs)))
	}
	return figures(v, fmt.Sprintf("%d MiB", size>>20)), nil
}

// startCPUHog starts n busy-looping processes (a shell loop each, outside
// the client's Go runtime) and returns the function that kills them.
func startCPUHog(ctx context.Context, n int) (func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for range n {
		c := exec.CommandContext(ctx, "/bin/sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start the CPU hog: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}

// fixtures are the files both agents work on.
type fixtures struct {
	work, dataDir, stateDir, config, readPath string
	data                                      []byte // the content of readPath and of every write
}

// prepareFixtures writes the agent's config, the qemu-ga state directory
// and the file the read workload reads (size random bytes) under work.
func prepareFixtures(work string, size int) (fixtures, error) {
	fx := fixtures{work: work, dataDir: filepath.Join(work, "data"), stateDir: filepath.Join(work, "qga-state"),
		config: filepath.Join(work, "config.json")}
	for _, d := range []string{fx.dataDir, fx.stateDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fx, fmt.Errorf("create %s: %w", d, err)
		}
	}
	cfg, err := json.MarshalIndent(benchConfig(fx.dataDir), "", "  ")
	if err != nil {
		return fx, fmt.Errorf("encode the benchmark config: %w", err)
	}
	if err := os.WriteFile(fx.config, cfg, 0o600); err != nil {
		return fx, fmt.Errorf("write %s: %w", fx.config, err)
	}
	fx.data = make([]byte, size)
	rand.NewChaCha8([32]byte{'k', 'v', 'm'}).Read(fx.data)
	fx.readPath = filepath.Join(fx.dataDir, "read.bin")
	if err := os.WriteFile(fx.readPath, fx.data, 0o600); err != nil {
		return fx, fmt.Errorf("write %s: %w", fx.readPath, err)
	}
	return fx, nil
}

// startAgents starts kvmmanager-agent and qemu-ga on unix sockets and
// connects to both. stop, never nil, closes what was opened and stops the
// agents, noting in rep an agent that had to be killed.
//
// With sameProtocol, ours listens with --qga-listen and is driven by the
// same QGA client as qemu-ga.
func startAgents(ctx context.Context, opts Options, rep *Report, fx fixtures, agentBin, qga string, sameProtocol bool) ([2]*target, func(), error) {
	var targets [2]*target
	var undo []func()
	stop := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	agentSock := filepath.Join(fx.work, "agent.sock")
	qgaSock := filepath.Join(fx.work, "qga.sock")
	fmt.Fprintf(opts.Out, "bench: starting %s and %s\n", agentBin, qga)
	listen := "--listen"
	if sameProtocol {
		listen = "--qga-listen"
	}
	os.Remove(agentSock)
	agentProc, err := startProcess(ctx, "kvmmanager-agent",
		[]string{agentBin, listen, "unix:" + agentSock, "--config", fx.config, "--log-level", "warn"},
		filepath.Join(fx.work, "agent.log"), agentSock)
	if err != nil {
		return targets, stop, err
	}
	undo = append(undo, func() {
		// The agent finishes in-flight requests for up to 5 s on SIGTERM.
		if agentProc.stop(7 * time.Second) {
			rep.Notes = append(rep.Notes, "kvmmanager-agent did not exit within 7 s of SIGTERM and was killed")
		}
	})
	// No -F: the fsfreeze hook stays disabled; -f keeps the pid file out
	// of /run so that a system qemu-ga is not disturbed.
	os.Remove(qgaSock)
	qgaProc, err := startProcess(ctx, "qemu-ga",
		[]string{qga, "-m", "unix-listen", "-p", qgaSock, "-t", fx.stateDir, "-f", filepath.Join(fx.stateDir, "qemu-ga.pid")},
		filepath.Join(fx.work, "qga.log"), qgaSock)
	if err != nil {
		return targets, stop, err
	}
	undo = append(undo, func() {
		if qgaProc.stop(3 * time.Second) {
			rep.Notes = append(rep.Notes, "qemu-ga did not exit within 3 s of SIGTERM and was killed (it occasionally ignores SIGTERM)")
		}
	})
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var agentCodec codec = jsonrpcCodec{}
	if sameProtocol {
		agentCodec = qgaCodec{}
	}
	agentConn, err := dial(dctx, agentSock, agentCodec)
	if err != nil {
		return targets, stop, fmt.Errorf("kvmmanager-agent: %w", err)
	}
	undo = append(undo, func() { agentConn.Close() })
	qgaConn, err := dial(dctx, qgaSock, qgaCodec{})
	if err != nil {
		return targets, stop, fmt.Errorf("qemu-ga: %w", err)
	}
	undo = append(undo, func() { qgaConn.Close() })
	var ours agentOps = kvmAgent{agentConn}
	if sameProtocol {
		ours = &qgaAgent{c: agentConn}
	}
	targets = [2]*target{
		{name: "kvmmanager-agent", proc: agentProc, conn: agentConn, ops: ours,
			readPath: fx.readPath, writePath: filepath.Join(fx.dataDir, "agent-write.bin")},
		{name: "qemu-ga", proc: qgaProc, conn: qgaConn, ops: &qgaAgent{c: qgaConn},
			readPath: fx.readPath, writePath: filepath.Join(fx.dataDir, "qga-write.bin")},
	}
	return targets, stop, nil
}

// pinClient places both agents on the agent CPU and the calling thread
// (locked to it by the caller) on the client CPU of opts.Place. The
// client's other threads (Go runtime, the pipelined workload's writer) stay
// unbound: binding them too lets the client runtime's background work
// preempt the agents and lengthens qemu-ga's tail several-fold. release
// unbinds the thread.
func pinClient(opts Options, rep *Report, targets [2]*target) (release func(), err error) {
	clientCPU, agentCPU, err := opts.Place.cpus()
	if err != nil || agentCPU < 0 {
		return func() {}, err
	}
	for _, t := range targets {
		if err := pinProcess(t.proc.pid(), agentCPU); err != nil {
			return func() {}, err
		}
	}
	if err := pinThread(clientCPU); err != nil {
		return func() {}, err
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("placement %s: client on CPU %d, both agents on CPU %d", placeName(opts.Place), clientCPU, agentCPU))
	return unpinThread, nil
}

// measureIdle records each agent's idle memory.
func measureIdle(targets [2]*target, v values) error {
	for i, t := range targets {
		m, err := t.proc.memory()
		if err != nil {
			return err
		}
		v[i][keyIdleRSS] = []float64{float64(m.RSS)}
		v[i][keyIdleAnon] = []float64{float64(m.RSSAnon)}
		v[i][keyIdleFile] = []float64{float64(m.RSSFile)}
	}
	return nil
}

// runWorkloads runs every workload (or those in opts.Only): warm-up, then
// opts.Rounds rounds alternating between the agents. Before the file
// workloads each agent's peak memory is reset, and after them it is
// recorded.
func runWorkloads(opts Options, rep *Report, targets [2]*target, groups [2][]workload, v values) error {
	ranFiles := false
	for gi, group := range groups {
		files := gi == 1
		if files {
			for _, t := range targets {
				if err := t.proc.resetPeak(); err != nil {
					rep.Notes = append(rep.Notes, err.Error()+"; the peak RSS figure covers the whole run")
				}
			}
		}
		for _, w := range group {
			if opts.Only != nil && !slices.Contains(opts.Only, w.name) {
				continue
			}
			ranFiles = ranFiles || files
			fmt.Fprintf(opts.Out, "bench: %s: %d rounds × %d operations per agent\n", w.name, opts.Rounds, w.ops)
			if err := runRounds(w, opts.Rounds, targets, v); err != nil {
				return err
			}
		}
	}
	if !ranFiles {
		return nil
	}
	for i, t := range targets {
		m, err := t.proc.memory()
		if err != nil {
			return err
		}
		v[i][keyPeakFiles] = []float64{float64(m.HWM)}
	}
	return nil
}

// runRounds warms w up on both agents, then runs its rounds alternately.
func runRounds(w workload, rounds int, targets [2]*target, v values) error {
	for _, t := range targets {
		for range w.warmup {
			if _, _, err := w.run(t, 1); err != nil {
				return fmt.Errorf("warm up %s: %w", w.name, err)
			}
		}
	}
	var cpu [2]cpuUse
	for range rounds {
		for i, t := range targets {
			s, use, err := w.run(t, w.ops)
			if err != nil {
				return fmt.Errorf("workload %s: %w", w.name, err)
			}
			for k, x := range s {
				v[i][k] = append(v[i][k], x)
			}
			cpu[i].cpu += use.cpu
			cpu[i].ops += use.ops
		}
	}
	for i := range targets {
		v[i][w.cpuKey] = []float64{w.cpuPerOp(cpu[i])}
	}
	return nil
}

// measureExecutables records what each agent's executable weighs on disk
// and in shared libraries.
func measureExecutables(rep *Report, targets [2]*target, v values) error {
	for i, t := range targets {
		// What actually runs (the agent may have been given as a wrapper).
		path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", t.proc.pid()))
		if err != nil {
			return fmt.Errorf("resolve the executable of %s: %w", t.name, err)
		}
		bi, err := inspectBinary(path)
		if err != nil {
			return err
		}
		v[i][keyBinSize] = []float64{float64(bi.SizeBytes) / 1024}
		v[i][keyBinFootprint] = []float64{float64(bi.Footprint) / 1024}
		v[i][keyBinNeeded] = []float64{float64(len(bi.Needed))}
		v[i][keyBinLoaded] = []float64{float64(len(bi.Loaded))}
		rep.Binaries = append(rep.Binaries, bi)
	}
	return nil
}

func readFileBytes(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func sameContent(got, want []byte) error {
	if !bytes.Equal(got, want) {
		return fmt.Errorf("content differs: %d bytes, want %d", len(got), len(want))
	}
	return nil
}
