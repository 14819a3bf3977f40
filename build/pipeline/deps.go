package pipeline

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kvmmanager/guest-agent/build/binaries"
)

// modulePath returns the module path declared in root/go.mod.
func modulePath(root string) (string, error) {
	p := filepath.Join(root, "go.mod")
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return "", fmt.Errorf("%s declares no module", p)
}

// commandSources returns the files of the module (relative to root) that
// go build compiles into the main package pkg ("./agent/cmd/x") for any of
// platforms: the non-test Go and assembly files and embedded files of
// the package and of every package of the module it imports, with the build
// constraints of each architecture applied (CGO_ENABLED=0). Packages outside
// the module are pinned by go.mod and go.sum, which the caller hashes too.
//
// It reads only the package clauses and imports (go/build), so it costs a
// few milliseconds, where `go list -deps` would start the go command.
func (in *inputs) commandSources(module, pkg string, platforms []binaries.Platform) ([]string, error) {
	root := in.root
	files := map[string]bool{}
	for _, pl := range platforms {
		goos, arch := pl.OS, pl.Arch
		ctx := build.Default
		ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = goos, arch, false
		ctx.OpenFile = in.open
		seen := map[string]bool{}
		var visit func(dir string) error
		visit = func(dir string) error {
			if seen[dir] {
				return nil
			}
			seen[dir] = true
			p, err := ctx.ImportDir(filepath.Join(root, filepath.FromSlash(dir)), 0)
			if err != nil {
				return fmt.Errorf("list the sources of %s for %s/%s: %w", dir, goos, arch, err)
			}
			for _, group := range [][]string{p.GoFiles, p.SFiles, p.HFiles, p.SysoFiles} {
				for _, f := range group {
					files[path.Join(dir, f)] = true
				}
			}
			if err := addEmbedded(root, dir, p.EmbedPatterns, files); err != nil {
				return err
			}
			for _, imp := range p.Imports {
				if imp == module {
					if err := visit("."); err != nil {
						return err
					}
				} else if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
					if err := visit(rest); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if err := visit(path.Clean(filepath.ToSlash(pkg))); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(files))
	for f := range files {
		out = append(out, filepath.FromSlash(f))
	}
	sort.Strings(out)
	return out, nil
}

// addEmbedded adds the files //go:embed patterns of the package in dir name
// (a directory pattern stands for every file under it).
func addEmbedded(root, dir string, patterns []string, files map[string]bool) error {
	for _, pat := range patterns {
		pat = strings.TrimPrefix(pat, "all:")
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(dir), filepath.FromSlash(pat)))
		if err != nil {
			return fmt.Errorf("embed pattern %q in %s: %w", pat, dir, err)
		}
		for _, m := range matches {
			err := filepath.WalkDir(m, func(p string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if e.Type().IsRegular() {
					rel, err := filepath.Rel(root, p)
					if err != nil {
						return err
					}
					files[filepath.ToSlash(rel)] = true
				}
				return nil
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("embedded files of %s: %w", dir, err)
			}
		}
	}
	return nil
}
