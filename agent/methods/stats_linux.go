package methods

import (
	"strconv"
	"strings"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// userHZ is the unit of /proc/stat's CPU times: USER_HZ, 100 on every
// architecture the agent is built for (the kernel's ABI, whatever CONFIG_HZ).
const userHZ = 100

// LoadAverage returns /proc/loadavg: the 1, 5 and 15 minute load averages
// and the running/total scheduling entities.
func (s *Service) LoadAverage() (protocol.LoadAverage, error) {
	p := s.hostPath("/proc/loadavg")
	b, err := readSmallFile(p)
	if err != nil {
		return protocol.LoadAverage{}, wrapErr(nil, err, "failed to read %s", p)
	}
	f := strings.Fields(string(b))
	var out protocol.LoadAverage
	if len(f) < 4 {
		return out, opErr(nil, "failed to parse %s: %q", p, string(b))
	}
	for i, dst := range []*float64{&out.Load1, &out.Load5, &out.Load15} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return out, opErr(nil, "failed to parse %s: field %d %q", p, i+1, f[i])
		}
		*dst = v
	}
	run, total, ok := strings.Cut(f[3], "/")
	r, err1 := strconv.ParseUint(run, 10, 64)
	t, err2 := strconv.ParseUint(total, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return out, opErr(nil, "failed to parse %s: field 4 %q", p, f[3])
	}
	out.Running, out.Total = r, t
	return out, nil
}

// MemoryInfo returns the figures of /proc/meminfo a host shows as the
// guest's memory use, in bytes.
func (s *Service) MemoryInfo() (protocol.MemoryInfo, error) {
	p := s.hostPath("/proc/meminfo")
	b, err := readSmallFile(p)
	if err != nil {
		return protocol.MemoryInfo{}, wrapErr(nil, err, "failed to read %s", p)
	}
	kb := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return protocol.MemoryInfo{}, opErr(nil, "failed to parse %s: %q", p, line)
		}
		if len(f) == 2 && f[1] == "kB" {
			v *= 1024
		}
		kb[key] = v
	}
	total, ok := kb["MemTotal"]
	if !ok {
		return protocol.MemoryInfo{}, opErr(nil, "failed to parse %s: no MemTotal", p)
	}
	avail, ok := kb["MemAvailable"]
	if !ok {
		// Kernels before 3.14: free + buffers + cache, as free(1) did.
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"] + kb["SReclaimable"]
	}
	avail = min(avail, total)
	return protocol.MemoryInfo{
		TotalBytes:     total,
		FreeBytes:      kb["MemFree"],
		AvailableBytes: avail,
		UsedBytes:      total - avail,
		BuffersBytes:   kb["Buffers"],
		CachedBytes:    kb["Cached"] + kb["SReclaimable"],
		SwapTotalBytes: kb["SwapTotal"],
		SwapFreeBytes:  kb["SwapFree"],
	}, nil
}

// CPUStats returns each CPU's times from /proc/stat in milliseconds (the
// "cpuN" lines; the "cpu" sum is left out), as qemu-ga's guest-get-cpustats.
func (s *Service) CPUStats() ([]protocol.CPUStats, error) {
	p := s.hostPath("/proc/stat")
	b, err := readSmallFile(p)
	if err != nil {
		return nil, wrapErr(nil, err, "failed to read %s", p)
	}
	out := []protocol.CPUStats{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		cpu, err := strconv.Atoi(f[0][3:])
		if err != nil || len(f) < 5 {
			return nil, opErr(nil, "failed to parse %s: %q", p, line)
		}
		var v [10]uint64
		n := min(len(f)-1, len(v))
		for i := range n {
			x, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return nil, opErr(nil, "failed to parse %s: %q", p, line)
			}
			v[i] = x * 1000 / userHZ
		}
		st := protocol.CPUStats{CPU: cpu, User: v[0], Nice: v[1], System: v[2], Idle: v[3]}
		for i, dst := range []**uint64{&st.Iowait, &st.Irq, &st.Softirq, &st.Steal, &st.Guest, &st.GuestNice} {
			if 4+i < n {
				x := v[4+i]
				*dst = &x
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// DiskStats returns every line of /proc/diskstats (disks and partitions),
// as qemu-ga's guest-get-diskstats. Lines of the pre-2.6.25 partition
// format (7 fields) are skipped.
func (s *Service) DiskStats() ([]protocol.DiskStats, error) {
	p := s.hostPath("/proc/diskstats")
	b, err := readSmallFile(p)
	if err != nil {
		return nil, wrapErr(nil, err, "failed to read %s", p)
	}
	out := []protocol.DiskStats{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 14 {
			continue
		}
		var v [20]uint64
		for i, x := range f {
			if i == 2 || i >= len(v) {
				continue
			}
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return nil, opErr(nil, "failed to parse %s: %q", p, line)
			}
			v[i] = n
		}
		d := protocol.DiskStats{
			Name: f[2], Major: v[0], Minor: v[1],
			ReadIOs: v[3], ReadMerges: v[4], ReadSectors: v[5], ReadTicks: v[6],
			WriteIOs: v[7], WriteMerges: v[8], WriteSectors: v[9], WriteTicks: v[10],
			IOsInProgress: v[11], TotalTicks: v[12], WeightTicks: v[13],
		}
		if len(f) >= 18 {
			d.DiscardIOs, d.DiscardMerges, d.DiscardSectors, d.DiscardTicks = ptr(v[14]), ptr(v[15]), ptr(v[16]), ptr(v[17])
		}
		if len(f) >= 20 {
			d.FlushIOs, d.FlushTicks = ptr(v[18]), ptr(v[19])
		}
		out = append(out, d)
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }
