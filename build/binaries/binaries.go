// Package binaries cross-compiles the project's commands (the guest agent and
// the host CLI) for linux/amd64 and linux/arm64, and the agent also for
// windows/amd64 and windows/arm64, as static, reproducible executables:
// CGO_ENABLED=0, -trimpath, stripped, version stamped with -ldflags -X; the
// Go build ID stays (a hash of the inputs), so that the go command links
// a binary again only when what goes into it changed.
package binaries

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvmmanager/guest-agent/build/version"
)

// Arches are the Go architectures every release carries.
var Arches = []string{"amd64", "arm64"}

// WindowsArches are the Go architectures of the Windows agent.
var WindowsArches = []string{"amd64", "arm64"}

// Platform is a GOOS/GOARCH pair.
type Platform struct{ OS, Arch string }

// String is "linux-amd64": the directory of the platform's binaries.
func (p Platform) String() string { return p.OS + "-" + p.Arch }

// Command is one main package to build.
type Command struct {
	Name     string // output file name, e.g. "kvmmanager-agent" (".exe" is added for Windows)
	Package  string // package path relative to the module root, e.g. "./agent/cmd/kvmmanager-agent"
	Required bool   // a missing package directory is an error rather than a notice
	Windows  bool   // also built for windows/WindowsArches
}

// Platforms returns what c is built for: linux on Arches, then windows on
// WindowsArches for a command that runs on Windows.
func (c Command) Platforms() []Platform {
	var out []Platform
	for _, a := range Arches {
		out = append(out, Platform{"linux", a})
	}
	if c.Windows {
		for _, a := range WindowsArches {
			out = append(out, Platform{"windows", a})
		}
	}
	return out
}

// Agent is the guest agent, shipped on the ISO and in the packages.
var Agent = Command{Name: "kvmmanager-agent", Package: "./agent/cmd/kvmmanager-agent", Required: true, Windows: true}

// AgentCtl is the host-side CLI; it is built but not shipped to guests.
var AgentCtl = Command{Name: "kvmmanager-agentctl", Package: "./agent/cmd/kvmmanager-agentctl"}

// Commands are the commands built by Build, in order.
var Commands = []Command{Agent, AgentCtl}

// versionPkg is the package whose variables carry the build identity.
const versionPkg = "github.com/kvmmanager/guest-agent/agent/version"

// Options configure Build.
type Options struct {
	Root     string       // module root
	Dist     string       // output root; binaries go to Dist/bin/<os>-<arch>/<name>
	Info     version.Info // identity stamped into the binaries
	Arches   []string     // linux architectures; default Arches (Windows: the command's platforms)
	Commands []Command    // commands to build; nil builds every present command
	Notices  func(string) // receives notices about skipped commands (may be nil)
	// Targets, when set, are exactly the binaries to build (Path under
	// Dist/bin/<os>-<arch>/, named after the package directory); Arches
	// and Commands are then unused.
	Targets []Binary
}

// Binary is one built executable.
type Binary struct {
	Command Command
	OS      string // "linux" or "windows"
	Arch    string
	Path    string
	// Duration is how long the go build of its platform took (platforms
	// build in parallel).
	Duration time.Duration
}

// Path returns where the linux binary of cmd for arch is written under dist.
func Path(dist, arch, name string) string {
	return PlatformPath(dist, Platform{"linux", arch}, name)
}

// PlatformPath returns where the binary name for p is written under dist:
// Dist/bin/<os>-<arch>/<name>, with ".exe" on Windows.
func PlatformPath(dist string, p Platform, name string) string {
	if p.OS == "windows" {
		name += ".exe"
	}
	return filepath.Join(dist, "bin", p.String(), name)
}

// Present returns the commands whose package directory exists under root.
// A required command whose directory is missing is an error.
func Present(root string, notice func(string)) ([]Command, error) {
	var out []Command
	for _, c := range Commands {
		dir := filepath.Join(root, filepath.FromSlash(c.Package))
		if _, err := os.Stat(dir); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if c.Required {
					return nil, fmt.Errorf("build %s: package %s does not exist", c.Name, dir)
				}
				if notice != nil {
					notice(fmt.Sprintf("skipping %s: %s does not exist yet", c.Name, c.Package))
				}
				continue
			}
			return nil, fmt.Errorf("stat %s: %w", dir, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Build compiles every present command for every architecture (or exactly
// opts.Targets), with one `go build` per platform, the platforms in
// parallel, and returns the binaries in command-then-platform order (in
// the order of opts.Targets when given).
//
// Each binary is written in place by the go command, which links it again
// only when what goes into it changed: an edit that leaves every compiled
// package the same (a comment) keeps the binary, byte for byte.
func Build(ctx context.Context, opts Options) ([]Binary, error) {
	out := opts.Targets
	if out == nil {
		var err error
		if out, err = targets(opts); err != nil {
			return nil, err
		}
	} else {
		out = slices.Clone(out)
	}
	var (
		platforms []Platform
		groups    = map[Platform][]int{}
	)
	for i, b := range out {
		p := Platform{b.OS, b.Arch}
		if _, ok := groups[p]; !ok {
			platforms = append(platforms, p)
		}
		groups[p] = append(groups[p], i)
	}
	errs := make([]error, len(platforms))
	var wg sync.WaitGroup
	for i, p := range platforms {
		wg.Go(func() {
			t0 := time.Now()
			var bins []Binary
			for _, j := range groups[p] {
				bins = append(bins, out[j])
			}
			errs[i] = compile(ctx, opts, p, bins)
			for _, j := range groups[p] {
				out[j].Duration = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// targets lists what Build builds without opts.Targets: every present
// command (or opts.Commands) for linux on opts.Arches, then for its other
// platforms.
func targets(opts Options) ([]Binary, error) {
	arches := opts.Arches
	if len(arches) == 0 {
		arches = Arches
	}
	cmds := opts.Commands
	if cmds == nil {
		var err error
		if cmds, err = Present(opts.Root, opts.Notices); err != nil {
			return nil, err
		}
	}
	var out []Binary
	for _, c := range cmds {
		for _, a := range arches {
			out = append(out, Binary{Command: c, OS: "linux", Arch: a, Path: Path(opts.Dist, a, c.Name)})
		}
		for _, p := range c.Platforms() {
			if p.OS != "linux" {
				out = append(out, Binary{Command: c, OS: p.OS, Arch: p.Arch, Path: PlatformPath(opts.Dist, p, c.Name)})
			}
		}
	}
	return out, nil
}

// LDFlags returns the linker flags that strip the binary and stamp info.
// The Go build ID stays: it is a hash of the inputs (the same on every
// machine with -trimpath), and it is what lets the go command see that a
// binary is up to date instead of linking it again.
func LDFlags(info version.Info) string {
	return strings.Join([]string{
		"-s", "-w",
		"-X", versionPkg + ".Version=" + info.Version,
		"-X", versionPkg + ".Commit=" + info.Commit,
	}, " ")
}

// compile builds bins, all for platform p and all in one directory, with one
// go build. The go command writes each executable by renaming a finished
// file over the old one, so an interrupted build never leaves a truncated
// binary.
func compile(ctx context.Context, opts Options, p Platform, bins []Binary) error {
	dir := filepath.Dir(bins[0].Path)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", LDFlags(opts.Info), "-o", dir + string(filepath.Separator)}
	var pkgs []string
	for _, b := range bins {
		// go build -o DIR/ names each executable after its package directory.
		want := filepath.Join(dir, path.Base(b.Command.Package))
		if p.OS == "windows" {
			want += ".exe"
		}
		if b.Path != want || b.Command.Name != path.Base(b.Command.Package) {
			return fmt.Errorf("build %s for %s: output %s must be %s, named after the package directory", b.Command.Package, p, b.Path, want)
		}
		pkgs = append(pkgs, b.Command.Package)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = opts.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", strings.Join(pkgs, " "), p.OS, p.Arch, err, out.String())
	}
	return nil
}
