//go:build !windows

package methods

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func needSystemCommands(t *testing.T, names ...string) {
	t.Helper()
	c := policy.NewCommands(false, nil, nil)
	for _, n := range names {
		if _, err := c.Resolve(n); err != nil {
			t.Skipf("%s not in %s: %v", n, policy.SystemPATH, err)
		}
	}
}

// wireLen is the length of s as a JSON string on the wire, without quotes
// (the server does not escape HTML characters).
func wireLen(s string) int {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return b.Len() - 3 // quotes and newline
}

func execParams(cmd string, args ...string) map[string]any {
	return map[string]any{"command": cmd, "args": args}
}

func TestExecCommand(t *testing.T) {
	needSystemCommands(t, "sh", "echo", "printf", "pwd", "env", "cat", "seq", "true")
	wd := t.TempDir()
	tests := []struct {
		name   string
		edit   func(*config.Config)
		params map[string]any
		check  func(t *testing.T, r protocol.ExecResult)
	}{
		{"stdout and args", nil, execParams("echo", "hello", "a b"), func(t *testing.T, r protocol.ExecResult) {
			if r.ExitCode != 0 || r.Stdout != "hello a b\n" || r.Stderr != "" {
				t.Fatalf("%+v", r)
			}
		}},
		{"args are not interpreted by a shell", nil, execParams("echo", "$HOME", "`id`", ";", "|", "*"), func(t *testing.T, r protocol.ExecResult) {
			if r.Stdout != "$HOME `id` ; | *\n" {
				t.Fatalf("stdout %q", r.Stdout)
			}
		}},
		{"non-zero exit and stderr", nil, execParams("sh", "-c", "echo out; echo err >&2; exit 3"), func(t *testing.T, r protocol.ExecResult) {
			if r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
				t.Fatalf("%+v", r)
			}
		}},
		{"killed by a signal is 128+sig", nil, execParams("sh", "-c", "kill -TERM $$"), func(t *testing.T, r protocol.ExecResult) {
			if r.ExitCode != 143 {
				t.Fatalf("exit_code %d, want 143", r.ExitCode)
			}
		}},
		{"absolute path", nil, execParams("/bin/sh", "-c", "echo $0"), func(t *testing.T, r protocol.ExecResult) {
			if r.Stdout != "/bin/sh\n" {
				t.Fatalf("stdout %q (argv[0] must be the command as given)", r.Stdout)
			}
		}},
		{"stdin is /dev/null", nil, execParams("cat"), func(t *testing.T, r protocol.ExecResult) {
			if r.ExitCode != 0 || r.Stdout != "" {
				t.Fatalf("%+v", r)
			}
		}},
		{"fixed environment", nil, execParams("env"), func(t *testing.T, r protocol.ExecResult) {
			got := strings.Split(strings.TrimSpace(r.Stdout), "\n")
			slices.Sort(got)
			want := slices.Clone(childEnv)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("env %q, want %q", got, want)
			}
		}},
		{"working directory", nil, map[string]any{"command": "pwd", "working_directory": wd}, func(t *testing.T, r protocol.ExecResult) {
			if r.Stdout != wd+"\n" {
				t.Fatalf("pwd %q, want %q", r.Stdout, wd)
			}
		}},
		{"capture_output false", nil, map[string]any{"command": "echo", "args": []string{"x"}, "capture_output": false}, func(t *testing.T, r protocol.ExecResult) {
			if r.ExitCode != 0 || r.Stdout != "" || r.Stderr != "" {
				t.Fatalf("%+v", r)
			}
		}},
		{"invalid UTF-8 replaced", nil, execParams("printf", `a\377b\300`), func(t *testing.T, r protocol.ExecResult) {
			if r.Stdout != "a\uFFFDb\uFFFD" {
				t.Fatalf("stdout %q", r.Stdout)
			}
		}},
		{"output capped per stream, drained", func(c *config.Config) { c.MaxOutputBytes = 1000 },
			execParams("sh", "-c", "seq 1 200000; seq 1 200000 >&2; echo done >&2; exit 7"), func(t *testing.T, r protocol.ExecResult) {
				// seq writes far more than a pipe holds: the command only
				// finishes if the agent keeps reading past the cap.
				// The cap is on the wire: each "\n" is 2 bytes of JSON.
				if r.ExitCode != 7 || wireLen(r.Stdout) != 1000 || wireLen(r.Stderr) != 1000 || !r.StdoutTruncated || !r.StderrTruncated {
					t.Fatalf("exit %d, stdout %d wire bytes (truncated %v), stderr %d wire bytes (truncated %v)",
						r.ExitCode, wireLen(r.Stdout), r.StdoutTruncated, wireLen(r.Stderr), r.StderrTruncated)
				}
				if !strings.HasPrefix(r.Stdout, "1\n2\n3\n") {
					t.Fatalf("stdout does not start with the first bytes: %q", r.Stdout[:20])
				}
			}},
		{"output under the cap not flagged", func(c *config.Config) { c.MaxOutputBytes = 7 }, execParams("echo", "12345"), func(t *testing.T, r protocol.ExecResult) {
			if r.Stdout != "12345\n" || r.StdoutTruncated {
				t.Fatalf("%+v", r)
			}
		}},
		{"whitelisted bare name", func(c *config.Config) { c.CommandWhitelistEnabled = true; c.CommandWhitelist = []string{"true"} },
			execParams("true"), func(t *testing.T, r protocol.ExecResult) {
				if r.ExitCode != 0 {
					t.Fatalf("%+v", r)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, tt.edit)
			var r protocol.ExecResult
			raw := mustCall(t, s.Handlers()[protocol.MethodExecCommand], tt.params, &r)
			if r.ExecutionTimeMS < 0 {
				t.Fatalf("execution_time_ms %d", r.ExecutionTimeMS)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"exit_code", "stdout", "stderr", "execution_time_ms"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("result %s lacks %q", raw, k)
				}
			}
			tt.check(t, r)
		})
	}
}

func TestExecCommandErrors(t *testing.T) {
	needSystemCommands(t, "true", "ls")
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	whitelist := func(c *config.Config) { c.CommandWhitelistEnabled = true; c.CommandWhitelist = []string{"ls"} }
	tests := []struct {
		name   string
		edit   func(*config.Config)
		params any
		code   int
		parts  []string
	}{
		{"missing command", nil, `{}`, protocol.CodeInvalidParams, []string{"command"}},
		{"unknown field", nil, `{"command":"true","shell":true}`, protocol.CodeInvalidParams, []string{`"shell"`}},
		{"zero timeout", nil, `{"command":"true","timeout_seconds":0}`, protocol.CodeInvalidParams, []string{"timeout_seconds"}},
		{"not found", nil, execParams("no-such-command-kvm"), protocol.CodeNotFound, []string{"no-such-command-kvm", "not found"}},
		{"absolute not found", nil, execParams("/nonexistent/x"), protocol.CodeNotFound, nil},
		{"not executable", nil, execParams(file), protocol.CodePermissionDenied, []string{"executable"}},
		{"relative path", nil, execParams("./true"), protocol.CodeInvalidParams, []string{"bare name or an absolute path"}},
		{"dotdot name", whitelist, execParams("../bin/ls"), protocol.CodeInvalidParams, nil},
		{"not whitelisted", whitelist, execParams("true"), protocol.CodePermissionDenied, []string{"command_whitelist"}},
		{"whitelist: absolute path of a bare entry", whitelist, execParams("/bin/ls"), protocol.CodePermissionDenied, []string{"command_whitelist"}},
		{"relative working directory", nil, map[string]any{"command": "true", "working_directory": "tmp"}, protocol.CodeInvalidParams, []string{"absolute"}},
		{"missing working directory", nil, map[string]any{"command": "true", "working_directory": "/nonexistent-dir"}, protocol.CodeNotFound, []string{"working_directory"}},
		{"working directory is a file", nil, map[string]any{"command": "true", "working_directory": file}, protocol.CodeInvalidParams, []string{"not a directory"}},
		{"NUL in args", nil, execParams("true", "a\x00b"), protocol.CodeInvalidParams, []string{"NUL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, tt.edit)
			_, perr := call(t, s.Handlers()[protocol.MethodExecCommand], tt.params)
			wantError(t, perr, tt.code, tt.parts...)
		})
	}
}

// A timeout kills the whole process group, grandchildren included, and the
// error carries the output produced before the kill.
func TestExecCommandTimeoutKillsProcessTree(t *testing.T) {
	needSystemCommands(t, "sh", "sleep")
	pidFile := filepath.Join(t.TempDir(), "pids")
	// The request asks for 100 s; command_timeout_seconds (1) wins.
	s := newService(t, func(c *config.Config) { c.CommandTimeoutSeconds = 1 })
	params := map[string]any{
		"command":         "sh",
		"args":            []string{"-c", "sleep 100 & echo $! > " + pidFile + "; echo $$ >> " + pidFile + "; echo started; echo oops >&2; sleep 100"},
		"timeout_seconds": 100,
	}
	_, perr := call(t, s.Handlers()[protocol.MethodExecCommand], params)
	wantError(t, perr, protocol.CodeTimeout, "timed out after 1s")
	var data protocol.ExecResult
	if err := json.Unmarshal(perr.Data, &data); err != nil {
		t.Fatalf("error data %s: %v", perr.Data, err)
	}
	if data.Stdout != "started\n" || data.Stderr != "oops\n" || data.ExitCode != 137 {
		t.Fatalf("error data %+v, want the output so far and exit_code 137", data)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(raw)) {
		pid, _ := strconv.Atoi(f)
		// The agent waited for the pipes the grandchild held; it is gone
		// (or a zombie waiting for init) once its pipe closed.
		if alive(pid) {
			t.Errorf("process %d survived the timeout", pid)
		}
	}
}

// alive reports whether pid exists and is not a zombie. A killed process may
// take a moment to be torn down after its file descriptors closed, so this
// looks a few times.
func alive(pid int) bool {
	for range 50 {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// A command that exits while a background child keeps its output pipe open
// neither holds the request nor leaves the child running: it is killed with
// the command's container when the command exits.
func TestExecCommandBackgroundChildDoesNotHang(t *testing.T) {
	needSystemCommands(t, "sh", "sleep")
	s := newService(t, nil)
	var r protocol.ExecResult
	mustCall(t, s.Handlers()[protocol.MethodExecCommand], execParams("sh", "-c", "sleep 60 & echo $!; echo parent done"), &r)
	lines := strings.Split(r.Stdout, "\n")
	if r.ExitCode != 0 || len(lines) != 3 || lines[1] != "parent done" {
		t.Fatalf("%+v", r)
	}
	pid, err := strconv.Atoi(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("background child %d outlived its command", pid)
	}
}
