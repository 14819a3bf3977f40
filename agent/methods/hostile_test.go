package methods

import (
	"encoding/json"
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
