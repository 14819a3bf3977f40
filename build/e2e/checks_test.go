//go:build vmtest

package e2e

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/build/initramfs"
)

// check is one step of a boot. A failed fatal check ends the boot.
type check struct {
	name  string
	fatal bool
	run   func(ctx context.Context, t *testing.T, m *machine)
	// linkOnly checks run only in the link=true boots, which have the test
	// config and the ext4 disk; the other boots do not list them.
	linkOnly bool
}

// checks run in this order in every boot; the last one powers the guest off.
var checks = []check{
	{name: "agent_info", run: checkAgentInfo},
	{name: "runs_from_cdrom", run: checkRunsFromCDROM},
	{name: "port_link", run: checkPortLink},
	{name: "system_info", run: checkSystemInfo},
	{name: "network_info", run: checkNetworkInfo},
	{name: "disk_usage", run: checkDiskUsage},
	{name: "exec", run: checkExec},
	{name: "files", run: checkFiles},
	{name: "refused_paths", run: checkRefusedPaths},
	{name: "exec_timeout_kills_tree", run: checkExecTimeout},
	{name: "reconnect_cycles", fatal: true, run: checkReconnects},
	{name: "idle_cpu", run: checkIdleCPU},
	{name: "power", fatal: true, run: checkPower},
}

// exec runs a command in the guest and fails t unless it exits with 0.
func exec(ctx context.Context, t *testing.T, m *machine, command string, args ...string) string {
	t.Helper()
	r, err := m.client.Exec(ctx, protocol.ExecParams{Command: command, Args: args})
	if err != nil {
		t.Fatalf("exec %s %q: %v", command, args, err)
	}
	if r.ExitCode != 0 {
		t.Fatalf("exec %s %q: exit code %d, stderr %q", command, args, r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

// wantCode fails t unless err is an agent error with code.
func wantCode(t *testing.T, what string, err error, code int) {
	t.Helper()
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != code {
		t.Errorf("%s: err = %v, want agent error %d", what, err, code)
	}
}

func checkAgentInfo(ctx context.Context, t *testing.T, m *machine) {
	info, err := m.client.AgentInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != m.version {
		t.Errorf("version %q, want %q (the version the ISO was built with)", info.Version, m.version)
	}
	if info.ProtocolVersion != protocol.Version {
		t.Errorf("protocol_version %q, want %q", info.ProtocolVersion, protocol.Version)
	}
	caps := map[string]bool{}
	for _, c := range info.Capabilities {
		caps[c] = true
	}
	for _, meth := range protocol.Methods {
		if !caps[meth] {
			t.Errorf("capabilities %v lack %s (the shipped config disables nothing)", info.Capabilities, meth)
		}
	}
}

// agentPID returns the pid of the agent process in the guest.
func agentPID(ctx context.Context, t *testing.T, m *machine) int {
	t.Helper()
	out := strings.Fields(exec(ctx, t, m, "pidof", "kvmmanager-agent"))
	if len(out) != 1 {
		t.Fatalf("pidof kvmmanager-agent = %q, want one pid", out)
	}
	pid, err := strconv.Atoi(out[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func checkRunsFromCDROM(ctx context.Context, t *testing.T, m *machine) {
	pid := agentPID(ctx, t, m)
	exe := strings.TrimSpace(exec(ctx, t, m, "readlink", fmt.Sprintf("/proc/%d/exe", pid)))
	if want := "/media/cdrom/linux-" + m.arch + "/kvmmanager-agent"; exe != want {
		t.Errorf("agent runs %s, want %s", exe, want)
	}
}

// checkPortLink proves which way the agent found its port: in a boot
// without the link, only the sysfs fallback can have worked.
func checkPortLink(ctx context.Context, t *testing.T, m *machine) {
	r, err := m.client.Exec(ctx, protocol.ExecParams{Command: "test", Args: []string{"-e", "/dev/virtio-ports/" + protocol.PortName}})
	if err != nil {
		t.Fatal(err)
	}
	if exists := r.ExitCode == 0; exists != m.link {
		t.Errorf("/dev/virtio-ports/%s exists = %v, want %v", protocol.PortName, exists, m.link)
	}
}

func checkSystemInfo(ctx context.Context, t *testing.T, m *machine) {
	si, err := m.client.SystemInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	osName, osVersion := osRelease(initramfs.OSRelease)
	tests := []struct{ field, got, want string }{
		{"os_type", si.OSType, "linux"},
		{"os_name", si.OSName, osName},
		{"os_version", si.OSVersion, osVersion},
		{"kernel_version", si.KernelVersion, m.kernel.Release},
		{"hostname", si.Hostname, initramfs.Hostname(m.arch)},
		{"architecture", si.Architecture, guestArch[m.arch]},
		{"cpu_count", strconv.Itoa(si.CPUCount), "1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.field, tt.got, tt.want)
		}
	}
	// QEMU gives 512 MiB; the kernel reserves some of it.
	if si.TotalMemoryKB < 256<<10 || si.TotalMemoryKB > 512<<10 {
		t.Errorf("total_memory_kb = %d, want within (256 MiB, 512 MiB]", si.TotalMemoryKB)
	}
	uptime := strings.Fields(exec(ctx, t, m, "cat", "/proc/uptime"))
	if up, err := strconv.ParseFloat(uptime[0], 64); err != nil || si.UptimeSeconds > uint64(up)+1 {
		t.Errorf("uptime_seconds = %d, but /proc/uptime says %v later", si.UptimeSeconds, uptime)
	}
}

// osRelease returns NAME and VERSION_ID of an os-release file.
func osRelease(s string) (name, version string) {
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case "NAME":
			name = v
		case "VERSION_ID":
			version = v
		}
	}
	return name, version
}

func checkNetworkInfo(ctx context.Context, t *testing.T, m *machine) {
	ni, err := m.client.NetworkInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ni.Interfaces {
		if ifc.Name != "lo" {
			continue
		}
		found := false
		for _, a := range ifc.IPv4Addresses {
			found = found || a == "127.0.0.1/8"
		}
		if !found {
			t.Errorf("lo has %v, want 127.0.0.1/8", ifc.IPv4Addresses)
		}
		if ifc.MTU != 65536 {
			t.Errorf("lo mtu %d, want 65536", ifc.MTU)
		}
		return
	}
	t.Errorf("no lo in %+v", ni.Interfaces)
}

func checkDiskUsage(ctx context.Context, t *testing.T, m *machine) {
	du, err := m.client.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, fs := range du.Filesystems {
		if fs.MountPoint != "/media/cdrom" {
			continue
		}
		if fs.FSType != "iso9660" || fs.Device != "/dev/sr0" {
			t.Errorf("/media/cdrom is %s on %s, want iso9660 on /dev/sr0", fs.FSType, fs.Device)
		}
		if fs.TotalBytes == 0 || fs.AvailableBytes != 0 || fs.UsedBytes != fs.TotalBytes {
			t.Errorf("CD-ROM sizes total=%d used=%d available=%d, want a full read-only disc", fs.TotalBytes, fs.UsedBytes, fs.AvailableBytes)
		}
		return
	}
	t.Errorf("no /media/cdrom in %+v", du.Filesystems)
}

func checkExec(ctx context.Context, t *testing.T, m *machine) {
	if got := strings.TrimSpace(exec(ctx, t, m, "uname", "-r")); got != m.kernel.Release {
		t.Errorf("uname -r = %q, want %q", got, m.kernel.Release)
	}
	r, err := m.client.Exec(ctx, protocol.ExecParams{Command: "/bin/sh", Args: []string{"-c", "echo out; echo err >&2; exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("sh -c ... = exit %d, stdout %q, stderr %q; want 7, \"out\\n\", \"err\\n\"", r.ExitCode, r.Stdout, r.Stderr)
	}
	_, err = m.client.Exec(ctx, protocol.ExecParams{Command: "no-such-command"})
	wantCode(t, "exec no-such-command", err, protocol.CodeNotFound)
}

func checkFiles(ctx context.Context, t *testing.T, m *machine) {
	text := "héllo from the host ✓\nline 2\n"
	w, err := m.client.WriteFile(ctx, protocol.FileWriteParams{Path: "/tmp/e2e/dir/hello.txt", Content: text, CreateDirs: true, Permissions: "0600"})
	if err != nil {
		t.Fatal(err)
	}
	if w.BytesWritten != int64(len(text)) {
		t.Errorf("bytes_written %d, want %d", w.BytesWritten, len(text))
	}
	r, err := m.client.ReadFile(ctx, "/tmp/e2e/dir/hello.txt", protocol.EncodingUTF8)
	if err != nil {
		t.Fatal(err)
	}
	if r.Content != text || r.SizeBytes != int64(len(text)) {
		t.Errorf("read back %q (%d bytes), want %q", r.Content, r.SizeBytes, text)
	}
	// The guest's own tools see the same file.
	if got := exec(ctx, t, m, "cat", "/tmp/e2e/dir/hello.txt"); got != text {
		t.Errorf("cat in the guest: %q, want %q", got, text)
	}
	if got := strings.TrimSpace(exec(ctx, t, m, "stat", "-c", "%a %u", "/tmp/e2e/dir/hello.txt")); got != "600 0" {
		t.Errorf("mode and owner %q, want \"600 0\"", got)
	}

	bin := make([]byte, 256*3)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	if _, err := m.client.WriteFile(ctx, protocol.FileWriteParams{Path: "/tmp/e2e/bin.dat", Content: base64.StdEncoding.EncodeToString(bin), Encoding: protocol.EncodingBase64}); err != nil {
		t.Fatal(err)
	}
	got, err := m.client.ReadFileBytes(ctx, "/tmp/e2e/bin.dat")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(bin) {
		t.Errorf("base64 round trip changed the bytes")
	}
	if sum := strings.Fields(exec(ctx, t, m, "md5sum", "/tmp/e2e/bin.dat"))[0]; sum != md5hex(bin) {
		t.Errorf("md5sum in the guest %s, want %s", sum, md5hex(bin))
	}
}

func checkRefusedPaths(ctx context.Context, t *testing.T, m *machine) {
	// Each of these exists in the guest; the shipped config allows none of them.
	_, err := m.client.ReadFile(ctx, "/media/cdrom/config.json", "")
	wantCode(t, "read /media/cdrom/config.json (outside allowed_read_paths)", err, protocol.CodePermissionDenied)
	_, err = m.client.ReadFile(ctx, "/tmp/../etc/inittab", "")
	wantCode(t, "read /tmp/../etc/inittab", err, protocol.CodePermissionDenied)
	_, err = m.client.WriteFile(ctx, protocol.FileWriteParams{Path: "/etc/hostname", Content: "evil\n"})
	wantCode(t, "write /etc/hostname (outside allowed_write_paths)", err, protocol.CodePermissionDenied)
	if got := strings.TrimSpace(exec(ctx, t, m, "cat", "/etc/hostname")); got != initramfs.Hostname(m.arch) {
		t.Errorf("/etc/hostname is %q after a refused write", got)
	}
}

func checkExecTimeout(ctx context.Context, t *testing.T, m *machine) {
	timeout := 2
	_, err := m.client.Exec(ctx, protocol.ExecParams{Command: "/bin/sh", Args: []string{"-c", "sleep 300 & echo started; sleep 301"}, TimeoutSeconds: &timeout})
	wantCode(t, "exec with a 2 s timeout", err, protocol.CodeTimeout)
	if out, ok := client.ExecErrorOutput(err); !ok || out.Stdout != "started\n" {
		t.Errorf("timeout error data = %+v, want the output before the kill (\"started\\n\")", out)
	}
	// No process of the tree may survive, the background one included.
	// Zombies (state Z) are dead; anything else is alive.
	ps := exec(ctx, t, m, "ps", "-o", "pid,stat,args")
	for _, line := range strings.Split(ps, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[2] == "sleep" && (f[3] == "300" || f[3] == "301") && !strings.HasPrefix(f[1], "Z") {
			t.Errorf("process survived the timeout: %s\n%s", line, ps)
		}
	}
}

// checkReconnects connects, pings and disconnects 20 times with raw
// connections: every ping must get exactly its own reply, with nothing
// stale from an earlier connection in front of it.
func checkReconnects(ctx context.Context, t *testing.T, m *machine) {
	m.client.Close()
	for i := 1; i <= 20; i++ {
		func() {
			conn, err := net.Dial("unix", m.socket)
			if err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			id := 1000 + i
			if _, err := fmt.Fprintf(conn, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`+"\n", id); err != nil {
				t.Fatalf("cycle %d: write: %v", i, err)
			}
			line, err := bufio.NewReader(conn).ReadBytes('\n')
			if err != nil {
				t.Fatalf("cycle %d: no reply: %v", i, err)
			}
			var resp struct {
				ID     int                 `json:"id"`
				Result protocol.PingResult `json:"result"`
				Error  *protocol.Error     `json:"error"`
			}
			if err := json.Unmarshal(line, &resp); err != nil || resp.ID != id || !resp.Result.Pong || resp.Error != nil {
				t.Fatalf("cycle %d: reply %s (%v), want the pong of id %d", i, line, err, id)
			}
		}()
	}
	var err error
	if m.client, err = client.Dial(ctx, m.socket); err != nil {
		t.Fatal(err)
	}
	if _, err := m.client.Ping(ctx); err != nil {
		t.Fatalf("ping after the cycles: %v", err)
	}
}

// checkIdleCPU measures what the agent does over two windows of 3 s with no
// host connected, from every thread's /proc/<pid>/task/<tid>/schedstat: the time
// it ran (ns) and the number of times it was scheduled. An agent that spins
// on the disconnected port (its reads return 0 at once) runs the whole
// window; one that polls wakes up every few ms; an idle one hardly wakes at
// all. Wakeups are the measure, not sampled CPU ticks: under TCG one wakeup
// costs a few ms, so a tick or two is noise while a poll loop shows as
// dozens of wakeups. The three snapshots are taken in the guest by a shell
// (2 s after the agent logged that the host left, then every 3 s) and read
// back through file_read after the host reconnects, so that the window
// holds the agent's idle behaviour only. The shell is the command of an
// exec_command the host leaves running when it disconnects (a detached
// process would die with its command); waiting for it costs the agent
// nothing.
func checkIdleCPU(ctx context.Context, t *testing.T, m *machine) {
	pid := agentPID(ctx, t, m)
	snap := func(n int) string {
		return fmt.Sprintf("for d in /proc/%d/task/*; do echo \"${d##*/} $(cat $d/schedstat)\"; done >/tmp/idle.%d", pid, n)
	}
	// The window starts once the agent has seen the host leave (its log's
	// "Connection lost" line) and had 2 s to settle; under load the host's
	// close comes long after the shell starts. The shell says on the serial
	// console when the window has ended, so the host, which must stay away
	// until then, knows without asking the agent.
	done := fmt.Sprintf("kvmtest: idle window %d", time.Now().UnixNano())
	const lost = "grep -c 'Connection lost' " + guestAgentLog
	script := "n=$(" + lost + "); : >/tmp/idle.go; i=0; " +
		"while [ \"$(" + lost + ")\" -le \"$n\" ]; do i=$((i+1)); if [ $i -gt 60 ]; then echo '" + done + ": no disconnect seen' >/dev/console; exit 1; fi; sleep 1; done; " +
		"sleep 2; " + snap(0) + "; sleep 3; " + snap(1) + "; sleep 3; " + snap(2) + "; echo '" + done + " done' >/dev/console"
	exec(ctx, t, m, "rm", "-f", "/tmp/idle.go", "/tmp/idle.0", "/tmp/idle.1", "/tmp/idle.2")
	observer := make(chan struct{})
	go func() {
		defer close(observer)
		timeout, capture := 80, false
		_, _ = m.client.Exec(ctx, protocol.ExecParams{Command: "/bin/sh", Args: []string{"-c", script}, TimeoutSeconds: &timeout, CaptureOutput: &capture})
	}()
	for {
		if _, err := m.client.ReadFile(ctx, "/tmp/idle.go", ""); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the observer never started: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.client.Close()
	// The observer's call ends with the connection; its command goes on.
	<-observer
	for {
		b, _ := os.ReadFile(m.vm.ConsoleLog())
		if strings.Contains(string(b), done+" done") {
			break
		}
		if strings.Contains(string(b), done+": no disconnect seen") {
			t.Fatalf("the agent's log (%s) never said the host left (\"Connection lost\") within 60 s", guestAgentLog)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the guest's shell never said %q on the console", done)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var err error
	if m.client, err = client.Dial(ctx, m.socket); err != nil {
		t.Fatal(err)
	}
	snaps := []map[string]schedStat{threadSched(ctx, t, m, "/tmp/idle.0"), threadSched(ctx, t, m, "/tmp/idle.1"), threadSched(ctx, t, m, "/tmp/idle.2")}
	var total time.Duration
	for _, st := range snaps[2] {
		total += st.ran
	}
	if total == 0 {
		t.Fatalf("schedstat says the agent never ran: the kernel keeps no schedstat, and this check measures nothing")
	}
	// Two windows of 3 s one after the other: a poll or a spin shows in
	// both, a one-off (the runtime's forced GC every 2 min) in one at most.
	var report []string
	failed := true
	for w := range 2 {
		wakeups, ran, busy := schedDelta(snaps[w], snaps[w+1])
		t.Logf("agent over 3 s with the host disconnected (window %d): %d wakeups, ran %v (%d threads; %v on the CPU since it started)",
			w+1, wakeups, ran, len(snaps[w+1]), total)
		report = append(report, fmt.Sprintf("window %d: %d wakeups, ran %v\n%s", w+1, wakeups, ran, strings.Join(busy, "\n")))
		if wakeups <= idleWakeups {
			failed = false
		}
	}
	if failed {
		t.Errorf("the agent woke up more than %d times in each of two 3 s windows with the host disconnected:\n%s",
			idleWakeups, strings.Join(report, "\n"))
	}
}

// schedDelta sums the wakeups and CPU time of every thread between two
// snapshots, and lists the threads that ran.
func schedDelta(before, after map[string]schedStat) (wakeups int64, ran time.Duration, busy []string) {
	for tid, a := range after {
		b := before[tid] // zero for a thread started in the window
		if a.slices != b.slices {
			busy = append(busy, fmt.Sprintf("thread %s: %d wakeups, %v", tid, a.slices-b.slices, a.ran-b.ran))
		}
		ran += a.ran - b.ran
		wakeups += a.slices - b.slices
	}
	slices.Sort(busy)
	return wakeups, ran, busy
}

// guestAgentLog is where the guest's init has the agent log (initramfs
// guest/agent).
const guestAgentLog = "/run/kvmmanager-agent.log"

// idleWakeups bounds the agent's wakeups over a 3 s idle window: the Go
// runtime's own (sysmon backing off, a timer) and the wait for a host,
// which backs off to one check a second where the port gives no SIGIO.
const idleWakeups = 12

// schedStat is one thread's /proc/<pid>/task/<tid>/schedstat: time on the
// CPU and times scheduled.
type schedStat struct {
	ran    time.Duration
	slices int64
}

// threadSched reads a snapshot written by checkIdleCPU's shell: lines of
// "TID RUN_NS WAIT_NS SLICES".
func threadSched(ctx context.Context, t *testing.T, m *machine, path string) map[string]schedStat {
	t.Helper()
	r, err := m.client.ReadFile(ctx, path, "")
	if err != nil {
		t.Fatal(err)
	}
	threads := map[string]schedStat{}
	for line := range strings.Lines(r.Content) {
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("%s: line %q, want TID RUN_NS WAIT_NS SLICES", path, line)
		}
		ns, err1 := strconv.ParseInt(f[1], 10, 64)
		n, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: line %q", path, line)
		}
		threads[f[0]] = schedStat{ran: time.Duration(ns), slices: n}
	}
	if len(threads) == 0 {
		t.Fatalf("%s is empty: no schedstat for the agent's threads", path)
	}
	return threads
}

func checkPower(ctx context.Context, t *testing.T, m *machine) {
	var res protocol.PowerResult
	var err error
	if m.power == "reboot" {
		res, err = m.client.Reboot(ctx, protocol.PowerParams{})
	} else {
		res, err = m.client.Shutdown(ctx, protocol.PowerParams{})
	}
	if err != nil || !res.Initiated {
		t.Fatalf("%s: %+v, %v", m.power, res, err)
	}
	select {
	case <-m.vm.Done():
	case <-time.After(powerOffBound):
		t.Fatalf("QEMU still runs %s after the agent accepted %s", powerOffBound, m.power)
	}
	if err := m.vm.Wait(); err != nil {
		t.Fatal(err)
	}
	// busybox init logs which action it carried out: the agent went
	// through the init system, not straight to reboot(2).
	log, err := os.ReadFile(m.vm.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"reboot": "Requesting system reboot", "shutdown": "Requesting system poweroff"}[m.power]
	if !strings.Contains(string(log), want) {
		t.Errorf("console log %s lacks %q:\n%s", m.vm.ConsoleLog(), want, consoleTail(m.vm.ConsoleLog(), 20))
	}
}

func md5hex(b []byte) string { return fmt.Sprintf("%x", md5.Sum(b)) }
