package bench

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// binaryInfo describes an executable and the shared libraries it loads.
type binaryInfo struct {
	Path      string   `json:"path"`
	SizeBytes int64    `json:"size_bytes"`
	Needed    []string `json:"needed"`    // DT_NEEDED of the executable itself
	Loaded    []string `json:"loaded"`    // every library the loader maps: DT_NEEDED transitively, plus the interpreter
	Footprint int64    `json:"footprint"` // bytes of the executable plus every loaded library
}

// libDirs are the loader's default search directories on Debian-style
// multiarch systems.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// inspectBinary reads the ELF dynamic section of path and resolves its
// libraries without running anything (unlike ldd).
func inspectBinary(path string) (binaryInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("stat %s: %w", path, err)
	}
	info := binaryInfo{Path: path, SizeBytes: st.Size(), Footprint: st.Size(), Needed: []string{}, Loaded: []string{}}
	needed, interp, err := dynamic(path)
	if err != nil {
		return binaryInfo{}, err
	}
	info.Needed = append(info.Needed, needed...)
	seen := map[string]bool{}
	queue := append([]string(nil), needed...)
	add := func(p string) error {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", p, err)
		}
		if seen[real] {
			return nil
		}
		seen[real] = true
		st, err := os.Stat(real)
		if err != nil {
			return fmt.Errorf("stat %s: %w", real, err)
		}
		info.Loaded = append(info.Loaded, p)
		info.Footprint += st.Size()
		return nil
	}
	if interp != "" {
		if err := add(interp); err != nil {
			return binaryInfo{}, err
		}
	}
	byName := map[string]bool{}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if byName[name] {
			continue
		}
		byName[name] = true
		p, err := findLib(name)
		if err != nil {
			return binaryInfo{}, fmt.Errorf("%s: %w", path, err)
		}
		if err := add(p); err != nil {
			return binaryInfo{}, err
		}
		more, _, err := dynamic(p)
		if err != nil {
			return binaryInfo{}, err
		}
		queue = append(queue, more...)
	}
	return info, nil
}

// dynamic returns the DT_NEEDED entries and the PT_INTERP of an ELF file;
// both are empty for a static executable.
func dynamic(path string) (needed []string, interp string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("open ELF %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, "", fmt.Errorf("read interpreter of %s: %w", path, err)
			}
			interp = string(b[:max(0, len(b)-1)]) // NUL-terminated
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, "", fmt.Errorf("read DT_NEEDED of %s: %w", path, err)
	}
	return needed, interp, nil
}

func findLib(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("shared library %s not found in %v", name, libDirs)
}
