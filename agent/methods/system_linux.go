package methods

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// hostPath returns p (an absolute path on the machine) under the host root.
func (s *Service) hostPath(p string) string {
	return filepath.Join(s.hostRoot, p)
}

// get_system_info: os-release, uname, online CPUs, MemTotal and uptime.
func (s *Service) systemInfo(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "uname: %v", err)
	}
	info := protocol.SystemInfo{
		OSType:        "linux",
		KernelVersion: unix.ByteSliceToString(uts.Release[:]),
		Hostname:      unix.ByteSliceToString(uts.Nodename[:]),
		Architecture:  unix.ByteSliceToString(uts.Machine[:]),
	}
	info.OSName, info.OSVersion = s.sys.osRelease(s)

	cpus, err := s.sys.onlineCPUs(s)
	if err != nil {
		s.log.Debug("online CPUs unknown, using the CPUs this process may run on", "err", err)
		cpus = runtime.NumCPU()
	}
	info.CPUCount = cpus

	if s.hostRoot == "/" {
		// One sysinfo(2) gives both: totalram is the page count
		// /proc/meminfo prints as MemTotal, uptime the boot-time clock's
		// whole seconds that /proc/uptime prints first.
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err != nil {
			return nil, protocol.Errorf(protocol.CodeInternalError, "sysinfo: %v", err)
		}
		info.TotalMemoryKB = uint64(si.Totalram) * uint64(si.Unit) / 1024
		info.UptimeSeconds = uint64(si.Uptime)
		return info, nil
	}
	mem, err := s.memTotalKB()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "%v", err)
	}
	info.TotalMemoryKB = mem

	up, err := s.uptimeSeconds()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "%v", err)
	}
	info.UptimeSeconds = up
	return info, nil
}

// osRelease returns NAME and VERSION (else VERSION_ID) from /etc/os-release,
// else /usr/lib/os-release. A system without either (a bare initramfs) is
// reported as "Linux" with an empty version.
func (s *Service) osRelease() (name, ver string) {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := readSmallFile(s.hostPath(p))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot read os-release", "path", p, "err", err)
			}
			continue
		}
		kv := parseOSRelease(data)
		name = kv["NAME"]
		if name == "" {
			name = "Linux" // the default os-release(5) specifies
		}
		ver = kv["VERSION"]
		if ver == "" {
			ver = kv["VERSION_ID"]
		}
		return name, ver
	}
	s.log.Debug("no os-release file; reporting os_name Linux")
	return "Linux", ""
}

// parseOSRelease parses os-release(5): KEY=value lines, values optionally in
// double quotes (with \" \\ \$ \` escapes) or single quotes; # comments.
func parseOSRelease(data []byte) map[string]string {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		kv[strings.TrimSpace(k)] = unquoteShell(strings.TrimSpace(v))
	}
	return kv
}

func unquoteShell(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}

// onlineCPUs counts the CPUs in /sys/devices/system/cpu/online ("0-3,6,8-9").
func (s *Service) onlineCPUs() (int, error) {
	p := s.hostPath("/sys/devices/system/cpu/online")
	data, err := readSmallFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	n, err := countCPUList(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return n, nil
}

func countCPUList(list string) (int, error) {
	if list == "" {
		return 0, errors.New("empty CPU list")
	}
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("bad CPU list %q", list)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad CPU list %q", list)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// memTotalKB returns MemTotal in kB. On the real machine it comes from
// sysinfo(2), whose totalram is the same page count /proc/meminfo prints as
// MemTotal: one system call instead of having the kernel format all of
// meminfo (about 20 µs). A fake host root (tests) is read from its file.
func (s *Service) memTotalKB() (uint64, error) {
	if s.hostRoot == "/" {
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err == nil {
			return uint64(si.Totalram) * uint64(si.Unit) / 1024, nil
		}
	}
	p := s.hostPath("/proc/meminfo")
	data, err := readSmallFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse %s: unexpected MemTotal line %q", p, line)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: MemTotal: %w", p, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("parse %s: no MemTotal line", p)
}

// uptimeSeconds returns the whole seconds of the first field of /proc/uptime.
func (s *Service) uptimeSeconds() (uint64, error) {
	p := s.hostPath("/proc/uptime")
	data, err := readSmallFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, fmt.Errorf("parse %s: empty", p)
	}
	whole, _, _ := strings.Cut(f[0], ".")
	v, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return v, nil
}

// readSmallFile reads a small file (/proc, /sys, os-release) with plain
// open, read and close: os.ReadFile adds an fstat and a poller registration
// attempt, which double the system calls of these per-request reads.
// Errors wrap fs errors (errors.Is(err, fs.ErrNotExist) works).
func readSmallFile(path string) ([]byte, error) {
	b, err := readFileInto(path, make([]byte, 0, 4096))
	if err != nil {
		return nil, err
	}
	return b, nil
}
