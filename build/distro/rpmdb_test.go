package distro

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// TestRecordRPMProvides: the rpm guest's database answers that /bin/sh is
// provided (so the agent's rpm, which requires it, installs), and by a
// package without files (so rpm -V and rpm -e touch nothing dpkg owns).
func TestRecordRPMProvides(t *testing.T) {
	testenv.NeedCommands(t, "rpm")
	tree := t.TempDir()
	if err := RecordRPMProvides(context.Background(), io.Discard, tree, rpmDBPath, Rocky9RPM.RPMProvides); err != nil {
		t.Fatal(err)
	}
	q := func(args ...string) string {
		out, err := exec.Command("rpm", append([]string{"--root", tree, "--dbpath", rpmDBPath}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := q("-q", "--whatprovides", "/bin/sh", "--qf", "%{NAME}\n"); got != "kvmtest-base" {
		t.Errorf("rpm -q --whatprovides /bin/sh = %q, want kvmtest-base", got)
	}
	if got := q("-ql", "kvmtest-base"); got != "(contains no files)" {
		t.Errorf("rpm -ql kvmtest-base = %q, want no files", got)
	}
}
