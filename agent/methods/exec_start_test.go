//go:build !windows

package methods

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// follow reads a background command's output to its end the way a host
// streams it: exec_status with the offsets of the previous reply.
func follow(t *testing.T, s *Service, id int64, enc string) (stdout, stderr string, last protocol.ExecStatusResult) {
	t.Helper()
	h := s.Handlers()[protocol.MethodExecStatus]
	var outOff, errOff int64
	var out, errb strings.Builder
	for range 10000 {
		var r protocol.ExecStatusResult
		mustCall(t, h, map[string]any{"id": id, "stdout_offset": outOff, "stderr_offset": errOff, "wait_seconds": 5, "encoding": enc, "max_bytes": 7}, &r)
		for _, st := range []struct {
			s   protocol.Stream
			off *int64
			b   *strings.Builder
		}{{r.Stdout, &outOff, &out}, {r.Stderr, &errOff, &errb}} {
			if st.s.Offset != *st.off || st.s.Lost != 0 {
				t.Fatalf("stream at %d: %+v", *st.off, st.s)
			}
			data := st.s.Data
			if enc == protocol.EncodingBase64 {
				b, err := base64.StdEncoding.DecodeString(data)
				if err != nil {
					t.Fatal(err)
				}
				data = string(b)
			}
			st.b.WriteString(data)
			*st.off = st.s.NextOffset
		}
		if r.Complete {
			return out.String(), errb.String(), r
		}
	}
	t.Fatal("no end")
	return
}

func startJob(t *testing.T, s *Service, params map[string]any) protocol.ExecStartResult {
	t.Helper()
	var r protocol.ExecStartResult
	mustCall(t, s.Handlers()[protocol.MethodExecStart], params, &r)
	return r
}

func TestExecStartFollow(t *testing.T) {
	needSystemCommands(t, "sh", "cat", "sleep")
	s := newService(t, func(c *config.Config) { c.MaxOutputBytes = 64 })
	t.Cleanup(func() { s.KillJobs(0) })
	tests := []struct {
		name               string
		params             map[string]any
		enc                string
		stdout, stderr     string
		exit               int
		signal, stderrOpen bool
	}{
		{"streamed", map[string]any{"command": "sh", "args": []string{"-c", "for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; sleep 0.1; done; exit 3"}},
			protocol.EncodingUTF8, "line1\nline2\nline3\nline4\nline5\n", "err1\nerr2\nerr3\nerr4\nerr5\n", 3, false, true},
		{"stdin utf8", map[string]any{"command": "cat", "stdin": "héllo wörld — ünïcode\n"},
			protocol.EncodingUTF8, "héllo wörld — ünïcode\n", "", 0, false, true},
		{"stdin base64", map[string]any{"command": "cat", "stdin": base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff, 'x'}), "stdin_encoding": "base64"},
			protocol.EncodingBase64, "\x00\x01\xffx", "", 0, false, true},
		{"merged", map[string]any{"command": "sh", "args": []string{"-c", "echo a; echo b >&2"}, "merge_output": true},
			protocol.EncodingUTF8, "a\nb\n", "", 0, false, false},
		{"env and cwd", map[string]any{"command": "sh", "args": []string{"-c", "echo $FOO; pwd"}, "env": []string{"FOO=bar"}, "working_directory": "/tmp"},
			protocol.EncodingUTF8, "bar\n/tmp\n", "", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startJob(t, s, tt.params)
			if r.ID == 0 || r.PID == 0 || r.TimeoutSeconds != 30 {
				t.Fatalf("exec_start %+v", r)
			}
			out, errs, last := follow(t, s, r.ID, tt.enc)
			if out != tt.stdout || errs != tt.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", out, errs, tt.stdout, tt.stderr)
			}
			if last.Running || last.ExitCode == nil || *last.ExitCode != tt.exit || last.Stderr.Captured != tt.stderrOpen {
				t.Errorf("last status %+v", last)
			}
		})
	}
}

// exec_kill ends the whole tree; the timeout is capped by
// max_background_seconds; results stay readable after the exit.
func TestExecKillAndTimeout(t *testing.T) {
	needSystemCommands(t, "sh", "sleep")
	s := newService(t, func(c *config.Config) { c.MaxBackgroundSeconds = 1 })
	t.Cleanup(func() { s.KillJobs(0) })
	r := startJob(t, s, map[string]any{"command": "sh", "args": []string{"-c", "sleep 100 & echo $!; sleep 100"}, "timeout_seconds": 100})
	if r.TimeoutSeconds != 1 {
		t.Fatalf("timeout_seconds %d, want the cap 1", r.TimeoutSeconds)
	}
	out, _, last := follow(t, s, r.ID, protocol.EncodingUTF8)
	if !last.TimedOut || last.Signal == nil || *last.Signal != 9 || *last.ExitCode != 137 {
		t.Fatalf("after timeout %+v", last)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(out)); pid == 0 || alive(pid) {
		t.Errorf("background child %q survived the timeout", out)
	}

	s = newService(t, nil)
	t.Cleanup(func() { s.KillJobs(0) })
	r = startJob(t, s, map[string]any{"command": "sh", "args": []string{"-c", "sleep 100 & echo $!; sleep 100"}, "timeout_seconds": 100})
	var k protocol.ExecKillResult
	// Wait for the child's pid first.
	var st protocol.ExecStatusResult
	for st.Stdout.Data == "" {
		mustCall(t, s.Handlers()[protocol.MethodExecStatus], map[string]any{"id": r.ID, "wait_seconds": 5}, &st)
	}
	mustCall(t, s.Handlers()[protocol.MethodExecKill], map[string]any{"id": r.ID}, &k)
	if !k.Killed {
		t.Fatalf("exec_kill %+v", k)
	}
	mustCall(t, s.Handlers()[protocol.MethodExecStatus], map[string]any{"id": r.ID}, &st)
	if st.Running || !st.Killed || st.TimedOut || *st.Signal != 9 || !st.Complete {
		t.Fatalf("after kill %+v", st)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(st.Stdout.Data)); pid == 0 || alive(pid) {
		t.Errorf("background child %q survived exec_kill", st.Stdout.Data)
	}
	mustCall(t, s.Handlers()[protocol.MethodExecKill], map[string]any{"id": r.ID}, &k)
	if k.Killed {
		t.Errorf("second kill %+v", k)
	}
}

// A host that falls behind loses the oldest output and is told how much.
func TestExecStatusWindow(t *testing.T) {
	needSystemCommands(t, "sh")
	s := newService(t, func(c *config.Config) { c.MaxOutputBytes = 10 })
	r := startJob(t, s, map[string]any{"command": "sh", "args": []string{"-c", "echo 0123456789abcdefghij"}})
	var st protocol.ExecStatusResult
	for !st.Complete {
		mustCall(t, s.Handlers()[protocol.MethodExecStatus], map[string]any{"id": r.ID, "wait_seconds": 1}, &st)
	}
	if st.Stdout.Lost != 11 || st.Stdout.Offset != 11 || st.Stdout.Data != "bcdefghij\n" || st.Stdout.Total != 21 {
		t.Errorf("window %+v", st.Stdout)
	}
}

func TestExecStartErrors(t *testing.T) {
	needSystemCommands(t, "true")
	s := newService(t, func(c *config.Config) {
		c.CommandWhitelistEnabled = true
		c.CommandWhitelist = []string{"true"}
	})
	h := s.Handlers()[protocol.MethodExecStart]
	for _, tt := range []struct {
		params string
		code   int
		want   string
	}{
		{`{}`, protocol.CodeInvalidParams, `"command" is required`},
		{`{"command":"sh"}`, protocol.CodePermissionDenied, "whitelist"},
		{`{"command":"true","env":["LD_PRELOAD=/x.so"]}`, protocol.CodePermissionDenied, "command_whitelist_enabled"},
		{`{"command":"true","timeout_seconds":0}`, protocol.CodeInvalidParams, "at least 1"},
		{`{"command":"true","stdin":"!!","stdin_encoding":"base64"}`, protocol.CodeInvalidParams, "base64"},
		{`{"command":"true","stdin_encoding":"base64"}`, protocol.CodeInvalidParams, "without"},
		{`{"command":"true","working_directory":"rel"}`, protocol.CodeInvalidParams, "not absolute"},
		{`{"command":"true","bogus":1}`, protocol.CodeInvalidParams, "unknown field"},
	} {
		_, perr := call(t, h, tt.params)
		if perr == nil || perr.Code != tt.code || !strings.Contains(perr.Message, tt.want) {
			t.Errorf("%s: %v, want %d %q", tt.params, perr, tt.code, tt.want)
		}
	}
	_, perr := call(t, s.Handlers()[protocol.MethodExecStatus], `{"id":12345}`)
	wantError(t, perr, protocol.CodeNotFound, "not found")
	_, perr = call(t, s.Handlers()[protocol.MethodExecStatus], `{"id":1,"wait_seconds":11}`)
	wantError(t, perr, protocol.CodeInvalidParams, "wait_seconds")
	_, perr = call(t, s.Handlers()[protocol.MethodExecKill], `{"id":12345}`)
	wantError(t, perr, protocol.CodeNotFound, "not found")
}

// The table is bounded; each dialect sees only its own commands.
func TestBackgroundBound(t *testing.T) {
	needSystemCommands(t, "sleep")
	s := newService(t, nil)
	t.Cleanup(func() { s.KillJobs(0) })
	var first protocol.ExecStartResult
	for i := range MaxBackgroundCommands {
		r := startJob(t, s, map[string]any{"command": "sleep", "args": []string{"30"}})
		if i == 0 {
			first = r
		}
	}
	_, perr := call(t, s.Handlers()[protocol.MethodExecStart], `{"command":"sleep","args":["1"]}`)
	wantError(t, perr, protocol.CodeCommandFailed, "64 background commands")
	if s.Job(OwnerQGA, first.ID) != nil || s.Job(OwnerQGA, int64(first.PID)) != nil {
		t.Error("the QGA dialect sees an exec_start command")
	}
	var raw json.RawMessage = mustCall(t, s.Handlers()[protocol.MethodExecKill], map[string]any{"id": first.ID}, nil)
	if !strings.Contains(string(raw), `"killed":true`) {
		t.Errorf("kill %s", raw)
	}
}
