//go:build !windows

package methods

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// A timed-out command's descendants die with it even when they left its
// process group (setsid, setpgid): the group kill alone would miss them.
func TestExecCommandTimeoutKillsDescendantsOutsideTheGroup(t *testing.T) {
	needSystemCommands(t, "sh", "sleep", "setsid")
	s := newService(t, func(c *config.Config) { c.CommandTimeoutSeconds = 1 })
	params := map[string]any{
		"command": "sh",
		// The escapee closes the pipes so that nothing but the kill ends it;
		// its own child stays in its new session.
		"args": []string{"-c", `setsid sh -c 'sleep 300 & echo $! ; sleep 300' </dev/null 2>&1 & echo $!; sleep 100`},
	}
	_, perr := call(t, s.Handlers()[protocol.MethodExecCommand], params)
	wantError(t, perr, protocol.CodeTimeout, "timed out")
	var data protocol.ExecResult
	if err := json.Unmarshal(perr.Data, &data); err != nil {
		t.Fatalf("error data %s: %v", perr.Data, err)
	}
	pids := strings.Fields(data.Stdout)
	if len(pids) != 2 {
		t.Fatalf("stdout %q, want the pids of the escaped shell and its child", data.Stdout)
	}
	for _, f := range pids {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("process %d left the process group and survived the timeout", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// create_dirs leaves no directories behind when the write fails after
// creating them: a refused or failed request has no side effect.
func TestFileWriteCreateDirsUndoneOnFailure(t *testing.T) {
	tests := []struct {
		name   string
		rel    string
		rename func(string) error
		code   int
	}{
		{"name too long below new directories", "d1/d2/" + strings.Repeat("n", 300) + "/f", nil, protocol.CodeCommandFailed},
		{"write fails after the temporary file", "d1/d2/f", func(string) error { return errors.New("disk on fire") }, protocol.CodeCommandFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := newFileTree(t)
			mustMkdir(t, filepath.Join(ft.allowed, "d0"))
			before := snapshot(t, ft.base)
			s := ft.service(t, nil)
			s.beforeRename = tt.rename
			_, perr := call(t, s.Handlers()[protocol.MethodFileWrite], map[string]any{
				"path": filepath.Join(ft.allowed, tt.rel), "content": "x", "create_dirs": true,
			})
			wantError(t, perr, tt.code)
			if after := snapshot(t, ft.base); after != before {
				t.Fatalf("a failed write left changes behind:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
