//go:build vmtest

package libvirt_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"context"
	"github.com/kvmmanager/guest-agent/build/libvirt"
	"testing"
)

// truth is the guest's own view, read through the test shell.
type truth struct {
	hostname, osID, osVersionID, osPretty, kernel, machine string
	users                                                  []string
	zoneOffset                                             int64
	cpus                                                   int
	rootFS                                                 string // file system type of /
}

// runGuest boots the guest of kind and runs every check on it; it returns
// the transcript.
func runGuest(t *testing.T, e *env, kind string) *libvirt.Transcript {
	g := boot(t, e, kind)
	g.prepare()
	tr := g.getTruth()
	g.checkAgentCommands(tr)
	g.checkGuestinfo(tr)
	g.checkDomifaddr()
	g.checkDomfsinfo()
	g.checkDomtime()
	g.checkPassword()
	g.checkFileRoundTrip()
	g.checkQuiescedSnapshot()
	g.checkReboot()
	g.checkShutdown()
	g.progress("done")
	return g.tr
}

// prepare gives the guest what the checks look for: a logged-in user with
// a password, a time zone with an offset, an address on eth0.
func (g *guest) prepare() {
	g.run(fmt.Sprintf(`set -e
id %[1]s >/dev/null 2>&1 || useradd -m -s /bin/bash %[1]s
echo '%[1]s:first-Passw0rd' | chpasswd
ln -sf /usr/share/zoneinfo/%[2]s /etc/localtime
echo %[2]s >/etc/timezone
ip link set eth0 up
ip addr replace %[3]s/24 dev eth0
# A login session (utmp entry) that stays: login -f on script's pty.
if ! who | grep -q '^%[1]s '; then
	setsid -f sh -c 'sleep infinity | script -qfc "login -f %[1]s" /dev/null >/dev/null 2>&1'
fi
for _ in $(seq 50); do who | grep -q '^%[1]s ' && exit 0; sleep 0.2; done
echo "no login session for %[1]s"; who; exit 1`, testUser, testZone, guestIP))
	g.progress("guest prepared (user %s logged in, zone %s, %s on eth0)", testUser, testZone, guestIP)
	if g.kind == libvirt.KindOurs {
		// The agent refuses account changes unless the admin allows them
		// (agent/PROTOCOL-qga.md); qemu-ga always allows them.
		g.run(`set -e
f=/etc/kvmmanager-agent/config.json
sed -i 's/"allow_account_changes": *false/"allow_account_changes": true/' $f
grep -q '"allow_account_changes": true' $f
systemctl restart kvmmanager-agent`)
		g.tr.Notes = append(g.tr.Notes, "the admin set \"allow_account_changes\": true in /etc/kvmmanager-agent/config.json "+
			"(default false: set-user-password is refused with \"account changes are disabled on this guest\")")
		g.waitAgent(2 * time.Minute)
		g.progress("allow_account_changes enabled, agent restarted")
	}
}

func (g *guest) getTruth() truth {
	kv := libvirt.ParseKeyValues(g.run(`. /etc/os-release
echo "hostname: $(hostname)"
echo "id: $ID"
echo "version_id: $VERSION_ID"
echo "pretty: $PRETTY_NAME"
echo "kernel: $(uname -r)"
echo "machine: $(uname -m)"
echo "users: $(who | awk '{print $1}' | sort -u | tr '\n' ' ')"
echo "zone: $(date +%z)"
echo "cpus: $(nproc --all)"
echo "rootfs: $(findmnt -n -o FSTYPE /)"`))
	var tr truth
	tr.hostname, tr.osID, tr.osVersionID, tr.osPretty = kv["hostname"], kv["id"], kv["version_id"], kv["pretty"]
	tr.kernel, tr.machine, tr.rootFS = kv["kernel"], kv["machine"], kv["rootfs"]
	tr.users = strings.Fields(kv["users"])
	z := kv["zone"] // +HHMM
	if len(z) == 5 {
		h, _ := strconv.Atoi(z[1:3])
		m, _ := strconv.Atoi(z[3:5])
		tr.zoneOffset = int64(h*3600 + m*60)
		if z[0] == '-' {
			tr.zoneOffset = -tr.zoneOffset
		}
	}
	tr.cpus, _ = strconv.Atoi(kv["cpus"])
	if tr.zoneOffset != zoneShift || !slices.Contains(tr.users, testUser) {
		g.t.Fatalf("guest preparation did not hold: %+v", tr)
	}
	return tr
}

// checks collects failed checks.
type checks []string

func (c *checks) expect(ok bool, format string, args ...any) {
	if !ok {
		*c = append(*c, fmt.Sprintf(format, args...))
	}
}

// decode decodes out into v, recording a failure.
func (c *checks) decode(out string, v any) bool {
	if err := libvirt.DecodeReturn(out, v); err != nil {
		*c = append(*c, err.Error())
		return false
	}
	return true
}

// checkAgentCommands sends every command KVM Manager sends through
// `virsh qemu-agent-command` and parses the replies as typed structs.
func (g *guest) checkAgentCommands(tr truth) {
	g.agentCommand("guest-ping", `{"execute":"guest-ping"}`, func(out string) []string {
		var c checks
		var v struct{}
		c.decode(out, &v)
		return c
	})
	g.agentCommand("guest-info", `{"execute":"guest-info"}`, func(out string) []string {
		var c checks
		var v libvirt.QGAInfo
		if c.decode(out, &v) {
			g.tr.Agent = v.Version
			enabled := map[string]bool{}
			for _, cmd := range v.SupportedCommands {
				enabled[cmd.Name] = cmd.Enabled
			}
			for _, want := range []string{"guest-ping", "guest-get-osinfo", "guest-get-host-name", "guest-get-vcpus",
				"guest-network-get-interfaces", "guest-get-fsinfo", "guest-exec", "guest-exec-status", "guest-shutdown",
				"guest-get-cpustats", "guest-get-diskstats", "guest-get-users", "guest-get-timezone"} {
				c.expect(enabled[want], "%s is not listed as enabled", want)
			}
		}
		return c
	})
	g.agentCommand("guest-get-osinfo", `{"execute":"guest-get-osinfo"}`, func(out string) []string {
		var c checks
		var v libvirt.QGAOSInfo
		if c.decode(out, &v) {
			c.expect(v.ID == tr.osID && v.VersionID == tr.osVersionID && v.PrettyName == tr.osPretty,
				"os %q %q %q, the guest says %q %q %q", v.ID, v.VersionID, v.PrettyName, tr.osID, tr.osVersionID, tr.osPretty)
			c.expect(v.KernelRelease == tr.kernel && v.Machine == tr.machine, "kernel %q %q, the guest says %q %q",
				v.KernelRelease, v.Machine, tr.kernel, tr.machine)
		}
		return c
	})
	g.agentCommand("guest-get-host-name", `{"execute":"guest-get-host-name"}`, func(out string) []string {
		var c checks
		var v libvirt.QGAHostName
		if c.decode(out, &v) {
			c.expect(v.HostName == tr.hostname, "host-name %q, the guest says %q", v.HostName, tr.hostname)
		}
		return c
	})
	g.agentCommand("guest-get-vcpus", `{"execute":"guest-get-vcpus"}`, func(out string) []string {
		var c checks
		var v []libvirt.QGAVCPU
		if c.decode(out, &v) {
			c.expect(len(v) == tr.cpus, "%d vCPUs, the guest has %d", len(v), tr.cpus)
			for _, cpu := range v {
				c.expect(cpu.Online, "vCPU %d offline", cpu.LogicalID)
			}
		}
		return c
	})
	g.agentCommand("guest-network-get-interfaces", `{"execute":"guest-network-get-interfaces"}`, func(out string) []string {
		var c checks
		var v []libvirt.QGAInterface
		if c.decode(out, &v) {
			var eth0 *libvirt.QGAInterface
			for i := range v {
				if v[i].Name == "eth0" {
					eth0 = &v[i]
				}
			}
			c.expect(eth0 != nil, "no eth0")
			if eth0 != nil {
				c.expect(eth0.HardwareAddress == mac, "eth0 hardware-address %q, want %q", eth0.HardwareAddress, mac)
				found := false
				for _, a := range eth0.IPAddresses {
					found = found || a.Type == "ipv4" && a.Address == guestIP && a.Prefix == 24
				}
				c.expect(found, "eth0 lacks %s/24", guestIP)
				c.expect(eth0.Statistics != nil, "eth0 has no statistics")
			}
		}
		return c
	})
	g.agentCommand("guest-get-fsinfo", `{"execute":"guest-get-fsinfo"}`, func(out string) []string {
		var c checks
		var v []libvirt.QGAFS
		if c.decode(out, &v) {
			i := slices.IndexFunc(v, func(f libvirt.QGAFS) bool { return f.Mountpoint == "/" })
			c.expect(i >= 0, "no file system mounted on /")
			if i >= 0 {
				root := v[i]
				c.expect(root.Type == tr.rootFS, "/ type %q, the guest says %q", root.Type, tr.rootFS)
				c.expect(root.TotalBytes != nil && root.UsedBytes != nil, "/ lacks used-bytes or total-bytes")
				c.expect(len(root.Disk) == 1 && root.Disk[0].BusType == "virtio" && root.Disk[0].Serial == "kvmtest-root" &&
					root.Disk[0].Dev == "/dev/vda", "/ disk %+v, want one virtio disk /dev/vda, serial kvmtest-root", root.Disk)
			}
		}
		return c
	})
	var pid int64
	g.agentCommand("guest-exec", `{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","echo out; echo err >&2; exit 3"],"capture-output":true}}`,
		func(out string) []string {
			var c checks
			var v libvirt.QGAExec
			if c.decode(out, &v) {
				pid = v.PID
				c.expect(pid > 0, "pid %d", pid)
			}
			return c
		})
	if pid > 0 {
		// qemu-ga forgets a process once it reported it exited: the last
		// poll is the step.
		cmd := fmt.Sprintf(`{"execute":"guest-exec-status","arguments":{"pid":%d}}`, pid)
		g.progress("guest-exec-status")
		var r libvirt.Result
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			var status libvirt.QGAExecStatus
			r = g.e.virsh.Run(context.Background(), "qemu-agent-command", g.name, "--timeout", "30", cmd)
			if r.Err != nil || libvirt.DecodeReturn(r.Stdout, &status) != nil || status.Exited {
				break
			}
		}
		g.record("guest-exec-status", r, libvirt.JSONShape, func(r libvirt.Result) []string {
			var c checks
			var v libvirt.QGAExecStatus
			if c.decode(r.Stdout, &v) {
				c.expect(v.Exited && v.ExitCode != nil && *v.ExitCode == 3, "exited %v exitcode %v, want 3", v.Exited, v.ExitCode)
				c.expect(b64(v.OutData) == "out\n" && b64(v.ErrData) == "err\n", "out-data %q err-data %q", b64(v.OutData), b64(v.ErrData))
			}
			return c
		})
	}
	g.agentCommand("guest-get-cpustats", `{"execute":"guest-get-cpustats"}`, func(out string) []string {
		var c checks
		var v []libvirt.QGACPUStats
		if c.decode(out, &v) {
			c.expect(len(v) == tr.cpus, "%d CPUs, the guest has %d", len(v), tr.cpus)
			for _, s := range v {
				c.expect(s.Type == "linux" && s.User != nil && s.Idle != nil && s.System != nil, "cpu %d: %+v", s.CPU, s)
			}
		}
		return c
	})
	g.agentCommand("guest-get-diskstats", `{"execute":"guest-get-diskstats"}`, func(out string) []string {
		var c checks
		var v []libvirt.QGADiskStats
		if c.decode(out, &v) {
			i := slices.IndexFunc(v, func(d libvirt.QGADiskStats) bool { return d.Name == "vda" })
			c.expect(i >= 0, "no vda")
			if i >= 0 {
				s := v[i].Stats
				c.expect(v[i].Major == 254 || v[i].Major == 253 || v[i].Major > 0, "vda major %d", v[i].Major)
				c.expect(s.ReadIOs != nil && *s.ReadIOs > 0 && s.ReadSectors != nil, "vda read stats %+v", s)
			}
		}
		return c
	})
	g.agentCommand("guest-get-users", `{"execute":"guest-get-users"}`, func(out string) []string {
		var c checks
		var v []libvirt.QGAUser
		if c.decode(out, &v) {
			var names []string
			for _, u := range v {
				names = append(names, u.User)
				c.expect(u.LoginTime > 1e9 && u.LoginTime < float64(time.Now().Unix()+3600), "%s login-time %v", u.User, u.LoginTime)
			}
			slices.Sort(names)
			c.expect(slices.Equal(names, tr.users), "users %v, the guest says %v", names, tr.users)
		}
		return c
	})
	g.agentCommand("guest-get-timezone", `{"execute":"guest-get-timezone"}`, func(out string) []string {
		var c checks
		var v libvirt.QGATimezone
		if c.decode(out, &v) {
			c.expect(v.Offset == tr.zoneOffset && v.Zone == "IST", "zone %q offset %d, the guest says IST %d", v.Zone, v.Offset, tr.zoneOffset)
		}
		return c
	})
}

func b64(p *string) string {
	if p == nil {
		return "<absent>"
	}
	b, err := base64.StdEncoding.DecodeString(*p)
	if err != nil {
		return "<bad base64>"
	}
	return string(b)
}

// checkGuestinfo: virsh guestinfo (every type) against the guest's truth.
func (g *guest) checkGuestinfo(tr truth) {
	g.step("guestinfo", libvirt.KeyShape, func(r libvirt.Result) []string {
		var c checks
		// libvirt 9.0 prints "User.count": keys are compared in lower case.
		kv := map[string]string{}
		for k, v := range libvirt.ParseKeyValues(r.Stdout) {
			kv[strings.ToLower(k)] = v
		}
		c.expect(kv["os.id"] == tr.osID && kv["os.version-id"] == tr.osVersionID && kv["os.pretty-name"] == tr.osPretty,
			"os.id %q os.version-id %q os.pretty-name %q", kv["os.id"], kv["os.version-id"], kv["os.pretty-name"])
		c.expect(kv["os.kernel-release"] == tr.kernel && kv["os.machine"] == tr.machine, "os.kernel-release %q os.machine %q", kv["os.kernel-release"], kv["os.machine"])
		c.expect(kv["hostname"] == tr.hostname, "hostname %q, the guest says %q", kv["hostname"], tr.hostname)
		c.expect(kv["user.count"] == strconv.Itoa(len(tr.users)) && kv["user.0.name"] == tr.users[0],
			"user.count %q user.0.name %q, the guest says %v", kv["user.count"], kv["user.0.name"], tr.users)
		c.expect(kv["timezone.offset"] == strconv.FormatInt(tr.zoneOffset, 10), "timezone.offset %q", kv["timezone.offset"])
		root := ""
		for i := 0; kv[fmt.Sprintf("fs.%d.name", i)] != ""; i++ {
			if kv[fmt.Sprintf("fs.%d.mountpoint", i)] == "/" {
				root = fmt.Sprintf("fs.%d.", i)
			}
		}
		c.expect(root != "", "no fs.N.mountpoint /")
		if root != "" {
			c.expect(kv[root+"fstype"] == tr.rootFS && kv[root+"disk.0.alias"] == "vda" && kv[root+"disk.0.serial"] == "kvmtest-root",
				"/: fstype %q disk.0.alias %q disk.0.serial %q", kv[root+"fstype"], kv[root+"disk.0.alias"], kv[root+"disk.0.serial"])
		}
		vda := false
		for i := 0; kv[fmt.Sprintf("disk.%d.name", i)] != ""; i++ {
			vda = vda || kv[fmt.Sprintf("disk.%d.name", i)] == "/dev/vda" && kv[fmt.Sprintf("disk.%d.alias", i)] == "vda"
		}
		c.expect(vda, "no disk.N.name /dev/vda with alias vda")
		return c
	}, "guestinfo", g.name)
}

// checkDomifaddr: domifaddr --source agent lists eth0 with its MAC and address.
func (g *guest) checkDomifaddr() {
	g.step("domifaddr --source agent", libvirt.TableShape, func(r libvirt.Result) []string {
		var c checks
		_, rows := libvirt.Table(r.Stdout)
		eth0, lo := false, false
		for _, row := range rows {
			line := strings.Join(row, " ")
			eth0 = eth0 || strings.Contains(line, "eth0") && strings.Contains(line, mac) && strings.Contains(line, guestIP+"/24")
			lo = lo || strings.Contains(line, "lo") && strings.Contains(line, "127.0.0.1/8")
		}
		c.expect(eth0, "no eth0 row with %s and %s/24", mac, guestIP)
		c.expect(lo, "no lo row with 127.0.0.1/8")
		return c
	}, "domifaddr", g.name, "--source", "agent")
}

// checkDomfsinfo: / on vda.
func (g *guest) checkDomfsinfo() {
	g.step("domfsinfo", libvirt.TableShape, func(r libvirt.Result) []string {
		var c checks
		_, rows := libvirt.Table(r.Stdout)
		i := slices.IndexFunc(rows, func(row []string) bool { return len(row) > 0 && row[0] == "/" })
		c.expect(i >= 0, "no row for /")
		if i >= 0 {
			c.expect(len(rows[i]) == 4 && rows[i][2] == "ext4" && rows[i][3] == "vda", "row for /: %q, want ext4 on vda", rows[i])
		}
		return c
	}, "domfsinfo", g.name)
}

// checkDomtime: the agent's time is the guest's; --sync sets a wrong guest
// clock to the host's.
func (g *guest) checkDomtime() {
	g.step("domtime", libvirt.KeyShape, func(r libvirt.Result) []string {
		var c checks
		guestNow, _ := strconv.ParseInt(g.run("date +%s"), 10, 64)
		got, err := strconv.ParseInt(libvirt.ParseKeyValues(r.Stdout)["Time"], 10, 64)
		c.expect(err == nil && math.Abs(float64(got-guestNow)) <= 10, "Time %d, the guest says %d", got, guestNow)
		return c
	}, "domtime", g.name)

	g.run(`date -s @$(( $(date +%s) - 7200 )) >/dev/null`)
	g.step("domtime --sync", nil, func(r libvirt.Result) []string {
		var c checks
		guestNow, _ := strconv.ParseInt(g.run("date +%s"), 10, 64)
		c.expect(math.Abs(float64(guestNow-time.Now().Unix())) <= 10, "after --sync the guest's clock is %d, the host's %d", guestNow, time.Now().Unix())
		return c
	}, "domtime", g.name, "--sync")
	// Whatever happened, the remaining checks need the right time.
	g.run(fmt.Sprintf("date -s @%d >/dev/null", time.Now().Unix()))
}

// checkPassword: set-user-password changes the hash in /etc/shadow to one
// of the new password.
func (g *guest) checkPassword() {
	hash := func() string { return g.run("getent shadow " + testUser + " | cut -d: -f2") }
	before := hash()
	const pw = "s3cond-Passw0rd"
	g.step("set-user-password", nil, func(r libvirt.Result) []string {
		var c checks
		after := hash()
		c.expect(after != before, "the hash in /etc/shadow did not change")
		ok := g.run(fmt.Sprintf(`perl -e 'print crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? "match" : "differ"' '%s' '%s'`, pw, after))
		c.expect(ok == "match", "the new hash is not the new password's (%s)", ok)
		return c
	}, "set-user-password", g.name, testUser, pw)
}

// checkFileRoundTrip: guest-file-open/write/close, then open/read/close,
// with the guest's view of the file in between.
func (g *guest) checkFileRoundTrip() {
	const path = "/tmp/kvmtest-file"
	data := []byte("kvmtest guest-file round trip\x00\x01\xff\n")
	handle := func(out string) (int64, []string) {
		var c checks
		var h int64
		c.decode(out, &h)
		c.expect(h > 0, "handle %d", h)
		return h, c
	}
	var h int64
	g.agentCommand("guest-file-open w", fmt.Sprintf(`{"execute":"guest-file-open","arguments":{"path":%q,"mode":"w"}}`, path),
		func(out string) []string { var c []string; h, c = handle(out); return c })
	if h == 0 {
		return
	}
	g.agentCommand("guest-file-write", fmt.Sprintf(`{"execute":"guest-file-write","arguments":{"handle":%d,"buf-b64":%q}}`, h, base64.StdEncoding.EncodeToString(data)),
		func(out string) []string {
			var c checks
			var v libvirt.QGAFileWrite
			if c.decode(out, &v) {
				c.expect(v.Count == int64(len(data)), "count %d, want %d", v.Count, len(data))
			}
			return c
		})
	g.agentCommand("guest-file-close w", fmt.Sprintf(`{"execute":"guest-file-close","arguments":{"handle":%d}}`, h),
		func(out string) []string { var c checks; var v struct{}; c.decode(out, &v); return c })
	if got := g.run("base64 -w0 " + path); got != base64.StdEncoding.EncodeToString(data) {
		g.fail("the guest's %s holds %q", path, got)
	}
	h = 0
	g.agentCommand("guest-file-open r", fmt.Sprintf(`{"execute":"guest-file-open","arguments":{"path":%q}}`, path),
		func(out string) []string { var c []string; h, c = handle(out); return c })
	if h == 0 {
		return
	}
	g.agentCommand("guest-file-read", fmt.Sprintf(`{"execute":"guest-file-read","arguments":{"handle":%d,"count":4096}}`, h),
		func(out string) []string {
			var c checks
			var v libvirt.QGAFileRead
			if c.decode(out, &v) {
				got, _ := base64.StdEncoding.DecodeString(v.BufB64)
				c.expect(string(got) == string(data) && v.Count == int64(len(data)), "read %d bytes %q, want %q", v.Count, got, data)
			}
			return c
		})
	g.agentCommand("guest-file-close r", fmt.Sprintf(`{"execute":"guest-file-close","arguments":{"handle":%d}}`, h),
		func(out string) []string { var c checks; var v struct{}; c.decode(out, &v); return c })
}

// checkQuiescedSnapshot: a disk-only snapshot with --quiesce freezes and
// thaws the guest's file systems: the agent's log shows it, a probe that
// writes to / every 50 ms sees one write blocked (frozen) and completing
// (thawed), and the guest writes afterwards.
func (g *guest) checkQuiescedSnapshot() {
	unit := "kvmmanager-agent"
	if g.kind == libvirt.KindReference {
		unit = "qemu-guest-agent"
	}
	g.run(`date +%s > /run/kvmtest-snap-since
rm -f /run/kvmtest-probe.log; touch /run/kvmtest-probe.on
setsid -f bash -c 'while [ -e /run/kvmtest-probe.on ]; do
	s=$(date +%s%N); echo x > /root/.kvmtest-probe; e=$(date +%s%N)
	echo "$(( (e - s) / 1000000 ))" >> /run/kvmtest-probe.log
	sleep 0.05
done' </dev/null >/dev/null 2>&1
sleep 1`)
	snap := g.dir + "/snapshot.qcow2"
	g.step("snapshot-create-as --disk-only --quiesce", nil, func(r libvirt.Result) []string {
		var c checks
		time.Sleep(time.Second)
		probe := g.run(`rm -f /run/kvmtest-probe.on; sleep 0.5; touch /run/kvmtest-probe.log
max=$(sort -n /run/kvmtest-probe.log | tail -1); echo "${max:-0} $(wc -l < /run/kvmtest-probe.log)"`)
		log := g.run(fmt.Sprintf(`journalctl -u %s --since @$(cat /run/kvmtest-snap-since) --no-pager -o cat | grep -iE 'freez|thaw' || true`, unit))
		f := strings.Fields(probe)
		g.note(fmt.Sprintf("--- guest: journal of %s ---\n%s\n--- guest: longest write to / while the probe ran: %s ms (of %s writes) ---", unit, log, f[0], f[1]))
		longest, _ := strconv.Atoi(f[0])
		c.expect(longest >= 100, "no write to / was blocked (longest %d ms): the file systems were not frozen", longest)
		// qemu-ga logs the freeze request ("guest-fsfreeze called") and
		// nothing while frozen; ours logs the thaw. Either shows the agent
		// took part; the probe shows the freeze itself.
		lower := strings.ToLower(log)
		c.expect(strings.Contains(lower, "freez") || strings.Contains(lower, "thaw"), "the agent's log mentions neither the freeze nor the thaw: %q", log)
		w := g.run("echo after-snapshot > /root/after-snapshot && sync && cat /root/after-snapshot")
		c.expect(w == "after-snapshot", "write after the snapshot: %q", w)
		return c
	}, "snapshot-create-as", g.name, "--name", "quiesced", "--disk-only", "--quiesce", "--atomic", "--no-metadata",
		"--diskspec", "vda,file="+snap)
	g.agentCommand("guest-fsfreeze-status", `{"execute":"guest-fsfreeze-status"}`, func(out string) []string {
		var c checks
		var v string
		if c.decode(out, &v) {
			c.expect(v == "thawed", "status %q", v)
		}
		return c
	})
}

// checkReboot: reboot --mode agent boots the guest again.
func (g *guest) checkReboot() {
	before := g.run("cat /proc/sys/kernel/random/boot_id")
	r := g.step("reboot --mode agent", nil, nil, "reboot", g.name, "--mode", "agent")
	if r.Err != nil {
		return
	}
	start := time.Now()
	deadline := start.Add(8 * time.Minute)
	for {
		// Long waits per request: requests sent while the guest reboots
		// queue up in QEMU, and each costs the slow guest a few processes.
		res, err := g.sh.Run("cat /proc/sys/kernel/random/boot_id", 30*time.Second)
		if err == nil && res.Code == 0 && strings.TrimSpace(res.Output) != before {
			break
		}
		if time.Now().After(deadline) {
			g.fail("the guest did not boot again within 8 minutes")
			return
		}
		if err == nil {
			time.Sleep(2 * time.Second)
		}
	}
	g.waitAgent(3 * time.Minute)
	g.progress("reboot to answering agent: %s", time.Since(start).Round(100*time.Millisecond))
}

// checkShutdown: shutdown --mode agent powers the guest off.
func (g *guest) checkShutdown() {
	r := g.step("shutdown --mode agent", nil, nil, "shutdown", g.name, "--mode", "agent")
	if r.Err != nil {
		return
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, _ := g.e.virsh.Must(context.Background(), "domstate", g.name)
		if strings.TrimSpace(out) == "shut off" {
			g.progress("guest powered off")
			return
		}
		if time.Now().After(deadline) {
			g.fail("the domain is still %q 3 minutes after the shutdown", strings.TrimSpace(out))
			return
		}
		time.Sleep(time.Second)
	}
}

var _ = json.Marshal
