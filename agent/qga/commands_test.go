//go:build !windows

package qga

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
)

// host is one session with a dialect, driven line by line.
type host struct {
	t  *testing.T
	c  interface{ Write([]byte) (int, error) }
	r  *bufio.Reader
	d  *Dialect
	ok chan error
}

type powerCall struct{ kind methods.PowerKind }

type fakePower struct{ calls chan powerCall }

func (f *fakePower) Power(kind methods.PowerKind, _ bool, _ time.Duration) error {
	f.calls <- powerCall{kind}
	return nil
}

func newHost(t *testing.T, cfg *config.Config, hostRoot string, power methods.PowerAction) *host {
	t.Helper()
	if cfg == nil {
		cfg = config.Default()
	}
	if power == nil {
		power = &fakePower{calls: make(chan powerCall, 4)}
	}
	svc := methods.New(cfg, methods.Options{HostRoot: hostRoot, Power: power})
	d := New(svc, cfg, Options{HostRoot: hostRoot})
	a, b := netPipe(t)
	h := &host{t: t, c: b, r: bufio.NewReader(b), d: d, ok: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.ok <- d.ServeConn(ctx, a) }()
	t.Cleanup(func() {
		cancel()
		<-h.ok
	})
	return h
}

// call sends one command and returns the raw reply line.
func (h *host) call(cmd string) string {
	h.t.Helper()
	if _, err := h.c.Write([]byte(cmd)); err != nil {
		h.t.Fatal(err)
	}
	line, err := h.r.ReadString('\n')
	if err != nil {
		h.t.Fatalf("%s: read reply: %v", cmd, err)
	}
	return line
}

// ret sends a command that must succeed and decodes its return into dst
// strictly (a member the type does not know fails the test).
func (h *host) ret(cmd string, dst any) {
	h.t.Helper()
	line := h.call(cmd)
	var r struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil || r.Return == nil {
		h.t.Fatalf("%s: reply %q is not a return", cmd, line)
	}
	dec := json.NewDecoder(strings.NewReader(string(r.Return)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		h.t.Fatalf("%s: return %s: %v", cmd, r.Return, err)
	}
}

// fails sends a command that must fail with a GenericError whose desc
// contains want.
func (h *host) fails(cmd, want string) {
	h.t.Helper()
	line := h.call(cmd)
	var r struct {
		Error *Error `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil || r.Error == nil {
		h.t.Fatalf("%s: reply %q is not an error", cmd, line)
	}
	if !strings.Contains(r.Error.Desc, want) {
		h.t.Errorf("%s: error %q does not contain %q", cmd, r.Error.Desc, want)
	}
}

func (e *Error) UnmarshalJSON(b []byte) error {
	var v struct{ Class, Desc string }
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Error{Class: v.Class, Desc: v.Desc}
	return nil
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOSInfoAndHostName(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"etc/os-release": "NAME=\"Debian GNU/Linux\"\nID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\n"})
	h := newHost(t, nil, root, nil)
	var info struct {
		KernelRelease string `json:"kernel-release"`
		KernelVersion string `json:"kernel-version"`
		Machine       string `json:"machine"`
		ID            string `json:"id"`
		Name          string `json:"name"`
		PrettyName    string `json:"pretty-name"`
		Version       string `json:"version"`
		VersionID     string `json:"version-id"`
	}
	h.ret(`{"execute":"guest-get-osinfo"}`, &info)
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if info.KernelRelease != unix.ByteSliceToString(uts.Release[:]) || info.Machine != unix.ByteSliceToString(uts.Machine[:]) || info.KernelVersion == "" {
		t.Errorf("kernel fields %+v", info)
	}
	if info.ID != "debian" || info.Name != "Debian GNU/Linux" || info.PrettyName != "Debian GNU/Linux 12 (bookworm)" || info.Version != "12 (bookworm)" || info.VersionID != "12" {
		t.Errorf("os-release fields %+v", info)
	}
	var hn struct {
		HostName string `json:"host-name"`
	}
	h.ret(`{"execute":"guest-get-host-name"}`, &hn)
	if want, _ := os.Hostname(); hn.HostName != want {
		t.Errorf("host-name %q, want %q", hn.HostName, want)
	}
	// Without os-release the members are absent, not empty.
	h2 := newHost(t, nil, t.TempDir(), nil)
	line := h2.call(`{"execute":"guest-get-osinfo"}`)
	if strings.Contains(line, `"id"`) || strings.Contains(line, `"name"`) || !strings.Contains(line, `"kernel-release"`) {
		t.Errorf("osinfo without os-release: %s", line)
	}
}

func TestVcpus(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"sys/devices/system/cpu/cpu0/topology/core_id": "0",
		"sys/devices/system/cpu/cpu1/online":           "1\n",
		"sys/devices/system/cpu/cpu2/online":           "0\n",
		"sys/devices/system/cpu/cpu10/online":          "1\n",
		"sys/devices/system/cpu/cpufreq/x":             "",
		"sys/devices/system/cpu/online":                "0-1,10\n",
	})
	h := newHost(t, nil, root, nil)
	var got []struct {
		LogicalID  int64 `json:"logical-id"`
		Online     bool  `json:"online"`
		CanOffline *bool `json:"can-offline"`
	}
	h.ret(`{"execute":"guest-get-vcpus"}`, &got)
	want := []struct {
		id             int64
		online, canOff bool
	}{{0, true, false}, {1, true, true}, {2, false, true}, {10, true, true}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		g := got[i]
		if g.LogicalID != w.id || g.Online != w.online || g.CanOffline == nil || *g.CanOffline != w.canOff {
			t.Errorf("vcpu %d = %+v, want %+v", i, g, w)
		}
	}
	newHost(t, nil, t.TempDir(), nil).fails(`{"execute":"guest-get-vcpus"}`, "list CPUs")
}

func TestNetworkInterfaces(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"proc/net/dev": "Inter-|   Receive                                                |  Transmit\n" +
			" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
			"    lo: 3193      29    1    2    0     0          0         0     3194      30    3    4    0     0       0          0\n",
		"sys/class/net/lo/address": "00:00:00:00:00:00\n",
	})
	h := newHost(t, nil, root, nil)
	type addr struct {
		IP     string `json:"ip-address"`
		Type   string `json:"ip-address-type"`
		Prefix int64  `json:"prefix"`
	}
	var got []struct {
		Name       string          `json:"name"`
		HW         string          `json:"hardware-address"`
		Addrs      []addr          `json:"ip-addresses"`
		Statistics *map[string]any `json:"statistics"`
	}
	h.ret(`{"execute":"guest-network-get-interfaces"}`, &got)
	found := false
	for _, it := range got {
		if it.Name != "lo" {
			continue
		}
		found = true
		if it.HW != "00:00:00:00:00:00" {
			t.Errorf("lo hardware-address %q", it.HW)
		}
		if len(it.Addrs) == 0 || it.Addrs[0].IP != "127.0.0.1" || it.Addrs[0].Type != "ipv4" || it.Addrs[0].Prefix != 8 {
			t.Errorf("lo addresses %+v", it.Addrs)
		}
		if it.Statistics == nil {
			t.Fatal("lo has no statistics")
		}
		st := *it.Statistics
		for k, v := range map[string]float64{"rx-bytes": 3193, "rx-packets": 29, "rx-errs": 1, "rx-dropped": 2, "tx-bytes": 3194, "tx-packets": 30, "tx-errs": 3, "tx-dropped": 4} {
			if st[k] != v {
				t.Errorf("lo %s = %v, want %v", k, st[k], v)
			}
		}
		if len(st) != 8 {
			t.Errorf("lo statistics has %d members: %v", len(st), st)
		}
	}
	if !found {
		t.Errorf("no lo in %+v", got)
	}
}

type execStatus struct {
	Exited       bool    `json:"exited"`
	Exitcode     *int64  `json:"exitcode"`
	Signal       *int64  `json:"signal"`
	OutData      *string `json:"out-data"`
	ErrData      *string `json:"err-data"`
	OutTruncated *bool   `json:"out-truncated"`
	ErrTruncated *bool   `json:"err-truncated"`
}

// run starts a guest-exec and polls guest-exec-status until it exits.
func (h *host) run(args string) execStatus {
	h.t.Helper()
	var pid struct {
		PID int64 `json:"pid"`
	}
	h.ret(`{"execute":"guest-exec","arguments":`+args+`}`, &pid)
	for range 1000 {
		var st execStatus
		h.ret(`{"execute":"guest-exec-status","arguments":{"pid":`+itoa(int(pid.PID))+`}}`, &st)
		if st.Exited {
			// Reported once: the pid is then forgotten.
			h.fails(`{"execute":"guest-exec-status","arguments":{"pid":`+itoa(int(pid.PID))+`}}`, "Invalid parameter 'pid'")
			return st
		}
		if st.Exitcode != nil || st.OutData != nil {
			h.t.Fatalf("running process with results: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("%s: did not exit", args)
	return execStatus{}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestExec(t *testing.T) {
	cfg := config.Default()
	cfg.MaxOutputBytes = 8
	cfg.CommandTimeoutSeconds = 1
	h := newHost(t, cfg, "", nil)
	tests := []struct {
		name, args         string
		code, sig          *int64
		out, errOut        *string
		outTrunc, errTrunc *bool
	}{
		{"separate streams", `{"path":"/bin/sh","arg":["-c","echo hi; echo err >&2; exit 3"],"capture-output":true}`,
			ptr(int64(3)), nil, ptr(b64("hi\n")), ptr(b64("err\n")), ptr(false), ptr(false)},
		{"no capture", `{"path":"/bin/sh","arg":["-c","echo hi"]}`, ptr(int64(0)), nil, nil, nil, nil, nil},
		{"capture, no output", `{"path":"true","capture-output":true}`, ptr(int64(0)), nil, nil, nil, nil, nil},
		{"input-data", `{"path":"cat","input-data":"` + b64("hello") + `","capture-output":true}`, ptr(int64(0)), nil, ptr(b64("hello")), nil, ptr(false), nil},
		{"truncated at max_output_bytes", `{"path":"/bin/sh","arg":["-c","echo 0123456789"],"capture-output":"stdout"}`,
			ptr(int64(0)), nil, ptr(b64("01234567")), nil, ptr(true), nil},
		{"merged", `{"path":"/bin/sh","arg":["-c","echo a; echo b >&2"],"capture-output":"merged"}`, ptr(int64(0)), nil, ptr(b64("a\nb\n")), nil, ptr(false), nil},
		{"stderr only", `{"path":"/bin/sh","arg":["-c","echo a; echo b >&2"],"capture-output":"stderr"}`, ptr(int64(0)), nil, nil, ptr(b64("b\n")), nil, ptr(false)},
		{"signal", `{"path":"/bin/sh","arg":["-c","kill -9 $$"]}`, nil, ptr(int64(9)), nil, nil, nil, nil},
		{"env", `{"path":"/bin/sh","arg":["-c","echo $A"],"env":["A=1"],"capture-output":true}`, ptr(int64(0)), nil, ptr(b64("1\n")), nil, ptr(false), nil},
		{"killed after command_timeout_seconds", `{"path":"sleep","arg":["30"]}`, nil, ptr(int64(syscall.SIGKILL)), nil, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			st := h.run(tt.args)
			check := func(what string, got, want any) {
				if g, w := jsonOf(got), jsonOf(want); g != w {
					t.Errorf("%s = %s, want %s", what, g, w)
				}
			}
			check("exitcode", st.Exitcode, tt.code)
			check("signal", st.Signal, tt.sig)
			check("out-data", st.OutData, tt.out)
			check("err-data", st.ErrData, tt.errOut)
			check("out-truncated", st.OutTruncated, tt.outTrunc)
			check("err-truncated", st.ErrTruncated, tt.errTrunc)
		})
	}
	h.t = t
	h.fails(`{"execute":"guest-exec","arguments":{"path":"/nonexistent/x"}}`, "/nonexistent/x")
	h.fails(`{"execute":"guest-exec","arguments":{"path":"x","input-data":"!!"}}`, "Base64 data contains invalid characters")
	h.fails(`{"execute":"guest-exec","arguments":{"path":"true","env":["NOEQUALS"]}}`, "not NAME=value")
	h.fails(`{"execute":"guest-exec-status","arguments":{"pid":1}}`, "Invalid parameter 'pid'")
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// The command whitelist holds for guest-exec, and env is refused with it.
func TestExecWhitelist(t *testing.T) {
	cfg := config.Default()
	cfg.CommandWhitelistEnabled = true
	cfg.CommandWhitelist = []string{"true"}
	h := newHost(t, cfg, "", nil)
	if st := h.run(`{"path":"true"}`); st.Exitcode == nil || *st.Exitcode != 0 {
		t.Errorf("whitelisted true: %+v", st)
	}
	h.fails(`{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","id"]}}`, "whitelist")
	h.fails(`{"execute":"guest-exec","arguments":{"path":"true","env":["LD_PRELOAD=/tmp/x.so"]}}`, "command_whitelist_enabled")
}

// Pending results are bounded.
func TestExecPendingBound(t *testing.T) {
	cfg := config.Default()
	cfg.CommandTimeoutSeconds = 2 // the sleeps end by themselves
	h := newHost(t, cfg, "", nil)
	for range MaxPendingExec {
		var pid struct {
			PID int64 `json:"pid"`
		}
		h.ret(`{"execute":"guest-exec","arguments":{"path":"sleep","arg":["30"]}}`, &pid)
	}
	t.Cleanup(func() {
		h.d.svc.KillJobs(10 * time.Second)
	})
	h.fails(`{"execute":"guest-exec","arguments":{"path":"true"}}`, "pending")
}

func TestShutdown(t *testing.T) {
	for _, tt := range []struct {
		args string
		want methods.PowerKind
	}{{`{}`, methods.PowerOff}, {`{"mode":"powerdown"}`, methods.PowerOff}, {`{"mode":"halt"}`, methods.PowerOff}, {`{"mode":"reboot"}`, methods.Reboot}} {
		fp := &fakePower{calls: make(chan powerCall, 1)}
		h := newHost(t, nil, "", fp)
		// No reply on success: the next reply is guest-ping's.
		if got := h.call(`{"execute":"guest-shutdown","arguments":` + tt.args + `,"id":1}{"execute":"guest-ping","id":2}`); got != `{"return":{},"id":2}`+"\n" {
			t.Errorf("%s: reply %q", tt.args, got)
		}
		select {
		case c := <-fp.calls:
			if c.kind != tt.want {
				t.Errorf("%s: power %v, want %v", tt.args, c.kind, tt.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no power action", tt.args)
		}
	}
	cfg := config.Default()
	cfg.DisabledMethods = []string{"reboot"}
	fp := &fakePower{calls: make(chan powerCall, 1)}
	h := newHost(t, cfg, "", fp)
	h.fails(`{"execute":"guest-shutdown","arguments":{"mode":"bogus"}}`, "mode is invalid (valid values are: halt|powerdown|reboot")
	h.fails(`{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}`, "Command guest-shutdown has been disabled")
	if len(fp.calls) != 0 {
		t.Error("a failed guest-shutdown acted")
	}
}
