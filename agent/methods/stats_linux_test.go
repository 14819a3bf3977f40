package methods

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func newFakeHostService(t *testing.T, files map[string]string) *Service {
	t.Helper()
	return New(seedConfig(t), Options{HostRoot: fakeHost(t, files), Power: &fakePower{t: t}})
}

func TestUsersFromUtmp(t *testing.T) {
	rec := func(typ int16, user string, sec, usec int32) string {
		return string(utmpRecord(typ, user, sec, usec))
	}
	tests := []struct {
		name string
		utmp string
		want []protocol.User
	}{
		{"empty", "", []protocol.User{}},
		{"boot and login records only", rec(2, "reboot", 100, 0) + rec(6, "LOGIN", 100, 0), []protocol.User{}},
		{"one user", rec(7, "alice", 1700000000, 250000), []protocol.User{{User: "alice", LoginTime: 1700000000.25}}},
		{"earliest login per user, first-seen order", rec(7, "bob", 300, 0) + rec(7, "alice", 200, 500000) + rec(8, "carol", 1, 0) + rec(7, "bob", 100, 0),
			[]protocol.User{{User: "bob", LoginTime: 100}, {User: "alice", LoginTime: 200.5}}},
		{"32-character name, no NUL", rec(7, strings.Repeat("u", 32), 5, 0), []protocol.User{{User: strings.Repeat("u", 32), LoginTime: 5}}},
		{"empty name skipped, partial record ignored", rec(7, "", 5, 0) + rec(7, "dave", 6, 0) + "xyz", []protocol.User{{User: "dave", LoginTime: 6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeHostService(t, map[string]string{"var/run/utmp": tt.utmp})
			got, err := s.Users()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Users() = %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("no utmp means nobody", func(t *testing.T) {
		s := newFakeHostService(t, map[string]string{})
		got, err := s.Users()
		if err != nil || len(got) != 0 || got == nil {
			t.Errorf("Users() = %#v, %v; want [], nil", got, err)
		}
	})
}

func TestUtmpLayoutMatchesGlibc(t *testing.T) {
	// `who` reads the same file; a record we build must be one it shows.
	if _, err := os.Stat("/usr/bin/who"); err != nil {
		t.Skip("who(1) not installed")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "utmp")
	if err := os.WriteFile(f, utmpRecord(7, "layoutcheck", 1700000000, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runOutput("/usr/bin/who", f)
	if err != nil {
		t.Fatalf("who %s: %v", f, err)
	}
	if !strings.Contains(out, "layoutcheck") || !strings.Contains(out, "2023-11-14") {
		t.Errorf("who does not read our record as glibc's struct utmp: %q", out)
	}
}

func TestTimezone(t *testing.T) {
	zi := "/usr/share/zoneinfo/"
	if _, err := os.Stat(zi + "Europe/Paris"); err != nil {
		t.Skip("no zoneinfo in /usr/share/zoneinfo")
	}
	t.Setenv("TZ", "") // ignored with a fake host root; set to check that
	for _, name := range []string{"Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(zi + name)
			if err != nil {
				t.Fatal(err)
			}
			root := fakeHost(t, map[string]string{"usr/share/zoneinfo/" + name: string(data)})
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../usr/share/zoneinfo/"+name, filepath.Join(root, "etc/localtime")); err != nil {
				t.Fatal(err)
			}
			s := New(seedConfig(t), Options{HostRoot: root, Power: &fakePower{t: t}})
			got := s.Timezone()
			loc, _ := time.LoadLocation(name)
			zone, off := time.Now().In(loc).Zone()
			want := protocol.Timezone{Zone: zone, Name: name, Offset: off}
			if got != want {
				t.Errorf("Timezone() = %+v, want %+v", got, want)
			}
		})
	}
	t.Run("no localtime is UTC", func(t *testing.T) {
		s := newFakeHostService(t, map[string]string{})
		if got := s.Timezone(); got.Zone != "UTC" || got.Offset != 0 {
			t.Errorf("Timezone() = %+v", got)
		}
	})
}

func TestLoadAverage(t *testing.T) {
	tests := []struct {
		file    string
		want    protocol.LoadAverage
		wantErr bool
	}{
		{"0.15 1.20 12.50 3/456 7890\n", protocol.LoadAverage{Load1: 0.15, Load5: 1.2, Load15: 12.5, Running: 3, Total: 456}, false},
		{"0.00 0.00 0.00 1/1 1", protocol.LoadAverage{Running: 1, Total: 1}, false},
		{"0.1 0.2\n", protocol.LoadAverage{}, true},
		{"x 0.2 0.3 1/2 3\n", protocol.LoadAverage{}, true},
		{"0.1 0.2 0.3 12 3\n", protocol.LoadAverage{}, true},
	}
	for _, tt := range tests {
		s := newFakeHostService(t, map[string]string{"proc/loadavg": tt.file})
		got, err := s.LoadAverage()
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("LoadAverage(%q) = %+v, %v; want %+v, error %v", tt.file, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := newFakeHostService(t, nil).LoadAverage(); err == nil || !strings.Contains(err.Error(), "loadavg") {
		t.Errorf("missing /proc/loadavg: err = %v", err)
	}
}

func TestMemoryInfo(t *testing.T) {
	const modern = "MemTotal:        4000000 kB\nMemFree:          500000 kB\nMemAvailable:    3000000 kB\nBuffers:           10000 kB\nCached:          2000000 kB\nSwapCached:            0 kB\nSReclaimable:     100000 kB\nSwapTotal:       1000000 kB\nSwapFree:         900000 kB\nHugePages_Total:       0\n"
	const old = "MemTotal:        1000 kB\nMemFree:          100 kB\nBuffers:           50 kB\nCached:          200 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"
	tests := []struct {
		name    string
		file    string
		want    protocol.MemoryInfo
		wantErr string
	}{
		{"modern", modern, protocol.MemoryInfo{TotalBytes: 4000000 << 10, FreeBytes: 500000 << 10, AvailableBytes: 3000000 << 10,
			UsedBytes: 1000000 << 10, BuffersBytes: 10000 << 10, CachedBytes: 2100000 << 10, SwapTotalBytes: 1000000 << 10, SwapFreeBytes: 900000 << 10}, ""},
		{"before MemAvailable", old, protocol.MemoryInfo{TotalBytes: 1000 << 10, FreeBytes: 100 << 10, AvailableBytes: 350 << 10,
			UsedBytes: 650 << 10, BuffersBytes: 50 << 10, CachedBytes: 200 << 10}, ""},
		{"no MemTotal", "MemFree: 1 kB\n", protocol.MemoryInfo{}, "no MemTotal"},
		{"garbage", "MemTotal: lots kB\n", protocol.MemoryInfo{}, "MemTotal: lots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newFakeHostService(t, map[string]string{"proc/meminfo": tt.file}).MemoryInfo()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("MemoryInfo() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestCPUStats(t *testing.T) {
	stat := "cpu  100 200 300 400 500 600 700 800 900 1000\n" +
		"cpu0 10 20 30 40 50 60 70 80 90 100\n" +
		"cpu1 1 2 3 4 5 6 7 8 9 10\n" +
		"cpu12 5 5 5 5\n" +
		"intr 12345 0 0\nctxt 999\nbtime 1700000000\n"
	got, err := newFakeHostService(t, map[string]string{"proc/stat": stat}).CPUStats()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `[{"cpu":0,"user":100,"nice":200,"system":300,"idle":400,"iowait":500,"irq":600,"softirq":700,"steal":800,"guest":900,"guest_nice":1000},` +
		`{"cpu":1,"user":10,"nice":20,"system":30,"idle":40,"iowait":50,"irq":60,"softirq":70,"steal":80,"guest":90,"guest_nice":100},` +
		`{"cpu":12,"user":50,"nice":50,"system":50,"idle":50}]`
	if string(b) != want {
		t.Errorf("CPUStats() =\n%s\nwant\n%s", b, want)
	}
	for _, bad := range []string{"cpu0 1 2 3\n", "cpux 1 2 3 4\n", "cpu0 1 2 x 4\n"} {
		if _, err := newFakeHostService(t, map[string]string{"proc/stat": bad}).CPUStats(); err == nil {
			t.Errorf("CPUStats(%q): no error", bad)
		}
	}
}

func TestDiskStats(t *testing.T) {
	data := " 254       0 vda 80793 24183 2843386 28819 60072 40054 6478400 37883 0 32124 75286 18975 81 502314816 5469 10024 3114\n" +
		" 254       1 vda1 1 2 3 4 5 6 7 8 9 10 11\n" + // 4.x kernel: 14 fields
		"   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n" + // 4.18: discard, no flush
		"   3       1 hda1 1 2 3 4\n" // pre-2.6.25 partition line: skipped
	got, err := newFakeHostService(t, map[string]string{"proc/diskstats": data}).DiskStats()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `[{"name":"vda","major":254,"minor":0,"read_ios":80793,"read_merges":24183,"read_sectors":2843386,"read_ticks":28819,"write_ios":60072,"write_merges":40054,"write_sectors":6478400,"write_ticks":37883,"ios_in_progress":0,"total_ticks":32124,"weight_ticks":75286,"discard_ios":18975,"discard_merges":81,"discard_sectors":502314816,"discard_ticks":5469,"flush_ios":10024,"flush_ticks":3114},` +
		`{"name":"vda1","major":254,"minor":1,"read_ios":1,"read_merges":2,"read_sectors":3,"read_ticks":4,"write_ios":5,"write_merges":6,"write_sectors":7,"write_ticks":8,"ios_in_progress":9,"total_ticks":10,"weight_ticks":11},` +
		`{"name":"sda","major":8,"minor":0,"read_ios":1,"read_merges":2,"read_sectors":3,"read_ticks":4,"write_ios":5,"write_merges":6,"write_sectors":7,"write_ticks":8,"ios_in_progress":9,"total_ticks":10,"weight_ticks":11,"discard_ios":12,"discard_merges":13,"discard_sectors":14,"discard_ticks":15}]`
	if string(b) != want {
		t.Errorf("DiskStats() =\n%s\nwant\n%s", b, want)
	}
	if _, err := newFakeHostService(t, map[string]string{"proc/diskstats": "8 0 sda 1 2 3 4 5 6 7 8 9 10 x\n"}).DiskStats(); err == nil {
		t.Error("garbage counter: no error")
	}
}

// TestStatsRealMachine reads this machine's files: every reader must
// understand the running kernel's format.
func TestStatsRealMachine(t *testing.T) {
	s := newService(t, nil)
	if _, err := s.Users(); err != nil {
		t.Errorf("Users: %v", err)
	}
	if l, err := s.LoadAverage(); err != nil || l.Total == 0 {
		t.Errorf("LoadAverage = %+v, %v", l, err)
	}
	if m, err := s.MemoryInfo(); err != nil || m.TotalBytes == 0 || m.UsedBytes > m.TotalBytes {
		t.Errorf("MemoryInfo = %+v, %v", m, err)
	}
	cpus, err := s.CPUStats()
	if err != nil || len(cpus) == 0 || cpus[0].Steal == nil {
		t.Errorf("CPUStats = %+v, %v", cpus, err)
	}
	disks, err := s.DiskStats()
	if err != nil || len(disks) == 0 {
		t.Errorf("DiskStats = %+v, %v", disks, err)
	}
	ti := s.GetTime()
	if d := time.Since(time.Unix(0, ti.TimeNs)); d < 0 || d > time.Minute {
		t.Errorf("GetTime = %+v, %v from now", ti, d)
	}
	if _, err := os.Stat("/sys/devices/system/clocksource/clocksource0/current_clocksource"); err == nil && ti.ClockSource == "" {
		t.Error("GetTime: no clock source although sysfs has one")
	}
}

func runOutput(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
