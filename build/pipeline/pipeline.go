// Package pipeline chains the build steps (binaries, packages, ISO, release
// files) so that mage targets and tests can run the whole build without
// mage. Every step records a stamp of its inputs (build identity, Go
// version, source trees, the running builder's executable) and its outputs;
// a step whose inputs and outputs are unchanged is skipped, and a version,
// source or builder change always rebuilds it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/iso"
	"github.com/kvmmanager/guest-agent/build/launcher"
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
	// Quick, when set, is build/launcher's snapshot of the target's inputs,
	// taken before the run: Binaries, Packages and ISO then remove the
	// target's quick stamp before they may change an artifact and write
	// it, with this snapshot and every artifact they printed, when they
	// succeed (both holding the lock on Dist), so that the next launcher
	// run can find the target up to date without loading the pipeline.
	Quick *launcher.Snapshot
}

// run is the state of one pipeline run.
type run struct {
	opts   Options
	info   version.Info
	keys   *signing.Keys
	out    io.Writer
	unlock func()
	said   bool // the signing line was printed
	in     *inputs
	// built holds the first binaries() result of this run: a later step
	// (the ISO's Windows agents) reuses it instead of checking and
	// printing every binary again.
	built *builtBinaries
	// pkgs holds the first packages() result of this run, for the same
	// reason: Release asks for the packages after the ISO has built them.
	pkgs *builtPackages
	// reported are the artifacts printed so far, in order.
	reported []string
}

type builtPackages struct {
	pkgs   []packages.Package
	agents map[string]string
	key    string
}

type builtBinaries struct {
	bins []binaries.Binary
	sums map[string]string // SHA-256 by path
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
	return &run{opts: opts, info: info, keys: keys, out: out, in: newInputs(opts.Root)}, nil
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
	r, err := startQuick(opts, "build")
	if err != nil {
		return nil, err
	}
	defer r.close()
	bins, _, err := r.binaries(ctx)
	if err == nil {
		err = r.doneQuick("build")
	}
	return bins, err
}

// Packages builds the binaries and the packages.
func Packages(ctx context.Context, opts Options) ([]packages.Package, error) {
	r, err := startQuick(opts, "packages")
	if err != nil {
		return nil, err
	}
	defer r.close()
	pkgs, _, _, err := r.packages(ctx)
	if err == nil {
		err = r.doneQuick("packages")
	}
	return pkgs, err
}

// ISO builds the binaries, the packages and the installer disc, and returns
// the disc's path (Dist/kvmmanager-guest-agent.iso).
func ISO(ctx context.Context, opts Options) (string, error) {
	r, err := startQuick(opts, "iso")
	if err != nil {
		return "", err
	}
	defer r.close()
	p, _, err := r.iso(ctx)
	if err == nil {
		err = r.doneQuick("iso")
	}
	return p, err
}

// startQuick is start for a target with a quick stamp (build/launcher):
// the stamp goes before anything may change.
func startQuick(opts Options, target string) (*run, error) {
	r, err := start(opts)
	if err != nil {
		return nil, err
	}
	if opts.Quick != nil {
		if err := launcher.RemoveQuickStamp(r.opts.Dist, target); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// doneQuick writes target's quick stamp after a successful run.
func (r *run) doneQuick(target string) error {
	if r.opts.Quick == nil {
		return nil
	}
	return launcher.WriteQuickStamp(r.opts.Dist, target, r.opts.Quick, r.reported)
}

// binaries builds the binaries whose sources changed. Each binary (one
// command on one platform) has a stamp of its own over the files it is
// built from (its package and the module packages it imports, with that
// platform's build constraints), so that an edit of the agent does not
// relink the host CLI, nor a Linux-only edit the Windows agent. The stamps
// record each binary's SHA-256, which is what the packages and the ISO are
// keyed by: a rebuild that gives the same bytes leaves them up to date.
func (r *run) binaries(ctx context.Context) ([]binaries.Binary, map[string]string, error) {
	if r.built != nil {
		return r.built.bins, r.built.sums, nil
	}
	bins, sums, err := r.buildBinaries(ctx)
	if err == nil {
		r.built = &builtBinaries{bins: bins, sums: sums}
	}
	return bins, sums, err
}

func (r *run) buildBinaries(ctx context.Context) ([]binaries.Binary, map[string]string, error) {
	cmds, err := binaries.Present(r.opts.Root, func(s string) { fmt.Fprintf(r.out, "notice: %s\n", s) })
	if err != nil {
		return nil, nil, err
	}
	module, err := modulePath(r.opts.Root)
	if err != nil {
		return nil, nil, err
	}
	builder, err := builderSum()
	if err != nil {
		return nil, nil, err
	}
	mod, err := r.in.hashFiles([]string{"go.mod", "go.sum"})
	if err != nil {
		return nil, nil, err
	}
	type step struct{ key, st string }
	var (
		want  []binaries.Binary
		stale []binaries.Binary
		steps = map[string]step{} // by output path
		sums  = map[string]string{}
	)
	// The source keys of every command on every platform, computed in
	// parallel (go/build parses each platform's view of the same files).
	type source struct {
		cmd binaries.Command
		pl  binaries.Platform
		key string
		err error
	}
	var srcKeys []source
	for _, c := range cmds {
		for _, pl := range c.Platforms() {
			srcKeys = append(srcKeys, source{cmd: c, pl: pl})
		}
	}
	var wg sync.WaitGroup
	for i := range srcKeys {
		s := &srcKeys[i]
		wg.Go(func() {
			srcs, err := r.in.commandSources(module, s.cmd.Package, []binaries.Platform{s.pl})
			if err == nil {
				s.key, err = r.in.hashFiles(srcs)
			}
			s.err = err
		})
	}
	wg.Wait()
	for _, sk := range srcKeys {
		c, pl, src := sk.cmd, sk.pl, sk.key
		if sk.err != nil {
			return nil, nil, sk.err
		}
		b := binaries.Binary{Command: c, OS: pl.OS, Arch: pl.Arch, Path: binaries.PlatformPath(r.opts.Dist, pl, c.Name)}
		want = append(want, b)
		s := step{st: stampPath(r.opts.Dist, "binary-"+c.Name+"-"+pl.String()),
			key: hashStrings("binary/5", r.info.Version, r.info.Commit, fmt.Sprint(r.info.SourceDateEpoch),
				runtime.Version(), pl.String(), c.Name+"="+c.Package, mod, src, builder)}
		if sum, ok := upToDateSum(s.st, s.key, b.Path); ok {
			sums[b.Path] = sum
			continue
		}
		// The go command keeps a binary it finds up to date: let it
		// judge only a file that the last build wrote.
		if !vouched(s.st, b.Path) {
			if err := os.Remove(b.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("remove unvouched binary: %w", err)
			}
		}
		stale = append(stale, b)
		steps[b.Path] = s
	}
	for _, old := range []string{"binaries", "binary-" + binaries.Agent.Name, "binary-" + binaries.AgentCtl.Name} {
		removeStamp(stampPath(r.opts.Dist, old)) // the stamps of earlier versions
	}
	took := map[string]time.Duration{} // of the binaries built, by path
	if len(stale) > 0 {
		built, err := binaries.Build(ctx, binaries.Options{Root: r.opts.Root, Dist: r.opts.Dist, Info: r.info, Targets: stale})
		if err != nil {
			return nil, nil, err
		}
		for _, b := range built {
			s := steps[b.Path]
			sum, err := writeBinaryStamp(s.st, s.key, b.Path)
			if err != nil {
				return nil, nil, err
			}
			sums[b.Path] = sum
			took[b.Path] = b.Duration
		}
	}
	// One line per binary in command-then-platform order, built or not, so
	// that a run prints its lines in the order a no-op run (and the quick
	// path of build/launcher) prints them.
	for _, b := range want {
		d, built := took[b.Path]
		r.line(b.Path, d, !built)
	}
	return want, sums, nil
}

// binarySums lists the SHA-256 of the binaries of command name for os, by
// architecture, in a stable order for a stamp key.
func binarySums(bins []binaries.Binary, sums map[string]string, name, goos string) []string {
	var out []string
	for _, b := range bins {
		if b.Command.Name == name && b.OS == goos {
			out = append(out, b.Arch+"="+sums[b.Path])
		}
	}
	sort.Strings(out)
	return out
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
	bins, sums, err := r.binaries(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	agents := map[string]string{}
	for _, b := range bins {
		if b.Command.Name == binaries.Agent.Name && b.OS == "linux" {
			agents[b.Arch] = b.Path
		}
	}
	tree, err := r.in.hashTree([]string{"packaging"})
	if err != nil {
		return nil, nil, "", err
	}
	mod, err := r.in.hashFiles([]string{"go.mod", "go.sum"})
	if err != nil {
		return nil, nil, "", err
	}
	// The packages are made of the Linux agents' bytes, packaging/ and the
	// build identity (names, versions, file times) by the builder's code,
	// with nfpm's version pinned by go.sum.
	builder, err := builderSum()
	if err != nil {
		return nil, nil, "", err
	}
	key := hashStrings(append([]string{"packages/4", r.info.Version, r.info.Commit, fmt.Sprint(r.info.SourceDateEpoch),
		mod, tree, r.keyIdentity(), builder}, binarySums(bins, sums, binaries.Agent.Name, "linux")...)...)
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
	tree, err := r.in.hashTree([]string{"installers", "packaging"})
	if err != nil {
		return "", "", err
	}
	bins, sums, err := r.binaries(ctx)
	if err != nil {
		return "", "", err
	}
	// pkgKey holds builderSum.
	key := hashStrings(append([]string{"iso/3", pkgKey, tree}, binarySums(bins, sums, binaries.Agent.Name, "windows")...)...)
	out := filepath.Join(r.opts.Dist, iso.FileName)
	st := stampPath(r.opts.Dist, "iso")
	if upToDate(st, key, []string{out}) {
		r.report([]string{out}, 0, true)
		return out, key, nil
	}
	removeStamp(st)
	t0 := time.Now()
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

// line prints "path  size  time" for one artifact (launcher.Line).
func (r *run) line(path string, d time.Duration, skipped bool) {
	size := int64(-1)
	if st, err := os.Stat(path); err == nil {
		size = st.Size()
	}
	wd, _ := os.Getwd()
	fmt.Fprint(r.out, launcher.Line(wd, path, size, d, skipped))
	r.reported = append(r.reported, path)
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
