package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Report is everything one run measured; it is written as report.json and
// rendered as report.md.
type Report struct {
	Machine Machine `json:"machine"`
	Smoke   bool    `json:"smoke"`
	// BuildOnly: the build figures alone (BENCH_ONLY=build).
	BuildOnly bool     `json:"build_only,omitempty"`
	Rounds    int      `json:"rounds"`
	Figures   []Figure `json:"figures"`
	// SameProtocol: our QGA dialect against qemu-ga, one client for both.
	SameProtocol []Figure `json:"figures_same_protocol,omitempty"`
	// Loaded: protocol 1.0 against qemu-ga with a CPU hog on every core.
	Loaded   []Figure         `json:"figures_loaded,omitempty"`
	Binaries []binaryInfo     `json:"binaries"`
	Build    []BuildFigure    `json:"build,omitempty"`
	Micro    []MicroBenchmark `json:"micro_benchmarks,omitempty"`
	Method   []string         `json:"method"`
	Notes    []string         `json:"notes,omitempty"`
}

// Machine identifies where the figures were measured.
type Machine struct {
	CPU           string `json:"cpu"`
	Cores         int    `json:"cores"`
	Kernel        string `json:"kernel"`
	GoVersion     string `json:"go_version"`
	QemuGAVersion string `json:"qemu_ga_version"`
	Date          string `json:"date"`
	LoadAverage   string `json:"load_average"` // /proc/loadavg when the run started: other work skews figures
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, Linux %s, %s, %s (load average at start: %s)", m.CPU, m.Cores, m.Kernel, m.GoVersion, m.QemuGAVersion, m.LoadAverage)
}

// Better says which way a figure improves.
type Better string

const (
	Higher Better = "higher"
	Lower  Better = "lower"
)

// Figure is one side-by-side figure: the medians over the rounds, their
// ratio ours/qemu-ga and the goal on that ratio (GoalRatio 0: none).
type Figure struct {
	Key          string    `json:"key"`
	Label        string    `json:"label"`
	Unit         string    `json:"unit"`
	Better       Better    `json:"better"`
	Ours         float64   `json:"ours"`
	QemuGA       float64   `json:"qemu_ga"`
	Ratio        Ratio     `json:"ratio"` // null when undefined (qemu-ga's value is 0)
	GoalRatio    float64   `json:"goal_ratio,omitempty"`
	Met          *bool     `json:"met,omitempty"`
	OursRounds   []float64 `json:"ours_rounds"`
	QemuGARounds []float64 `json:"qemu_ga_rounds"`
}

// Goal renders the goal on the ratio, e.g. "≥ 2.0×", or "–".
func (f Figure) Goal() string {
	if f.GoalRatio == 0 {
		return "–"
	}
	if f.Better == Higher {
		return fmt.Sprintf("≥ %.1f×", f.GoalRatio)
	}
	return fmt.Sprintf("≤ %.1f×", f.GoalRatio)
}

// Ratio is ours/qemu-ga; it is encoded as null when not finite.
type Ratio float64

// MarshalJSON encodes a finite ratio as a number and any other as null.
func (r Ratio) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(r), 0) || math.IsNaN(float64(r)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(r))
}

// ratio is ours/theirs; 0/0 is 1 (equal), x/0 is +Inf.
func ratio(ours, theirs float64) Ratio {
	switch {
	case theirs != 0:
		return Ratio(ours / theirs)
	case ours == 0:
		return 1
	default:
		return Ratio(math.Inf(1))
	}
}

// BuildFigure is one build timing of our toolchain.
type BuildFigure struct {
	Key       string    `json:"key"`
	Label     string    `json:"label"`
	Seconds   float64   `json:"seconds"`          // median of Runs
	Runs      []float64 `json:"runs"`             // each measurement, seconds
	Goal      string    `json:"goal,omitempty"`   // e.g. "≤ 0.5 s"
	Met       *bool     `json:"met,omitempty"`    // against Goal
	Detail    string    `json:"detail,omitempty"` // what exactly ran
	Log       string    `json:"log,omitempty"`    // the build's own output (steps and their times)
	RatioOf   string    `json:"ratio_of,omitempty"`
	RatioGoal float64   `json:"ratio_goal,omitempty"`
}

// MicroBenchmark is one line of `go test -bench` output.
type MicroBenchmark struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	Extra       string  `json:"extra,omitempty"`
}

// methodNotes say how the figures are measured; they are part of both
// reports.
var methodNotes = []string{
	"Both agents run on this machine on unix sockets, driven by one Go client with one codec per protocol; each connection is synchronised first (0xFF + sync for ours, guest-sync-delimited for qemu-ga).",
	"For every workload, rounds alternate between the agents (A B A B …); a figure is the median over the rounds of the per-round value. Warm-up calls precede the first round and are not measured.",
	"Times are end to end as a host sees them: from encoding the request to holding the decoded result, host-side JSON and base64 work included for both.",
	"8 in flight: requests are pipelined on one connection with a window of 8 (the client sends while fewer than 8 replies are outstanding). Ours serves them concurrently; qemu-ga reads and answers one at a time, so for it the window only removes the client's round-trip wait.",
	"Exec: ours is one exec_command call that returns exit code and output. qemu-ga is guest-exec with capture-output, then guest-exec-status polled immediately and then every 1 ms until exited (faster than real hosts poll).",
	"Files: ours is one file_read / file_write with base64 content. qemu-ga is guest-file-open, guest-file-read / guest-file-write in 4 MiB chunks (buf-b64), guest-file-close. Contents are verified after the timed part.",
	"Memory from /proc/PID/status: VmRSS once connected and idle for 0.5 s; VmHWM after the file workloads, with the peak reset (clear_refs 5) just before them. CPU per operation: utime+stime from /proc/PID/stat (10 ms ticks), summed over the deltas of all rounds and divided by all their operations (children not included).",
	"Executables: ours is the shipped static build (CGO_ENABLED=0, -trimpath, -s -w); shared libraries are resolved from ELF DT_NEEDED without running the binary.",
}

// buildMethodNotes describe a build-only report.
var buildMethodNotes = []string{
	"In a copy of the tree with its own GOCACHE and mage cache (module cache shared): cold, warm, then 3 no-op runs and 3 rebuilds after appending a comment to one agent file, each against a bare `go build` of the agent for amd64 then arm64 after the same kind of edit; a figure is the median of its runs.",
	"Wall-clock times on a shared machine: the load averages in the notes say how busy it was.",
}

func (r *Report) write(dir, name string) error {
	r.Method = methodNotes
	if r.BuildOnly {
		r.Method = buildMethodNotes
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	jsPath := filepath.Join(dir, name+".json")
	if err := os.WriteFile(jsPath, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", jsPath, err)
	}
	mdPath := filepath.Join(dir, name+".md")
	if err := os.WriteFile(mdPath, []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", mdPath, err)
	}
	return nil
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# kvmmanager-agent vs qemu-ga\n\n")
	if r.BuildOnly {
		fmt.Fprintf(&b, "Machine: %s. Measured %s. **Build figures only** (BENCH_ONLY=build).\n\n", r.Machine, r.Machine.Date)
	} else {
		fmt.Fprintf(&b, "Machine: %s. Measured %s; median over %d alternating rounds.\n\n", r.Machine, r.Machine.Date, r.Rounds)
	}
	if r.Smoke {
		b.WriteString("**Smoke run** (BENCH_SMOKE=1): a few operations per round and a 1 MiB file; the figures only show that the harness works.\n\n")
	}
	if len(r.Figures) > 0 {
		b.WriteString(r.Table())
	}
	if len(r.SameProtocol) > 0 {
		b.WriteString("\n## Same protocol: our QGA dialect against qemu-ga\n\n")
		b.WriteString("The agent serves `--qga-listen`; both agents get the identical QGA client (guest-ping, guest-get-osinfo, guest-network-get-interfaces, guest-get-fsinfo, guest-exec + guest-exec-status, guest-file-open/read/write/close in 4 MiB chunks). Goals: ping ≥ 2×, info calls ≤ 1×, file transfer ≥ 2×.\n\n")
		b.WriteString(figureTable(r.SameProtocol, sameProtocolGoal))
	}
	if len(r.Loaded) > 0 {
		fmt.Fprintf(&b, "\n## Loaded machine: a CPU hog on each of the %d cores\n\n", r.Machine.Cores)
		b.WriteString("Protocol 1.0 against qemu-ga while a busy shell loop runs on every core. Goal: ping p99 within 1.5× of qemu-ga's.\n\n")
		b.WriteString(figureTable(r.Loaded, loadedGoal))
	}
	if len(r.Build) > 0 {
		b.WriteString("\n## Build\n\n")
		b.WriteString(r.BuildTable())
		b.WriteString("\n")
		for _, f := range r.Build {
			if f.Detail != "" {
				fmt.Fprintf(&b, "- %s: %s\n", f.Label, f.Detail)
			}
		}
		for _, f := range r.Build {
			if f.Log != "" {
				fmt.Fprintf(&b, "\nWhat the last run of %s printed:\n\n```\n%s\n```\n", f.Label, f.Log)
			}
		}
	}
	if len(r.Micro) > 0 {
		b.WriteString("\n## Go micro-benchmarks (`go test -bench . -benchmem ./agent/...`)\n\n| package | benchmark | ns/op | B/op | allocs/op |\n|---|---|---:|---:|---:|\n")
		for _, m := range r.Micro {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", m.Package, m.Name, formatNum(m.NsPerOp), formatNum(m.BytesPerOp), formatNum(m.AllocsPerOp))
		}
	}
	b.WriteString("\n## Method\n\n")
	for _, n := range r.Method {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// BuildTable renders the build figures as a Markdown table.
func (r *Report) BuildTable() string {
	var b strings.Builder
	b.WriteString("| figure | seconds | goal | met? |\n|---|---:|---|---|\n")
	for _, f := range r.Build {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.Label, formatNum(f.Seconds), dash(f.Goal), met(f.Met))
	}
	return b.String()
}

// Table renders the side-by-side figures as a Markdown table.
func (r *Report) Table() string { return figureTable(r.Figures, nil) }

// figureTable renders figures as a Markdown table; goal, when not nil,
// replaces the figures' goals (a pass with goals of its own).
func figureTable(figs []Figure, goal func(key string) float64) string {
	var b strings.Builder
	b.WriteString("| figure | ours | qemu-ga | ratio | goal | met? |\n|---|---:|---:|---:|---|---|\n")
	for _, f := range figs {
		if goal != nil {
			f = withGoal(f, goal(f.Key))
		}
		unit := ""
		if f.Unit != "" {
			unit = " " + f.Unit
		}
		fmt.Fprintf(&b, "| %s | %s%s | %s%s | %s× | %s | %s |\n", f.Label, formatNum(f.Ours), unit, formatNum(f.QemuGA), unit,
			formatRatio(f.Ratio), f.Goal(), met(f.Met))
	}
	return b.String()
}

// withGoal sets f's goal ratio and whether it is met.
func withGoal(f Figure, g float64) Figure {
	f.GoalRatio, f.Met = g, nil
	if g != 0 {
		met := float64(f.Ratio) >= g
		if f.Better == Lower {
			met = float64(f.Ratio) <= g
		}
		f.Met = &met
	}
	return f
}

// sameProtocolGoal: issue 10's goals for the same-protocol comparison.
func sameProtocolGoal(key string) float64 {
	switch figureKey(key) {
	case keyPingSeqRPS, keyPingPipeRPS, keyReadMiBps, keyWriteMiBps:
		return 2.0
	case keySystemInfoP50, keyNetworkInfoP50, keyDiskUsageP50, keyIdleRSS:
		return 1.0
	}
	return 0
}

// loadedGoal: issue 16's goal on the tail under load.
func loadedGoal(key string) float64 {
	if figureKey(key) == keyPingSeqP99 {
		return 1.5
	}
	return 0
}

func formatNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatRatio(r Ratio) string {
	v := float64(r)
	if math.IsInf(v, 0) {
		return "∞"
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func met(m *bool) string {
	switch {
	case m == nil:
		return ""
	case *m:
		return "yes"
	default:
		return "**no**"
	}
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// machine describes this machine.
func machine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Kernel: "unknown", GoVersion: runtime.Version(),
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			k = strings.TrimSpace(k)
			if ok && (k == "model name" || k == "Model" || k == "Hardware") {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAverage = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
