package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNoPackage is wrapped by the errors of Fetch when apt does not know a
// package, for example because the foreign architecture was not added
// (see AptSetup).
var ErrNoPackage = errors.New("package not known to apt")

// AptSetup returns the commands that make the packages of arch known to
// apt on a Debian host, for error messages and documentation.
func AptSetup(arch string) string {
	return fmt.Sprintf("dpkg --add-architecture %s && apt-get update", arch)
}

// Kernel is a Debian cloud kernel unpacked in the cache.
type Kernel struct {
	Arch    string // "amd64" or "arm64"
	Release string // uname -r, e.g. "6.1.0-56-cloud-amd64"
	Image   string // the vmlinuz file to give QEMU's -kernel
	Modules string // its /lib/modules/<Release> directory
}

// DefaultCacheDir is where the fetch functions keep packages unless told
// otherwise: the user's cache directory (so that repeated runs download
// nothing), or the system temporary directory when there is none ($HOME
// unset).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "kvmmanager-guest-agent", "e2e"), nil
}

// FetchKernel makes the current Debian cloud kernel of arch
// (linux-image-cloud-<arch>, resolved to the linux-image-<release> package
// it depends on) available unpacked under cacheDir, downloading it with
// apt-get download if that version is not cached yet.
func FetchKernel(ctx context.Context, cacheDir, arch string) (*Kernel, error) {
	meta := "linux-image-cloud-" + arch + ":" + arch
	if err := checkArch(ctx, arch); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", meta, err)
	}
	out, err := run(ctx, "", "apt-cache", "depends", "--no-recommends", "--no-suggests", meta)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w (%w; run: %s)", meta, err, ErrNoPackage, AptSetup(arch))
	}
	pkg := ""
	re := regexp.MustCompile(`^\s*Depends:\s*(linux-image-[0-9][^\s:]*)`)
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			pkg = m[1]
			break
		}
	}
	if pkg == "" {
		return nil, fmt.Errorf("resolve %s: no linux-image-<release> dependency in:\n%s", meta, out)
	}
	root, err := fetchPackage(ctx, cacheDir, pkg, arch)
	if err != nil {
		return nil, err
	}
	release := strings.TrimPrefix(strings.TrimSuffix(pkg, "-unsigned"), "linux-image-")
	k := &Kernel{
		Arch:    arch,
		Release: release,
		Image:   filepath.Join(root, "boot", "vmlinuz-"+release),
		Modules: filepath.Join(root, "lib", "modules", release),
	}
	for _, p := range []string{k.Image, filepath.Join(k.Modules, "modules.builtin")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel package %s: %w", pkg, err)
		}
	}
	return k, nil
}

// FetchBusybox makes busybox-static for arch available under cacheDir and
// returns the path of its static busybox binary.
func FetchBusybox(ctx context.Context, cacheDir, arch string) (string, error) {
	root, err := fetchPackage(ctx, cacheDir, "busybox-static", arch)
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "busybox")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("busybox-static:%s: %w", arch, err)
	}
	return p, nil
}

// checkArch fails, wrapping ErrNoPackage and naming AptSetup, when dpkg
// is there but arch is neither its native nor a foreign architecture: apt
// then knows no package of arch, and dpkg says so in milliseconds where
// apt-cache takes seconds. Without dpkg it leaves the judgement to apt.
func checkArch(ctx context.Context, arch string) error {
	native, err := run(ctx, "", "dpkg", "--print-architecture")
	if errors.Is(err, exec.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	foreign, err := run(ctx, "", "dpkg", "--print-foreign-architectures")
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(native + " " + foreign) {
		if a == arch {
			return nil
		}
	}
	return fmt.Errorf("dpkg architecture %s is not added (%w; run: %s)", arch, ErrNoPackage, AptSetup(arch))
}

// fetchPackage unpacks the candidate version of pkg:arch into
// cacheDir/<pkg>_<version>_<arch> (downloading it only when that directory
// is not complete yet) and returns that directory.
func fetchPackage(ctx context.Context, cacheDir, pkg, arch string) (string, error) {
	spec := pkg + ":" + arch
	if err := checkArch(ctx, arch); err != nil {
		return "", fmt.Errorf("fetch %s: %w", spec, err)
	}
	out, err := run(ctx, "", "apt-cache", "show", "--no-all-versions", spec)
	if err != nil {
		return "", fmt.Errorf("apt-cache show %s: %w (%w; run: %s)", spec, err, ErrNoPackage, AptSetup(arch))
	}
	version := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Version: "); ok {
			version = strings.TrimSpace(v)
			break
		}
	}
	if version == "" {
		return "", fmt.Errorf("apt-cache show %s: no Version field", spec)
	}
	dir := filepath.Join(cacheDir, strings.NewReplacer(":", "%3a", "/", "_").Replace(pkg+"_"+version+"_"+arch))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create cache %s: %w", cacheDir, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".fetch-")
	if err != nil {
		return "", fmt.Errorf("create temporary directory in %s: %w", cacheDir, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := run(ctx, tmp, "apt-get", "download", "-q", spec+"="+version); err != nil {
		return "", fmt.Errorf("download %s=%s: %w", spec, version, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("download %s=%s: want one .deb in %s, found %d", spec, version, tmp, len(debs))
	}
	unpacked := filepath.Join(tmp, "root")
	if _, err := run(ctx, "", "dpkg-deb", "-x", debs[0], unpacked); err != nil {
		return "", fmt.Errorf("unpack %s: %w", debs[0], err)
	}
	if err := os.WriteFile(filepath.Join(unpacked, ".complete"), []byte(spec+"="+version+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("mark %s complete: %w", unpacked, err)
	}
	if err := os.Rename(unpacked, dir); err != nil {
		// Another process may have finished the same version first.
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return dir, nil
		}
		return "", fmt.Errorf("move %s to %s: %w", unpacked, dir, err)
	}
	return dir, nil
}

// run runs a command in dir and returns its standard output; the error
// carries the command line and its standard error.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
