package distro

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvmmanager/guest-agent/build/filelock"
)

// bakeVersion changes whenever Build's baking logic changes in a way the
// hashed inputs do not show, so that cached images are rebuilt.
const bakeVersion = "1"

// Image is a built (or cached) test image.
type Image struct {
	Spec   Spec
	Dir    string // cache directory of this image
	Disk   string // raw ext4 image, the guest's /dev/vda; never written by tests
	Kernel string // vmlinuz taken from the image's /boot
	Initrd string // initrd.img generated inside the image
}

// Files inside an image's cache directory.
const (
	diskName     = "root.img"
	kernelName   = "vmlinuz"
	initrdName   = "initrd.img"
	completeName = "complete" // written last: the image is usable
)

// Key returns the cache key of s: a hash of the spec, the baked files and the
// baking logic's version.
func (s Spec) Key() (string, error) {
	h := sha256.New()
	spec, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("hash spec %s: %w", s.Name, err)
	}
	fmt.Fprintf(h, "bake %s\nspec %s\n", bakeVersion, spec)
	err = fs.WalkDir(guestFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := guestFiles.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file %s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash baked files: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Build returns the image for spec from cacheDir, building it first when the
// cache has no complete image with spec's key. It needs root, mmdebstrap and
// mkfs.ext4; progress goes to log. Concurrent builds of the same spec (from
// several processes) are serialised by a lock file.
func Build(ctx context.Context, spec Spec, cacheDir string, log io.Writer) (*Image, error) {
	key, err := spec.Key()
	if err != nil {
		return nil, err
	}
	img := imageAt(spec, filepath.Join(cacheDir, spec.Name+"-"+key))
	if img.complete() {
		return img, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create image cache %s: %w", cacheDir, err)
	}
	unlock, err := filelock.Lock(filepath.Join(cacheDir, spec.Name+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if img.complete() { // built by another process while we waited
		return img, nil
	}
	if err := build(ctx, spec, img.Dir, log); err != nil {
		return nil, fmt.Errorf("build image %s: %w", spec.Name, err)
	}
	pruneStale(cacheDir, spec.Name, img.Dir, log)
	return img, nil
}

func imageAt(spec Spec, dir string) *Image {
	return &Image{
		Spec:   spec,
		Dir:    dir,
		Disk:   filepath.Join(dir, diskName),
		Kernel: filepath.Join(dir, kernelName),
		Initrd: filepath.Join(dir, initrdName),
	}
}

func (img *Image) complete() bool {
	_, err := os.Stat(filepath.Join(img.Dir, completeName))
	return err == nil
}

// build makes the image in a temporary directory next to dir and renames it
// into place when complete.
func build(ctx context.Context, spec Spec, dir string, log io.Writer) error {
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+spec.Name+"-")
	if err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")

	fmt.Fprintf(log, "distro: building image %s with mmdebstrap (%s, minbase + %s)\n", spec.Name, spec.Suite, strings.Join(spec.Packages, ","))
	// No mirror argument: mmdebstrap then uses deb.debian.org with the
	// release's updates and security suites, like the machine's sources.
	args := []string{
		"--variant=minbase",
		"--include=" + strings.Join(spec.Packages, ","),
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
	}
	if spec.AptPreferences != "" {
		if strings.Contains(spec.AptPreferences, "'") {
			return fmt.Errorf("spec %s: AptPreferences may not hold a single quote", spec.Name)
		}
		args = append(args, "--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d && printf '%s' '"+
			spec.AptPreferences+"' > \"$1\"/etc/apt/preferences.d/kvmtest")
	}
	args = append(args, spec.Suite, tree)
	if err := runEnv(ctx, log, systemEnv(), "mmdebstrap", args...); err != nil {
		return err
	}
	if err := bake(tree, spec); err != nil {
		return err
	}
	if len(spec.RPMProvides) > 0 {
		if err := RecordRPMProvides(ctx, log, tree, rpmDBPath, spec.RPMProvides); err != nil {
			return fmt.Errorf("image %s: %w", spec.Name, err)
		}
	}
	for name, pattern := range map[string]string{kernelName: "vmlinuz-*", initrdName: "initrd.img-*"} {
		src, err := single(filepath.Join(tree, "boot", pattern))
		if err != nil {
			return err
		}
		if err := copyFile(src, filepath.Join(work, name)); err != nil {
			return err
		}
	}
	disk := filepath.Join(work, diskName)
	if err := run(ctx, log, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, disk, strconv.Itoa(spec.SizeMiB)+"M"); err != nil {
		return err
	}
	if err := os.RemoveAll(tree); err != nil {
		return fmt.Errorf("remove %s: %w", tree, err)
	}
	if err := os.WriteFile(filepath.Join(work, completeName), nil, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", completeName, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove incomplete %s: %w", dir, err)
	}
	if err := os.Rename(work, dir); err != nil {
		return fmt.Errorf("rename %s to %s: %w", work, dir, err)
	}
	fmt.Fprintf(log, "distro: image %s ready in %s\n", spec.Name, dir)
	return nil
}

// bakedFile is a file bake writes into the image tree.
type bakedFile struct {
	path string // relative to the tree
	mode fs.FileMode
	data []byte
}

// bake writes the test's files into the image tree: fstab, hostname, the
// spec's own files, the administrator and how the init system runs it.
func bake(tree string, spec Spec) error {
	admin, err := guestFiles.ReadFile("guest/kvmtest-admin.sh")
	if err != nil {
		return fmt.Errorf("read baked file: %w", err)
	}
	host := "kvmtest-" + spec.Name
	files := []bakedFile{
		{"etc/hostname", 0o644, []byte(host + "\n")},
		{"etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n127.0.1.1\t" + host + "\n")},
		{"etc/fstab", 0o644, []byte("/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n")},
		{"etc/kvmtest/install", 0o644, []byte(spec.Install + "\n")},
		{"usr/local/sbin/kvmtest-admin", 0o755, admin},
	}
	for _, f := range spec.Files {
		files = append(files, bakedFile{f.Path, f.Mode, []byte(f.Data)})
	}
	switch spec.Init {
	case InitSystemd:
		unit, err := guestFiles.ReadFile("guest/kvmtest-admin.service")
		if err != nil {
			return fmt.Errorf("read baked file: %w", err)
		}
		files = append(files, bakedFile{"etc/systemd/system/kvmtest-admin.service", 0o644, unit})
	case InitOpenRC:
	default:
		return fmt.Errorf("spec %s: unknown init system %q", spec.Name, spec.Init)
	}
	for _, f := range files {
		p := filepath.Join(tree, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("bake %s: %w", p, err)
		}
		// Replace, not follow, a symlink (Debian's /etc/os-release is one).
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("bake %s: %w", p, err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("bake %s: %w", p, err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("bake %s: %w", p, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(tree, "media/cdrom"), 0o755); err != nil {
		return fmt.Errorf("bake /media/cdrom: %w", err)
	}
	switch spec.Init {
	case InitSystemd:
		wants := filepath.Join(tree, "etc/systemd/system/multi-user.target.wants")
		if err := os.MkdirAll(wants, 0o755); err != nil {
			return fmt.Errorf("bake %s: %w", wants, err)
		}
		link := filepath.Join(wants, "kvmtest-admin.service")
		if err := os.Symlink("/etc/systemd/system/kvmtest-admin.service", link); err != nil {
			return fmt.Errorf("bake %s: %w", link, err)
		}
	case InitOpenRC:
		if err := bakeInittab(filepath.Join(tree, "etc/inittab")); err != nil {
			return err
		}
	}
	return nil
}

// bakeInittab drops the gettys on virtual consoles (the VM has no display)
// and runs the administrator once per boot after the runlevel's OpenRC
// services: sysvinit starts "once" entries after the "wait" entry that runs
// /etc/init.d/rc for the runlevel has finished.
func bakeInittab(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bake %s: %w", path, err)
	}
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if len(l) > 2 && l[0] >= '1' && l[0] <= '6' && l[1] == ':' && strings.Contains(l, "getty") {
			continue
		}
		out.WriteString(l)
	}
	out.WriteString("# build/distro: the test's administrator, once per boot.\nkt:2345:once:/usr/local/sbin/kvmtest-admin\n")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bake %s: %w", path, err)
	}
	return nil
}

// pruneStale removes cached builds of the same image with another key.
func pruneStale(cacheDir, name, keep string, log io.Writer) {
	old, _ := filepath.Glob(filepath.Join(cacheDir, name+"-*"))
	for _, d := range old {
		if d == keep || len(filepath.Base(d)) != len(name)+1+16 {
			continue
		}
		fmt.Fprintf(log, "distro: removing stale image %s\n", d)
		os.RemoveAll(d)
	}
}

// Overlay creates a qcow2 overlay at path backed by the image's raw disk, so
// that a VM writes to path and the cached image stays pristine.
func (img *Image) Overlay(ctx context.Context, path string) error {
	return run(ctx, io.Discard, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img.Disk, "-F", "raw", path)
}

func single(pattern string) (string, error) {
	m, err := filepath.Glob(pattern)
	if err != nil {
		return "", fmt.Errorf("glob %s: %w", pattern, err)
	}
	if len(m) != 1 {
		return "", fmt.Errorf("want exactly one %s, found %d (%v)", pattern, len(m), m)
	}
	return m[0], nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}

// systemPath is the PATH mmdebstrap runs with: the system's own tools only.
// mmdebstrap runs its helper mmtarfilter (`#!/usr/bin/env python3`) once per
// package when paths are excluded; a PATH that starts with a Python version
// manager's shims (pyenv on the CI machine) makes each start cost seconds.
const systemPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// systemEnv is the environment with PATH set to systemPath.
func systemEnv() []string {
	env := []string{"PATH=" + systemPath}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return env
}

// run runs a command, sending its output to log; on failure the error holds
// the last lines of the output.
func run(ctx context.Context, log io.Writer, name string, args ...string) error {
	return runEnv(ctx, log, nil, name, args...)
}

// runEnv is run with the environment env (nil: this process's).
func runEnv(ctx context.Context, log io.Writer, env []string, name string, args ...string) error {
	var tail bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout = io.MultiWriter(log, &tail)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		out := tail.String()
		if len(out) > 4000 {
			out = "..." + out[len(out)-4000:]
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
		return fmt.Errorf("run %s: %w", name, err)
	}
	return nil
}
