// Command winexec is the `go test -exec` wrapper that runs a Windows test
// binary under Wine inside the cached Wine root (build/wine):
//
//	GOOS=windows go test -exec "$PWD/winexec" ./agent/...
//
// The package directory (go test's working directory) and the binary's
// directory are visible at the same paths (Z:\...). Its exit status is the
// program's. Without a cached root it fails with a message saying how to
// build one; `go tool mage test` checks for the root first and skips the
// Windows tests loudly (or fails under KVMMANAGER_REQUIRE_TOOLS=1).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kvmmanager/guest-agent/build/wine"
)

// moduleRoot is the nearest directory at or above dir with a go.mod.
func moduleRoot(dir string) string {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: winexec PROGRAM.exe [ARGS...]")
		os.Exit(2)
	}
	cache, err := wine.CacheDir()
	if err != nil {
		fmt.Fprintf(os.Stderr, "winexec: %v\n", err)
		os.Exit(2)
	}
	root, err := wine.Find(cache)
	if err != nil {
		fmt.Fprintf(os.Stderr, "winexec: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The whole module is visible, for tests that read ../../packaging.
	var binds []string
	if wd, err := os.Getwd(); err == nil {
		if mod := moduleRoot(wd); mod != "" {
			binds = append(binds, mod)
		}
	}
	cmd, err := root.Command(ctx, wine.RunOptions{Binds: binds}, os.Args[1], os.Args[2:]...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "winexec: %v\n", err)
		os.Exit(2)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode() & 0xff)
	default:
		fmt.Fprintf(os.Stderr, "winexec: %v\n", err)
		os.Exit(2)
	}
}
