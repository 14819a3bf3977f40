package bench

// figureKey names one side-by-side figure. Every key is a constant below,
// used both where the figure is measured and in figureDefs, so a figure
// cannot be measured under one name and looked up under another; the
// strings are the keys of report.json.
type figureKey string

// Request/response workloads: latency percentiles, throughput, agent CPU.
const (
	keyPingSeqRPS     figureKey = "ping_seq.rps"
	keyPingSeqP50     figureKey = "ping_seq.p50_us"
	keyPingSeqP99     figureKey = "ping_seq.p99_us"
	keyPingSeqCPU     figureKey = "ping_seq.cpu_us"
	keyPingPipeRPS    figureKey = "ping_pipe8.rps"
	keyPingPipeCPU    figureKey = "ping_pipe8.cpu_us"
	keySystemInfoP50  figureKey = "system_info.p50_us"
	keySystemInfoCPU  figureKey = "system_info.cpu_us"
	keyNetworkInfoP50 figureKey = "network_info.p50_us"
	keyNetworkInfoCPU figureKey = "network_info.cpu_us"
	keyDiskUsageP50   figureKey = "disk_usage.p50_us"
	keyDiskUsageCPU   figureKey = "disk_usage.cpu_us"
	keyExecP50        figureKey = "exec.p50_us"
	keyExecCPU        figureKey = "exec.cpu_us"
)

// File workloads: throughput and agent CPU per transfer.
const (
	keyReadMiBps  figureKey = "read.mibps"
	keyReadCPU    figureKey = "read.cpu_ms"
	keyWriteMiBps figureKey = "write.mibps"
	keyWriteCPU   figureKey = "write.cpu_ms"
)

// Memory (/proc/PID/status) and executables (ELF).
const (
	keyIdleRSS      figureKey = "mem.idle_rss_kib"
	keyIdleAnon     figureKey = "mem.idle_anon_kib"
	keyIdleFile     figureKey = "mem.idle_file_kib"
	keyPeakFiles    figureKey = "mem.peak_files_kib"
	keyBinSize      figureKey = "bin.size_kib"
	keyBinFootprint figureKey = "bin.footprint_kib"
	keyBinNeeded    figureKey = "bin.needed"
	keyBinLoaded    figureKey = "bin.loaded"
)

// values are each agent's measurements by figure: one value per round, or
// a single one for figures measured once. Index 0 is kvmmanager-agent,
// 1 qemu-ga.
type values [2]map[figureKey][]float64

func newValues() values { return values{{}, {}} }

type figureDef struct {
	key         figureKey
	label, unit string
	better      Better
	goal        float64
}

// figureDefs lists the side-by-side figures in report order with the
// goals of the benchmark issue.
func figureDefs(size string) []figureDef {
	return []figureDef{
		{keyPingSeqRPS, "ping / guest-ping, sequential", "req/s", Higher, 2.0},
		{keyPingSeqP50, "ping sequential p50", "µs", Lower, 0},
		{keyPingSeqP99, "ping sequential p99", "µs", Lower, 0},
		{keyPingPipeRPS, "ping, 8 in flight on one connection", "req/s", Higher, 2.0},
		{keySystemInfoP50, "get_system_info / guest-get-osinfo p50", "µs", Lower, 1.0},
		{keyNetworkInfoP50, "get_network_info / guest-network-get-interfaces p50", "µs", Lower, 1.0},
		{keyDiskUsageP50, "get_disk_usage / guest-get-fsinfo p50", "µs", Lower, 1.0},
		{keyExecP50, "exec /bin/true to its result p50", "µs", Lower, 0.5},
		{keyReadMiBps, "read " + size + " (base64)", "MiB/s", Higher, 2.0},
		{keyWriteMiBps, "write " + size + " (base64)", "MiB/s", Higher, 4.0},
		{keyIdleRSS, "idle RSS after start (VmRSS)", "KiB", Lower, 1.0},
		{keyIdleAnon, "idle RSS, anonymous part (RssAnon)", "KiB", Lower, 0},
		{keyIdleFile, "idle RSS, file-backed part (RssFile: executable, libraries)", "KiB", Lower, 0},
		{keyPeakFiles, "peak RSS over the file workloads (VmHWM)", "KiB", Lower, 0.5},
		{keyPingSeqCPU, "agent CPU per ping, sequential", "µs", Lower, 0},
		{keyPingPipeCPU, "agent CPU per ping, 8 in flight", "µs", Lower, 0},
		{keySystemInfoCPU, "agent CPU per system info call", "µs", Lower, 0},
		{keyNetworkInfoCPU, "agent CPU per network info call", "µs", Lower, 0},
		{keyDiskUsageCPU, "agent CPU per disk info call", "µs", Lower, 0},
		{keyExecCPU, "agent CPU per exec (children excluded)", "µs", Lower, 0},
		{keyReadCPU, "agent CPU per " + size + " read", "ms", Lower, 0},
		{keyWriteCPU, "agent CPU per " + size + " write", "ms", Lower, 0},
		{keyBinSize, "executable size", "KiB", Lower, 0},
		{keyBinFootprint, "executable + loaded shared libraries", "KiB", Lower, 0},
		{keyBinNeeded, "shared libraries needed (DT_NEEDED)", "", Lower, 0},
		{keyBinLoaded, "shared libraries loaded (transitive, with ld.so)", "", Lower, 0},
	}
}

// figures turns the per-round values of both agents into figures; a figure
// neither agent was measured for (a workload left out with Options.Only) is
// left out.
func figures(v values, size string) []Figure {
	var out []Figure
	for _, d := range figureDefs(size) {
		f := Figure{Key: string(d.key), Label: d.label, Unit: d.unit, Better: d.better, GoalRatio: d.goal,
			OursRounds: v[0][d.key], QemuGARounds: v[1][d.key]}
		if f.OursRounds == nil || f.QemuGARounds == nil {
			continue
		}
		f.Ours, f.QemuGA = median(f.OursRounds), median(f.QemuGARounds)
		f.Ratio = ratio(f.Ours, f.QemuGA)
		if d.goal != 0 {
			met := float64(f.Ratio) >= d.goal
			if d.better == Lower {
				met = float64(f.Ratio) <= d.goal
			}
			f.Met = &met
		}
		out = append(out, f)
	}
	return out
}
