package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Module is a kernel module to put in the initramfs.
type Module struct {
	Name string // canonical name, "_" for "-": "virtio_pci"
	Path string // the .ko file on the host
}

// moduleName returns the canonical module name of a module file name.
func moduleName(file string) string {
	base := path.Base(file)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(base, ext) {
			base = strings.TrimSuffix(base, ext)
			break
		}
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ResolveModules returns the modules of the kernel whose modules directory
// is modDir that must be loaded for the named modules to work, dependencies
// before the modules that need them, without the ones built into the kernel
// (modules.builtin). Dependencies come from each module's own .modinfo
// "depends=" field (the package ships no modules.dep: depmod makes it at
// install time). A name that is neither a module nor built in is an error.
func ResolveModules(modDir string, names []string) ([]Module, error) {
	builtin := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("read builtin modules: %w", err)
	}
	for _, line := range strings.Fields(string(b)) {
		builtin[moduleName(line)] = true
	}
	files := map[string]string{}
	err = filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			files[moduleName(d.Name())] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules of %s: %w", modDir, err)
	}

	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, neededBy string) error
	visit = func(name, neededBy string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		}
		p, ok := files[name]
		if !ok {
			return fmt.Errorf("module %s%s: neither in %s nor built in", name, neededBy, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, " (needed by "+name+")"); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Path: p})
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ModuleData returns the content of a module file, decompressed when it is
// a .ko.xz/.ko.zst/.ko.gz (busybox insmod loads plain modules only).
func ModuleData(p string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".ko.gz"):
		tool = "gzip"
	default:
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return b, nil
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s: %w", p, tool, err)
	}
	return out, nil
}

// moduleDepends reads the depends= field of a module's .modinfo section.
func moduleDepends(p string) ([]string, error) {
	data, err := ModuleData(p)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", p, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", p)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: read .modinfo: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(info))
	sc.Split(splitNUL)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "depends="); ok {
			if v == "" {
				return nil, nil
			}
			return strings.Split(v, ","), nil
		}
	}
	return nil, sc.Err()
}

// splitNUL is a bufio.SplitFunc for NUL-separated strings.
func splitNUL(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
