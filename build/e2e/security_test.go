//go:build vmtest

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func init() {
	// Before the reconnect cycles (which come before power): in every boot.
	i := slices.IndexFunc(checks, func(c check) bool { return c.name == "reconnect_cycles" })
	checks = slices.Insert(checks, i, check{name: "exec_setsid_grandchild_gone", run: checkExecSetsidGone})
}

// checkExecSetsidGone: a command's setsid grandchild, which left the
// command's session and whose parent exited, is gone once the command's
// timeout killed it (the red-team case: 60 of 60 survived). The test guest
// mounts no cgroup2, so this is the agent's subreaper fallback at work.
func checkExecSetsidGone(ctx context.Context, t *testing.T, m *machine) {
	timeout := 2
	_, err := m.client.Exec(ctx, protocol.ExecParams{Command: "/bin/sh",
		Args: []string{"-c", "(setsid sleep 772 </dev/null >/dev/null 2>&1 &); (setsid sh -c 'sleep 775 & exit 0' </dev/null >/dev/null 2>&1 &); sleep 100"}, TimeoutSeconds: &timeout})
	wantCode(t, "exec with a 2 s timeout", err, protocol.CodeTimeout)
	// A normal exit leaves nothing either.
	exec(ctx, t, m, "/bin/sh", "-c", "(setsid sleep 773 </dev/null >/dev/null 2>&1 &); sleep 774 </dev/null >/dev/null 2>&1 & exit 0")
	ps := exec(ctx, t, m, "ps", "-o", "pid,stat,args")
	for _, line := range strings.Split(ps, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[2] == "sleep" && strings.HasPrefix(f[3], "77") && !strings.HasPrefix(f[1], "Z") {
			t.Errorf("process outlived its command: %s\n%s", line, ps)
		}
	}
}
