package wine

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TestOptions configure GoTest.
type TestOptions struct {
	Root     string   // module root (the directory go test runs in)
	Packages []string // package patterns, e.g. ./agent/...
	Arch     string   // GOARCH of the test binaries; "" means amd64 (what Wine runs here)
	Args     []string // extra go test flags, e.g. -run, -v
	Out      io.Writer
}

// GoTest builds the wrapper command (winexec) and runs the packages' tests
// for Windows under Wine: GOOS=windows go test -exec winexec. It returns an
// error wrapping ErrNotBuilt when the cache has no root.
func GoTest(ctx context.Context, opts TestOptions) error {
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	if _, err := Find(cache); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kvmmanager-winexec-")
	if err != nil {
		return fmt.Errorf("wine tests: %w", err)
	}
	defer os.RemoveAll(tmp)
	wrapper := filepath.Join(tmp, "winexec")
	build := exec.CommandContext(ctx, "go", "build", "-o", wrapper, "./build/wine/winexec")
	build.Dir, build.Stdout, build.Stderr = opts.Root, opts.Out, opts.Out
	if err := build.Run(); err != nil {
		return fmt.Errorf("wine tests: build winexec: %w", err)
	}
	arch := opts.Arch
	if arch == "" {
		arch = "amd64"
	}
	args := append([]string{"test", "-exec", wrapper}, opts.Args...)
	args = append(args, opts.Packages...)
	fmt.Fprintf(opts.Out, "GOOS=windows GOARCH=%s go %s\n", arch, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = opts.Root, opts.Out, opts.Out
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH="+arch, "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test for windows/%s under Wine: %w", arch, err)
	}
	return nil
}

// hostOnly are the agent packages that run on the host, not in a guest:
// their tests use unix sockets, which Windows builds under Wine cannot.
var hostOnly = []string{"/agent/client", "/agent/client/clienttest", "/agent/cmd/kvmmanager-agentctl"}

// AgentPackages lists the packages under ./agent/ that run in a Windows
// guest (all but the host-side client and CLI).
func AgentPackages(ctx context.Context, root string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "./agent/...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=windows")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list ./agent/...: %w", err)
	}
	var pkgs []string
next:
	for _, p := range strings.Fields(string(out)) {
		for _, h := range hostOnly {
			if strings.HasSuffix(p, h) {
				continue next
			}
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}
