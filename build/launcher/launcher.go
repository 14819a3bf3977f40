// Package launcher runs the build's targets for the mage targets in
// magefiles/ while keeping mage's own work small: mage compiles the
// magefiles, and everything they import, on every run to find them up to
// date, and the builder's import graph (nfpm, OpenPGP, CycloneDX, ...) is
// hundreds of packages. So the magefiles import only this package, which
// imports the standard library and build/version alone.
//
// For the targets that make artifacts (build, packages, iso), Run first asks
// the target's quick stamp (dist/.stamps/quick-<target>.json, written by
// build/pipeline under its lock at the end of a successful run): when the
// build identity (version, commit, SOURCE_DATE_EPOCH), the Go version, the
// Go and project environment (with signing keys set there is no quick
// stamp), every input file (go.mod, go.sum, agent/, build/, magefiles/,
// packaging/, installers/, by content) and every artifact (by size and
// modification time) are as that run left them, it prints the artifact
// lines the pipeline would print and returns. Anything else, and every
// other target, runs the builder (build/cmd/kvmbuild in dist/.builder/):
// as is when its own stamp shows that none of its packages' files, go.mod,
// go.sum nor the Go environment changed, else after go build.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// BuilderPackage is the builder's main package, relative to the module root.
const BuilderPackage = "./build/cmd/kvmbuild"

// QuickTargets are the targets whose no-op Run answers from a quick stamp.
var QuickTargets = []string{"build", "packages", "iso"}

// IsQuick reports whether target answers a no-op from its quick stamp.
func IsQuick(target string) bool {
	for _, t := range QuickTargets {
		if t == target {
			return true
		}
	}
	return false
}

// Run runs target (a builder target such as "iso" or "test") in the
// repository at the working directory, writing to stdout and stderr.
func Run(ctx context.Context, target string) error {
	root, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	var snap *Snapshot
	if IsQuick(target) {
		ok, s, err := upToDate(root, target, os.Stdout)
		if err != nil || ok {
			return err
		}
		snap = s
	} else {
		// The builder's stamp needs one; without it (signing keys
		// set) the go command checks the builder.
		snap, _ = Take(root, target, os.Environ(), nil)
	}
	exe, err := Builder(ctx, root, snap)
	if err != nil {
		return err
	}
	return RunBuilder(ctx, root, exe, target, os.Stdout, os.Stderr)
}

// UpToDate prints the artifact lines of target and returns true when its
// quick stamp in root/dist holds; it prints nothing and returns false when
// the target must run. It returns an error only for a failure to print.
func UpToDate(root, target string, out io.Writer) (bool, error) {
	ok, _, err := upToDate(root, target, out)
	return ok, err
}

// upToDate is UpToDate, returning the snapshot of the inputs it took (nil
// when it could not take one).
func upToDate(root, target string, out io.Writer) (bool, *Snapshot, error) {
	dist := filepath.Join(root, "dist")
	var prev *Snapshot
	st, stamped := readQuick(dist, target)
	if stamped {
		prev = &st.Snapshot
	}
	snap, err := Take(root, target, os.Environ(), prev)
	if err != nil {
		return false, nil, nil
	}
	if !stamped || snap.Key != st.Key {
		return false, snap, nil
	}
	sizes, ok := st.check(dist)
	if !ok {
		return false, snap, nil
	}
	wd, _ := os.Getwd()
	for i, a := range st.Artifacts {
		if _, err := fmt.Fprint(out, Line(wd, filepath.Join(dist, filepath.FromSlash(a.Path)), sizes[i], 0, true)); err != nil {
			return true, snap, err
		}
	}
	return true, snap, nil
}

// RunBuilder runs the builder exe for target in root. The builder writes the
// message of a failed target to a file named by its -error-file flag, and
// RunBuilder returns it as is, so that mage prints the same "Error: ..."
// line it printed when the targets ran in its own process.
func RunBuilder(ctx context.Context, root, exe, target string, stdout, stderr io.Writer) error {
	ef, err := os.CreateTemp("", "kvmbuild-error-")
	if err != nil {
		return fmt.Errorf("create the builder's error file: %w", err)
	}
	errFile := ef.Name()
	ef.Close()
	defer os.Remove(errFile)
	cmd := exec.CommandContext(ctx, exe, "-error-file", errFile, target)
	cmd.Dir = root
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	// On ^C the builder gets the terminal's SIGINT itself; a cancelled
	// context interrupts it too, and kills it if it does not stop.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	runErr := cmd.Run()
	if runErr == nil {
		return nil
	}
	if msg, err := os.ReadFile(errFile); err == nil && len(msg) > 0 {
		return errors.New(string(msg))
	}
	return fmt.Errorf("%s %s: %w", filepath.Base(exe), target, runErr)
}

// Clean removes root/dist, the artifacts, stamps and the builder.
func Clean(root string) error {
	dist := filepath.Join(root, "dist")
	if err := os.RemoveAll(dist); err != nil {
		return fmt.Errorf("remove %s: %w", dist, err)
	}
	return nil
}
