// Package pipeline chains the build steps (binaries, packages, ISO, release
// files) so that mage targets and tests can run the whole build without
// mage. Every step records a stamp of its inputs (build identity, Go
// version, source trees) and its outputs; a step whose inputs and outputs are
// unchanged is skipped, and a version or source change always rebuilds it.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/iso"
	"github.com/kvmmanager/guest-agent/build/packages"
	"github.com/kvmmanager/guest-agent/build/signing"
	"github.com/kvmmanager/guest-agent/build/version"
)

// Options configure every step.
type Options struct {
	Root    string    // repository root
	Dist    string    // output directory; default Root/dist
	Version string    // overrides the resolved version (e.g. to build an "upgrade" ISO)
	Out     io.Writer // receives one line per artifact; default io.Discard
	// Getenv looks up the signing keys (build/signing's KVMMANAGER_SIGNING_KEY
	// and friends), e.g. os.Getenv; nil builds unsigned.
	Getenv func(string) string
}

// run is the state of one pipeline run.
type run struct {
	opts   Options
	info   version.Info
	keys   *signing.Keys
	out    io.Writer
	unlock func()
	said   bool // the signing line was printed
	// built holds the first binaries() result of this run: a later step
	// (the ISO's Windows agents) reuses it instead of checking and
	// printing every binary again.
	built *builtBinaries
	// pkgs holds the first packages() result of this run, for the same
	// reason: Release asks for the packages after the ISO has built them.
	pkgs *builtPackages
}

type builtPackages struct {
	pkgs   []packages.Package
	agents map[string]string
	key    string
}

type builtBinaries struct {
	bins     []binaries.Binary
	agentKey string
}

// close releases the run's lock on its output directory.
func (r *run) close() { r.unlock() }

// start prepares a run and locks its output directory; call close when done.
func start(opts Options) (*run, error) {
	r, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	if r.unlock, err = lockDist(r.opts.Dist); err != nil {
		return nil, err
	}
	return r, nil
}

// prepare resolves the options and the build identity.
func prepare(opts Options) (*run, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("pipeline: Options.Root is empty")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("absolute path of %s: %w", opts.Root, err)
	}
	opts.Root = root
	if opts.Dist == "" {
		opts.Dist = filepath.Join(root, "dist")
	}
	if opts.Dist, err = filepath.Abs(opts.Dist); err != nil {
		return nil, fmt.Errorf("absolute path of %s: %w", opts.Dist, err)
	}
	info, err := version.Resolve(root)
	if err != nil {
		return nil, err
	}
	if opts.Version != "" {
		if err := version.Validate(opts.Version); err != nil {
			return nil, fmt.Errorf("pipeline version override: %w", err)
		}
		info.Version = opts.Version
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	keys := &signing.Keys{}
	if opts.Getenv != nil {
		if keys, err = signing.FromEnv(opts.Getenv, info.Time()); err != nil {
			return nil, err
		}
	}
	return &run{opts: opts, info: info, keys: keys, out: out}, nil
}

// sayKeys prints, once per run, which keys sign (or that nothing is
// signed): when packages are built, and always for release files and
// repositories.
func (r *run) sayKeys() {
	if !r.said {
		fmt.Fprintln(r.out, r.keys.Summary())
		r.said = true
	}
}

// keyIdentity is the part of a step's stamp key that names the signing keys.
func (r *run) keyIdentity() string {
	return "pgp=" + r.keys.Fingerprint() + ";apk=" + r.keys.APKKeyName()
}

// Info returns the build identity the pipeline would use with opts.
func Info(opts Options) (version.Info, error) {
	r, err := prepare(opts)
	if err != nil {
		return version.Info{}, err
	}
	return r.info, nil
}

// Binaries builds (or finds up to date) the agent and CLI for every
// architecture.
func Binaries(ctx context.Context, opts Options) ([]binaries.Binary, error) {
	r, err := start(opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	bins, _, err := r.binaries(ctx)
	return bins, err
}

// Packages builds the binaries and the packages.
func Packages(ctx context.Context, opts Options) ([]packages.Package, error) {
	r, err := start(opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	pkgs, _, _, err := r.packages(ctx)
	return pkgs, err
}

// ISO builds the binaries, the packages and the installer disc, and returns
// the disc's path (Dist/kvmmanager-guest-agent.iso).
func ISO(ctx context.Context, opts Options) (string, error) {
	r, err := start(opts)
	if err != nil {
		return "", err
	}
	defer r.close()
	p, _, err := r.iso(ctx)
	return p, err
}

// binaries builds the commands whose sources changed. Each command has a
// stamp of its own over the files it is built from (its package and the
// module packages it imports), so that an edit of the agent does not relink
// the host CLI and the reverse. It returns the binaries and the agent's key,
// which is what the packages are built from.
func (r *run) binaries(ctx context.Context) ([]binaries.Binary, string, error) {
	if r.built != nil {
		return r.built.bins, r.built.agentKey, nil
	}
	bins, key, err := r.buildBinaries(ctx)
	if err == nil {
		r.built = &builtBinaries{bins: bins, agentKey: key}
	}
	return bins, key, err
}

func (r *run) buildBinaries(ctx context.Context) ([]binaries.Binary, string, error) {
	cmds, err := binaries.Present(r.opts.Root, func(s string) { fmt.Fprintf(r.out, "notice: %s\n", s) })
	if err != nil {
		return nil, "", err
	}
	module, err := modulePath(r.opts.Root)
	if err != nil {
		return nil, "", err
	}
	type step struct {
		cmd     binaries.Command
		key, st string
		outputs []string
	}
	var (
		want     []binaries.Binary
		stale    []binaries.Command
		steps    []step
		agentKey string
	)
	for _, c := range cmds {
		srcs, err := commandSources(r.opts.Root, module, c.Package, c.Platforms())
		if err != nil {
			return nil, "", err
		}
		src, err := hashFiles(r.opts.Root, append([]string{"go.mod", "go.sum"}, srcs...))
		if err != nil {
			return nil, "", err
		}
		s := step{cmd: c, st: stampPath(r.opts.Dist, "binary-"+c.Name),
			key: hashStrings("binary/3", r.info.Version, r.info.Commit, fmt.Sprint(r.info.SourceDateEpoch),
				runtime.Version(), fmt.Sprint(c.Platforms()), c.Name+"="+c.Package, src)}
		for _, pl := range c.Platforms() {
			p := binaries.PlatformPath(r.opts.Dist, pl, c.Name)
			want = append(want, binaries.Binary{Command: c, OS: pl.OS, Arch: pl.Arch, Path: p})
			s.outputs = append(s.outputs, p)
		}
		if c.Name == binaries.Agent.Name {
			agentKey = s.key
		}
		if upToDate(s.st, s.key, s.outputs) {
			r.report(s.outputs, 0, true)
			continue
		}
		removeStamp(s.st)
		stale = append(stale, c)
		steps = append(steps, s)
	}
	removeStamp(stampPath(r.opts.Dist, "binaries")) // the one stamp of earlier versions
	if len(stale) == 0 {
		return want, agentKey, nil
	}
	bins, err := binaries.Build(ctx, binaries.Options{Root: r.opts.Root, Dist: r.opts.Dist, Info: r.info, Commands: stale})
	if err != nil {
		return nil, "", err
	}
	for _, b := range bins {
		r.line(b.Path, b.Duration, false)
	}
	for _, s := range steps {
		if err := writeStamp(s.st, s.key, s.outputs); err != nil {
			return nil, "", err
		}
	}
	return want, agentKey, nil
}

// packages builds (or finds up to date) the .deb, .rpm and .apk of every
// architecture, once per run, and returns them with the agents they hold and
// their stamp key, which is what the ISO is built from.
func (r *run) packages(ctx context.Context) ([]packages.Package, map[string]string, string, error) {
	if r.pkgs != nil {
		return r.pkgs.pkgs, r.pkgs.agents, r.pkgs.key, nil
	}
	pkgs, agents, key, err := r.buildPackages(ctx)
	if err == nil {
		r.pkgs = &builtPackages{pkgs: pkgs, agents: agents, key: key}
	}
	return pkgs, agents, key, err
}

func (r *run) buildPackages(ctx context.Context) ([]packages.Package, map[string]string, string, error) {
	bins, binKey, err := r.binaries(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	agents := map[string]string{}
	for _, b := range bins {
		if b.Command.Name == binaries.Agent.Name && b.OS == "linux" {
			agents[b.Arch] = b.Path
		}
	}
	tree, err := hashTree(r.opts.Root, []string{"packaging"})
	if err != nil {
		return nil, nil, "", err
	}
	key := hashStrings("packages/2", binKey, tree, r.keyIdentity())
	st := stampPath(r.opts.Dist, "packages")
	if outs, ok := readStampOutputs(st, key); ok && upToDate(st, key, outs) {
		if pkgs, err := packages.Identify(outs); err == nil {
			r.report(outs, 0, true)
			return pkgs, agents, key, nil
		}
	}
	removeStamp(st)
	r.sayKeys()
	if err := removeOldPackages(r.opts.Dist); err != nil {
		return nil, nil, "", err
	}
	pkgs, err := packages.Build(ctx, packages.Options{Root: r.opts.Root, Dist: r.opts.Dist, Info: r.info, Binaries: agents, Keys: r.keys})
	if err != nil {
		return nil, nil, "", err
	}
	var outs []string
	for _, p := range pkgs {
		outs = append(outs, p.Path)
		r.line(p.Path, p.Duration, false)
	}
	if err := writeStamp(st, key, outs); err != nil {
		return nil, nil, "", err
	}
	return pkgs, agents, key, nil
}

func (r *run) iso(ctx context.Context) (string, string, error) {
	pkgs, agents, pkgKey, err := r.packages(ctx)
	if err != nil {
		return "", "", err
	}
	tree, err := hashTree(r.opts.Root, []string{"installers", "packaging"})
	if err != nil {
		return "", "", err
	}
	key := hashStrings("iso/1", pkgKey, tree)
	out := filepath.Join(r.opts.Dist, iso.FileName)
	st := stampPath(r.opts.Dist, "iso")
	if upToDate(st, key, []string{out}) {
		r.report([]string{out}, 0, true)
		return out, key, nil
	}
	removeStamp(st)
	t0 := time.Now()
	bins, _, err := r.binaries(ctx)
	if err != nil {
		return "", "", err
	}
	in := iso.Inputs{Root: r.opts.Root, Version: r.info.Version, Agents: agents, WindowsAgents: map[string]string{}}
	for _, b := range bins {
		if b.Command.Name == binaries.Agent.Name && b.OS == "windows" {
			in.WindowsAgents[b.Arch] = b.Path
		}
	}
	for _, p := range pkgs {
		in.Packages = append(in.Packages, iso.Package{Arch: p.Arch, Format: p.Format, Path: p.Path})
	}
	entries, err := iso.Layout(in)
	if err != nil {
		return "", "", err
	}
	if err := iso.Write(out, entries, iso.Options{Time: r.info.Time()}); err != nil {
		return "", "", err
	}
	r.line(out, time.Since(t0), false)
	if err := writeStamp(st, key, []string{out}); err != nil {
		return "", "", err
	}
	return out, key, nil
}

// Clean removes the output directory.
func Clean(opts Options) error {
	dist := opts.Dist
	if dist == "" {
		if opts.Root == "" {
			return fmt.Errorf("pipeline clean: Options.Root is empty")
		}
		dist = filepath.Join(opts.Root, "dist")
	}
	if err := os.RemoveAll(dist); err != nil {
		return fmt.Errorf("remove %s: %w", dist, err)
	}
	return nil
}

func (r *run) report(paths []string, d time.Duration, skipped bool) {
	for _, p := range paths {
		r.line(p, d, skipped)
	}
}

// line prints "path  size  time" for one artifact.
func (r *run) line(path string, d time.Duration, skipped bool) {
	size := "?"
	if st, err := os.Stat(path); err == nil {
		size = humanSize(st.Size())
	}
	rel := path
	if wd, err := os.Getwd(); err == nil {
		if p, err := filepath.Rel(wd, path); err == nil && len(p) < len(path) {
			rel = p
		}
	}
	took := "up to date"
	if !skipped {
		took = d.Round(time.Millisecond).String()
	}
	fmt.Fprintf(r.out, "%-60s %10s  %s\n", rel, size, took)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// removeOldPackages deletes the packages of earlier builds (their names carry
// the version) so that dist/ only ever holds one release.
func removeOldPackages(dist string) error {
	dir := packages.Dir(dist)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".deb", ".rpm", ".apk":
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove old package: %w", err)
			}
		}
	}
	return nil
}
