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

	"github.com/kvmmanager/guest-agent/build/launcher"
)

// Default is what `go tool mage` alone builds.
var Default = ISO

// Build cross-compiles the agent and agentctl for linux/amd64 and linux/arm64, and the agent for windows/amd64
// and windows/arm64, into dist/bin/.
func Build(ctx context.Context) error {
	return launcher.Run(ctx, "build")
}

// Packages builds the .deb, .rpm and .apk for both architectures into dist/packages/.
func Packages(ctx context.Context) error {
	return launcher.Run(ctx, "packages")
}

// ISO builds dist/kvmmanager-guest-agent.iso with everything on it (the default target).
func ISO(ctx context.Context) error {
	return launcher.Run(ctx, "iso")
}

// Release builds everything plus dist/SHA256SUMS and dist/manifest.json.
func Release(ctx context.Context) error {
	return launcher.Run(ctx, "release")
}

// Repo adds this build's packages to the apt, dnf and Alpine repositories in dist/repo/ (signed when keys are set).
func Repo(ctx context.Context) error {
	return launcher.Run(ctx, "repo")
}

// Clean removes dist/.
func Clean() error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	return launcher.Clean(wd)
}

// Test runs go vet (also for windows/amd64 and arm64 on ./agent/...), the tests (race detector on ./agent/...,
// the vmtest tag on the rest), the agent's Windows tests under Wine, shellcheck and actionlint, prints progress while they run and ends with one summary line. Needs root, gcc and libc6-dev
// (race detector) and the tools listed in README; about 15 minutes on 2 cores.
func Test(ctx context.Context) error {
	return launcher.Run(ctx, "test")
}

// goCmd runs go with args, for the targets that are one go test.
func goCmd(ctx context.Context, args ...string) error {
	fmt.Println("go " + strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", args[0], err)
	}
	return nil
}
