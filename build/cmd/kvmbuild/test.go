package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kvmmanager/guest-agent/build/pipeline"
	"github.com/kvmmanager/guest-agent/build/testenv"
	"github.com/kvmmanager/guest-agent/build/testrun"
)

// testTarget is `go tool mage test`: go vet (also for windows/amd64 and
// arm64 on ./agent/...), the tests (race detector on ./agent/..., the
// vmtest tag on the rest), the agent's Windows tests under Wine, shellcheck
// and actionlint, with progress while they run and one summary line.
func testTarget(ctx context.Context, root string) error {
	r := &testrun.Runner{Dir: root, Out: os.Stdout}
	r.Command(ctx, "go vet", "go", "vet", "-tags", "vmtest", "./...")
	for _, arch := range []string{"amd64", "arm64"} {
		r.Func("GOOS=windows GOARCH="+arch+" go vet ./agent/...", func() error {
			return goEnvCmd(ctx, root, []string{"GOOS=windows", "GOARCH=" + arch}, "vet", "./agent/...")
		})
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		r.Func("go test -race ./agent/...", func() error {
			return fmt.Errorf("the race detector needs a C compiler: apt-get install gcc libc6-dev")
		})
	} else {
		r.GoTest(ctx, "go test -race ./agent/...", "-race", "-timeout", "20m", "./agent/...")
	}
	// The memory budget is asserted on the agent's peak RSS, which the race
	// detector inflates (the test skips itself under -race): run it without.
	r.GoTest(ctx, "go test -run TestMemoryBudgetHolds ./agent/cmd/kvmmanager-agent", "-run", "^TestMemoryBudgetHolds$", "-count", "1", "-timeout", "10m", "./agent/cmd/kvmmanager-agent")
	rest, err := nonAgentPackages(ctx, root)
	if err != nil {
		return err
	}
	// ./build/... holds the slow VM and distro tests: no race detector there.
	// Tests that boot VMs, build chroots or drive libvirt carry the build tag
	// vmtest, so a plain `go test ./...` stays fast and leaves the tree alone.
	r.GoTest(ctx, "go test -tags vmtest ./build/...", append([]string{"-tags", "vmtest", "-timeout", "70m"}, rest...)...)
	// The agent built for Windows, its tests run under Wine.
	r.Func("windows tests under Wine", func() error { return windowsTests(ctx, root) })
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if testenv.Required() {
			r.Func("shellcheck", func() error {
				return fmt.Errorf("shellcheck is not installed and %s=1", testenv.RequireEnv)
			})
		} else {
			r.Skip("shellcheck", "not installed (apt-get install shellcheck)")
		}
	} else {
		r.Func("shellcheck", func() error { return pipeline.Shellcheck(ctx, root, os.Stdout) })
	}
	r.Func("actionlint", func() error { return pipeline.Actionlint(ctx, root, os.Stdout) })
	fmt.Println(r.Summary())
	return r.Err()
}

// goEnvCmd runs go in root with env added to the environment.
func goEnvCmd(ctx context.Context, root string, env []string, args ...string) error {
	fmt.Println(strings.TrimSpace(strings.Join(env, " ") + " go " + strings.Join(args, " ")))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", args[0], err)
	}
	return nil
}

// nonAgentPackages lists the module's packages outside ./agent/.
func nonAgentPackages(ctx context.Context, root string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list ./...: %w", err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, "github.com/kvmmanager/guest-agent/agent/") && p != "github.com/kvmmanager/guest-agent/agent" {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}
