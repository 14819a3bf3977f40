//go:build !windows

package methods

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Typed entry points for the QEMU guest agent dialect (agent/qga): the same
// sources and checks as the protocol 1.0 methods, returning Go values the
// dialect maps onto its schema.

// OSReleaseFields returns the KEY=value pairs of /etc/os-release, else
// /usr/lib/os-release (nil if neither exists). The map is shared (cached
// while the file's stat is unchanged): callers must not modify it.
func (s *Service) OSReleaseFields() map[string]string {
	return s.sys.osFields(s)
}

// readOSReleaseFields reads and parses the os-release file in use.
func (s *Service) readOSReleaseFields() map[string]string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := readSmallFile(s.hostPath(p))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot read os-release", "path", p, "err", err)
			}
			continue
		}
		return parseOSRelease(data)
	}
	return nil
}

// Uname is the kernel's identity, as uname(2) gives it.
type Uname struct {
	Release, Version, Machine, NodeName string
}

// Kernel returns uname(2)'s fields.
func (s *Service) Kernel() (Uname, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return Uname{}, fmt.Errorf("uname: %w", err)
	}
	return Uname{
		Release:  unix.ByteSliceToString(uts.Release[:]),
		Version:  unix.ByteSliceToString(uts.Version[:]),
		Machine:  unix.ByteSliceToString(uts.Machine[:]),
		NodeName: unix.ByteSliceToString(uts.Nodename[:]),
	}, nil
}

// VCPU is one logical processor.
type VCPU struct {
	ID         int
	Online     bool
	CanOffline bool // the CPU has an online switch in sysfs
}

// isCPUDir reports whether name is "cpuN" (not a regexp: package regexp
// adds about 150 KB to the binary).
func isCPUDir(name string) bool {
	rest, ok := strings.CutPrefix(name, "cpu")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// VCPUs lists /sys/devices/system/cpu/cpuN in N order. A CPU without an
// "online" file (the boot CPU, usually) is online and cannot be offlined.
func (s *Service) VCPUs() ([]VCPU, error) {
	dir := s.hostPath("/sys/devices/system/cpu")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list CPUs: %w", err)
	}
	var out []VCPU
	for _, e := range entries {
		if !isCPUDir(e.Name()) {
			continue
		}
		id, err := strconv.Atoi(e.Name()[3:])
		if err != nil {
			continue
		}
		c := VCPU{ID: id, Online: true}
		data, err := readSmallFile(dir + "/" + e.Name() + "/online")
		switch {
		case err == nil:
			c.CanOffline = true
			c.Online = strings.TrimSpace(string(data)) == "1"
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("CPU %d: %w", id, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("list CPUs: no cpuN entries in %s", dir)
	}
	slices.SortFunc(out, func(a, b VCPU) int { return a.ID - b.ID })
	return out, nil
}

// NetInterface is one network interface with its addresses and counters.
type NetInterface struct {
	Name  string
	MAC   string // "" when the link has no link-layer address
	Addrs []netip.Prefix
	Stats *NetStats // nil when /proc/net/dev has no line for it
}

// NetStats are an interface's counters from /proc/net/dev.
type NetStats struct {
	RxBytes, RxPackets, RxErrs, RxDropped uint64
	TxBytes, TxPackets, TxErrs, TxDropped uint64
}

// NetInterfaces lists every interface as get_network_info does (netlink on
// the real machine), with the counters of /proc/net/dev.
func (s *Service) NetInterfaces(ctx context.Context) ([]NetInterface, error) {
	res, err := s.networkInfo(ctx, nil)
	if err != nil {
		return nil, err
	}
	info := res.(protocol.NetworkInfo)
	stats, err := s.netDevStats()
	if err != nil {
		s.log.Debug("interface statistics unavailable", "err", err)
	}
	out := make([]NetInterface, 0, len(info.Interfaces))
	for _, it := range info.Interfaces {
		ni := NetInterface{Name: it.Name, MAC: it.MACAddress, Stats: stats[it.Name]}
		for _, a := range slices.Concat(it.IPv4Addresses, it.IPv6Addresses) {
			if p, err := netip.ParsePrefix(a); err == nil {
				ni.Addrs = append(ni.Addrs, p)
			}
		}
		out = append(out, ni)
	}
	return out, nil
}

// netDevStats parses /proc/net/dev: two header lines, then
// "name: rx_bytes packets errs drop fifo frame compressed multicast
// tx_bytes packets errs drop fifo colls carrier compressed".
func (s *Service) netDevStats() (map[string]*NetStats, error) {
	p := s.hostPath("/proc/net/dev")
	data, err := readSmallFile(p)
	if err != nil {
		return nil, err
	}
	out := map[string]*NetStats{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		var v [16]uint64
		bad := false
		for i := range v {
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				bad = true
			}
		}
		if bad {
			return nil, fmt.Errorf("parse %s: bad line %q", p, sc.Text())
		}
		out[strings.TrimSpace(name)] = &NetStats{
			RxBytes: v[0], RxPackets: v[1], RxErrs: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrs: v[10], TxDropped: v[11],
		}
	}
	return out, nil
}

// RequestPower powers off or reboots the machine in the background, as the
// shutdown and reboot methods do (init system first, reboot(2) after the
// default grace period): no D-Bus is involved.
func (s *Service) RequestPower(kind PowerKind) {
	action, log := s.power, s.log
	grace := defaultPowerTimeout * time.Second
	go func() {
		log.Info("power action starting", "action", kind.String(), "force", false, "timeout_seconds", defaultPowerTimeout)
		if err := action.Power(kind, false, grace); err != nil {
			log.Error("power action failed", "action", kind.String(), "err", err)
		}
	}()
}

// MaxFileSize is max_file_size_bytes.
func (s *Service) MaxFileSize() int64 { return s.cfg.MaxFileSizeBytes }
