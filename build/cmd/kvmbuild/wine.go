package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/kvmmanager/guest-agent/build/testenv"
	"github.com/kvmmanager/guest-agent/build/wine"
)

// wineRootTarget builds (or finds cached) the Debian 13 root with Wine 10 in
// which the Windows tests run.
func wineRootTarget(ctx context.Context, root string) error {
	cache, err := wine.CacheDir()
	if err != nil {
		return err
	}
	r, err := wine.Build(ctx, cache, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Println("wine root:", r.Dir)
	return nil
}

// windowsTestTarget runs the agent's tests built for windows/amd64 under
// Wine (the cached Wine root).
func windowsTestTarget(ctx context.Context, root string) error {
	return windowsTests(ctx, root)
}

// windowsTests runs the Windows tests under Wine. Without a cached root they
// are skipped loudly, or, with KVMMANAGER_REQUIRE_TOOLS=1 (CI), the root is
// built first.
func windowsTests(ctx context.Context, root string) error {
	pkgs, err := wine.AgentPackages(ctx, root)
	if err != nil {
		return err
	}
	opts := wine.TestOptions{Root: root, Packages: pkgs, Args: []string{"-timeout", "8m"}, Out: os.Stdout}
	err = wine.GoTest(ctx, opts)
	if !errors.Is(err, wine.ErrNotBuilt) {
		return err
	}
	if !testenv.Required() {
		fmt.Printf("\n*** SKIPPING the Windows tests under Wine: %v (%s=1 builds it and makes this fatal)\n\n", err, testenv.RequireEnv)
		return nil
	}
	if err := wineRootTarget(ctx, root); err != nil {
		return err
	}
	return wine.GoTest(ctx, opts)
}
