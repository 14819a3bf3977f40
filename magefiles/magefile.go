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

// Test runs go vet, the tests (race detector on ./agent/...), the agent's Windows tests under Wine,
// shellcheck and actionlint.
func Test(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
	if err := goCmd(ctx, "vet", "-tags", "vmtest", "./..."); err != nil {
		return err
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if err := goEnvCmd(ctx, []string{"GOOS=windows", "GOARCH=" + arch}, "vet", "./agent/..."); err != nil {
			return err
		}
	}
	if err := goCmd(ctx, "test", "-race", "-timeout", "20m", "./agent/..."); err != nil {
		return err
	}
	rest, err := nonAgentPackages(ctx)
	if err != nil {
		return err
	}
	// ./build/... holds the slow VM and distro tests: no race detector there.
	// Tests that boot VMs, build chroots or drive libvirt carry the build tag
	// vmtest, so a plain `go test ./...` stays fast and leaves the tree alone.
	if err := goCmd(ctx, append([]string{"test", "-tags", "vmtest", "-timeout", "40m"}, rest...)...); err != nil {
		return err
	}
	// The agent built for Windows, its tests run under Wine.
	if err := windowsTests(ctx); err != nil {
		return err
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if testenv.Required() {
			return fmt.Errorf("shellcheck is not installed and %s=1", testenv.RequireEnv)
		}
		fmt.Println("*** SKIPPING shellcheck: not installed (apt-get install shellcheck)")
	} else if err := pipeline.Shellcheck(ctx, opts.Root, os.Stdout); err != nil {
		return err
	}
	return pipeline.Actionlint(ctx, opts.Root, os.Stdout)
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
