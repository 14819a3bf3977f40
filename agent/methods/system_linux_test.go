package methods

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// fakeHost writes files (path relative to the host root -> content) into a
// temporary host root.
func fakeHost(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSystemInfoFromFiles(t *testing.T) {
	base := map[string]string{
		"proc/meminfo":                  "MemTotal:        2014876 kB\nMemFree:          123456 kB\n",
		"proc/uptime":                   "12345.67 23456.78\n",
		"sys/devices/system/cpu/online": "0-3,6,8-9\n",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name       string
		files      map[string]string
		name_, ver string
		cpus       int
	}{
		{"debian", with(map[string]string{"etc/os-release": "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\n"}),
			"Debian GNU/Linux", "12 (bookworm)", 7},
		{"version_id only, unquoted", with(map[string]string{"etc/os-release": "NAME=Alpine\nVERSION_ID=3.20.1\n"}),
			"Alpine", "3.20.1", 7},
		{"single quotes, escapes, comments", with(map[string]string{"etc/os-release": "# c\nNAME='My OS'\nVERSION=\"1 \\\"x\\\" \\$y\"\n"}),
			"My OS", `1 "x" $y`, 7},
		{"fallback to /usr/lib", with(map[string]string{"usr/lib/os-release": "NAME=Fedora\nVERSION=\"40 (Forty)\"\n"}),
			"Fedora", "40 (Forty)", 7},
		{"no os-release (initramfs)", with(nil), "Linux", "", 7},
		{"no NAME", with(map[string]string{"etc/os-release": "VERSION_ID=1\n"}), "Linux", "1", 7},
		{"single cpu", with(map[string]string{"sys/devices/system/cpu/online": "0\n"}), "Linux", "", 1},
		{"no cpu list: NumCPU", func() map[string]string {
			m := with(nil)
			delete(m, "sys/devices/system/cpu/online")
			return m
		}(), "Linux", "", runtime.NumCPU()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(seedConfig(t), Options{HostRoot: fakeHost(t, tt.files), Power: &fakePower{t: t}})
			var r protocol.SystemInfo
			mustCall(t, s.Handlers()[protocol.MethodGetSystemInfo], nil, &r)
			if r.OSType != "linux" || r.OSName != tt.name_ || r.OSVersion != tt.ver || r.CPUCount != tt.cpus ||
				r.TotalMemoryKB != 2014876 || r.UptimeSeconds != 12345 {
				t.Fatalf("system info %+v", r)
			}
		})
	}
}

func TestSystemInfoBrokenFiles(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no meminfo":     {"proc/uptime": "1.0 1.0\n"},
		"bad meminfo":    {"proc/meminfo": "MemTotal: lots\n", "proc/uptime": "1.0 1.0\n"},
		"no uptime":      {"proc/meminfo": "MemTotal: 1 kB\n"},
		"garbage uptime": {"proc/meminfo": "MemTotal: 1 kB\n", "proc/uptime": "x\n"},
	} {
		t.Run(name, func(t *testing.T) {
			s := New(seedConfig(t), Options{HostRoot: fakeHost(t, files), Power: &fakePower{t: t}})
			_, perr := call(t, s.Handlers()[protocol.MethodGetSystemInfo], nil)
			wantError(t, perr, protocol.CodeInternalError, "/proc/")
		})
	}
}

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1": 2, "0-3,6,8-9": 7, "1,3,5": 3} {
		if got, err := countCPUList(in); err != nil || got != want {
			t.Errorf("countCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "0-", "0,,1"} {
		if _, err := countCPUList(bad); err == nil {
			t.Errorf("countCPUList(%q) succeeded", bad)
		}
	}
}

// The real machine: the figures must be the ones the system tools show.
func TestSystemInfoRealMachine(t *testing.T) {
	s := newService(t, nil)
	var r protocol.SystemInfo
	mustCall(t, s.Handlers()[protocol.MethodGetSystemInfo], nil, &r)

	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		if got := strings.TrimSpace(string(out)); r.KernelVersion != got {
			t.Errorf("kernel_version %q, uname -r %q", r.KernelVersion, got)
		}
	}
	if out, err := exec.Command("uname", "-m").Output(); err == nil {
		if got := strings.TrimSpace(string(out)); r.Architecture != got {
			t.Errorf("architecture %q, uname -m %q", r.Architecture, got)
		}
	}
	if h, err := os.Hostname(); err == nil && r.Hostname != h {
		t.Errorf("hostname %q, want %q", r.Hostname, h)
	}
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(meminfo), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" {
			if strconv.FormatUint(r.TotalMemoryKB, 10) != f[1] {
				t.Errorf("total_memory_kb %d, /proc/meminfo %s", r.TotalMemoryKB, f[1])
			}
		}
	}
	if out, err := exec.Command("nproc", "--all").Output(); err == nil {
		// nproc --all counts configured CPUs; online is at most that.
		if all, _ := strconv.Atoi(strings.TrimSpace(string(out))); r.CPUCount < 1 || r.CPUCount > all {
			t.Errorf("cpu_count %d, nproc --all %d", r.CPUCount, all)
		}
	}
	if r.OSName == "" || r.UptimeSeconds == 0 {
		t.Errorf("system info %+v", r)
	}
}
