package distro_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// TestGuestScriptsShellcheck keeps the scripts baked into the test images
// shellcheck clean, like the project's own scripts.
func TestGuestScriptsShellcheck(t *testing.T) {
	testenv.NeedCommands(t, "shellcheck")
	scripts, err := filepath.Glob("guest/*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no guest scripts found: %v", err)
	}
	for _, s := range scripts {
		out, err := exec.Command("shellcheck", "-s", "bash", s).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck %s: %v\n%s", s, err, out)
		}
	}
}
