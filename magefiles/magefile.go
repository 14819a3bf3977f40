//go:build mage

// Targets of the kvmmanager-agent build. Each is a few lines calling into
// build/; run `go tool mage -l` to list them, `go tool mage` for the ISO.
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

// Default is what `go tool mage` alone builds.
var Default = ISO

// buildOptions builds in the current directory (the repository root) into dist/.
func buildOptions() (pipeline.Options, error) {
	wd, err := os.Getwd()
	if err != nil {
		return pipeline.Options{}, fmt.Errorf("working directory: %w", err)
	}
	// Signing keys come from the environment (KVMMANAGER_SIGNING_KEY, ...;
	// see build/signing and README "Verifying a release").
	return pipeline.Options{Root: wd, Out: os.Stdout, Getenv: os.Getenv}, nil
}

// Build cross-compiles the agent and agentctl for linux/amd64 and linux/arm64, and the agent for windows/amd64
// and windows/arm64, into dist/bin/.
func Build(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	_, err = pipeline.Binaries(ctx, opts)
	return err
}

// Packages builds the .deb, .rpm and .apk for both architectures into dist/packages/.
func Packages(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	_, err = pipeline.Packages(ctx, opts)
	return err
}

// ISO builds dist/kvmmanager-guest-agent.iso with everything on it (the default target).
func ISO(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	_, err = pipeline.ISO(ctx, opts)
	return err
}

// Release builds everything plus dist/SHA256SUMS and dist/manifest.json.
func Release(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	_, err = pipeline.Release(ctx, opts)
	return err
}

// Repo adds this build's packages to the apt, dnf and Alpine repositories in dist/repo/ (signed when keys are set).
func Repo(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	res, err := pipeline.Repo(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("dist/repo: %d deb, %d rpm, %d apk\n", res.Debs, res.RPMs, res.APKs)
	return nil
}

// Clean removes dist/.
func Clean() error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	return pipeline.Clean(opts)
}

// Test runs go vet (also for windows/amd64 and arm64 on ./agent/...), the tests (race detector on ./agent/...,
// the vmtest tag on the rest), the agent's Windows tests under Wine, shellcheck and actionlint, prints progress while they run and ends with one summary line. Needs root, gcc and libc6-dev
// (race detector) and the tools listed in README; about 15 minutes on 2 cores.
func Test(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	r := &testrun.Runner{Dir: opts.Root, Out: os.Stdout}
	r.Command(ctx, "go vet", "go", "vet", "-tags", "vmtest", "./...")
	for _, arch := range []string{"amd64", "arm64"} {
		r.Func("GOOS=windows GOARCH="+arch+" go vet ./agent/...", func() error {
			return goEnvCmd(ctx, []string{"GOOS=windows", "GOARCH=" + arch}, "vet", "./agent/...")
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
	rest, err := nonAgentPackages(ctx)
	if err != nil {
		return err
	}
	// ./build/... holds the slow VM and distro tests: no race detector there.
	// Tests that boot VMs, build chroots or drive libvirt carry the build tag
	// vmtest, so a plain `go test ./...` stays fast and leaves the tree alone.
	r.GoTest(ctx, "go test -tags vmtest ./build/...", append([]string{"-tags", "vmtest", "-timeout", "70m"}, rest...)...)
	// The agent built for Windows, its tests run under Wine.
	r.Func("windows tests under Wine", func() error { return windowsTests(ctx) })
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if testenv.Required() {
			r.Func("shellcheck", func() error {
				return fmt.Errorf("shellcheck is not installed and %s=1", testenv.RequireEnv)
			})
		} else {
			r.Skip("shellcheck", "not installed (apt-get install shellcheck)")
		}
	} else {
		r.Func("shellcheck", func() error { return pipeline.Shellcheck(ctx, opts.Root, os.Stdout) })
	}
	r.Func("actionlint", func() error { return pipeline.Actionlint(ctx, opts.Root, os.Stdout) })
	fmt.Println(r.Summary())
	return r.Err()
}

func goCmd(ctx context.Context, args ...string) error {
	return goEnvCmd(ctx, nil, args...)
}

// goEnvCmd runs go with env added to the environment.
func goEnvCmd(ctx context.Context, env []string, args ...string) error {
	fmt.Println(strings.TrimSpace(strings.Join(env, " ") + " go " + strings.Join(args, " ")))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", args[0], err)
	}
	return nil
}

// nonAgentPackages lists the module's packages outside ./agent/.
func nonAgentPackages(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "./...").Output()
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
