//go:build mage

package main

import (
	"context"

	"github.com/kvmmanager/guest-agent/build/launcher"
)

// WineRoot builds (or finds cached) the Debian 13 root with Wine 10 in which the Windows tests run (needs
// root, mmdebstrap, network to Debian's archive; about 1.1 GB under the user cache directory).
func WineRoot(ctx context.Context) error {
	return launcher.Run(ctx, "wineroot")
}

// WindowsTest runs the agent's tests built for windows/amd64 under Wine (the cached Wine root).
func WindowsTest(ctx context.Context) error {
	return launcher.Run(ctx, "windowstest")
}
