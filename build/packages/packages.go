// Package packages builds the .deb, .rpm and .apk of the agent for each
// architecture with the nfpm library, from packaging/nfpm.yaml, reproducibly:
// every file, script and header carries SOURCE_DATE_EPOCH.
package packages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/apk" // registers the apk packager
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/kvmmanager/guest-agent/build/signing"
	"github.com/kvmmanager/guest-agent/build/version"
)

// Formats are the package formats built, in order.
var Formats = []string{"deb", "rpm", "apk"}

// ConfigPath is the nfpm configuration relative to the repository root.
const ConfigPath = "packaging/nfpm.yaml"

// Options configure Build.
type Options struct {
	Root     string            // repository root; relative paths in the config resolve against it
	Config   string            // nfpm configuration; default Root/ConfigPath
	Dist     string            // packages are written to Dist/packages/
	Info     version.Info      // version and SOURCE_DATE_EPOCH
	Binaries map[string]string // Go arch -> agent binary for that arch
	Formats  []string          // default Formats
	// Keys sign the packages (deb: debsign-style _gpgorigin member, rpm: PGP
	// header signature, apk: .SIGN.RSA.<key name>) when they hold the key of
	// that kind; nil builds unsigned. The unsigned parts are the same bytes
	// either way.
	Keys *signing.Keys
}

// Package is one built package.
type Package struct {
	Format string // deb, rpm, apk
	Arch   string // Go arch
	Path   string // Dist/packages/<nfpm conventional file name>
	// Duration is how long building it took.
	Duration time.Duration
}

// Dir returns the output directory of packages under dist.
func Dir(dist string) string { return filepath.Join(dist, "packages") }

// Build writes one package per format and architecture (architectures in
// sorted order) and returns them in arch-then-format order.
func Build(ctx context.Context, opts Options) ([]Package, error) {
	if opts.Config == "" {
		opts.Config = filepath.Join(opts.Root, ConfigPath)
	}
	formats := opts.Formats
	if len(formats) == 0 {
		formats = Formats
	}
	arches := make([]string, 0, len(opts.Binaries))
	for a := range opts.Binaries {
		arches = append(arches, a)
	}
	sort.Strings(arches)
	if len(arches) == 0 {
		return nil, fmt.Errorf("build packages from %s: no agent binaries given", opts.Config)
	}
	if err := os.MkdirAll(Dir(opts.Dist), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", Dir(opts.Dist), err)
	}
	staging, err := os.MkdirTemp("", "kvmmanager-packages-")
	if err != nil {
		return nil, fmt.Errorf("create script staging directory: %w", err)
	}
	defer os.RemoveAll(staging)

	// The packages are independent (each is written to a temporary file of
	// its own and renamed): build them in parallel.
	type job struct{ format, arch string }
	var jobs []job
	for _, arch := range arches {
		for _, format := range formats {
			jobs = append(jobs, job{format, arch})
		}
	}
	out := make([]Package, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			if errs[i] = ctx.Err(); errs[i] == nil {
				out[i], errs[i] = buildOne(opts, staging, j.format, j.arch)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Info returns the nfpm package description of format for arch, with every
// path absolute and every date set to SOURCE_DATE_EPOCH.
func Info(opts Options, staging, format, arch string) (*nfpm.Info, error) {
	if opts.Config == "" {
		opts.Config = filepath.Join(opts.Root, ConfigPath)
	}
	bin, ok := opts.Binaries[arch]
	if !ok {
		return nil, fmt.Errorf("no agent binary for %s", arch)
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, fmt.Errorf("absolute path of %s: %w", bin, err)
	}
	ver, err := FormatVersion(format, opts.Info.Version)
	if err != nil {
		return nil, fmt.Errorf("%s version: %w", format, err)
	}
	vars := map[string]string{"ARCH": arch, "VERSION": ver, "AGENT_BINARY": bin}
	var unknown []string
	mapping := func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		if !strings.HasPrefix(name, "NFPM_") { // nfpm asks for its passphrase variables itself
			unknown = append(unknown, name)
		}
		return ""
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(opts.Config, mapping)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", opts.Config, err)
	}
	info, err := cfg.Get(format)
	if err != nil {
		return nil, fmt.Errorf("%s: %s settings: %w", opts.Config, format, err)
	}
	// nfpm expands variables in contents only for entries marked
	// "expand: true"; this config uses them in src paths throughout.
	for _, c := range info.Contents {
		c.Source = os.Expand(c.Source, mapping)
		c.Destination = os.Expand(c.Destination, mapping)
		if c.Source != "" && !filepath.IsAbs(c.Source) {
			c.Source = filepath.Join(opts.Root, c.Source)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%s uses unknown variables %v (known: ARCH, VERSION, AGENT_BINARY)", opts.Config, unknown)
	}
	mtime := opts.Info.Time()
	info.MTime = mtime
	for _, s := range []*string{
		&info.Scripts.PreInstall, &info.Scripts.PostInstall, &info.Scripts.PreRemove, &info.Scripts.PostRemove,
		&info.APK.Scripts.PreUpgrade, &info.APK.Scripts.PostUpgrade,
		&info.RPM.Scripts.PreTrans, &info.RPM.Scripts.PostTrans,
		&info.Deb.Scripts.Rules, &info.Deb.Scripts.Templates, &info.Deb.Scripts.Config,
	} {
		if *s == "" {
			continue
		}
		p := *s
		if !filepath.IsAbs(p) {
			p = filepath.Join(opts.Root, p)
		}
		// The apk packager stamps scripts with the file's own mtime: use a
		// copy dated SOURCE_DATE_EPOCH.
		staged, err := stageScript(p, filepath.Join(staging, format, arch), mtime)
		if err != nil {
			return nil, err
		}
		*s = staged
	}
	sign(info, opts.Keys)
	return info, nil
}

// sign sets nfpm's signature hooks of each format whose key is loaded.
func sign(info *nfpm.Info, keys *signing.Keys) {
	if keys.HasPGP() {
		info.Deb.Signature.SignFn = func(data io.Reader) ([]byte, error) {
			var b strings.Builder
			err := keys.DetachArmored(&b, data)
			return []byte(b.String()), err
		}
		info.RPM.Signature.SignFn = keys.Detach
	}
	if keys.HasAPK() {
		info.APK.Signature.KeyName = keys.APKKeyName()
		info.APK.Signature.SignFn = func(digest io.Reader) ([]byte, error) {
			d, err := io.ReadAll(digest)
			if err != nil {
				return nil, err
			}
			return keys.APKSignDigest(d)
		}
	}
}

func buildOne(opts Options, staging, format, arch string) (Package, error) {
	t0 := time.Now()
	info, err := Info(opts, staging, format, arch)
	if err != nil {
		return Package{}, err
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return Package{}, fmt.Errorf("nfpm packager %s: %w", format, err)
	}
	name := packager.ConventionalFileName(info)
	path := filepath.Join(Dir(opts.Dist), name)
	tmp, err := os.CreateTemp(Dir(opts.Dist), "."+name+".*")
	if err != nil {
		return Package{}, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := packager.Package(info, tmp); err != nil {
		tmp.Close()
		return Package{}, fmt.Errorf("build %s %s package %s: %w", arch, format, path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return Package{}, fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return Package{}, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Package{}, fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	return Package{Format: format, Arch: arch, Path: path, Duration: time.Since(t0)}, nil
}

func stageScript(src, dir string, mtime time.Time) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("open maintainer script %s: %w", src, err)
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", dst, err)
	}
	if err := os.Chtimes(dst, mtime, mtime); err != nil {
		return "", fmt.Errorf("set time of %s: %w", dst, err)
	}
	return dst, nil
}

// nfpmArch maps the architecture suffix of nfpm's conventional file names
// back to the Go architecture.
var nfpmArch = map[string]map[string]string{
	"deb": {"amd64": "amd64", "arm64": "arm64"},
	"rpm": {"x86_64": "amd64", "aarch64": "arm64"},
	"apk": {"x86_64": "amd64", "aarch64": "arm64"},
}

// Identify recovers format and architecture from nfpm's conventional file
// names (name_version_arch.deb, name-version-release.arch.rpm,
// name_version_arch.apk).
func Identify(paths []string) ([]Package, error) {
	out := make([]Package, 0, len(paths))
	for _, p := range paths {
		base := filepath.Base(p)
		ext := filepath.Ext(base)
		format := strings.TrimPrefix(ext, ".")
		stem := strings.TrimSuffix(base, ext)
		sep := "_"
		if format == "rpm" {
			sep = "."
		}
		archs, ok := nfpmArch[format]
		if !ok {
			return nil, fmt.Errorf("%s: not a deb, rpm or apk file name", p)
		}
		found := false
		for suffix, arch := range archs {
			if strings.HasSuffix(stem, sep+suffix) {
				out = append(out, Package{Format: format, Arch: arch, Path: p})
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no known %s architecture in the name", p, format)
		}
	}
	return out, nil
}
