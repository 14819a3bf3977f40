//go:build !windows

package methods

import (
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// TestGuestOpsRPC calls every protocol 1.1 guest-operation method through
// its handler, on a fake host, and checks the wire result or error code.
func TestGuestOpsRPC(t *testing.T) {
	files := map[string]string{
		"proc/self/mountinfo": fakeMountinfo,
		"proc/loadavg":        "1.00 0.50 0.25 3/100 999\n",
		"proc/meminfo":        "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 10 kB\nCached: 300 kB\nSReclaimable: 20 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
		"proc/stat":           "cpu  1 1 1 1\ncpu0 1 2 3 4 5\n",
		"proc/diskstats":      " 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n",
		"var/run/utmp":        string(utmpRecord(7, "alice", 100, 0)),
		"etc/passwd":          "alice:x:1000:1000::/nonexistent:/bin/sh\n",
		"sys/devices/system/clocksource/clocksource0/current_clocksource": "tsc\n",
	}
	tests := []struct {
		method string
		params any
		want   string // exact result JSON, or "" to skip
		code   int    // error code, 0 for success
		msg    string // part of the error message
	}{
		{protocol.MethodGetUsers, nil, `{"users":[{"user":"alice","login_time":100}]}`, 0, ""},
		{protocol.MethodGetTimezone, nil, `{"zone":"UTC","offset":0}`, 0, ""},
		{protocol.MethodGetLoad, nil, `{"load1":1,"load5":0.5,"load15":0.25,"running":3,"total":100}`, 0, ""},
		{protocol.MethodGetMemoryInfo, nil, `{"total_bytes":1024000,"free_bytes":102400,"available_bytes":614400,"used_bytes":409600,"buffers_bytes":10240,"cached_bytes":327680,"swap_total_bytes":0,"swap_free_bytes":0}`, 0, ""},
		{protocol.MethodGetCPUStats, nil, `{"cpus":[{"cpu":0,"user":10,"nice":20,"system":30,"idle":40,"iowait":50}]}`, 0, ""},
		{protocol.MethodGetDiskStats, nil, `{"disks":[{"name":"sda","major":8,"minor":0,"read_ios":1,"read_merges":2,"read_sectors":3,"read_ticks":4,"write_ios":5,"write_merges":6,"write_sectors":7,"write_ticks":8,"ios_in_progress":9,"total_ticks":10,"weight_ticks":11}]}`, 0, ""},
		{protocol.MethodGetUsers, `{"all":true}`, "", protocol.CodeInvalidParams, `unknown field "all"`},
		{protocol.MethodFsfreezeStatus, nil, `{"status":"thawed","mountpoints":[],"auto_thaw_seconds":0}`, 0, ""},
		{protocol.MethodFsfreezeFreeze, `{"mountpoints":["/var","/home"]}`, `{"frozen":2,"mountpoints":["/home","/var"],"auto_thaw_seconds":60}`, 0, ""},
		{protocol.MethodFsfreezeFreeze, `{"mountpoints":"/var"}`, "", protocol.CodeInvalidParams, `"mountpoints"`},
		{protocol.MethodFsfreezeThaw, nil, `{"thawed":0}`, 0, ""},
		{protocol.MethodSetTime, `{"time_ns":-1}`, "", protocol.CodeInvalidParams, "before the epoch"},
		{protocol.MethodSetTime, `{"time":1}`, "", protocol.CodeInvalidParams, `unknown field "time"`},
		{protocol.MethodSSHGetAuthorizedKeys, `{"username":"bob"}`, "", protocol.CodeNotFound, "failed to lookup user 'bob'"},
		{protocol.MethodSSHGetAuthorizedKeys, `{}`, "", protocol.CodeInvalidParams, `"username"`},
		{protocol.MethodSSHGetAuthorizedKeys, `{"username":"alice"}`, `{"keys":[]}`, 0, ""},
		{protocol.MethodSSHAddAuthorizedKeys, `{"username":"alice","keys":[]}`, "", protocol.CodePermissionDenied, "allow_account_changes"},
		{protocol.MethodSSHAddAuthorizedKeys, `{"username":"alice"}`, "", protocol.CodeInvalidParams, `"keys"`},
		{protocol.MethodSSHRemoveAuthorizedKeys, `{"username":"alice","keys":[],"reset":true}`, "", protocol.CodeInvalidParams, `unknown field "reset"`},
		{protocol.MethodSetUserPassword, `{"username":"alice","password":"x"}`, "", protocol.CodePermissionDenied, "allow_account_changes"},
		{protocol.MethodSetUserPassword, `{"username":"alice"}`, "", protocol.CodeInvalidParams, `"password"`},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			s, _ := newFreezeService(t, "", nil)
			s.hostRoot = fakeHost(t, files)
			h := s.Handlers()[tt.method]
			if h == nil {
				t.Fatalf("no handler for %s", tt.method)
			}
			res, perr := call(t, h, tt.params)
			if tt.code != 0 {
				wantError(t, perr, tt.code, tt.msg)
				return
			}
			if perr != nil {
				t.Fatalf("%s(%v): %v", tt.method, tt.params, perr)
			}
			if tt.want != "" && string(res) != tt.want {
				t.Errorf("%s(%v) =\n%s\nwant\n%s", tt.method, tt.params, res, tt.want)
			}
		})
	}
}

func TestGuestOpsRPCFreezeCycle(t *testing.T) {
	s, _ := newFreezeService(t, fakeMountinfo, nil)
	h := s.Handlers()
	var st protocol.FsfreezeStatus
	mustCall(t, h[protocol.MethodFsfreezeFreeze], `{"mountpoints":["/var/lib/db","/var"]}`, nil)
	mustCall(t, h[protocol.MethodFsfreezeStatus], nil, &st)
	if st.Status != "frozen" || strings.Join(st.Mountpoints, " ") != "/var/lib/db /var" || st.AutoThawSeconds <= 0 {
		t.Errorf("status %+v", st)
	}
	_, perr := call(t, h[protocol.MethodFsfreezeFreeze], nil)
	wantError(t, perr, protocol.CodeCommandFailed, "already frozen")
	var th protocol.FsfreezeThawResult
	mustCall(t, h[protocol.MethodFsfreezeThaw], nil, &th)
	if th.Thawed != 2 {
		t.Errorf("thawed %d, want 2", th.Thawed)
	}
}

func TestGuestOpsRPCTime(t *testing.T) {
	s, c := newTimeService(t, nil)
	h := s.Handlers()
	var ti protocol.TimeInfo
	mustCall(t, h[protocol.MethodGetTime], nil, &ti)
	if d := time.Since(time.Unix(0, ti.TimeNs)); d < 0 || d > time.Minute {
		t.Errorf("get_time %+v", ti)
	}
	var res protocol.SetTimeResult
	mustCall(t, h[protocol.MethodSetTime], `{"time_ns":1700000000000000000}`, &res)
	if res.Source != "request" || !res.RTCUpdated || len(c.set) != 1 || c.set[0].UnixNano() != 1700000000000000000 {
		t.Errorf("set_time %+v, clock set %v", res, c.set)
	}
	mustCall(t, h[protocol.MethodSetTime], nil, &res)
	if res.Source != "rtc" || len(c.set) != 2 || !c.set[1].Equal(c.rtc) {
		t.Errorf("set_time from the RTC %+v, clock set %v", res, c.set)
	}
}

func TestGuestOpsRPCKeys(t *testing.T) {
	s, _ := accountsHost(t)
	h := s.Handlers()
	k1, k2 := sshKey("ssh-ed25519", "a", 1), sshKey("ssh-ed25519", "b", 2)
	var keys protocol.SSHAuthorizedKeys
	mustCall(t, h[protocol.MethodSSHAddAuthorizedKeys], map[string]any{"username": "alice", "keys": []string{k1, k2}}, &keys)
	if len(keys.Keys) != 2 {
		t.Errorf("after add: %q", keys.Keys)
	}
	mustCall(t, h[protocol.MethodSSHRemoveAuthorizedKeys], map[string]any{"username": "alice", "keys": []string{k1}}, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0] != k2 {
		t.Errorf("after remove: %q", keys.Keys)
	}
	_, perr := call(t, h[protocol.MethodSSHAddAuthorizedKeys], map[string]any{"username": "alice", "keys": []string{"ssh-rsa AAAA"}})
	wantError(t, perr, protocol.CodeInvalidParams, "invalid OpenSSH public key")
}

func TestGuestOpsDisabled(t *testing.T) {
	s := newService(t, func(c *config.Config) {
		c.DisabledMethods = []string{protocol.MethodSetUserPassword, protocol.MethodFsfreezeFreeze}
	})
	h := s.Handlers()
	if h[protocol.MethodSetUserPassword] != nil || h[protocol.MethodFsfreezeFreeze] != nil {
		t.Error("disabled 1.1 methods still have handlers")
	}
	if h[protocol.MethodFsfreezeThaw] == nil {
		t.Error("fsfreeze_thaw disabled too")
	}
}
